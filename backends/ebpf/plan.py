"""The eBPF backend's plan: which probe each logical event uses on this host
and where each of its fields is read from (EbpfPlan, codegen's input), and
the RunPlan check() hands to open(): that EbpfPlan, the program codegen made
from it (the C text bcc compiles), the buffer sizes and the tracefs path.
Both are immutable; the session attaches what they name and generates
nothing.

Resolution rules (feature detection only):
  tracepoint  its events/<sys>/<name>/format exists; each Field's sources
              are tried in order against the format's field names
  kprobe      kprobes really attach on this host and the function is a
              traceable kernel symbol; fields are argN / retval
  uprobe      uprobes attach, the library resolves and has the symbol
  usdt        uprobes attach, the library resolves and has the USDT probe
              site (core.symbols, from its .note.stapsdt); fields are argN,
              read as the note describes them (core/usdtargs.py)
"""

import os
import platform
import re
import types

from kerntrace.core.backend import Frozen
from kerntrace.core import symbols, usdtargs
from kerntrace.core.model import (INT, STR, USTR, Each, KernelFunction, Tracepoint, Usdt,
                                  UserFunction, width_bits)

from .sysbpf import Answer

# Size of string buffers we read into (bytes, including the NUL): in-record
# char arrays keep their own size up to this; strings behind a pointer or a
# __data_loc are cut here.
STRING_MAX = 128
MAX_ARGS = 6   # PT_REGS_PARM1..6: the register arguments every bcc arch has
_ARG = re.compile(r"^arg([0-9])$")


class FieldSource(Frozen):
    """Where one logical field of one event is read.

    kind    "tp"          integer tracepoint field     member = format field name
            "tp_array"    char array in the record      member, size
            "tp_dataloc"  __data_loc string             member, size
            "tp_ustr"     user pointer in a field       member, size
            "tp_kstr"     kernel pointer in a field     member, size
            "arg"         function argument N           member = N
            "retval"      function return value
            "arg_kstr"/"arg_ustr"  string at argument N (kernel / user memory)
            "const"       a value the probe sets itself     member = the value
            "tp_uelem"/"arg_uelem"  the string element `element` of a user
                          array of string pointers (model Field.element)
                          in a field / at argument N
            "usdt_reg"    a USDT argument in a register  member = its pt_regs
                          name (core/usdtargs.py), size, signed
            "usdt_mem"    a USDT argument in user memory  member = (register,
                          displacement), size, signed
    signed  for integers: sign-extend (the format's signed flag)
    """

    __slots__ = ("name", "type", "kind", "member", "size", "signed", "element", "_frozen")

    def __init__(self, name, type, kind, member=None, size=8, signed=False, element=None):
        self.element = element
        self.name = name
        self.type = type
        self.kind = kind
        self.member = member
        self.size = size
        self.signed = bool(signed)
        self.freeze()

    @property
    def is_string(self):
        return self.type in (STR, USTR)

    def __repr__(self):
        return "FieldSource(%s <- %s %s%s)" % (self.name, self.kind, self.member,
                                               "/%d" % self.size if self.is_string else "")


