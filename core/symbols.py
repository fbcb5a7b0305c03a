"""What a function or tracepoint pattern names on this host.

Tools that take patterns (funccount 'vfs_*', 'c:malloc*', 't:block:*')
expand them here, in Python, into the plain names the model accepts, so
both backends trace exactly the same functions:

    resolve_binary("c", pid=181)         -> "/usr/lib/x86_64-linux-gnu/libc.so.6"
    user_functions(path, "str*cmp")      -> ["strcasecmp", "strcmp", "strncmp", ...]
    kernel_functions("vfs_*")            -> ["vfs_read", "vfs_write", ...]
    tracepoints("block", "*")            -> [("block", "block_rq_issue"), ...]

A pattern is `*` wildcards (anything else literal) or, with regex=True, a
Python regular expression matched against the whole name.  Only names the
model accepts (identifiers) are returned: a symbol such as foo.cold or
foo.isra.0 cannot be named in a probe definition and is skipped.
"""

import glob
import os
import platform
import re
import subprocess

from . import elfsym
from .errors import UsageError
from .model import TRACER_RECORDS, is_identifier


class SymbolError(UsageError):
    """A binary, library or pattern that names nothing usable (one line)."""


# A path the uprobe_events parser takes verbatim: no blanks, no ':' (it
# separates the offset), nothing but ordinary file name characters.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]{1,4000}\Z")
_LIBNAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,200}\Z")


def compile_pattern(pattern, regex=False):
    """A compiled regular expression matching whole names."""
    if regex:
        try:
            return re.compile(r"(?:%s)\Z" % pattern)
        except re.error as e:
            raise SymbolError("invalid regular expression %r: %s" % (pattern, e))
    return re.compile("%s\\Z" % ".*".join(re.escape(part) for part in pattern.split("*")))


# ---------------------------------------------------------------------------
# Binaries and libraries
def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == elfsym.ELF_MAGIC
    except (IOError, OSError):
        return False


def _lib_pattern(name):
    # "c" -> libc.so, libc.so.6, libc-2.31.so ; "pthread" -> libpthread.so.0
    stem = name if name.startswith("lib") else "lib" + name
    return re.compile(r"^%s(?:-[0-9.]+)?\.so(?:\.[0-9]+)*$" % re.escape(stem))


def _from_maps(pattern, maps):
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/"):
                    if pattern.match(os.path.basename(parts[5])):
                        return parts[5]
    except (IOError, OSError):
        pass
    return None


def _program_of(name, pid):
    """The program process `pid` runs when `name` names it ("python3" for
    /usr/bin/python3.11: a version suffix may follow), as bcc finds a
    binary for -p; else None."""
    try:
        exe = os.path.realpath("/proc/%d/exe" % pid)
    except (IOError, OSError):
        return None
    base = os.path.basename(exe)
    if base == name or re.match(r"^%s[0-9.]+\Z" % re.escape(name), base):
        return exe
    return None


def _which(name):
    import shutil   # (pulls in compression modules: only when asked)
    return shutil.which(name)


