"""The declarative measurement model.

A tool plugin describes *what* it measures with these classes; a backend
decides *how*.  Nothing here knows about tracefs or BPF.

    Measurement(
        events=[Event("issue", Tracepoint("block", "block_rq_issue"),
                      fields=[Field("dev"), Field("sector"), Field("rwbs", STR)]),
                Event("done", Tracepoint("block", "block_rq_complete"),
                      fields=[Field("dev"), Field("sector")])],
        pair=Pair("issue", "done", key=("dev", "sector")),
        aggregate=Histogram("latency", scale=POW2_MS),
        filters=[Filter("dev", "==", 0x0fe00000)],
    )

A pair may name an intermediate `mark` event (block insert -> issue ->
completion): LATENCY is then measured from the mark and QUEUED is the time
from the start to the mark.

    Pair("insert", "done", key=("dev", "sector"), carry=("comm",), mark="issue")

Every value a filter carries is typed and validated when the filter is built,
so backends can emit it into tracefs filter files or BPF C without further
checks.
"""

import re

from .errors import InvalidSpec, UsageError

# ---------------------------------------------------------------------------
# Field types
INT = "int"      # integer tracepoint field, function argument or return value
STR = "str"      # fixed char array in the event record (comm, rwbs, ...)
USTR = "ustr"    # NUL-terminated string read from a user-space pointer
FIELD_TYPES = (INT, STR, USTR)

# Fields every event has, whatever probe produced it.
#   ts   monotonic nanoseconds     pid  process id (tgid)
#   tid  thread id                 comm task name        cpu  cpu number
#   uid  the task's real user id: read at the event where the backend can
#        (eBPF); else looked up in /proc when the event is decoded and
#        marked best-effort (ftrace records do not carry it), None if gone
CONTEXT_FIELDS = {"ts": INT, "pid": INT, "tid": INT, "comm": STR, "cpu": INT, "uid": INT}

# The value a Pair produces: end.ts - start.ts in nanoseconds (with a mark:
# end.ts - mark.ts when the mark was seen).
LATENCY = "latency"
# What a Pair with a mark also produces: mark.ts - start.ts in nanoseconds
# (0 when the start or the mark was not seen).
QUEUED = "queued"
# The kernel stack where an event fired: a tuple of kernel function names,
# innermost first (() when the backend could not take it).  Only in Records
# of a measurement without a pair; a backend that cannot take kernel stacks
# refuses the measurement.
KSTACK = "kstack"
STACK = "stack"         # its type

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_LIB = re.compile(r"^[A-Za-z0-9_./+-]{1,255}\Z")


def is_identifier(value):
    """A C-style identifier of at most 64 characters: what every name in a
    measurement must be (and all that may reach generated code)."""
    return isinstance(value, str) and _IDENT.match(value) is not None


def _ident(what, value):
    if not is_identifier(value):
        raise InvalidSpec("%s must be an identifier, got %r" % (what, value))
    return value


# ---------------------------------------------------------------------------
# Probes: where an event comes from.  An Event lists one or more probes in
# order of preference; the backend takes the first one it can attach.
class Probe(object):
    """One place an event may come from.  `sources` (optional, every probe
    kind) maps a field name to the sources this probe reads it from,
    instead of the Field's own: the same value sits at another argument of
    another function (a path is arg0 of libc's open() but arg1 of the
    kernel's do_sys_open()).  An empty tuple says this probe cannot provide
    the field at all, so a backend skips the alternative."""

    kind = None
    sources = {}
    values = {}

    def _set_sources(self, sources):
        out = {}
        for name, srcs in sorted((sources or {}).items()):
            if isinstance(srcs, str):
                srcs = (srcs,)
            out[_ident("field name", name)] = tuple(_ident("field source", s) for s in srcs)
        self.sources = out

    def _set_values(self, values):
        out = {}
        for name, value in sorted((values or {}).items()):
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not -(1 << 63) <= value < (1 << 63):
                raise InvalidSpec("value of field %r must be a 64-bit integer, got %r"
                                  % (name, value))
            out[_ident("field name", name)] = value
        self.values = out

    def sources_for(self, field):
        """Where this probe reads model Field `field`, in order."""
        return self.sources.get(field.name, field.sources)

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__,) + tuple(sorted(
            (k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
            for k, v in self.__dict__.items())))

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.describe())


