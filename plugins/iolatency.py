"""iolatency: block I/O latency as a power-of-two millisecond histogram.

A drop-in replacement for perf-tools' iolatency (same command line, usage
text, output, ERROR lines and exit statuses; see
../shared/reference/iolatency-compat.md), with its defects fixed: I/O is
paired whatever the kernel's block line layout, I/O in flight at an
interval boundary is counted when it completes, and Ctrl-C prints the
partial interval.

    command line  iolatency [-hQT] [-d device] [-i iotype] [interval [count]]
    events        start: block_rq_issue (-Q: block_rq_insert)
                  done:  block_rq_complete
    pair          start -> done on the same (dev, sector)
    aggregate     Histogram(latency, POW2_MS): rows 0->1, 1->2, 2->4 ... ms
    filters       -d: dev == MAJ<<20|MIN on both; -i: rwbs glob on both
    schedule      every `interval` seconds (default 1), `count` times
    output        perf-tools' histogram on stdout, banner first
"""

from kerntrace.core.api import (LATENCY, POW2_MS, Histogram, Measurement, Metric,
                                PerfToolsHistogramPrinter, Tool, UsageError, UsageShown,
                                count_value, hookimpl, parse_options, perf_tools_exit_status,
                                report_every, seconds_value)

from . import blockdev

KERNTRACE_API_VERSION = "1.1"

# perf-tools' usage text, byte for byte (the unbalanced quote is theirs).
USAGE = """USAGE: iolatency [-hQT] [-d device] [-i iotype] [interval [count]]
                 -d device       # device string (eg, "202,1)
                 -i iotype       # match type (eg, '*R*' for all reads)
                 -Q              # use queue insert as start time
                 -T              # timestamp on output
                 -h              # this usage message
                 interval        # summary interval, seconds (default 1)
                 count           # number of summaries
  eg,
       iolatency                 # summarize latency every second
       iolatency -Q              # include block I/O queue time
       iolatency 5 2             # 2 x 5 second summaries
       iolatency -i '*R*'        # trace reads
       iolatency -d 202,1        # trace device 202,1 only

See the man page and example file for more info.
"""


class IoLatency(Tool):
    name = "iolatency"
    metric = Metric(histogram="block_io_latency", unit="seconds",
                    histogram_help=blockdev.LATENCY_HELP)
    summary = "Block I/O latency as a power-of-two millisecond histogram (perf-tools drop-in)."
    examples = (
        ("iolatency", "summarize latency every second"),
        ("iolatency -Q", "include block I/O queue time"),
        ("iolatency 5 2", "2 x 5 second summaries"),
        ("iolatency -i '*R*'", "trace reads"),
        ("iolatency -d 202,1", "trace device 202,1 only"),
    )

    def parse_args(self, argv, prog=None):
        args, operands = parse_options(argv, USAGE,
                                       values=(("d", "device"), ("i", "iotype")),
                                       flags=(("Q", "queue"), ("T", "timestamp")))
        if len(operands) > 2:
            raise UsageError("too many arguments: %s" % " ".join(operands[2:]))
        # The banner repeats the interval as it was typed, as perf-tools does.
        args.interval_text = operands[0] if operands else "1"
        args.interval = seconds_value(args.interval_text, "interval")
        args.count = count_value(operands[1]) if len(operands) > 1 else 0
        blockdev.check_perf_tools_filters(args.device, args.iotype)
        return args

    def measurement(self, args):
        start = blockdev.insert_event() if args.queue else blockdev.issue_event()
        filters = blockdev.perf_tools_filters(args.device, args.iotype)
        return Measurement(
            events=[start, blockdev.completion_event()],
            pair=blockdev.request_pair(),
            aggregate=Histogram(LATENCY, scale=POW2_MS),
            filters=filters,
            schedule=report_every(args.interval, count=args.count))

    def printer(self, args, out, err):
        banner = "Tracing block I/O. Output every %s seconds.%s" % (
            args.interval_text, "" if args.count else " Ctrl-C to end.")
        return PerfToolsHistogramPrinter(out, err, banner, timestamps=args.timestamp)

    def formatters(self, args):
        return {"dev": blockdev.DiskNameFormatter()}

    def format_error(self, exc):
        return blockdev.perf_tools_error_lines(exc)

    def exit_status_for(self, exc):
        return perf_tools_exit_status(exc)


@hookimpl
def kerntrace_tools():
    return [IoLatency()]


__all__ = ["IoLatency", "USAGE", "UsageShown"]
