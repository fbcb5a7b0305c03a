"""argdist: a histogram or count of an integer field or argument of a
tracepoint, kernel function or user function (bcc's argdist command line).

    command line  argdist [-h] [-p PID] [-t TID] [-i INTERVAL] [-d DURATION]
                          [-n COUNT] [-T TOP] {-H SPECIFIER | -C SPECIFIER}
    specifier     {p,r,t}:{[library],category}:function(signature)
                      [:type[,type...]:expr[,expr...][:filter]][#label]
                  u:library:[provider:]probe()[:type:expr[:filter]][#label]
    events        one: the tracepoint (t), the function's entry (p) or
                  return (r): a kprobe, or a uprobe when a library is named;
                  a USDT probe (u), every site of it
    aggregate     -H: Histogram(expr, LOG2); -C: Count per expr values
                  (no expr: total calls; r: per return value)
    filters       -p PID, -t TID, and the specifier's filter, parsed by
                  core/expr.py into model Filters
    schedule      every -i seconds (default 1), -n times, for -d seconds
    output        bcc argdist's: "[HH:MM:SS]", then the log2 histogram, or
                  the label and "COUNT EVENT" rows (ascending)

Why argdist and not trace: a histogram or count of one value with a
filter is argdist's job and its -H/-C specifiers are what users of bcc
type for it (trace prints events, which tpoint does).  What kerntrace
accepts is the subset of the specifier language the model can express,
on both backends; everything else is refused with one line:

  * expr is a name: an argument named in the signature (or argN), a
    tracepoint field (`args->bytes` or `bytes`), `$retval` in an r
    probe, or a USDT probe's argN (from 1, as bcc's argdist; read with
    the size and sign its note gives).  No C expressions, casts,
    $latency or $entry();
  * types are integer types (strings and structs are not counted);
  * the filter is comparisons joined by && (`size > 16 && pid == 5`),
    not C;
  * one specifier per run (the model measures one aggregate), no -c
    (cumulative), no -I or -z.
"""

import re
import time

from kerntrace.core.api import (INT, LOG2, STR, Count, CountSet, Each, Event, Field, Filter,
                                Histogram, HistogramSet, InvalidSpec, KernelFunction,
                                Measurement, Printer, SymbolError, Tool, Tracepoint,
                                UsageError, Usdt, UserFunction, count_value, format_histogram,
                                hookimpl, is_identifier, parse_comparisons, parse_filter,
                                pid_value, report_every, resolve_binary, seconds_value,
                                terminal_text, top_value, tracepoint_fields, usdt_probes)

KERNTRACE_API_VERSION = "1.2"

# The C integer types a value or argument may have, and the width a
# function argument or return value of that type is read with (x86-64 and
# arm64 sizes: long is 64 bits).
INTEGER_TYPES = {
    "u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64",
    "s8": "s8", "s16": "s16", "s32": "s32", "s64": "s64",
    "__u8": "u8", "__u16": "u16", "__u32": "u32", "__u64": "u64",
    "__s8": "s8", "__s16": "s16", "__s32": "s32", "__s64": "s64",
    "uint8_t": "u8", "uint16_t": "u16", "uint32_t": "u32", "uint64_t": "u64",
    "int8_t": "s8", "int16_t": "s16", "int32_t": "s32", "int64_t": "s64",
    "char": "s8", "signed char": "s8", "unsigned char": "u8", "bool": "u8",
    "short": "s16", "unsigned short": "u16",
    "int": "s32", "unsigned": "u32", "unsigned int": "u32",
    "long": "s64", "long long": "s64", "unsigned long": "u64", "unsigned long long": "u64",
    "size_t": "u64", "ssize_t": "s64", "off_t": "s64", "loff_t": "s64",
    "pid_t": "s32", "uid_t": "u32", "gid_t": "u32", "dev_t": "u32", "gfp_t": "u32",
    "sector_t": "u64",
}
# bcc argdist's type of a return probe's value without an expression.
DEFAULT_RETURN_TYPE = "int"
MAX_ARGS = 6
# The Field name of `$retval`.
RETVAL = "retval"

_SPEC = re.compile(r"^(?P<kind>[a-z]):(?P<where>[^:]*):(?P<func>[^:(]*)"
                   r"(?:\((?P<sig>[^()]*)\))?(?P<rest>.*)\Z", re.S)