# events/ftrace/ holds the formats of the ftrace tracers' own records
# (function, funcgraph_entry, ...; kernel/trace/trace_entries.h): they have
# no enable file and cannot be enabled or attached as tracepoints.
TRACER_RECORDS = "ftrace"


class Tracepoint(Probe):
    """A static kernel tracepoint, e.g. Tracepoint("block", "block_rq_issue")."""

    kind = "tracepoint"

    def __init__(self, category, name, sources=None):
        self._set_sources(sources)
        self.category = _ident("tracepoint category", category)
        self.name = _ident("tracepoint name", name)
        if category == TRACER_RECORDS:
            raise InvalidSpec("%s:%s is a record format of ftrace's own tracers, not a "
                              "tracepoint" % (category, name))

    def describe(self):
        return "t:%s:%s" % (self.category, self.name)


class SyscallEntry(Tracepoint):
    """Entry of a system call (syscalls:sys_enter_NAME)."""

    kind = "syscall_enter"

    def __init__(self, syscall, sources=None):
        self.syscall = _ident("syscall", syscall)
        Tracepoint.__init__(self, "syscalls", "sys_enter_" + syscall, sources)


class SyscallExit(Tracepoint):
    """Return of a system call (syscalls:sys_exit_NAME); field "ret"."""

    kind = "syscall_exit"

    def __init__(self, syscall, sources=None):
        self.syscall = _ident("syscall", syscall)
        Tracepoint.__init__(self, "syscalls", "sys_exit_" + syscall, sources)


class KernelFunction(Probe):
    """Entry (or return, with ret=True) of a kernel function (kprobe).
    `values` ({field: int}) are INT fields this probe sets itself instead of
    reading them: the members of an Each of several functions tell which of
    them fired (funclatency -F of a pattern naming several)."""

    def __init__(self, function, ret=False, sources=None, values=None):
        self._set_sources(sources)
        self._set_values(values)
        self.function = _ident("kernel function", function)
        self.ret = bool(ret)

    @property
    def kind(self):
        return "kretprobe" if self.ret else "kprobe"

    def describe(self):
        return "%s:%s" % ("kr" if self.ret else "k", self.function)


class UserFunction(Probe):
    """Entry (or return) of a function in a user-space binary or library
    (uprobe).  `library` is a path or a short name such as "c" for libc.
    `values` as for KernelFunction."""

    def __init__(self, library, symbol, ret=False, sources=None, values=None):
        self._set_sources(sources)
        self._set_values(values)
        if not isinstance(library, str) or not _LIB.match(library) or ".." in library:
            raise InvalidSpec("library must be a plain path or name, got %r" % (library,))
        self.library = library
        self.symbol = _ident("symbol", symbol)
        self.ret = bool(ret)

    @property
    def kind(self):
        return "uretprobe" if self.ret else "uprobe"

    def describe(self):
        return "%s:%s:%s" % ("ur" if self.ret else "u", self.library, self.symbol)


class Usdt(Probe):
    """A USDT (SystemTap SDT, sys/sdt.h) probe `provider:name` in a
    user-space binary or library (an absolute path, or a short name as for
    UserFunction).  A probe used in several places of the code has several
    sites, in the order of the file's .note.stapsdt notes: `site` picks one,
    and an Each of all of them counts every use.  A semaphore the probe
    guards its arguments' computation with is raised while it is attached
    (the uprobe's reference counter), so the program's guarded code runs.
    Its arguments are INT fields with sources argN (from 0, as bpftrace's
    arg0): each is read with the size and sign the probe's note gives it
    (core/usdtargs.py), whatever the Field's width."""

    kind = "usdt"

    def __init__(self, library, provider, name, site=0, sources=None):
        self._set_sources(sources)
        if not isinstance(library, str) or not _LIB.match(library) or ".." in library:
            raise InvalidSpec("library must be a plain path or name, got %r" % (library,))
        self.library = library
        self.provider = _ident("USDT provider", provider)
        self.name = _ident("USDT probe name", name)
        if not isinstance(site, int) or isinstance(site, bool) or not 0 <= site < 65536:
            raise InvalidSpec("USDT site must be an integer 0..65535, got %r" % (site,))
        self.site = site

    def describe(self):
        return "usdt:%s:%s:%s%s" % (self.library, self.provider, self.name,
                                    "#%d" % self.site if self.site else "")


