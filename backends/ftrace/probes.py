"""Dynamic probe definitions (uprobe_events / kprobe_events lines).

Definitions are global to the kernel (not per instance), so every one is
named after the creating process and removed by name only:

    group  kerntrace_<pid>          event  kerntrace_<pid>_<n>
    p:kerntrace_42/kerntrace_42_0 /usr/lib/x86_64-linux-gnu/libc.so.6:0x98930 size=%di:s64
    r:kerntrace_42/kerntrace_42_1 /usr/lib/x86_64-linux-gnu/libc.so.6:0x98930 ret=$retval:s64
    -:kerntrace_42/kerntrace_42_0                       (removal, appended)

Everything that reaches a definition line is validated here: library paths
(resolved, no characters the kernel parser treats specially), symbols and
kernel function names (identifiers, from the model), argument names (the
model's field names, identifiers) and fetch specs (built from fixed tables).
"""

import os
import platform
import re

from kerntrace.core.model import STR, USTR

from kerntrace.core import elfsym, symbols, usdtargs

# Function arguments by position, per architecture (the kernel's register
# names in fetch args; documented in Documentation/trace/uprobetracer.rst).
ARG_REGISTERS = {
    "x86_64": ("%di", "%si", "%dx", "%cx", "%r8", "%r9"),
    "aarch64": tuple("%%x%d" % i for i in range(8)),
    "arm64": tuple("%%x%d" % i for i in range(8)),
    "ppc64le": tuple("%%r%d" % i for i in range(3, 11)),
    "ppc64": tuple("%%r%d" % i for i in range(3, 11)),
    "s390x": tuple("%%r%d" % i for i in range(2, 7)),
    "riscv64": tuple("%%a%d" % i for i in range(8)),
}
RETVAL = "$retval"

