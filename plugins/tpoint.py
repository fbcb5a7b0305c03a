"""tpoint: print a tracepoint's events as they happen (perf-tools drop-in).

    command line  tpoint [-hHsv] [-d secs] [-p PID] [-L TID] tracepoint [filter]
                  tpoint -l [glob]
    events        the tracepoint, with every payload field of its format file
                  the model can carry (integers, char arrays, strings)
    aggregate     Records: comm, tid, cpu and those fields
    filters       -p PID (process id), -L TID (thread id), and the filter
                  expression, parsed into model Filters (core/expr.py:
                  comparisons joined by &&)
    schedule      until Ctrl-C, or for -d seconds
    output        one trace_pipe-style line per event on stdout:
                  COMM-TID [CPU] SECONDS: EVENT: field=value ...

Differences from perf-tools' tpoint, which prints the kernel's own text:
the payload is every field as name=value in format-file order (the
kernel's `print fmt` is C; kerntrace does not evaluate it, so the line is
the same whichever backend ran), there is no irq-flags column, -p, -L
and a filter may be combined, -d streams lines too.  -s (kernel stack
traces) works on both backends (eBPF: a stack map; ftrace: the
stacktrace option of its own instance), named from /proc/kallsyms; each
event's stack follows its line as ftrace's stacktrace option prints it
("<stack trace>", " => function").
"""

from kerntrace.core.api import (INT, KSTACK, STR, Event, Filter, Measurement, Metric, Printer,
                                Records, Schedule, Tool, Tracepoint, UsageError, format_text,
                                hookimpl, list_tracepoints, parse_filter, parse_options,
                                parse_tracepoint, perf_tools_error_lines, perf_tools_exit_status,
                                pid_value, seconds_value, terminal_text, trace_seconds,
                                tracepoint_fields)

KERNTRACE_API_VERSION = "1.1"

USAGE = """USAGE: tpoint [-hHsv] [-d secs] [-p PID] [-L TID] tracepoint [filter]
       tpoint -l [glob]
                 -d seconds      # trace duration
                 -p PID          # PID to match on event
                 -L TID          # thread id to match on event
                 -v              # view format file (don't trace)
                 -H              # include column headers
                 -l              # list all tracepoints (matching glob)
                 -s              # show kernel stack traces
                 -h              # this usage message
   eg,
       tpoint -l | grep open
                                 # find tracepoints containing "open"
       tpoint -l 'block:*'
                                 # list block tracepoints
       tpoint syscalls:sys_enter_openat
                                 # trace openat() syscall entry
       tpoint block:block_rq_issue
                                 # trace block I/O issue
       tpoint block:block_rq_issue 'bytes >= 65536 && comm == "dd"'
                                 # only large I/O issued by dd
       tpoint -s block:block_rq_issue
                                 # show kernel stack traces of I/O issue

See the man page and example file for more info.
"""

HEADER = ("#            TASK-TID     CPU#   TIMESTAMP  EVENT: FIELDS\n"
          "#               | |         |         |        |      |\n")

# What the filter calls perf-tools users write mean: common_pid is the
# thread id in ftrace filters (perf-tools' -L writes it).
_COMMON = {"common_pid": ("tid", INT)}


def _resolver(fields):
    def resolve(name):
        if name in fields.by_source:
            declared = fields.by_source[name]
            return declared, fields.type_of(declared)
        if name in _COMMON:
            return _COMMON[name]
        if name in ("pid", "tid", "cpu"):
            return name, INT
        if name == "comm":
            return "comm", STR
        return None
    return resolve


class TracepointPrinter(Printer):
    """perf-tools tpoint's output: the banner on stdout, one line per event,
    "Ending tracing..." at the end."""

    def __init__(self, out, err, banner, fields, headers=False, stacks=False):
        Printer.__init__(self, out, err)
        self.banner = banner
        self.headers = headers
        self.stacks = stacks
        self.event = fields.name
        # (format name, declared name, how to show the value)
        self.payload = [(src, decl, ("0x%x" if decl in fields.pointers else None))
                        for src, decl in fields.by_source.items()]

    def start(self, ctx):
        self.out.write(self.banner + "\n" + (HEADER if self.headers else ""))
        self.out.flush()

    def line(self, r):
        parts = []
        for src, decl, fmt in self.payload:
            v = r.get(decl)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            parts.append("%s=%s" % (src, fmt % v if fmt and isinstance(v, int)
                                     else terminal_text(str(v))))
        comm = r.get("comm")
        if isinstance(comm, bytes):
            comm = comm.decode("utf-8", "replace")
        head = "%16s-%-7d [%03d] %5s: " % (terminal_text(str(comm)), r["tid"], r["cpu"],
                                          trace_seconds(r.ts))
        text = head + "%s: %s" % (self.event, " ".join(parts))
        if self.stacks:
            # as ftrace's stacktrace option prints it, after the event
            frames = r.get(KSTACK) or ("[stack not taken]",)
            text += "\n" + head + "<stack trace>" + "".join(
                "\n => " + terminal_text(str(f)) for f in frames)
        return text

    def report(self, report, ctx):
        self.lost(report, ctx)
        if report.data:
            self.out.write("".join(self.line(r) + "\n" for r in report.data))

    def finish(self, ctx):
        self.out.write("\nEnding tracing...\n")