# "TYPE NAME": the type ends with a space or a '*' ("size_t size", "char *buf").
_PARAM = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_ ]*?(?:\s+|\s*\*[\s*]*))"
                    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\Z")
_ARGN = re.compile(r"^arg([0-5])\Z")
# u:LIBRARY:PROVIDER:PROBE(): a USDT probe named with its provider (the
# parentheses tell it from u:LIBRARY:PROBE:type).
_USDT_SPEC = re.compile(r"^u:(?P<where>[^:]*):(?P<provider>[^:(]*):(?P<func>[^:(]*)"
                        r"\((?P<sig>[^()]*)\)(?P<rest>.*)\Z", re.S)
# sys/sdt.h probes take up to 12 arguments; bcc's argdist numbers them from 1.
USDT_MAX_ARGS = 12


def _printable(text):
    return "".join(c if c.isprintable() else "?" for c in text)


def _ctype(text):
    return " ".join(text.replace("*", " * ").split())


class Specifier(object):
    """One parsed -H/-C specifier.

    raw      the text as given (less the label)      label   after '#', or None
    kind     "p", "r" or "t"                         probe   the model Probe
    fields   [Field] the event declares              values  [(display text, Field name)]
    filter   the filter text, or None
    names    what a name in expr/filter means: text -> (Field name, type)
    """

    def __init__(self, text, histogram):
        if not isinstance(text, str) or not text.isprintable():
            raise UsageError("specifier %r: control characters are not allowed"
                             % (_printable(str(text)),))
        self.text = text
        raw, sep, label = text.partition("#")
        self.raw = raw.strip()
        self.label = label.strip() if sep else None
        if self.label is not None and (not self.label or "#" in self.label):
            raise UsageError("specifier %r: a label after one '#' must not be empty" % text)
        m = _USDT_SPEC.match(self.raw) or _SPEC.match(self.raw)
        if m is None:
            raise UsageError("invalid specifier %r (expected {p,r,t}:{[library],category}:"
                             "function(signature)[:type:expr[:filter]][#label])" % text)
        self.kind = "u" if "provider" in m.groupdict() else m.group("kind")
        if self.kind not in ("p", "r", "t", "u"):
            raise UsageError("specifier %r: probe type must be p, r, t or u" % text)
        provider = m.groupdict().get("provider")
        if provider is not None and not is_identifier(provider.strip()):
            raise UsageError("specifier %r: %r is not a USDT provider name" % (text, provider))
        func = m.group("func").strip()
        if not is_identifier(func):
            raise UsageError("specifier %r: %r is not a function or tracepoint name (no "
                             "wildcards)" % (text, func))
        self.fields = []
        self.names = {}
        self._sources = {}          # argument name -> "argN"
        self._widths = {}           # argument or value name -> Field width
        if self.kind == "u":
            self._usdt(text, m.group("where").strip(), provider and provider.strip(), func,
                       m.group("sig"))
        else:
            self._probe(text, m.group("where").strip(), func, m.group("sig"))
        self.values, self.filter = self._rest(text, m.group("rest"), histogram)
        # Declare only what is read: the values, the filter's fields, and a
        # return probe's value (counted per return value without an expr).
        used = set(name for _, name in self.values)
        if self.filter is not None:
            used.update(c.field for c in parse_comparisons(self.filter, self.resolve))
        if self.kind == "r":
            used.add(RETVAL)
        if self.kind == "u":
            # arg1 is the probe's first argument: the model's arg0
            self.fields = [Field(n, INT, sources=("arg%d" % (int(n[3:]) - 1),))
                           for n in sorted(used) if n.startswith("arg")]
        elif self.kind != "t":
            # A function's arguments and return value are registers: read
            # each as the C type the specifier gives it (bcc: int for $retval
            # without an expression; the whole register for an untyped argN).
            self._widths.setdefault(RETVAL, INTEGER_TYPES[DEFAULT_RETURN_TYPE])
            self.fields = [Field(n, INT, sources=(self._sources.get(n, n),),
                                 width=self._widths.get(n)) for n in sorted(used)
                           if n in self._sources or _ARGN.match(n) or n == RETVAL]
        else:
            self.fields = [f for f in self.fields if f.name in used]

    def _probe(self, text, where, func, sig):
        if self.kind == "t":
            if not is_identifier(where):
                raise UsageError("specifier %r: %r is not a tracepoint category" % (text, where))
            if sig and sig.strip():
                raise UsageError("specifier %r: a tracepoint takes no signature: its fields "
                                 "come from its format file" % text)
            self.probe = Tracepoint(where, func)
            tp = tracepoint_fields(where, func)
            self.fields = list(tp.fields)
            for src, decl in tp.by_source.items():
                self.names[src] = self.names["args->" + src] = (decl, tp.type_of(decl))
        else:
            try:
                self.probe = (UserFunction(where, func, ret=self.kind == "r") if where
                              else KernelFunction(func, ret=self.kind == "r"))
            except InvalidSpec as e:
                raise UsageError("specifier %r: %s" % (text, e))
            if self.kind == "p":
                for i in range(MAX_ARGS):
                    self.names["arg%d" % i] = ("arg%d" % i, INT)
                self._signature(text, sig or "")
            else:
                if sig and sig.strip():
                    raise UsageError("specifier %r: entry arguments in a return probe are "
                                     "not supported (only $retval)" % text)
                self.names["$retval"] = (RETVAL, INT)
        for ctx, ctype in (("pid", INT), ("tid", INT), ("cpu", INT), ("comm", STR)):
            self.names.setdefault(ctx, (ctx, ctype))

    def _usdt(self, text, where, provider, func, sig):
        if not where:
            raise UsageError("specifier %r: a USDT probe needs a library or binary" % text)
        if sig and sig.strip():
            raise UsageError("specifier %r: a USDT probe takes no signature: its note "
                             "describes its arguments (arg1, arg2, ...)" % text)
        try:
            path = resolve_binary(where)
            found = usdt_probes(path, func, False, provider)
        except SymbolError as e:
            raise UsageError("specifier %r: %s" % (text, e))
        if not found:
            raise UsageError("specifier %r: %s has no USDT probe %s%s" % (
                text, path, provider + ":" if provider else "", func))
        if len(found) > 1:
            raise UsageError("specifier %r: USDT probe %s is in providers %s of %s: name one "
                             "(u:LIB:PROVIDER:PROBE())" % (
                                 text, func, ", ".join(p for p, _n, _s in found), path))
        prov, name, sites = found[0]
        try:
            usdt = [Usdt(path, prov, name, site=i) for i in range(sites)]
        except InvalidSpec as e:
            raise UsageError("specifier %r: %s" % (text, e))
        self.probe = usdt[0] if len(usdt) == 1 else Each(*usdt)
        for i in range(1, USDT_MAX_ARGS + 1):
            self.names["arg%d" % i] = ("arg%d" % i, INT)
        for ctx, ctype in (("pid", INT), ("tid", INT), ("cpu", INT), ("comm", STR)):
            self.names.setdefault(ctx, (ctx, ctype))

    def _signature(self, text, sig):
        params = [p.strip() for p in sig.split(",")] if sig.strip() else []
        if len(params) > MAX_ARGS:
            raise UsageError("specifier %r: at most %d arguments" % (text, MAX_ARGS))
        for i, param in enumerate(params):
            pm = _PARAM.match(param)
            if pm is None or pm.group("name") in ("arg%d" % j for j in range(MAX_ARGS)):
                raise UsageError("specifier %r: invalid parameter %r (expected TYPE NAME)"
                                 % (text, param))
            name = pm.group("name")
            if name in self.names and not _ARGN.match(name):
                raise UsageError("specifier %r: parameter %s named twice" % (text, name))
            if name in ("pid", "tid", "cpu", "comm", "ts", "latency", "queued", "event"):
                raise UsageError("specifier %r: parameter name %s is reserved (it names the "
                                 "task's %s)" % (text, name, name))
            self._sources[name] = "arg%d" % i
            ptype = _ctype(pm.group("type"))
            if ptype in INTEGER_TYPES:
                self._widths[name] = INTEGER_TYPES[ptype]
            self.names[name] = (name, INT)
            del self.names["arg%d" % i]

    def _rest(self, text, rest, histogram):
        if not rest:
            if histogram:
                raise UsageError("specifier %r: -H needs a type and an expression" % text)
            return [], None
        if not rest.startswith(":"):
            raise UsageError("invalid specifier %r" % text)
        parts = rest[1:].split(":", 2)
        if len(parts) < 2:
            raise UsageError("specifier %r: a type needs an expression (:type:expr)" % text)
        types = [_ctype(t) for t in parts[0].split(",")]
        exprs = [e.strip() for e in parts[1].split(",")]
        if len(types) != len(exprs):
            raise UsageError("specifier %r: %d types for %d expressions"
                             % (text, len(types), len(exprs)))
        if histogram and len(exprs) != 1:
            raise UsageError("specifier %r: -H takes one expression" % text)
        for t in types:
            if t not in INTEGER_TYPES:
                raise UsageError("specifier %r: type %r is not an integer type (only "
                                 "integers are counted)" % (text, t))
        values = []
        for e in exprs:
            if e not in self.names or self.names[e][1] != INT:
                if self.names.get(e, (None, None))[1] is not None:
                    raise UsageError("specifier %r: %s is not an integer" % (text, e))
                raise UsageError("specifier %r: expression %r is not a field or argument "
                                 "name (kerntrace does not evaluate C expressions)" % (text, e))
            values.append((e, self.names[e][0]))
            # the expression's type, unless the signature typed the argument
            # (a USDT argument has its note's)
            self._widths.setdefault(self.names[e][0], INTEGER_TYPES[types[len(values) - 1]])
        filt = parts[2] if len(parts) == 3 else None
        if filt is not None and not filt.strip():
            raise UsageError("specifier %r: empty filter" % text)
        return values, filt

    def resolve(self, name):
        return self.names.get(name)

    def event(self):
        return Event("probe", self.probe, fields=self.fields)