class Each(Probe):
    """One alternative made of several probes, all attached, as one logical
    event: every member this host has (at least one), e.g. the entries of
    open, openat, openat2 and creat.  A member the host lacks, or that
    cannot read the event's fields, is left out (a syscall another
    architecture does not have); each member reads the fields from its own
    sources.  Members are plain probes (tracepoints, functions)."""

    kind = "each"

    def __init__(self, *probes):
        self.probes = tuple(probes)
        if len(self.probes) < 1 or not all(isinstance(p, Probe) and not isinstance(p, Each)
                                           for p in self.probes):
            raise InvalidSpec("Each needs one or more plain probes")
        if len(set(self.probes)) != len(self.probes):
            raise InvalidSpec("Each lists a probe twice")
        self.sources = {}

    def describe(self):
        return "each(%s)" % ", ".join(p.describe() for p in self.probes)

    def __hash__(self):
        return hash((self.kind,) + self.probes)


def members(probe):
    """The plain probes an alternative attaches: an Each's members, or the
    probe itself."""
    return probe.probes if isinstance(probe, Each) else (probe,)


# The widths a function argument or return value may be read with
# (Field.width): the kprobe/uprobe fetch types, and bcc's integer types.
WIDTHS = ("s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64")


def width_bits(width):
    """("s32") -> (32, True): the bits and signedness of a Field.width."""
    return int(width[1:]), width[0] == "s"


# Field.element: the indexes of a user pointer array a field may read.
MAX_ELEMENTS = 64


# ---------------------------------------------------------------------------
# After-the-fact lookups: where no probe alternative can read a field, a
# backend may leave it unread and the value is looked up when the record is
# reported (core/lookups.py), marked best-effort (Record.best_effort).
class ProcFdPath(object):
    """The file /proc/<pid>/fd/<fd> points to, `pid` and `fd` being fields
    of the reported record (a pair's carried or end fields).  Best-effort:
    the descriptor may be closed, or reused, by the time it is read."""

    kind = "proc_fd_path"

    def __init__(self, pid="pid", fd="fd"):
        self.pid = _ident("lookup pid field", pid)
        self.fd = _ident("lookup fd field", fd)

    def needs(self):
        return (self.pid, self.fd)

    def describe(self):
        return "/proc/<%s>/fd/<%s>" % (self.pid, self.fd)

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((self.kind, self.pid, self.fd))


LOOKUPS = (ProcFdPath,)


