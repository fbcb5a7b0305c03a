"""funclatency: a function's duration as a log2 histogram (bcc-compatible).

    command line  funclatency [-h] [-p PID] [-i INTERVAL] [-d DURATION] [-T]
                              [-u] [-m] [-F] [-r] pattern
    events        entry:  the function's entry (kprobe / uprobe)
                  return: its return (kretprobe / uretprobe)
                  The pattern must name exactly one function on this host
                  (plugins/funcspec.py expands it).
    pair          entry -> return on the same thread (key tid), nested:
                  recursive calls pair innermost first, the outermost -l
                  LEVEL levels (default 64) measured; abandoned at the
                  thread's exit (sched:sched_process_exit): calls it exited
                  inside count as dropped starts, not kept forever
    aggregate     Histogram(latency, LOG2) in nsecs (default), usecs (-u)
                  or msecs (-m); -F: one histogram under "Function = NAME"
    filters       -p PID
    schedule      every -i seconds; -d alone: one report after that long;
                  neither: one report at Ctrl-C, as bcc
    output        bcc's histogram and its avg/total/count line

Differences from bcc, on purpose: the banner goes to stderr; a pattern
naming several functions is refused (bcc sums them in one histogram);
nesting is always on (bcc, without -l, lets an inner call replace the
outer one); calls deeper than LEVEL, and calls a thread exited inside
(they never return), are reported as dropped starts.
"""

from kerntrace.core.api import (EVENT_NAME, LATENCY, LOG2, BccHistogramPrinter, Event, Filter,
                                Histogram, Measurement, Metric, Pair, Tool, Tracepoint, UsageError,
                                hookimpl, report_every)

from . import funcspec

KERNTRACE_API_VERSION = "1.1"

MAX_LEVEL = 64          # core.model.MAX_NESTING


def level_value(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= MAX_LEVEL:
        raise UsageError("-l takes a level from 1 to %d, got %r" % (MAX_LEVEL, text))
    return value


def exit_event():
    """A thread's exit: the calls it has pending never return (Pair.abandon)."""
    return Event("exit", Tracepoint("sched", "sched_process_exit"))


class FuncLatency(Tool):
    name = "funclatency"
    metric = Metric(histogram="function_latency", unit="seconds",
                    labels={"event": "function"},
                    histogram_help="Function latency, from entry to return.")
    summary = "Time a function and print its latency as a histogram (bcc funclatency)."
    examples = (
        ("funclatency do_sys_open", "time the do_sys_open() kernel function"),
        ("funclatency c:read", "time the read() C library function"),
        ("funclatency -u vfs_read", "time vfs_read(), in microseconds"),
        ("funclatency -m do_nanosleep", "time do_nanosleep(), in milliseconds"),
        ("funclatency -i 2 -d 10 c:open", "output every 2 seconds, for duration 10s"),
        ("funclatency -mTi 5 vfs_read", "output every 5 seconds, with timestamps"),
        ("funclatency -p 181 vfs_read", "time process 181 only"),
        ("funclatency -u -r '^vfs_rea.$'", "a regular expression naming one function"),
        ("funclatency -F -u c:malloc", "show the function's name above its histogram"),
        ("funclatency -l 2 -u /bin/x:walk", "recursive walk(): the outer 2 levels only"),
    )
    sample_args = ("c:getppid",)

    def add_arguments(self, p):
        funcspec.add_summary_options(p)
        p.add_argument("-u", "--microseconds", action="store_true",
                       help="microsecond histogram")
        p.add_argument("-m", "--milliseconds", action="store_true",
                       help="millisecond histogram")
        p.add_argument("-F", "--function", action="store_true",
                       help="show a separate histogram per function")
        p.add_argument("-l", "--level", type=level_value, default=MAX_LEVEL,
                       help="set the level of nested or recursive functions "
                            "(default %d)" % MAX_LEVEL)
        p.add_argument("pattern", help="search expression for functions")

    def target(self, args):
        if getattr(args, "_target", None) is None:
            args._target = funcspec.expand_one(args.pattern, args.regexp, args.pid)
        return args._target

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.microseconds and args.milliseconds:
            raise UsageError("-u and -m are mutually exclusive")
        self.target(args)
        return args

    def unit(self, args):
        return "msecs" if args.milliseconds else "usecs" if args.microseconds else "nsecs"

    def measurement(self, args):
        t = self.target(args)
        filters = [Filter("pid", "==", args.pid)] if args.pid is not None else []
        interval = args.interval
        if interval is None and args.duration is not None:
            interval = args.duration
        return Measurement(
            events=[Event("entry", t.entry()), Event("ret", t.exit()), exit_event()],
            pair=Pair("entry", "ret", key=("tid",), nested=args.level, abandon="exit"),
            aggregate=Histogram(LATENCY, scale=LOG2, unit=self.unit(args),
                                keys=(EVENT_NAME,) if args.function else ()),
            filters=filters,
            schedule=report_every(interval, duration=args.duration))

    def printer(self, args, out, err):
        label = self.target(args).label
        return BccHistogramPrinter(
            out, err, banner='Tracing 1 functions for "%s"... Hit Ctrl-C to end.' % args.pattern,
            section=(lambda key: "Function = %s" % label) if args.function else None,
            timestamps=args.timestamp, average=True)

    def formatters(self, args):
        label = self.target(args).label
        return {EVENT_NAME: lambda name: label}


@hookimpl
def kerntrace_tools():
    return [FuncLatency()]


__all__ = ["FuncLatency"]
