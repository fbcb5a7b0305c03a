"""biolatency: block I/O latency as a log2 histogram (bcc-compatible).

    command line  biolatency [-h] [-T] [-Q] [-m] [-D] [-F] [-e] [-j] [-d DISK]
                             [interval] [count]
    events        start: block_rq_issue (-Q: block_io_start, else
                  block_rq_insert, so the OS queue time is included)
                  done:  block_rq_complete
    pair          start -> done on the same (dev, sector)
    aggregate     Histogram(latency, LOG2, usecs or msecs), per disk (-D,
                  key dev) or per request flags (-F, key rwbs)
    filters       -d DISK: dev on start and completion
    schedule      every `interval` seconds, `count` times (default: one
                  histogram at Ctrl-C, as bcc)
    output        bcc's histogram; -e adds bcc's avg/total/count line;
                  -j is --json (real JSON lines, not bcc's Python dict)

Differences from bcc, on purpose: the banner goes to stderr; -D with -F and
bad values exit non-zero (bcc exits 0 for -D -F); -F names come from the
rwbs string the tracepoints record (no Priority/NoMerge/Idle/Background/
NoWait words, which rwbs does not carry; PreFlush shown).
"""

from kerntrace.core.api import (LATENCY, LOG2, BccHistogramPrinter, Histogram, Measurement, Metric,
                                Tool, UsageError, count_value, hookimpl, report_every,
                                seconds_value)

from . import blockdev

KERNTRACE_API_VERSION = "1.2"
BANNER = "Tracing block device I/O... Hit Ctrl-C to end."


class DiskSection(object):
    """-D section lines, as bcc prints them: "disk = vda"."""

    def __init__(self):
        self.disk_name = blockdev.DiskNameFormatter()

    def __call__(self, key):
        return "disk = %s" % self.disk_name(key[0])


def flags_section(key):
    """-F section lines, as bcc prints them: "flags = Sync-Write"."""
    return "flags = %s" % blockdev.rwbs_flags_name(key[0])


class BioLatency(Tool):
    name = "biolatency"
    metric = Metric(histogram="block_io_latency", unit="seconds",
                    histogram_help=blockdev.LATENCY_HELP,
                    labels={"dev": "device", "rwbs": "operation"})
    summary = "Summarize block device I/O latency as a histogram."
    display_options = ("-m", "-D", "-F", "-e")
    examples = (
        ("biolatency", "summarize block I/O latency as a histogram"),
        ("biolatency 1 10", "print 1 second summaries, 10 times"),
        ("biolatency -mT 1", "1s summaries, milliseconds, and timestamps"),
        ("biolatency -Q", "include OS queued time in I/O time"),
        ("biolatency -D", "show each disk device separately"),
        ("biolatency -F", "show I/O flags separately"),
        ("biolatency -j", "print JSON lines"),
        ("biolatency -e", "show extension summary (total, average)"),
        ("biolatency -d sdc", "trace sdc only"),
    )

    def add_arguments(self, p):
        p.add_argument("-T", "--timestamp", action="store_true",
                       help="include timestamp on output")
        p.add_argument("-Q", "--queued", action="store_true",
                       help="include OS queued time in I/O time")
        p.add_argument("-m", "--milliseconds", action="store_true",
                       help="millisecond histogram")
        p.add_argument("-D", "--disks", action="store_true",
                       help="print a histogram per disk device")
        p.add_argument("-F", "--flags", action="store_true",
                       help="print a histogram per set of I/O flags")
        p.add_argument("-e", "--extension", action="store_true",
                       help="summarize average/total value")
        p.add_argument("-j", dest="json", action="store_true",
                       help="JSON lines output (same as --json)")
        p.add_argument("-d", "--disk", type=str, help="trace this disk only")
        p.add_argument("interval", nargs="?", type=seconds_value, default=None,
                       help="output interval, in seconds")
        p.add_argument("count", nargs="?", type=count_value, default=0,
                       help="number of outputs")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.flags and args.disks:
            raise UsageError("can only use -D or -F")
        return args

    def measurement(self, args):
        start = blockdev.queued_event() if args.queued else blockdev.issue_event()
        keys = ("dev",) if args.disks else ("rwbs",) if args.flags else ()
        filters = []
        if args.disk is not None:
            filters.append(blockdev.device_filter(blockdev.resolve_disk(args.disk)))
        return Measurement(
            events=[start, blockdev.completion_event()],
            pair=blockdev.request_pair(),
            aggregate=Histogram(LATENCY, scale=LOG2,
                                unit="msecs" if args.milliseconds else "usecs", keys=keys),
            filters=filters,
            # No interval: one histogram when Ctrl-C is hit, as bcc.
            schedule=report_every(args.interval, count=args.count))

    def printer(self, args, out, err):
        section = None
        if args.disks:
            section = DiskSection()
        elif args.flags:
            section = flags_section
        return BccHistogramPrinter(out, err, banner=BANNER, section=section,
                                   timestamps=args.timestamp, average=args.extension)

    def formatters(self, args):
        fmt = {"dev": blockdev.DiskNameFormatter()}
        if args.flags:
            fmt["rwbs"] = blockdev.rwbs_flags_name
        return fmt


@hookimpl
def kerntrace_tools():
    return [BioLatency()]


__all__ = ["BioLatency"]