class Field(object):
    """A value an event carries.

    name     the name tools, filters and output use;
    type     INT, STR or USTR;
    sources  where to read it, in order of preference: tracepoint format field
             names (kernels rename fields: ("error", "errors")), or for
             function probes "argN" (N from 0) and "retval".  Defaults to (name,);
    if_zero  (field, factor): where the value read is 0, the value is that
             other INT field of the same event times factor (block request
             sizes: `bytes` is 0 on old kernels, nr_sector * 512 is not);
    override (filters, value): the value is `value` where any of the
             filters (on other fields of the same event) matches (a flush
             request's start sector, which newer kernels record as 0).
    width    for an INT read from a function argument or return value: the
             C type of the value, one of WIDTHS ("s32": the low 32 bits of
             the register, sign-extended; an int -1 is -1, not 4294967295).
             None: the whole register (tracepoint fields always take the
             width their format file gives).
    Every backend applies if_zero, then override, right where it reads the
    field, so filters, pair keys and aggregates all see the result.
    element  (USTR fields) N: the source is a user-space array of string
             pointers ending with NULL (execve's argv) and the value is the
             string its element N points to; "" where the array ends at or
             before N (or its memory cannot be read).
    lookup   (STR/USTR fields) a last resort, e.g. ProcFdPath("pid", "ret"):
             a probe that cannot read the field is still taken when no
             alternative of the event can; the field is then left unread
             (filters on it cannot run: the event's other alternatives
             are what a filter on it needs) and looked up when the record
             is reported, marked best-effort.
    """

    def __init__(self, name, type=INT, sources=None, if_zero=None, override=None,
                 lookup=None, width=None, element=None):
        self.name = _ident("field name", name)
        if name in CONTEXT_FIELDS or name in (LATENCY, QUEUED):
            raise InvalidSpec("field %r is implicit; do not declare it" % name)
        if type not in FIELD_TYPES:
            raise InvalidSpec("field type must be one of %s" % (FIELD_TYPES,))
        self.type = type
        self.sources = tuple(_ident("field source", s) for s in (sources or (name,)))
        if width is not None and (width not in WIDTHS or type != INT):
            raise InvalidSpec("field %r: width must be one of %s, on an integer field"
                              % (name, ", ".join(WIDTHS)))
        self.width = width
        if element is not None and (type != USTR or isinstance(element, bool) or
                                    not isinstance(element, int) or
                                    not 0 <= element < MAX_ELEMENTS):
            raise InvalidSpec("field %r: element must be an index below %d, on a USTR field"
                              % (name, MAX_ELEMENTS))
        self.element = element
        self.if_zero = None
        self.override = None
        if lookup is not None and (not isinstance(lookup, LOOKUPS) or type == INT):
            raise InvalidSpec("field %r: lookup must be one of %s on a string field"
                              % (name, ", ".join(c.__name__ for c in LOOKUPS)))
        self.lookup = lookup
        if (if_zero is not None or override is not None) and type != INT:
            raise InvalidSpec("field %r: if_zero and override need an integer field" % name)
        if if_zero is not None:
            other, factor = if_zero
            if isinstance(factor, bool) or not isinstance(factor, int) or not 1 <= factor <= _U64:
                raise InvalidSpec("field %r: if_zero factor must be a positive integer" % name)
            self.if_zero = (_ident("if_zero field", other), factor)
        if override is not None:
            filters, value = override
            filters = tuple(filters)
            if not filters or not all(isinstance(f, Filter) for f in filters):
                raise InvalidSpec("field %r: override needs one or more Filters" % name)
            self.override = (filters, _check_int(name, value))

    def depends_on(self):
        """Names of the other fields of its event this field's value needs."""
        out = []
        if self.if_zero is not None:
            out.append(self.if_zero[0])
        if self.override is not None:
            out += [f.field for f in self.override[0] if f.field not in out]
        return out

    def __repr__(self):
        return "Field(%r, %r, %r)" % (self.name, self.type, self.sources)


class Event(object):
    """A named logical event: the first attachable probe of `probes`, and the
    fields the tool reads from it."""

    def __init__(self, name, *probes, **kw):
        self.name = _ident("event name", name)
        if not probes or not all(isinstance(p, Probe) for p in probes):
            raise InvalidSpec("event %r needs at least one probe" % name)
        self.probes = tuple(probes)
        self.fields = tuple(kw.pop("fields", ()))
        if kw:
            raise InvalidSpec("unknown Event options: %s" % ", ".join(kw))
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise InvalidSpec("event %r declares a field twice" % name)
        for f in self.fields:
            dep = self.field(f.if_zero[0]) if f.if_zero is not None else None
            if f.if_zero is not None and (dep is None or dep.type != INT or dep.depends_on()):
                raise InvalidSpec("event %r: field %s falls back to %r, which is not a plain "
                                  "integer field it declares" % (name, f.name, f.if_zero[0]))
            for flt in (f.override[0] if f.override else ()):
                dep = self.field(flt.field)
                if dep is None or dep.type != flt.type or dep.depends_on():
                    raise InvalidSpec("event %r: field %s overridden on %r, which is not a "
                                      "plain %s field it declares" % (name, f.name, flt.field,
                                                                       flt.type))

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def field_type(self, name):
        if name in CONTEXT_FIELDS:
            return CONTEXT_FIELDS[name]
        f = self.field(name)
        return f.type if f else None

    def __repr__(self):
        return "Event(%r, %s)" % (self.name, ", ".join(p.describe() for p in self.probes))


