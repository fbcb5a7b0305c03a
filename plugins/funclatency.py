"""funclatency: a function's duration as a log2 histogram (bcc-compatible).

    command line  funclatency [-h] [-p PID] [-i INTERVAL] [-d DURATION] [-T]
                              [-u] [-m] [-F] [-r] pattern
    events        entry:  the function's entry (kprobe / uprobe)
                  return: its return (kretprobe / uretprobe)
                  A pattern naming several functions on this host
                  (plugins/funcspec.py expands it) makes each an Each of
                  every function's probes, the entries setting INT field
                  "func" to the function's number (Probe values).
    pair          entry -> return on the same thread (key tid), nested:
                  recursive calls pair innermost first, the outermost -l
                  LEVEL levels (default 64) measured; abandoned at the
                  thread's exit (sched:sched_process_exit): calls it exited
                  inside count as dropped starts, not kept forever
    aggregate     Histogram(latency, LOG2) in nsecs (default), usecs (-u)
                  or msecs (-m): one for all functions, as bcc; -F: one per
                  function under "Function = NAME" (the pair carries "func")
    filters       -p PID
    schedule      every -i seconds; -d alone: one report after that long;
                  neither: one report at Ctrl-C, as bcc
    output        bcc's histogram and its avg/total/count line

Several functions pair on one stack per thread: calls of different traced
functions nest (f calls g: g's return pairs with g's entry), so each call
is measured whichever function it is.

Differences from bcc, on purpose: the banner goes to stderr; a pattern
matching more than --max-functions (default 1000) is refused; nesting is
always on (bcc, without -l, lets an inner call replace the
outer one); calls deeper than LEVEL, and calls a thread exited inside
(they never return), are reported as dropped starts.
"""

from kerntrace.core.api import (EVENT_NAME, INT, LATENCY, LOG2, BccHistogramPrinter, Each, Event,
                                Field, Filter, Histogram, Measurement, Metric, Pair, Tool,
                                Tracepoint, UsageError, hookimpl, report_every)

from . import funcspec

KERNTRACE_API_VERSION = "1.2"

MAX_LEVEL = 64          # core.model.MAX_NESTING

# The INT field each entry sets to its function's number when the pattern
# names several functions.
FUNC = "func"


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
    display_options = ("-u", "-m", "-F")
    examples = (
        ("funclatency do_sys_open", "time the do_sys_open() kernel function"),
        ("funclatency c:read", "time the read() C library function"),
        ("funclatency -u vfs_read", "time vfs_read(), in microseconds"),
        ("funclatency -m do_nanosleep", "time do_nanosleep(), in milliseconds"),
        ("funclatency -i 2 -d 10 c:open", "output every 2 seconds, for duration 10s"),
        ("funclatency -mTi 5 vfs_read", "output every 5 seconds, with timestamps"),
        ("funclatency -p 181 vfs_read", "time process 181 only"),
        ("funclatency -u -r '^vfs_rea.$'", "a regular expression naming one function"),
        ("funclatency 'vfs_fstat*'", "time vfs_fstat* calls, one histogram"),
        ("funclatency -F 'c:str*cmp'", "a histogram per str*cmp function"),
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
        funcspec.add_pattern_arguments(p, "functions")

    def targets(self, args):
        """The functions the pattern names (no tracepoints or USDT probes)."""
        return funcspec.pattern_targets(args, allow_tracepoints=False)

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.microseconds and args.milliseconds:
            raise UsageError("-u and -m are mutually exclusive")
        self.targets(args)
        return args

    def unit(self, args):
        return "msecs" if args.milliseconds else "usecs" if args.microseconds else "nsecs"

    def _events(self, args):
        """(entry, return) events and the histogram key of -F."""
        targets = self.targets(args)
        if len(targets) == 1:
            t = targets[0]
            return Event("entry", t.entry()), Event("ret", t.exit()), EVENT_NAME
        entries = Each(*[t.entry(values={FUNC: i}) for i, t in enumerate(targets)])
        returns = Each(*[t.exit() for t in targets])
        return (Event("entry", entries, fields=[Field(FUNC, INT)]), Event("ret", returns),
                FUNC)

    def measurement(self, args):
        entry, ret, key = self._events(args)
        filters = [Filter("pid", "==", args.pid)] if args.pid is not None else []
        interval = args.interval
        if interval is None and args.duration is not None:
            interval = args.duration
        carry = (FUNC,) if args.function and key == FUNC else ()
        return Measurement(
            events=[entry, ret, exit_event()],
            pair=Pair("entry", "ret", key=("tid",), carry=carry, nested=args.level,
                      abandon="exit"),
            aggregate=Histogram(LATENCY, scale=LOG2, unit=self.unit(args),
                                keys=(key,) if args.function else ()),
            filters=filters,
            schedule=report_every(interval, duration=args.duration))

    def _label(self, args):
        """The function name of a -F histogram key value."""
        labels = [t.label for t in self.targets(args)]
        if len(labels) == 1:
            return lambda value: labels[0]
        return lambda value: labels[value] if isinstance(value, int) and \
            0 <= value < len(labels) else str(value)

    def printer(self, args, out, err):
        label = self._label(args)
        return BccHistogramPrinter(
            out, err, banner='Tracing %d functions for "%s"... Hit Ctrl-C to end.' % (
                len(self.targets(args)), args.pattern),
            section=(lambda key: "Function = %s" % label(key[0])) if args.function else None,
            timestamps=args.timestamp, average=True)

    def formatters(self, args):
        label = self._label(args)
        return {EVENT_NAME: label, FUNC: label}


@hookimpl
def kerntrace_tools():
    return [FuncLatency()]


__all__ = ["FuncLatency"]
