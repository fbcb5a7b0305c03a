"""funcslower: calls of a function slower than a threshold, with their
arguments and return value (bcc-compatible).

    command line  funcslower [-h] [-p PID] [-m MIN_MS | -u MIN_US] [-a N] [-T | -t]
                             [-d DURATION] [-L TID] [-HP] function [latency_us]
                  (perf-tools' `funcslower [-HP] [-p PID] [-L TID] [-d secs]
                  funcstring latency_us` too: where its options mean other
                  things in bcc's, -a and -t, bcc's meaning holds)
    events        entry:  the function's entry, with its first N arguments
                  return: its return, with the return value
                  (the function spec as funccount takes it, naming exactly
                  one function: plugins/funcspec.py)
    pair          entry -> return on the same thread, nested (recursive
                  calls pair innermost first), min_latency = the threshold:
                  faster calls are dropped where the pair is measured;
                  calls a thread exits inside are given up at its exit
    aggregate     Records(comm, pid, latency, retval, args...)
    filters       -p PID, -L TID
    output        bcc's COMM PID LAT RVAL FUNC [ARGS] table

Differences from bcc, on purpose: the banner goes to stderr; one function
per run (bcc takes several); -t counts seconds from the first call printed
at its return (bcc: at its entry); no stack traces (-U/-K/-f); -d
DURATION ends the run (bcc runs until Ctrl-C).  perf-tools' forms print
bcc's table, not the function_graph tracer's text: -H and -P (headers,
process names and PIDs) are what the table always shows; -C (on-CPU time
only) is refused, the pair measures wall time.
"""

from kerntrace.core.api import (LATENCY, Column, Event, EventTablePrinter, Field, Filter,
                                Measurement, Metric, Pair, Records, Tool, UsageError, hookimpl,
                                pid_value, report_every, seconds_since_first, seconds_value)

from . import funclatency, funcspec

KERNTRACE_API_VERSION = "1.1"

MAX_ARGUMENTS = 6       # what every architecture passes in registers
NESTING = 64            # deepest recursion measured (core.model.MAX_NESTING)
_U64 = (1 << 64) - 1


def threshold_value(text, unit):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= 1e9 or value != value:
        raise UsageError("invalid minimum duration %r %s" % (text, unit))
    return value