# The deepest stack of starts a nested Pair may keep per key.
MAX_NESTING = 64


class Pair(object):
    """Pair a start event with an end event sharing the same `key` fields
    (block issue -> completion by ("dev", "sector"); function entry -> return
    by ("tid",)).  A pair yields LATENCY (ns), the `carry` fields taken from
    the start event (e.g. the issuing "comm" and "pid") and every field of the
    end event.  Starts still in flight at an interval boundary stay pending;
    an end without a start is counted as unmatched, never guessed.  A start
    (or mark) its filters reject ends its pair: the end is dropped, not
    counted as unmatched (every backend behaves so).

    `mark` names an optional event in between, with the same key fields
    (block insert -> issue -> completion).  A mark for a pending start
    records its time in it (the carried fields stay the start's; a later
    mark replaces an earlier one); a mark with no start pending starts the
    pair itself, carrying its own fields (an I/O that never went through the
    scheduler still counts, with no queue time).  The pair then yields
    LATENCY = end - mark (end - start when no mark was seen) and QUEUED =
    mark - start (0 when either was not seen).  Filters decide per event: a
    start they reject leaves nothing pending (so its mark, if accepted,
    starts the pair), a mark they reject ends the pair.  A filter on a key
    field (or pid, with a tid key) that applies to the start and the mark
    decides for the end too.  core/semantics.py states every rule.

    `shared` names key values that several requests in flight may have at
    once ({"sector": FLUSH_SECTOR}: every flush of a device), integer key
    fields only.  While one start with such a key is pending it pairs as
    usual; when another start comes, the key no longer says whose end is
    whose, so neither is measured: every end for it counts as unmatched
    until as many ends as starts were seen.  (Other keys are unique: a
    start that reuses a pending key replaces it, as a requeued request
    does.)

    `nested` (an integer depth, 1 to MAX_NESTING) makes a key hold a stack
    of starts instead of one: a function that calls itself, or is entered
    again on the same thread before it returns, pairs each return with its
    innermost pending entry (recursion), instead of the newer start
    replacing the older.  A start deeper than `nested` levels is not
    measured: it counts in dropped_starts and its end as unmatched.  Not
    with a mark or shared key values.

    `min_latency` (nanoseconds): a pair whose LATENCY is below it yields
    nothing (funcslower's threshold); its end is not unmatched.

    `abandon` names an event that ends its key's life (a thread's exit,
    with key ("tid",)): the starts its key has pending will never see
    their end (a function the thread exited inside) and are given up,
    counted in dropped_starts, instead of waiting forever.  Only the pair
    filters (core.semantics.pair_filters) apply to it.  Not with shared
    key values."""

    def __init__(self, start, end, key, carry=(), mark=None, shared=None, nested=None,
                 min_latency=0, abandon=None):
        self.start = _ident("pair start", start)
        self.end = _ident("pair end", end)
        self.key = tuple(_ident("pair key", k) for k in key)
        self.carry = tuple(_ident("carried field", c) for c in carry)
        self.mark = _ident("pair mark", mark) if mark is not None else None
        if not self.key:
            raise InvalidSpec("a pair needs a key")
        if self.mark in (self.start, self.end):
            raise InvalidSpec("a pair's mark must be another event than its start and end")
        self.shared = {}
        for k, v in sorted((shared or {}).items()):
            if k not in self.key:
                raise InvalidSpec("shared key value for %r, which is not a pair key" % k)
            if isinstance(v, bool) or not isinstance(v, int) or not _S64_MIN <= v <= _U64:
                raise InvalidSpec("shared key value of %s must be a 64-bit integer" % k)
            self.shared[k] = v
        if nested is not None:
            if isinstance(nested, bool) or not isinstance(nested, int) or \
                    not 1 <= nested <= MAX_NESTING:
                raise InvalidSpec("nested must be a depth from 1 to %d" % MAX_NESTING)
            if self.mark is not None or self.shared:
                raise InvalidSpec("a nested pair has no mark and no shared key values")
        self.nested = nested
        if isinstance(min_latency, bool) or not isinstance(min_latency, int) or \
                not 0 <= min_latency <= _U64:
            raise InvalidSpec("min_latency must be a number of nanoseconds")
        self.min_latency = min_latency
        self.abandon = _ident("pair abandon event", abandon) if abandon is not None else None
        if self.abandon is not None:
            if self.abandon in (self.start, self.end, self.mark):
                raise InvalidSpec("a pair's abandon event must be another event")
            if self.shared:
                raise InvalidSpec("a pair with shared key values has no abandon event")