GROUP_PREFIX = "kerntrace_"
_OWNED = re.compile(r"^kerntrace_(\d+)$")
_ARG = re.compile(r"^arg(\d+)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# A path the uprobe_events parser takes verbatim: no blanks, no ':' (it
# separates the offset), nothing but ordinary file name characters.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]{1,4000}\Z")
_DEF_LINE = re.compile(r"^([prf])(?:\d*):([A-Za-z0-9_]+)/([A-Za-z0-9_]+)\s")

_counter = [0]


class ProbeError(Exception):
    """Why a probe cannot be defined here (one short line)."""


def next_name(pid=None):
    """(group, event) for a new probe of process `pid` (default: us)."""
    pid = os.getpid() if pid is None else pid
    n = _counter[0]
    _counter[0] += 1
    return "%s%d" % (GROUP_PREFIX, pid), "%s%d_%d" % (GROUP_PREFIX, pid, n)


def owner_pid(group):
    """PID a kerntrace probe group belongs to, or None if not ours."""
    m = _OWNED.match(group)
    return int(m.group(1)) if m else None


def parse_definition(line):
    """'p:grp/ev /path:0x10 ...' -> (kind, group, event), or None."""
    m = _DEF_LINE.match(line.strip() + " ")
    if not m:
        return None
    return m.group(1), m.group(2), m.group(3)


def renamed(line, group, event):
    """A definition line (ours) with another group/event name."""
    m = _DEF_LINE.match(line)
    if not m or not _IDENT.match(group) or not _IDENT.match(event):
        raise ProbeError("cannot rename probe definition %r" % line.strip())
    head = line[:m.start(2)]
    return "%s%s/%s%s" % (head, group, event, line[m.end(3):])


def removal_line(group, event):
    return "-:%s/%s\n" % (group, event)


# ---------------------------------------------------------------------------
# Libraries
def resolve_library(name, maps="/proc/self/maps"):
    """Real path of a binary or library named by a tool (see
    core.symbols.resolve_binary); raises ProbeError."""
    try:
        return symbols.resolve_binary(name, maps=maps)
    except symbols.SymbolError as e:
        raise ProbeError(str(e))


def resolve_symbol(path, symbol):
    """File offset of function `symbol` in `path` (raises ProbeError)."""
    try:
        sym = elfsym.find_symbol(path, symbol)
    except elfsym.ElfError as e:
        raise ProbeError(str(e))
    if sym.is_ifunc:
        raise ProbeError("%s:%s is an IFUNC resolver; its implementation has another name"
                         % (path, symbol))
    return sym.offset


# ---------------------------------------------------------------------------
# Fetch arguments
def machine():
    return platform.machine()


def fetch_args(fields, ret, arch=None, ustring=False, probe=None):
    """[(arg name, fetch spec)] for the model Fields of a function probe.

    argN      the Nth argument register (from 0);
    retval    $retval (return probes only);
    USTR/STR  the NUL-terminated string at that pointer: `+0(REG):ustring`
              where the kernel has the ustring type, else `:string` (which
              reads user memory in uprobes on every kernel).
    `probe`'s own sources for a field (model.Probe.sources) come first.
    Raises ProbeError naming the first field it cannot map."""
    regs = ARG_REGISTERS.get(arch or machine())
    out = []
    for f in fields:
        if not _IDENT.match(f.name):
            raise ProbeError("invalid field name %r" % f.name)
        if probe is not None and f.name in probe.values:
            continue            # a value the probe sets itself (handlers.py)
        if getattr(f, "element", None) is not None:
            # `+0(+8N(REG)):ustring` would fetch it, but a fetch cannot stop
            # at the array's NULL end: past it, anything reads as an element
            raise ProbeError("field %s: an element of a pointer array cannot be fetched "
                             "(no fetch stops at the array's end)" % f.name)
        spec = None
        sources = probe.sources_for(f) if probe is not None else f.sources
        for src in sources:
            m = _ARG.match(src)
            if m:
                if regs is None:
                    raise ProbeError("argument registers of %s are unknown" % (arch or machine()))
                i = int(m.group(1))
                if i < len(regs):
                    spec = regs[i]
                    break
            elif src == "retval" and ret:
                spec = RETVAL
                break
        if spec is None:
            raise ProbeError("field %s: no source among %s on a %s probe"
                             % (f.name, ",".join(sources) or "none", "return" if ret else "entry"))
        if f.type in (STR, USTR):
            out.append((f.name, "+0(%s):%s" % (spec, "ustring" if ustring else "string")))
        else:
            # The fetch types s8..u64 are as old as kprobe_events (v2.6.33).
            out.append((f.name, "%s:%s" % (spec, f.width or "s64")))
    return out


def _args_text(args):
    return "".join(" %s=%s" % (name, spec) for name, spec in args)


def uprobe_definition(group, event, path, offset, ret, args, ref_ctr_offset=0):
    """A uprobe_events line; `ref_ctr_offset` (a USDT semaphore's file
    offset) makes the kernel raise that counter while the probe is on."""
    if not (_IDENT.match(group) and _IDENT.match(event) and _SAFE_PATH.match(path)):
        raise ProbeError("refusing an unsafe probe definition")
    ref_ctr = "(0x%x)" % int(ref_ctr_offset) if ref_ctr_offset else ""
    return "%s:%s/%s %s:0x%x%s%s\n" % ("r" if ret else "p", group, event, path, int(offset),
                                       ref_ctr, _args_text(args))


def usdt_site(path, provider, name, site):
    """The core.elfsym.UsdtProbe of a USDT probe site (its offset,
    semaphore offset or 0, argument descriptors); raises ProbeError."""
    try:
        return symbols.usdt_site(path, provider, name, site)
    except symbols.SymbolError as e:
        raise ProbeError(str(e))


def usdt_fetch_args(fields, probe, arguments, arch=None, immediate=False):
    """[(arg name, fetch spec)] for the model Fields of USDT probe `probe`
    whose note describes its arguments as `arguments` (core/usdtargs.py):
    argN (from 0) read with the note's size and sign, whatever the Field's
    width (the probe's C type is what the program passed):

        -4@%eax       %ax:s32         8@-16(%rbp)   -16(%bp):u64
        -4@$-5        \\-5:s32 (where the kernel takes immediates)

    Raises ProbeError naming the first field it cannot fetch."""
    arch = arch or machine()
    out = []
    for f in fields:
        if not _IDENT.match(f.name):
            raise ProbeError("invalid field name %r" % f.name)
        if f.type in (STR, USTR):
            raise ProbeError("field %s: USDT arguments are read as integers" % f.name)
        sources = probe.sources_for(f)
        index = next((int(_ARG.match(s).group(1)) for s in sources if _ARG.match(s)), None)
        if index is None:
            raise ProbeError("field %s: no source among %s (argN)" % (
                f.name, ",".join(sources) or "none"))
        try:
            arg = usdtargs.probe_argument(arguments, index, arch)
        except usdtargs.UsdtArgError as e:
            raise ProbeError(str(e))
        if arg.kind == "reg":
            spec = "%%%s" % arg.reg
        elif arg.kind == "mem":
            spec = "%+d(%%%s)" % (arg.disp, arg.reg)
        elif immediate:
            spec = "\\%d" % arg.value
        else:
            raise ProbeError("argument %s is a constant and this kernel's uprobe_events "
                             "takes no immediate values" % arg.text)
        out.append((f.name, "%s:%s" % (spec, arg.type)))
    return out


def kprobe_definition(group, event, function, ret, args):
    if not (_IDENT.match(group) and _IDENT.match(event) and _IDENT.match(function)):
        raise ProbeError("refusing an unsafe probe definition")
    return "%s:%s/%s %s%s\n" % ("r" if ret else "p", group, event, function, _args_text(args))


def kernel_function_exists(function, kallsyms="/proc/kallsyms"):
    """True/False from /proc/kallsyms, None if it cannot be read."""
    try:
        with open(kallsyms) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == function and parts[1] in "tTwW":
                    return True
    except (IOError, OSError):
        return None
    return False