class PlannedEvent(Frozen):
    """A logical event bound to the probe chosen for it.

    index     position in the measurement (the "event" pseudo-field value)
    logical   the model Event
    probe     the chosen model Probe
    fields    logical field name -> FieldSource (declared fields only;
              context fields are read the same way for every probe)
    target    for uprobes: the resolved path of the library or binary
    location  for USDT probes: (file offset, semaphore file offset or 0)
    raw_ok    for tracepoints: a raw tracepoint of that name attaches here,
              so a handler that reads none of the event's fields can use it
    member    0, or for the members of an Each alternative their number
              (one PlannedEvent each, the same index and logical event)
    fentry    for kernel functions: an fentry/fexit program (bcc's
              KFUNC_PROBE/KRETFUNC_PROBE) instead of a kprobe
    """

    __slots__ = ("index", "logical", "probe", "fields", "target", "raw_ok", "member",
                 "location", "fentry", "_frozen")

    def __init__(self, index, logical, probe, fields, target=None, raw_ok=False, member=0,
                 location=None, fentry=False):
        self.index = index
        self.fentry = bool(fentry)
        self.member = member     # which member of an Each alternative (model.Each)
        self.logical = logical
        self.probe = probe
        self.fields = types.MappingProxyType(dict(fields))
        self.target = target
        self.raw_ok = raw_ok
        self.location = location
        self.freeze()

    def replace(self, **changes):
        """A copy with some attributes changed."""
        args = dict(index=self.index, logical=self.logical, probe=self.probe,
                    fields=self.fields, target=self.target, raw_ok=self.raw_ok,
                    member=self.member, location=self.location, fentry=self.fentry)
        args.update(changes)
        return PlannedEvent(**args)

    @property
    def name(self):
        return self.logical.name

    @property
    def kind(self):
        """tracepoint, kprobe, kretprobe, uprobe, uretprobe or usdt."""
        if isinstance(self.probe, Tracepoint):
            return "tracepoint"
        return self.probe.kind

    def __repr__(self):
        return "PlannedEvent(%s <- %s %r)" % (self.name, self.probe.describe(), self.fields)


class EbpfPlan(Frozen):
    """events      (PlannedEvent, ...) in measurement order
    output      "ringbuf" or "perf": how records reach user space
    helpers     C helper names for reading memory ({"kernel", "kernel_str",
                "user_str"} -> name), chosen by what the kernel has
    notes       lines worth telling the user (mismatched headers, ...)
    atomic_fetch  the kernel's BPF atomics can return the old value
    raw_reads   tracepoint name -> crawblock.Reads: fields a raw tracepoint
                program of that tracepoint can compute (from BTF offsets)
    """

    def __init__(self, events, output="perf", helpers=None, notes=(), atomic_fetch=False,
                 raw_reads=None):
        self.events = tuple(events)
        self.output = output
        self.helpers = types.MappingProxyType(dict(helpers or MODERN_HELPERS))
        self.notes = tuple(notes)
        self.atomic_fetch = bool(atomic_fetch)
        self.raw_reads = types.MappingProxyType(dict(raw_reads or {}))
        self.freeze()

    def replace(self, **changes):
        """A new EbpfPlan with some choices changed (tests force the code
        other kernels get); this one stays as it is."""
        args = dict(events=self.events, output=self.output, helpers=self.helpers,
                    notes=self.notes, atomic_fetch=self.atomic_fetch, raw_reads=self.raw_reads)
        args.update(changes)
        return EbpfPlan(**args)

    def event(self, name):
        for e in self.events:
            if e.name == name:
                return e
        raise KeyError(name)


class RunPlan(Frozen):
    """Everything an eBPF run needs, decided by check() (verdict.plan).

    probes        the EbpfPlan: the probe and field sources of each event
    program       codegen.Program made from it: program.text is the C that
                  start() hands to bcc, byte for byte what --print-program
                  prints; program.attachments what it attaches
    buffers       buffers.BufferSizes (from --buffer-kb or the defaults)
    tracefs_path  where probe definitions bcc may leave are removed from
                  and tracepoint ids are read (None: no tracefs)
    plan_key      the RunOptions.plan_key() it was made for
    cache         CacheSlot: where the compiled program is kept and, when
                  it was found there, the compiled object start() loads
                  instead of compiling; None: compiled, never kept
    """

    def __init__(self, probes, program, buffers, tracefs_path, plan_key, cache=None):
        self.probes = probes
        self.program = program
        self.buffers = buffers
        self.tracefs_path = tracefs_path
        self.plan_key = plan_key
        self.cache = cache
        self.freeze()

    @property
    def events(self):
        return self.probes.events

    def describe(self):
        """--explain lines: how each event is attached and read."""
        lines = []
        kinds = dict((a.event.name, a.kind) for a in self.program.attachments)
        for pe in self.probes.events:
            lines.append("event %s <- %s (%s program)%s" % (
                pe.name, pe.probe.describe(), kinds.get(pe.name, pe.kind),
                " in %s" % pe.target if pe.target else ""))
        if self.program.kind == "records":
            lines.append(self.buffers.describe(self.probes.output))
        lines.append("memory reads through %s" % ", ".join(
            sorted(set(self.probes.helpers.values()))))
        if self.cache is not None:
            lines.append("BPF program %s %s" % (
                "loaded compiled from the cache in" if self.cache.entry is not None
                else "compiled by bcc at start, then kept in", self.cache.directory))
        return lines