# ---------------------------------------------------------------------------
# Aggregations
LOG2 = "log2"        # bcc: slot floor(log2 v)+1, 0 and 1 share slot 1
LINEAR = "linear"    # bucket = v // step
POW2_MS = "pow2ms"   # perf-tools iolatency: smallest i with v <= 2^i (ms)
SCALES = (LOG2, LINEAR, POW2_MS)

# The unit a histogram is kept in, and how to get there from the raw value.
_NS_UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1000000}


class Histogram(object):
    """Histogram of `value` (LATENCY or an INT field) per `keys`.

    unit     label printed and put in JSON ("usecs", "msecs", "kbytes", ...);
    divisor  raw value // divisor is what is bucketed (integer division, as
             bcc does in the kernel).  For LATENCY and QUEUED (nanoseconds) it
             defaults from the unit.
             POW2_MS buckets work on nanoseconds directly (divisor 1).
    """

    kind = "histogram"

    def __init__(self, value, scale=LOG2, unit="usecs", divisor=None, step=1, keys=()):
        self.value = _ident("histogram value", value)
        if scale not in SCALES:
            raise InvalidSpec("scale must be one of %s" % (SCALES,))
        self.scale = scale
        self.unit = unit
        if divisor is None:
            divisor = _NS_UNITS.get(unit, 1) if value in (LATENCY, QUEUED) else 1
        if scale == POW2_MS:
            divisor, self.unit = 1, "ms"
        if not isinstance(divisor, int) or divisor < 1:
            raise InvalidSpec("divisor must be a positive integer")
        if not isinstance(step, int) or step < 1:
            raise InvalidSpec("step must be a positive integer")
        self.divisor = divisor
        self.step = step
        self.keys = tuple(_ident("histogram key", k) for k in keys)


class Count(object):
    """Number of events (or pairs) per `keys`.  The pseudo-field "event" is
    the logical event name, for tools that count several events."""

    kind = "count"

    def __init__(self, keys=()):
        self.keys = tuple(_ident("count key", k) for k in keys)


class Records(object):
    """One record per event (or pair) with `fields`, streamed as they occur."""

    kind = "records"

    def __init__(self, fields):
        self.fields = tuple(_ident("record field", f) for f in fields)
        if not self.fields:
            raise InvalidSpec("records need at least one field")


EVENT_NAME = "event"   # pseudo-field: the logical event's name

# ---------------------------------------------------------------------------
# Filters
# "&": any bit of the value (a non-zero mask) is set in the field (bcc
# opensnoop's -f flags filter); the others compare as numbers.
INT_OPS = ("==", "!=", "<", "<=", ">", ">=", "&")
STR_OPS = ("==", "!=", "glob")
_U64 = (1 << 64) - 1
_S64_MIN = -(1 << 63)
# What a STR filter value may contain: printable ASCII without quote,
# backslash or the tracefs filter metacharacters we never want to pass on.
_SAFE_STR = re.compile(r"^[A-Za-z0-9_.:+/@=,*\- ]{0,64}\Z")


