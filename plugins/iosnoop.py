"""iosnoop: one line per block I/O (perf-tools command line and columns).

    command line  iosnoop [-hQst] [-d device] [-i iotype] [-p PID] [-n name]
                          [duration]
    events        start: block_rq_issue (-Q: block_rq_insert)
                  done:  block_rq_complete
    pair          start -> done on the same (dev, sector), carrying the
                  issuing task's comm and pid and the request size
    aggregate     Records: comm, pid, dev, rwbs, sector, bytes, latency
    filters       -d MAJ,MIN and -i GLOB on start and completion;
                  -p PID and -n NAME on the start (the issuing process)
    schedule      until Ctrl-C, or for `duration` seconds
    output        perf-tools' columns on stdout
                  [STARTs] [ENDs] COMM PID TYPE DEV BLOCK BYTES LATms

Unlike perf-tools, the duration mode streams lines as they happen too (the
in-kernel or per-CPU buffers make perf-tools' buffered mode unnecessary),
-n matches a fixed substring of the process name (perf-tools: an awk
regular expression), and PID is the process id (perf-tools: the thread id).
STARTs/ENDs are seconds on the trace clock, as perf-tools prints them.
"""

from kerntrace.core.api import (LATENCY, STR, Column, Filter, Measurement, Metric,
                                PerfToolsEventTablePrinter, Records, Schedule, Tool, UsageError,
                                hookimpl, milliseconds, parse_options, perf_tools_exit_status,
                                pid_value, seconds_value, trace_seconds)

from . import blockdev

KERNTRACE_API_VERSION = "1.1"

# perf-tools' usage text, less its words on buffering: lines stream with a
# duration too (see the module docstring).
USAGE = """USAGE: iosnoop [-hQst] [-d device] [-i iotype] [-p PID] [-n name]
               [duration]
                 -d device       # device string (eg, "202,1)
                 -i iotype       # match type (eg, '*R*' for all reads)
                 -n name         # process name to match on I/O issue
                 -p PID          # PID to match on I/O issue
                 -Q              # use queue insert as start time
                 -s              # include start time of I/O (s)
                 -t              # include completion time of I/O (s)
                 -h              # this usage message
                 duration        # duration seconds
  eg,
       iosnoop                   # watch block I/O live
       iosnoop 1                 # trace 1 sec
       iosnoop -Q                # include queueing time in LATms
       iosnoop -ts               # include start and end timestamps
       iosnoop -i '*R*'          # trace reads
       iosnoop -p 91             # show I/O issued when PID 91 is on-CPU
       iosnoop -Qp 91            # show I/O queued by PID 91, queue time

See the man page and example file for more info.
"""

RECORD_FIELDS = ("comm", "pid", "dev", "rwbs", "sector", "bytes", LATENCY)


def iosnoop_columns(start_times=False, end_times=False):
    """perf-tools iosnoop's columns: [%-15s STARTs] [%-15s ENDs]
    %-12.12s COMM, %-6s PID, %-4s TYPE, %-8s DEV, %-12s BLOCK, %-6s BYTES,
    %8s LATms (two decimals)."""
    cols = []
    if start_times:
        cols.append(Column("STARTs", lambda r, ctx: trace_seconds(r.ts - r[LATENCY]), 15))
    if end_times:
        cols.append(Column("ENDs", lambda r, ctx: trace_seconds(r.ts), 15))
    cols += [
        Column("COMM", "comm", 12, truncate=True),
        Column("PID", "pid", 6),
        Column("TYPE", "rwbs", 4),
        Column("DEV", lambda r, ctx: blockdev.dev_string(r["dev"]), 8),
        Column("BLOCK", lambda r, ctx: blockdev.sector_text(r["sector"]), 12),
        Column("BYTES", "bytes", 6),
        Column("LATms", lambda r, ctx: milliseconds(r[LATENCY]), 8, align=">"),
    ]
    return cols


class IoSnoop(Tool):
    name = "iosnoop"
    metric = Metric(counter="block_io_requests", counter_help=blockdev.REQUESTS_HELP)
    summary = "Trace block I/O: one line per I/O with latency (perf-tools drop-in)."
    examples = (
        ("iosnoop", "watch block I/O live"),
        ("iosnoop 1", "trace 1 second"),
        ("iosnoop -Q", "include queueing time in LATms"),
        ("iosnoop -ts", "include start and end timestamps"),
        ("iosnoop -i '*R*'", "trace reads"),
        ("iosnoop -p 91", "show I/O issued by PID 91"),
        ("iosnoop -Qp 91", "show I/O queued by PID 91, queue time"),
    )

    def parse_args(self, argv, prog=None):
        args, operands = parse_options(
            argv, USAGE,
            values=(("d", "device"), ("i", "iotype"), ("n", "name"), ("p", "pid")),
            flags=(("Q", "queue"), ("s", "start_times"), ("t", "end_times")))
        if args.pid is not None and args.name is not None:
            raise UsageError("ERROR: use either -p or -n.")
        if len(operands) > 1:
            raise UsageError("too many arguments: %s" % " ".join(operands[1:]))
        args.duration_text = operands[0] if operands else None
        args.duration = (seconds_value(args.duration_text, "duration")
                         if operands else None)
        if args.pid is not None:
            args.pid = pid_value(args.pid)
        if args.name is not None:
            if args.name == "" or "*" in args.name:
                raise UsageError("invalid process name %r" % (args.name,))
            Filter("comm", "glob", "*%s*" % args.name)   # validates the characters
        blockdev.check_perf_tools_filters(args.device, args.iotype)
        return args

    def measurement(self, args):
        start = blockdev.insert_event() if args.queue else blockdev.issue_event()
        filters = blockdev.perf_tools_filters(args.device, args.iotype)
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid, events=(blockdev.START,)))
        if args.name is not None:
            filters.append(Filter("comm", "glob", "*%s*" % args.name, events=(blockdev.START,),
                                  type=STR))
        return Measurement(
            events=[start, blockdev.completion_event()],
            pair=blockdev.request_pair(carry=("comm", "pid", "bytes")),
            aggregate=Records(RECORD_FIELDS),
            filters=filters,
            schedule=Schedule(duration=args.duration))

    def banner(self, args):
        """perf-tools' banner, except that with a duration perf-tools says
        "(buffered)" and prints the lines at the end; these stream."""
        who = ""
        if args.pid is not None:
            who = " issued by PID %d" % args.pid
        elif args.name is not None:
            who = ' issued by process name "%s"' % args.name
        if args.duration is not None:
            return "Tracing block I/O%s for %s seconds..." % (who, args.duration_text)
        return "Tracing block I/O%s. Ctrl-C to end." % who

    def printer(self, args, out, err):
        return PerfToolsEventTablePrinter(
            out, err, iosnoop_columns(args.start_times, args.end_times), self.banner(args))

    def formatters(self, args):
        return {"dev": blockdev.DiskNameFormatter()}

    def format_error(self, exc):
        lines = blockdev.perf_tools_error_lines(exc)
        if lines is None and str(exc).startswith("ERROR:"):
            return [str(exc)]
        return lines

    def exit_status_for(self, exc):
        return perf_tools_exit_status(exc)


@hookimpl
def kerntrace_tools():
    return [IoSnoop()]


__all__ = ["IoSnoop", "iosnoop_columns", "USAGE"]