def _from_ldconfig(pattern):
    exe = _which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
    if not exe:
        return None
    try:
        p = subprocess.Popen([exe, "-p"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True)
        out, _ = p.communicate(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    want64 = platform.architecture()[0] == "64bit"
    fallback = None
    for line in out.splitlines():
        # "	libc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6"
        m = re.match(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)$", line)
        if not m or not pattern.match(m.group(1)):
            continue
        is64 = "64" in m.group(2)
        if is64 == want64:
            return m.group(3)
        fallback = fallback or m.group(3)
    return fallback


def _from_standard_dirs(pattern):
    triplet = "%s-linux-gnu" % platform.machine()
    for d in ("/lib64", "/usr/lib64", "/lib/" + triplet, "/usr/lib/" + triplet, "/lib", "/usr/lib"):
        for p in sorted(glob.glob(os.path.join(d, "lib*.so*"))):
            if pattern.match(os.path.basename(p)):
                return p
    return None


def resolve_binary(name, maps="/proc/self/maps", pid=None):
    """Real path of a binary or library named by a tool: an absolute path,
    or a short name ("c" -> libc: from the mappings of process `pid` when
    given, else our own; the program `pid` runs, "python3" naming
    /usr/bin/python3.11; `ldconfig -p`, the standard library directories,
    or a program on PATH).  Raises SymbolError."""
    if pid is not None:
        maps = "/proc/%d/maps" % pid
    if "/" in name:
        if not name.startswith("/"):
            raise SymbolError("library path %r must be absolute" % name)
        found = name
    else:
        if not _LIBNAME.match(name):
            raise SymbolError("invalid library name %r" % name)
        pattern = _lib_pattern(name)
        found = (_from_maps(pattern, maps) or (_program_of(name, pid) if pid is not None
                                                else None)
                 or _from_ldconfig(pattern) or _from_standard_dirs(pattern)
                 or _which(name))
        if not found:
            raise SymbolError("library %r not found (not mapped, not in ldconfig -p or the "
                              "standard directories)" % name)
    path = os.path.realpath(found)
    if not os.path.isfile(path):
        raise SymbolError("%s does not exist" % found)
    if not _is_elf(path):
        raise SymbolError("%s is not an ELF binary" % path)
    if not SAFE_PATH.match(path):
        raise SymbolError("cannot probe %r: unusual characters in the path" % path)
    return path


def _alias_rank(sym):
    # global before local, public before _internal, then the shortest name
    return (sym.bind not in (elfsym.STB_GLOBAL, elfsym.STB_WEAK), sym.name.startswith("_"),
            len(sym.name), sym.name)


def user_functions(path, pattern, regex=False):
    """Sorted names of the functions of ELF file `path` matching `pattern`,
    one name per address: aliases (strtol, strtoll, strtoq at one address)
    are one function, named by its global, public, shortest matching name,
    as a probe at that address counts the calls of all of them.  IFUNC
    resolvers are left out: a uprobe there sees the resolver run once, not
    the calls."""
    try:
        funcs = elfsym.ElfFile(path).functions()
    except elfsym.ElfError as e:
        raise SymbolError(str(e))
    rx = compile_pattern(pattern, regex)
    by_offset = {}
    for n, s in funcs.items():
        if rx.match(n) and is_identifier(n) and not s.is_ifunc:
            best = by_offset.get(s.offset)
            if best is None or _alias_rank(s) < _alias_rank(best):
                by_offset[s.offset] = s
    return sorted(s.name for s in by_offset.values())


def usdt_probes(path, pattern, regex=False, provider=None):
    """Sorted [(provider, name, sites)] of the USDT probes of ELF file
    `path` whose name matches `pattern` (and whose provider matches
    `provider`, a second pattern, when given); `sites` is how many places
    use the probe.  Probes whose names the model cannot take are skipped."""
    rx = compile_pattern(pattern, regex)
    prx = compile_pattern(provider, regex) if provider is not None else None
    sites = {}
    for p in _usdt_notes(path):
        if rx.match(p.name) and (prx is None or prx.match(p.provider)) and \
                is_identifier(p.name) and is_identifier(p.provider):
            key = (p.provider, p.name)
            sites[key] = sites.get(key, 0) + 1
    return sorted((prov, name, n) for (prov, name), n in sites.items())


def usdt_site(path, provider, name, site=0):
    """The elfsym.UsdtProbe of site `site` of probe provider:name of ELF
    file `path` (its offset and semaphore offset); raises SymbolError."""
    found = [p for p in _usdt_notes(path) if p.provider == provider and p.name == name]
    if not found:
        raise SymbolError("%s has no USDT probe %s:%s" % (path, provider, name))
    if site >= len(found):
        raise SymbolError("USDT probe %s:%s of %s has %d sites, not %d" % (
            provider, name, path, len(found), site + 1))
    return found[site]


def _usdt_notes(path):
    try:
        return elfsym.ElfFile(path).usdt_probes()
    except elfsym.ElfError as e:
        raise SymbolError(str(e))


# ---------------------------------------------------------------------------
# Kernel functions and tracepoints
def _kernel_names(tracing_root, kallsyms):
    """(names, source): available_filter_functions lists what the function
    tracer (and so fentry/kprobes) may attach to; without it, kallsyms text
    symbols."""
    if tracing_root:
        path = os.path.join(tracing_root, "available_filter_functions")
        try:
            with open(path) as f:
                # "vfs_read", or "foo [module]" for module functions
                return set(line.split()[0] for line in f if line.strip()), path
        except (IOError, OSError):
            pass
    try:
        with open(kallsyms) as f:
            names = set()
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
            return names, kallsyms
    except (IOError, OSError) as e:
        raise SymbolError("cannot list kernel functions: %s" % (e.strerror or e))


def kernel_functions(pattern, regex=False, tracing_root=None, kallsyms="/proc/kallsyms"):
    """Sorted traceable kernel function names matching `pattern`."""
    names, _source = _kernel_names(tracing_root, kallsyms)
    rx = compile_pattern(pattern, regex)
    return sorted(n for n in names if rx.match(n) and is_identifier(n))


def notrace_reason(function, tracing_root=None, kallsyms="/proc/kallsyms"):
    """Why kernel function `function` cannot be traced (not in the kernel,
    or notrace: absent from available_filter_functions), or None."""
    names, source = _kernel_names(None, kallsyms)
    if function not in names:
        return "no kernel function %s (not in %s)" % (function, kallsyms)
    if tracing_root:
        traceable, source = _kernel_names(tracing_root, kallsyms)
        if source != kallsyms and function not in traceable:
            return ("kernel function %s is not traceable (notrace or inlined: not in %s)"
                    % (function, source))
    return None


def tracepoints(category, name, regex=False, tracing_root=None):
    """Sorted (category, name) of the tracepoints under events/ matching
    the two patterns."""
    if not tracing_root:
        raise SymbolError("tracefs not found: cannot list tracepoints")
    events = os.path.join(tracing_root, "events")
    crx, nrx = compile_pattern(category, regex), compile_pattern(name, regex)
    out = []
    try:
        cats = os.listdir(events)
    except (IOError, OSError) as e:
        raise SymbolError("cannot list %s: %s" % (events, e.strerror or e))
    for cat in cats:
        if cat == TRACER_RECORDS or not is_identifier(cat) or not crx.match(cat):
            continue
        try:
            names = os.listdir(os.path.join(events, cat))
        except (IOError, OSError):
            continue
        for ev in names:
            if is_identifier(ev) and nrx.match(ev) and \
                    os.path.isfile(os.path.join(events, cat, ev, "format")):
                out.append((cat, ev))
    return sorted(out)


def tracing_root():
    """The tracefs directory of this host, or None (never mounts it)."""
    from . import tracefs
    loc = tracefs.locate(mount=False)
    return loc.path if loc is not None else None