class ArgDistPrinter(Printer):
    """bcc argdist's output: "[HH:MM:SS]" each interval, then the log2
    histogram labelled with the expression (or label), or the label (or
    specifier) and the COUNT EVENT rows in ascending order."""

    def __init__(self, out, err, spec, histogram, top=None):
        Printer.__init__(self, out, err)
        self.spec = spec
        self.histogram = histogram
        self.top = top

    def start(self, ctx):
        self.err.write("Tracing %s... Hit Ctrl-C to end.\n" % self.spec.raw)

    def _key_text(self, key):
        if not self.spec.values:
            if self.spec.kind == "r":
                return "retval = %s" % key[0]
            return "total calls"
        return ", ".join("%s = %s" % (shown, terminal_text(str(v)))
                         for (shown, _), v in zip(self.spec.values, key))

    def report(self, report, ctx):
        self.lost(report, ctx)
        lines = ["[%s]" % time.strftime("%H:%M:%S", time.localtime(report.end))]
        data = report.data
        if isinstance(data, HistogramSet):
            label = self.spec.label or self.spec.values[0][0]
            for key in sorted(data.histograms):
                lines.extend(format_histogram(data.histograms[key], label))
        elif isinstance(data, CountSet):
            lines.append(self.spec.label or self.spec.raw)
            lines.append("\t%-10s %s" % ("COUNT", "EVENT"))
            rows = sorted((c, self._key_text(k if isinstance(k, tuple) else (k,)))
                          for k, c in data.counts.items() if c)
            if self.top is not None:
                rows = rows[-self.top:]
            lines.extend("\t%-10s %s" % (str(c), text) for c, text in rows)
        self.out.write("\n".join(lines) + "\n")