def arguments_value(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value <= MAX_ARGUMENTS:
        raise UsageError("-a takes 0 to %d arguments, got %r" % (MAX_ARGUMENTS, text))
    return value


def hex_value(value):
    """bcc's "%x" of an unsigned 64-bit register value."""
    return "%x" % (int(value) & _U64)


class FuncSlower(Tool):
    name = "funcslower"
    metric = Metric(counter="slow_function_calls",
                    counter_help="Function calls slower than the threshold.")
    summary = "Trace slow kernel or user function calls (bcc funcslower)."
    examples = (
        ("funcslower vfs_write", "trace vfs_write calls slower than 1ms"),
        ("funcslower -m 10 vfs_write", "same, but slower than 10ms"),
        ("funcslower -u 10 c:open", "trace open calls slower than 10us"),
        ("funcslower -p 135 c:open", "trace pid 135 only"),
        ("funcslower -a 2 c:open", "show first two arguments to open"),
        ("funcslower -T -u 500 /usr/bin/bash:readline", "slow readline() calls, with times"),
        ("funcslower vfs_read 10000", "perf-tools form: vfs_read slower than 10000 us"),
        ("funcslower -L 1234 c:open 100", "perf-tools form: thread 1234, slower than 100 us"),
    )
    sample_args = ("-u", "1", "c:getppid")

    def add_arguments(self, p):
        p.add_argument("-p", "--pid", type=pid_value, help="trace this PID only")
        p.add_argument("-m", "--min-ms", type=lambda t: threshold_value(t, "ms"),
                       help="minimum duration to trace (ms)")
        p.add_argument("-u", "--min-us", type=lambda t: threshold_value(t, "us"),
                       help="minimum duration to trace (us)")
        p.add_argument("-a", "--arguments", type=arguments_value, default=0,
                       help="print this many entry arguments, as hex")
        p.add_argument("-T", "--time", action="store_true", help="show HH:MM:SS timestamp")
        p.add_argument("-t", "--timestamp", action="store_true",
                       help="show timestamp in seconds at us resolution")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration of trace, seconds (not in bcc)")
        p.add_argument("-L", "--tid", type=pid_value,
                       help="trace this thread only (perf-tools)")
        p.add_argument("-H", "--headers", action="store_true",
                       help="include column headers (perf-tools; always)")
        p.add_argument("-P", "--processes", action="store_true",
                       help="show process names and PIDs (perf-tools; always)")
        p.add_argument("-C", "--on-cpu", action="store_true",
                       help="on-CPU time only (perf-tools; refused: wall time is measured)")
        p.add_argument("function", help="function to trace")
        p.add_argument("latency_us", nargs="?", type=lambda t: threshold_value(t, "us"),
                       help="minimum duration to trace, us (perf-tools form)")

    def target(self, args):
        if getattr(args, "_target", None) is None:
            args._target = funcspec.expand_one(args.function, pid=args.pid)
        return args._target

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.min_ms is not None and args.min_us is not None:
            raise UsageError("-m and -u are mutually exclusive")
        if args.time and args.timestamp:
            raise UsageError("-T and -t are mutually exclusive")
        if args.latency_us is not None:
            if args.min_ms is not None or args.min_us is not None:
                raise UsageError("give the minimum duration once: -m, -u or latency_us")
            args.min_us = args.latency_us
        if args.on_cpu:
            raise UsageError("-C (on-CPU time only) is not supported: funcslower measures a "
                             "call's wall time, from entry to return")
        if args.pid is not None and args.tid is not None:
            raise UsageError("You can use -p or -L but not both")
        self.target(args)
        return args

    def threshold(self, args):
        """(text as bcc prints it, unit, nanoseconds)."""
        if args.min_us is not None:
            return "%g" % args.min_us, "us", int(round(args.min_us * 1000))
        ms = args.min_ms if args.min_ms is not None else 1.0
        return "%g" % ms, "ms", int(round(ms * 1000000))

    def arg_names(self, args):
        return ["arg%d" % i for i in range(args.arguments)]

    def measurement(self, args):
        t = self.target(args)
        names = self.arg_names(args)
        entry = Event("entry", t.entry(), fields=[Field(n) for n in names])
        ret = Event("ret", t.exit(), fields=[Field("retval")])
        filters = [Filter("pid", "==", args.pid)] if args.pid is not None else []
        if args.tid is not None:
            filters.append(Filter("tid", "==", args.tid))
        return Measurement(
            events=[entry, ret, funclatency.exit_event()],
            pair=Pair("entry", "ret", key=("tid",), carry=tuple(names), nested=NESTING,
                      min_latency=self.threshold(args)[2], abandon="exit"),
            aggregate=Records(fields=("comm", "pid", LATENCY, "retval") + tuple(names)),
            filters=filters, schedule=report_every(None, duration=args.duration))

    def printer(self, args, out, err):
        text, unit, _ns = self.threshold(args)
        divisor = 1000.0 if unit == "us" else 1000000.0
        label = self.target(args).label
        names = self.arg_names(args)
        cols = []
        if args.timestamp:
            cols.append(Column("TIME", seconds_since_first(), 10, fmt=lambda v: "%.6f" % v))
        cols += [Column("COMM", "comm", 14, truncate=True),
                 Column("PID", "pid", 6),
                 Column("LAT(%s)" % unit, LATENCY, 7, align=">",
                        fmt=lambda ns: "%.2f" % (ns / divisor)),
                 Column("RVAL", "retval", 16, align=">", fmt=hex_value),
                 Column("FUNC" + (" ARGS" if names else ""),
                        lambda record, ctx: " ".join(
                            [label] + ["0x%s" % hex_value(record.get(n)) for n in names]), 4)]
        return EventTablePrinter(
            out, err, cols, timestamps=args.time,
            banner="Tracing function calls slower than %s %s... Ctrl+C to quit." % (text, unit))


@hookimpl
def kerntrace_tools():
    return [FuncSlower()]


__all__ = ["FuncSlower"]