class TPoint(Tool):
    name = "tpoint"
    metric = Metric(counter="tracepoint_hits", counter_help="Tracepoint hits.")
    summary = "Trace a tracepoint: print its events as they happen (perf-tools drop-in)."
    examples = (
        ("tpoint -l | grep open", "find tracepoints containing \"open\""),
        ("tpoint -l 'block:*'", "list the block tracepoints"),
        ("tpoint -v block:block_rq_issue", "show its format file"),
        ("tpoint block:block_rq_issue", "trace block I/O issue"),
        ("tpoint -H -d 5 block:block_rq_issue", "for 5 seconds, with a header"),
        ("tpoint block:block_rq_issue 'dev == 8388608 && nr_sector > 8'",
         "only I/O of more than 8 sectors on device 8,0"),
        ("tpoint -p 181 syscalls:sys_enter_read", "read() calls of PID 181"),
        ("tpoint -s -p 181 syscalls:sys_enter_read", "the same, with kernel stacks"),
    )
    sample_args = ("block:block_rq_issue",)

    def parse_args(self, argv, prog=None):
        args, operands = parse_options(
            argv, USAGE, values=(("d", "duration"), ("p", "pid"), ("L", "tid")),
            flags=(("H", "headers"), ("l", "list"), ("s", "stacks"), ("v", "view")))
        args.tracepoint = args.filter = args.glob = None
        if args.list:
            if len(operands) > 1:
                raise UsageError("-l takes at most one glob, got: %s" % " ".join(operands))
            args.glob = operands[0] if operands else None
            if args.glob is not None and any(not c.isprintable() for c in args.glob):
                raise UsageError("invalid glob %r" % (args.glob,))
            return args
        if not operands:
            raise UsageError("missing tracepoint (tpoint -h for usage)")
        if len(operands) > 2:
            raise UsageError("too many arguments: %s (quote the filter)"
                             % " ".join(operands[2:]))
        args.tracepoint = parse_tracepoint(operands[0])
        args.filter = operands[1] if len(operands) == 2 else None
        if args.duration is not None and args.view:
            raise UsageError("ERROR: use either -d or -v.")
        if args.duration is not None:
            args.duration = seconds_value(args.duration, "duration")
        if args.pid is not None:
            args.pid = pid_value(args.pid)
        if args.tid is not None:
            args.tid = pid_value(args.tid)
        if not args.view:
            self.filters(args)      # every mistake before anything runs
        return args

    def format_error(self, exc):
        lines = perf_tools_error_lines(exc)
        if lines is None and str(exc).startswith("ERROR:"):
            return [str(exc)]
        return lines

    def exit_status_for(self, exc):
        return perf_tools_exit_status(exc)

    def show(self, args, out, err):
        if args.list:
            for spec in list_tracepoints(args.glob):
                out.write(spec + "\n")
            return 0
        if args.view:
            out.write(format_text(*args.tracepoint))
            return 0
        return None

    def fields(self, args):
        cat, name = args.tracepoint
        try:
            return tracepoint_fields(cat, name)
        except UsageError:
            raise UsageError("ERROR: tracepoint %s:%s not found. Exiting" % (cat, name))

    def filters(self, args):
        out = []
        if args.pid is not None:
            out.append(Filter("pid", "==", args.pid))
        if args.tid is not None:
            out.append(Filter("tid", "==", args.tid))
        if args.filter is not None:
            out.extend(parse_filter(args.filter, _resolver(self.fields(args))))
        return out

    def measurement(self, args):
        fields = self.fields(args)
        return Measurement(
            events=[tracepoint_event(fields)],
            aggregate=Records(("comm", "tid", "cpu") + tuple(f.name for f in fields.fields)
                              + ((KSTACK,) if args.stacks else ())),
            filters=self.filters(args),
            schedule=Schedule(duration=args.duration))

    def printer(self, args, out, err):
        cat, name = args.tracepoint
        spec = "%s:%s" % (cat, name)
        banner = ("Tracing %s for %s seconds..." % (spec, _seconds_text(args.duration))
                  if args.duration is not None else "Tracing %s. Ctrl-C to end." % spec)
        return TracepointPrinter(out, err, banner, self.fields(args), headers=args.headers,
                                 stacks=args.stacks)


def _seconds_text(value):
    return ("%d" % value) if value == int(value) else ("%g" % value)


def tracepoint_event(fields):
    """The Event of a tracepoint, carrying every field of TracepointFields."""
    return Event(fields.name, Tracepoint(fields.category, fields.name), fields=fields.fields)


@hookimpl
def kerntrace_tools():
    return [TPoint()]