def _check_int(field, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError("%s: expected an integer, got %r" % (field, value))
    if value < _S64_MIN or value > _U64:
        raise UsageError("%s: %d is out of the 64-bit range" % (field, value))
    return value


def _check_str(field, value, op):
    if not isinstance(value, str) or not _SAFE_STR.match(value):
        raise UsageError("%s: invalid value %r (letters, digits, space and _.:+/@=,- "
                         "only, at most 64)" % (field, value))
    if op == "glob":
        core = value.strip("*")
        if "*" in core or "?" in core or "[" in core:
            raise UsageError("%s: invalid pattern %r: wildcards only at the start or end"
                             % (field, value))
    elif "*" in value:
        raise UsageError("%s: '*' is only allowed in patterns" % field)
    return value


class Filter(object):
    """Keep only events whose `field` compares true with `value`.

    `events` names the logical events it applies to; by default every event
    that has the field (context fields: every event).  Values are validated
    here, once, for every backend."""

    def __init__(self, field, op, value, events=None, type=None):
        self.field = _ident("filter field", field)
        self.type = type or CONTEXT_FIELDS.get(field, INT if not isinstance(value, str) else STR)
        if self.type == INT:
            if op not in INT_OPS:
                raise InvalidSpec("integer filter op must be one of %s" % (INT_OPS,))
            self.value = _check_int(field, value)
            if op == "&" and not 0 < self.value <= _U64:
                raise UsageError("%s: a bit mask must be a non-zero 64-bit value, got %r"
                                 % (field, value))
        else:
            if op not in STR_OPS:
                raise InvalidSpec("string filter op must be one of %s" % (STR_OPS,))
            self.value = _check_str(field, value, op)
        self.op = op
        self.events = tuple(events) if events is not None else None

    def glob_parts(self):
        """For a glob: (anchored_start, text, anchored_end)."""
        v = self.value
        return (not v.startswith("*"), v.strip("*"), not v.endswith("*"))

    def matches(self, actual):
        """Evaluate in user space (the ftrace backend when the kernel filter
        cannot express it, and replay)."""
        v = self.value
        if self.op == "glob":
            start, text, end = self.glob_parts()
            if start and end:
                return actual == text
            if start:
                return actual.startswith(text)
            if end:
                return actual.endswith(text)
            return text in actual
        if self.op == "==":
            return actual == v
        if self.op == "!=":
            return actual != v
        if self.op == "&":
            return (actual & v) != 0
        if self.op == "<":
            return actual < v
        if self.op == "<=":
            return actual <= v
        if self.op == ">":
            return actual > v
        return actual >= v

    def applies_to(self, event):
        if self.events is not None:
            return event.name in self.events
        return event.field_type(self.field) is not None

    def __repr__(self):
        return "Filter(%r %s %r)" % (self.field, self.op, self.value)


# ---------------------------------------------------------------------------
class Schedule(object):
    """When to report: every `interval` seconds, `count` times (0: until
    Ctrl-C), or once after `duration` seconds."""

    def __init__(self, interval=1.0, count=0, duration=None):
        self.interval = float(interval)
        self.count = int(count)
        self.duration = float(duration) if duration is not None else None
        if not self.interval > 0 or self.count < 0 or (self.duration is not None
                                                         and not self.duration > 0):
            raise UsageError("interval and duration must be > 0, count >= 0")


class Measurement(object):
    """Everything a backend needs to run a tool."""

    def __init__(self, events, aggregate, pair=None, filters=(), schedule=None):
        self.events = tuple(events)
        self.aggregate = aggregate
        self.pair = pair
        self.filters = tuple(filters)
        self.schedule = schedule or Schedule()
        self._validate()

    def event(self, name):
        for e in self.events:
            if e.name == name:
                return e
        raise InvalidSpec("no event named %r" % name)

    def output_fields(self):
        """Field name -> type of what the aggregate sees: a pair's carried
        start fields, the end event's fields and LATENCY (and QUEUED when the
        pair has a mark); or, without a pair,
        the fields every event has."""
        if self.pair:
            start, end = self.event(self.pair.start), self.event(self.pair.end)
            out = dict(CONTEXT_FIELDS)
            for f in end.fields:
                out[f.name] = f.type
            for c in self.pair.carry:
                out[c] = start.field_type(c)
            out[LATENCY] = INT
            if self.pair.mark is not None:
                out[QUEUED] = INT
        else:
            out = dict(CONTEXT_FIELDS)
            common = self.common_fields()
            for f in self.events[0].fields:
                if f.name in common:
                    out[f.name] = f.type
            if self.aggregate is not None and self.aggregate.kind == "records":
                out[KSTACK] = STACK
                # Records may name a field only some events declare: it is
                # None in the records of the others.
                for e in self.events:
                    for f in e.fields:
                        if out.setdefault(f.name, f.type) != f.type:
                            raise InvalidSpec("field %r has two types" % f.name)
        out[EVENT_NAME] = STR
        return out

    def common_fields(self):
        """The names of the declared fields every event has."""
        common = None
        for e in self.events:
            names = set(f.name for f in e.fields)
            common = names if common is None else common & names
        return common or set()

    def _validate(self):
        names = [e.name for e in self.events]
        if not names or len(set(names)) != len(names):
            raise InvalidSpec("events must be non-empty with unique names")
        if self.aggregate is None or self.aggregate.kind not in ("histogram", "count", "records"):
            raise InvalidSpec("aggregate must be Histogram, Count or Records")
        if self.pair:
            start, end = self.event(self.pair.start), self.event(self.pair.end)
            for k in self.pair.key:
                if start.field_type(k) is None or end.field_type(k) is None:
                    raise InvalidSpec("pair key %r missing on %s or %s" % (k, start.name, end.name))
            for c in self.pair.carry:
                if start.field_type(c) is None:
                    raise InvalidSpec("carried field %r missing on %s" % (c, start.name))
            for k in self.pair.shared:
                if start.field_type(k) != INT:
                    raise InvalidSpec("shared key value for %r, which is not an integer" % k)
            if self.pair.mark is not None:
                self._validate_mark(start)
            if self.pair.abandon is not None:
                gone = self.event(self.pair.abandon)
                for k in self.pair.key:
                    if gone.field_type(k) != start.field_type(k):
                        raise InvalidSpec("pair key %r missing on abandon event %s"
                                          % (k, gone.name))
        available = self.output_fields()
        agg = self.aggregate
        used = list(getattr(agg, "keys", ())) + list(getattr(agg, "fields", ()))
        if agg.kind == "histogram":
            used.append(agg.value)
            if available.get(agg.value) != INT:
                raise InvalidSpec("histogram value %r must be an integer field" % agg.value)
        for name in used:
            if name not in available:
                raise InvalidSpec("aggregate uses unknown field %r" % name)
        if not self.pair and agg.kind == "records" and EVENT_NAME not in used and any(
                n not in CONTEXT_FIELDS and n != KSTACK and n not in self.common_fields()
                for n in used):
            raise InvalidSpec("records of a field only some events declare need %r, to "
                              "tell whose it is" % EVENT_NAME)
        for f in self.lookup_fields():
            if agg.kind != "records" or f.name not in used or \
                    any(n not in used or available.get(n) != INT for n in f.lookup.needs()):
                raise InvalidSpec("field %s: a lookup needs Records of it and of the "
                                  "integer fields %s" % (f.name, ", ".join(f.lookup.needs())))
        for f in self.filters:
            targets = [e for e in self.events if f.applies_to(e)]
            if not targets:
                raise InvalidSpec("filter on %r applies to no event" % f.field)
            for e in targets:
                if e.field_type(f.field) != f.type:
                    raise InvalidSpec("filter on %r: type %s does not match event %s"
                                      % (f.field, f.type, e.name))

    def _validate_mark(self, start):
        mark = self.event(self.pair.mark)
        for k in self.pair.key:
            if mark.field_type(k) is None:
                raise InvalidSpec("pair key %r missing on mark %s" % (k, mark.name))
        # A mark with no start pending starts the pair: it fills the carried
        # fields itself, into the same slots.
        for c in self.pair.carry:
            if mark.field_type(c) != start.field_type(c):
                raise InvalidSpec("carried field %r missing on mark %s (or of another type)"
                                  % (c, mark.name))

    def lookup_fields(self):
        """The declared Fields that have an after-the-fact lookup."""
        out = []
        for e in self.events:
            out += [f for f in e.fields if f.lookup is not None and f.name not in
                    [o.name for o in out]]
        return out

    def filters_for(self, event):
        return [f for f in self.filters if f.applies_to(event)]