class ArgDist(Tool):
    name = "argdist"
    summary = ("Histogram or count of a tracepoint field or function argument "
               "(bcc argdist).")
    description = """\
specifier: {p,r,t}:{[library],category}:function(signature)
               [:type[,type...]:expr[,expr...][:filter]][#label]
           u:library:[provider:]probe()[:type:expr[:filter]][#label]
  p, r, t   function entry, function return, tracepoint
  u         a USDT probe (sys/sdt.h) of a binary or library, all its sites
  library   a path or a short name (c: the C library); empty: a kernel function
  signature the arguments' types and names ("size_t size, int flags");
            a tracepoint takes none: its fields are args->NAME or NAME
  expr      a name: an argument (or argN), a field, $retval in an r probe,
            a USDT probe's arg1, arg2, ... (the size and sign its note gives)
  type      an integer type per expression (u32, size_t, int, ...)
  filter    comparisons joined by &&: size > 16 && pid == 5, comm == "dd"
  label     printed instead of the expression or specifier
-H makes a log2 histogram of one expression, -C counts per value (no
expression: calls; r: per return value).  One specifier per run; C
expressions, $latency and $entry() are not supported; USDT arguments
in registers, at register+offset and constants are read."""
    examples = (
        ("argdist -H 't:block:block_rq_issue():u32:args->bytes'",
         "histogram of block I/O sizes"),
        ("argdist -C 't:block:block_rq_issue():u32:bytes:dev == 8388608 && bytes > 4096'",
         "count of I/O sizes over 4 KB on device 8,0"),
        ("argdist -H 'p:c:malloc(size_t size):size_t:size'", "histogram of malloc() sizes"),
        ("argdist -p 1005 -C 'p:c:malloc(size_t size):size_t:size:size==16'",
         "how often PID 1005 called malloc(16)"),
        ("argdist -C 'r:c:read()'", "read() calls per return value"),
        ("argdist -H 'p::__kmalloc(u64 size):u64:size'",
         "kmalloc sizes (where kprobes work)"),
        ("argdist -i 5 -n 2 -C 'p:c:write(int fd):int:fd' -T 5", "top 5 write() fds, twice"),
        ("argdist -C 'u:/usr/bin/python3:python:gc__start():int:arg1'",
         "Python garbage collections per generation (USDT)"),
        ("argdist -p 1005 -H 'u:/usr/sbin/app:app:request():u64:arg2'",
         "histogram of a USDT probe's second argument in PID 1005"),
    )
    sample_args = ("-H", "t:block:block_rq_issue():u32:bytes")

    def add_arguments(self, p):
        p.add_argument("-p", "--pid", type=pid_value, help="id of the process to trace")
        p.add_argument("-t", "--tid", type=pid_value, help="id of the thread to trace")
        p.add_argument("-i", "--interval", type=seconds_value, default=1.0,
                       help="output interval, in seconds (default 1)")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration of trace, in seconds")
        p.add_argument("-n", "--number", type=count_value, default=0, dest="count",
                       help="number of outputs")
        p.add_argument("-T", "--top", type=top_value,
                       help="number of top results to show (-C)")
        p.add_argument("-H", "--histogram", action="append", default=[], metavar="SPECIFIER",
                       help="probe specifier to capture a histogram of")
        p.add_argument("-C", "--count", action="append", default=[], dest="counts",
                       metavar="SPECIFIER", help="probe specifier to count values of")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        specs = [(s, True) for s in args.histogram] + [(s, False) for s in args.counts]
        if not specs:
            raise UsageError("at least one specifier is required (-H or -C)")
        if len(specs) > 1:
            raise UsageError("one -H or -C specifier per run (kerntrace measures one "
                             "aggregate per run); got %d" % len(specs))
        args.spec = Specifier(specs[0][0], specs[0][1])
        args.is_histogram = specs[0][1]
        self.filters(args)              # every mistake before anything runs
        return args

    def filters(self, args):
        out = []
        if args.pid is not None:
            out.append(Filter("pid", "==", args.pid))
        if args.tid is not None:
            out.append(Filter("tid", "==", args.tid))
        if args.spec.filter is not None:
            out.extend(parse_filter(args.spec.filter, args.spec.resolve))
        return out

    def measurement(self, args):
        spec = args.spec
        fields = [name for _, name in spec.values]
        if args.is_histogram:
            aggregate = Histogram(fields[0], scale=LOG2, unit=fields[0], divisor=1)
        else:
            aggregate = Count(keys=tuple(fields) if fields else
                              (RETVAL,) if spec.kind == "r" else ())
        return Measurement(events=[spec.event()], aggregate=aggregate,
                           filters=self.filters(args),
                           schedule=report_every(args.interval, count=args.count,
                                                 duration=args.duration))

    def printer(self, args, out, err):
        return ArgDistPrinter(out, err, args.spec, args.is_histogram, top=args.top)


@hookimpl
def kerntrace_tools():
    return [ArgDist()]