class CacheSlot(Frozen):
    """directory, key   where the program's compiled object is (to be) kept
    entry             the objcache.Entry found there, or None (a miss)"""

    __slots__ = ("directory", "key", "entry", "_frozen")

    def __init__(self, directory, key, entry=None):
        self.directory = directory
        self.key = key
        self.entry = entry
        self.freeze()


# Since Linux commit 6ae08ae3dea2 ("bpf: Add probe_read_{user, kernel} and
# probe_read_{user, kernel}_str helpers") (v5.5) kernel and user reads are
# separate helpers; older kernels only have bpf_probe_read[_str].
MODERN_HELPERS = {"kernel": "bpf_probe_read_kernel", "kernel_str": "bpf_probe_read_kernel_str",
                  "user": "bpf_probe_read_user", "user_str": "bpf_probe_read_user_str"}
LEGACY_HELPERS = {"kernel": "bpf_probe_read", "kernel_str": "bpf_probe_read_str",
                  "user": "bpf_probe_read", "user_str": "bpf_probe_read_str"}


# ---------------------------------------------------------------------------
def _tracepoint_field(field, fmt, probe=None):
    """FieldSource for a declared Field from a tracepoint format, or a
    reason string."""
    tried = []
    for src in (probe.sources_for(field) if probe is not None else field.sources):
        ff = fmt.field(src)
        tried.append(src)
        if ff is None:
            continue
        if ff.rel_loc:
            # Since Linux commit 05770dd0ad11 ("tracing: Support __rel_loc relative
            # dynamic data location attribute") (v5.17) a string may be a relative
            # location; bcc's tracepoint structs do not describe it.
            return "field %s: %s is a __rel_loc string, not supported" % (field.name, src)
        if field.type == INT:
            if ff.is_string or ff.array_len is not None or ff.size not in (1, 2, 4, 8):
                return "field %s: %s (%s, %d bytes) is not an integer" % (
                    field.name, src, ff.ctype, ff.size)
            return FieldSource(field.name, INT, "tp", src, 8, ff.signed)
        if ff.is_string:
            if ff.data_loc:
                return FieldSource(field.name, field.type, "tp_dataloc", src, STRING_MAX)
            # One byte more than the array: a *_str read of a full array still
            # keeps all its bytes and ends with a NUL.
            return FieldSource(field.name, field.type, "tp_array", src,
                               max(2, min(ff.size + 1, STRING_MAX)))
        if field.element is not None:
            if ff.array_len is None and not ff.is_string and "*" in ff.ctype:
                return FieldSource(field.name, USTR, "tp_uelem", src, STRING_MAX,
                                   element=field.element)
            return "field %s: %s (%s) is not a pointer array" % (field.name, src, ff.ctype)
        if ff.array_len is None and (ff.size == 8 or (ff.size == 4 and "*" in ff.ctype)):
            # A pointer to a string (e.g. syscalls' `const char * filename`).
            return FieldSource(field.name, field.type, "tp_ustr" if field.type == USTR
                               else "tp_kstr", src, STRING_MAX)
        return "field %s: %s (%s) is not a string" % (field.name, src, ff.ctype)
    return "field %s: %s has no field %s" % (field.name, "%s:%s" % (fmt.system, fmt.name),
                                             "/".join(tried) or field.name)


