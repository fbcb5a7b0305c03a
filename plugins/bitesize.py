"""bitesize: block I/O size histogram per process (bcc-compatible).

    command line  bitesize [-h] [-T] [-d DISK] [interval] [count]
    events        issue: block_rq_issue
    aggregate     Histogram(bytes // 1024, LOG2, Kbytes) per process name
                  (the task that issued the I/O)
    filters       -d DISK: dev == DISK
    schedule      every `interval` seconds, `count` times (default: one
                  histogram at Ctrl-C, as bcc's bitesize)
    output        bcc's `Process Name = dd` sections with log2 Kbytes
                  histograms

bcc's bitesize takes no options; -T, -d and the interval/count operands are
kerntrace additions (with none of them the run is exactly bcc's).
"""

from kerntrace.core.api import (LOG2, BccHistogramPrinter, Histogram, Measurement, Metric, Tool,
                                count_value, hookimpl, report_every, seconds_value)

from . import blockdev

KERNTRACE_API_VERSION = "1.1"
UNIT = "kbytes"
# bcc's label over the histogram.
UNIT_LABEL = "Kbytes"


class BiteSize(Tool):
    name = "bitesize"
    metric = Metric(histogram="block_io_size", unit="bytes", labels={"comm": "comm"},
                    histogram_help="Block I/O request size, per issuing process name.")
    summary = "Block I/O size histogram per process."
    examples = (
        ("bitesize", "I/O size histograms per process until Ctrl-C"),
        ("bitesize 5 1", "one 5 second summary"),
        ("bitesize -d vda", "only I/O to disk vda"),
        ("bitesize -T 1", "1 second summaries with a time line"),
    )

    def add_arguments(self, p):
        p.add_argument("-T", "--timestamp", action="store_true",
                       help="include timestamp on output")
        p.add_argument("-d", "--disk", type=str, help="trace this disk only")
        p.add_argument("interval", nargs="?", type=seconds_value, default=None,
                       help="output interval, in seconds (default: print at Ctrl-C)")
        p.add_argument("count", nargs="?", type=count_value, default=0,
                       help="number of outputs")

    def measurement(self, args):
        issue = blockdev.issue_event()
        filters = []
        if args.disk is not None:
            filters.append(blockdev.device_filter(blockdev.resolve_disk(args.disk),
                                                  events=(blockdev.START,)))
        return Measurement(
            events=[issue],
            aggregate=Histogram("bytes", scale=LOG2, unit=UNIT, divisor=1024, keys=("comm",)),
            filters=filters,
            # No interval: one report when Ctrl-C is hit, as bcc's bitesize.
            schedule=report_every(args.interval, count=args.count))

    def printer(self, args, out, err):
        return BccHistogramPrinter(out, err, banner="Tracing block I/O... Hit Ctrl-C to end.",
                                   section=lambda key: "Process Name = %s" % (key[0],),
                                   timestamps=args.timestamp, unit_label=UNIT_LABEL)

    def formatters(self, args):
        return {"dev": blockdev.DiskNameFormatter()}


@hookimpl
def kerntrace_tools():
    return [BiteSize()]


__all__ = ["BiteSize"]
