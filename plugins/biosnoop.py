"""biosnoop: one line per block I/O, with its latency (bcc-compatible).

    command line  biosnoop [-h] [-Q] [-P] [-d DISK] [duration]
    events        start: block_rq_issue (-Q: block_rq_insert)
                  issue: block_rq_issue, the pair's mark (-Q only)
                  done:  block_rq_complete
    pair          start -> done on the same (dev, sector), carrying the
                  starting task's comm and pid and the request size; with
                  -Q the issue in between splits the time (an I/O the
                  scheduler never queued starts at its issue: QUE(ms) 0)
    aggregate     Records: comm, pid, dev, rwbs, sector, bytes, error,
                  latency (-Q: and queued)
    filters       -d DISK: dev on every event
    output        bcc 0.26's columns
                  TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  LAT(ms)
                  -P adds P after BYTES, -Q adds QUE(ms) before LAT(ms)

-Q measures as bcc's libbpf-tools biosnoop does: QUE(ms) from the insert
into the request queue to the issue to the driver, LAT(ms) from the issue
to the completion.
"""

from kerntrace.core.api import (LATENCY, QUEUED, Column, Event, EventTablePrinter, Measurement,
                                Metric, Records, Schedule, Tool, hookimpl, milliseconds,
                                seconds_since_first, seconds_value)

from . import blockdev

KERNTRACE_API_VERSION = "1.1"

# -Q: the issue to the driver, between the insert and the completion.
ISSUE = "issue"

RECORD_FIELDS = ("comm", "pid", "dev", "rwbs", "sector", "bytes", "error", LATENCY)


def issue_mark_event():
    """-Q: the issue to the driver, as the pair's mark (it reads the start's
    fields: an I/O never inserted starts its pair here)."""
    return Event(ISSUE, blockdev.BLOCK_RQ_ISSUE, fields=blockdev.request_fields())


class AccessPattern(object):
    """-P: S when an I/O starts where the previous one on the same disk
    ended (sequential), R otherwise, ? for a disk's first I/O."""

    def __init__(self):
        self.next_sector = {}

    def __call__(self, record, ctx=None):
        dev, sector = record["dev"], record["sector"]
        if sector == blockdev.FLUSH_SECTOR:
            return "?"
        expected = self.next_sector.get(dev)
        self.next_sector[dev] = sector + record["bytes"] // blockdev.SECTOR_BYTES
        if expected is None:
            return "?"
        return "S" if sector == expected else "R"


def biosnoop_columns(pattern=False, disk_name=None, queue=False):
    """bcc 0.26 biosnoop's columns: "%-11s %-14s %-7s %-9s %-1s %-10s %-7s"
    then, with no space after BYTES, ["%-1s " P], ["%7s " QUE(ms)] and
    "%7s" LAT(ms) (rows "%7.2f")."""
    disk_name = disk_name or blockdev.DiskNameFormatter()
    cols = [
        Column("TIME(s)", seconds_since_first(), 11, fmt=lambda v: "%.6f" % v),
        Column("COMM", "comm", 14, truncate=True),
        Column("PID", "pid", 7),
        Column("DISK", lambda r, ctx: disk_name(r["dev"]), 9),
        Column("T", lambda r, ctx: blockdev.Rwbs.type_letter_of(r["rwbs"]), 1),
        Column("SECTOR", lambda r, ctx: blockdev.sector_text(r["sector"]), 10),
        Column("BYTES", "bytes", 7),
    ]
    after_bytes = []
    if pattern:
        after_bytes.append(Column("P", AccessPattern(), 1))
    if queue:
        after_bytes.append(Column("QUE(ms)", lambda r, ctx: milliseconds(r[QUEUED]), 7,
                                  align=">"))
    after_bytes.append(Column("LAT(ms)", lambda r, ctx: milliseconds(r[LATENCY]), 7,
                              align=">"))
    after_bytes[0].sep = ""
    return cols + after_bytes


class BioSnoop(Tool):
    name = "biosnoop"
    metric = Metric(counter="block_io_requests", counter_help=blockdev.REQUESTS_HELP)
    summary = "Trace block I/O: one line per I/O with process, disk, size and latency."
    examples = (
        ("biosnoop", "trace all block I/O"),
        ("biosnoop -Q", "include OS queued time (QUE(ms) column)"),
        ("biosnoop -d sdc", "trace sdc only"),
        ("biosnoop -P", "show the I/O pattern (sequential or random)"),
        ("biosnoop 10", "trace for 10 seconds"),
    )

    def add_arguments(self, p):
        p.add_argument("-Q", "--queue", action="store_true",
                       help="include OS queued time: a QUE(ms) column (queue insert to issue)")
        p.add_argument("-d", "--disk", type=str, help="trace this disk only")
        p.add_argument("-P", "--pattern", action="store_true",
                       help="display block I/O pattern (sequential or random)")
        p.add_argument("duration", nargs="?",
                       type=lambda t: seconds_value(t, "duration"), default=None,
                       help="trace for this many seconds (default: until Ctrl-C)")

    def measurement(self, args):
        carry = ("comm", "pid", "bytes")
        if args.queue:
            events = [blockdev.insert_event(), issue_mark_event(), blockdev.completion_event()]
            pair = blockdev.request_pair(carry=carry, mark=ISSUE)
            fields = RECORD_FIELDS + (QUEUED,)
        else:
            events = [blockdev.issue_event(), blockdev.completion_event()]
            pair = blockdev.request_pair(carry=carry)
            fields = RECORD_FIELDS
        filters = []
        if args.disk is not None:
            filters.append(blockdev.device_filter(blockdev.resolve_disk(args.disk),
                                                  events=[e.name for e in events]))
        return Measurement(
            events=events,
            pair=pair,
            aggregate=Records(fields),
            filters=filters,
            schedule=Schedule(duration=args.duration))

    def printer(self, args, out, err):
        return EventTablePrinter(out, err, biosnoop_columns(pattern=args.pattern,
                                                            queue=args.queue))

    def formatters(self, args):
        return {"dev": blockdev.DiskNameFormatter()}


@hookimpl
def kerntrace_tools():
    return [BioSnoop()]


__all__ = ["BioSnoop", "biosnoop_columns", "AccessPattern", "issue_mark_event", "ISSUE"]