def _int_source(field, kind, member, signed):
    """An integer argument or return value: the whole register, or the
    field's width (codegen casts to it)."""
    if field.width is None:
        return FieldSource(field.name, INT, kind, member, 8, signed)
    bits, signed = width_bits(field.width)
    return FieldSource(field.name, INT, kind, member, bits // 8, signed)


def _function_field(field, probe):
    user = isinstance(probe, UserFunction)
    if field.name in probe.values:
        if field.type != INT:
            return "field %s: a probe's own value is an integer" % field.name
        return FieldSource(field.name, INT, "const", probe.values[field.name], 8, True)
    sources = probe.sources_for(field)
    for src in sources:
        if src == "retval":
            if not probe.ret:
                continue
            if field.type != INT:
                return "field %s: retval is only read as an integer" % field.name
            return _int_source(field, "retval", None, True)
        m = _ARG.match(src)
        if not m or int(m.group(1)) >= MAX_ARGS:
            continue
        n = int(m.group(1))
        if field.type == INT:
            return _int_source(field, "arg", n, False)
        if field.element is not None:
            return FieldSource(field.name, USTR, "arg_uelem", n, STRING_MAX,
                               element=field.element)
        kind = "arg_ustr" if user or field.type == USTR else "arg_kstr"
        return FieldSource(field.name, field.type, kind, n, STRING_MAX)
    return "field %s: no usable source among %s (argN with N < %d, or retval on a return " \
           "probe)" % (field.name, "/".join(sources) or "none", MAX_ARGS)


def resolve_tracepoint(event, probe, host):
    fmt = host.event_format(probe.category, probe.name)
    if fmt is None:
        return None, "no tracepoint %s:%s" % (probe.category, probe.name)
    fields = {}
    for f in event.fields:
        r = _tracepoint_field(f, fmt, probe)
        if isinstance(r, str):
            return None, r
        fields[f.name] = r
    return fields, None


def resolve_kprobe(event, probe, probes):
    attach = probes.attach("kprobe")
    if not attach.ok:
        return None, attach.detail
    fn = probes.kernel_function(probe.function)
    if not fn.ok:
        return None, fn.detail
    return _function_fields(event, probe)


def fentry_answer(event, probe, probes):
    """Whether `event` on kernel function `probe` runs as an fentry (entry)
    or fexit (return) program: cheaper than a kprobe (a trampoline call, no
    breakpoint).  Only events that read no argument or return value (counts,
    durations): argument reads are generated for kprobes.  An Answer whose
    detail is None: fentry not considered (nothing to tell)."""
    if event.fields:
        return Answer(False, None)
    ans = probes.fentry()
    if not ans.ok:
        return ans
    return probes.fentry_function(probe.function)


def _function_fields(event, probe):
    fields = {}
    for f in event.fields:
        r = _function_field(f, probe)
        if isinstance(r, str):
            return None, r
        fields[f.name] = r
    return fields, None


def resolve_library(bcc_module, library):
    """The path of a library or binary as bcc would find it, or None."""
    if "/" in library:
        return library if os.path.isfile(library) else None
    try:
        path = bcc_module.BPF.find_library(library.encode())
    except Exception:  # bcc's resolver failing is an answer
        return None
    if path is None:
        return None
    return path.decode() if isinstance(path, bytes) else path


def has_user_symbol(bcc_module, path, symbol):
    try:
        return bool(bcc_module.BPF.get_user_addresses(path.encode(), ("^%s$" % symbol).encode()))
    except Exception:  # unreadable ELF, no symbols: an answer
        return False


def resolve_uprobe(event, probe, probes):
    attach = probes.attach("uprobe")
    if not attach.ok:
        return None, None, attach.detail
    mod = probes.bcc().module
    path = resolve_library(mod, probe.library)
    if path is None:
        return None, None, "library or binary %s not found" % probe.library
    if not has_user_symbol(mod, path, probe.symbol):
        return None, None, "no symbol %s in %s" % (probe.symbol, path)
    fields, why = _function_fields(event, probe)
    return fields, path, why


def usdt_field(field, probe, arguments, machine=None):
    """The FieldSource of model Field `field` of USDT probe `probe` whose
    note describes its arguments as `arguments`, or why not (a str)."""
    if field.type != INT:
        return "field %s: USDT arguments are read as integers" % field.name
    sources = probe.sources_for(field)
    index = next((int(_ARG.match(s).group(1)) for s in sources if _ARG.match(s)), None)
    if index is None:
        return "field %s: no source among %s (argN)" % (field.name, "/".join(sources) or "none")
    try:
        arg = usdtargs.probe_argument(arguments, index, machine or platform.machine())
    except usdtargs.UsdtArgError as e:
        return str(e)
    if arg.kind == "const":
        bits = arg.size * 8
        value = arg.value & ((1 << bits) - 1)
        if arg.signed and value >> (bits - 1):
            value -= 1 << bits
        return FieldSource(field.name, INT, "const", value, 8, True)
    member = arg.reg if arg.kind == "reg" else (arg.reg, arg.disp)
    return FieldSource(field.name, INT, "usdt_" + arg.kind, member, arg.size, arg.signed)


def resolve_usdt(event, probe, probes, machine=None):
    """(path, (offset, semaphore offset), fields, None) or (None, None,
    None, why not)."""
    attach = probes.attach("uprobe")
    if not attach.ok:
        return None, None, None, attach.detail
    try:
        path = symbols.resolve_binary(probe.library)
        site = symbols.usdt_site(path, probe.provider, probe.name, probe.site)
    except symbols.SymbolError as e:
        return None, None, None, str(e)
    fields = {}
    for f in event.fields:
        r = usdt_field(f, probe, site.arguments, machine)
        if isinstance(r, str):
            return None, None, None, r
        fields[f.name] = r
    return path, (site.offset, site.semaphore), fields, None


def _resolve_plain(index, event, probe, host, probes):
    """(PlannedEvent, None) for plain probe `probe` of `event`, or (None, why not)."""
    target = location = None
    if isinstance(probe, Tracepoint):
        if not probes.attach("tracepoint").ok:
            fields, why = None, probes.attach("tracepoint").detail
        else:
            fields, why = resolve_tracepoint(event, probe, host)
    elif isinstance(probe, KernelFunction):
        fentry = fentry_answer(event, probe, probes)
        if fentry.ok:
            return PlannedEvent(index, event, probe, {}, fentry=True), None
        fields, why = resolve_kprobe(event, probe, probes)
        if why is not None and fentry.detail:
            why = "fentry: %s; kprobe: %s" % (fentry.detail, why)
    elif isinstance(probe, UserFunction):
        fields, target, why = resolve_uprobe(event, probe, probes)
    elif isinstance(probe, Usdt):
        target, location, fields, why = resolve_usdt(event, probe, probes)
    else:
        fields, why = None, "probe type %s not supported by the eBPF backend" % probe.kind
    if fields is not None and why is None:
        raw_ok = isinstance(probe, Tracepoint) and probes.raw_tracepoint(probe.name).ok
        return PlannedEvent(index, event, probe, fields, target, raw_ok,
                            location=location), None
    return None, "%s: %s" % (probe.describe(), why)


def resolve_events(index, event, host, probes):
    """([PlannedEvent], [why not, per alternative before it], that
    alternative, [why not, per Each member left out]) for the first
    attachable alternative of `event` (an Each: one PlannedEvent per member
    this host has, numbered by `member`), or (None, [reasons], None, [])."""
    reasons = []
    for probe in event.probes:
        if isinstance(probe, Each):
            planned, why = [], []
            for member in probe.probes:
                pe, r = _resolve_plain(index, event, member, host, probes)
                if pe is None:
                    why.append(r)
                else:
                    planned.append(pe.replace(member=len(planned)))
            if planned:
                return planned, reasons, probe, why
            reasons.append("; ".join(why))
            continue
        pe, why = _resolve_plain(index, event, probe, host, probes)
        if pe is not None:
            return [pe], reasons, probe, []
        reasons.append(why)
    return None, reasons, None, []


def resolve_event(index, event, host, probes):
    """(the first PlannedEvent of resolve_events(), [why not, per
    alternative before it]), or (None, [reasons])."""
    planned, reasons, _chosen, _left_out = resolve_events(index, event, host, probes)
    return (planned[0] if planned else None), reasons
