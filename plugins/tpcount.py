"""tpcount: count tracepoint events, per event (or per process).

The smallest complete tool: any tracepoints, counted per interval.  It reads
like its specification:

    events     one Event per tracepoint named on the command line
    aggregate  Count per logical event name (or per comm / pid with --by)
    filters    -p PID
    output     funccount-style table, or JSON / Prometheus
"""

from kerntrace.core.api import (EVENT_NAME, Count, CountTablePrinter, Event, Filter,
                                Measurement, Metric, Tool, Tracepoint, UsageError, hookimpl,
                                parse_tracepoint, pid_value, report_every, seconds_value)

KERNTRACE_API_VERSION = "1.1"


class TpCount(Tool):
    name = "tpcount"
    metric = Metric(counter="tracepoint_hits",
                    labels={"event": "tracepoint", "comm": "comm", "pid": "pid"},
                    counter_help="Tracepoint hits.")
    summary = "Count tracepoint events per interval."
    examples = (
        ("tpcount block:block_rq_issue", "count block I/O issues, print every second"),
        ("tpcount -i 5 -d 20 sched:sched_process_exec", "process execs, 5 s intervals, for 20 s"),
        ("tpcount --by comm syscalls:sys_enter_openat", "openat() calls per process name"),
        ("tpcount -p 181 syscalls:sys_enter_read", "read() calls of PID 181 only"),
    )
    sample_args = ("block:block_rq_issue",)

    def add_arguments(self, p):
        p.add_argument("tracepoints", nargs="+", metavar="CATEGORY:EVENT",
                       help="tracepoints to count (as in /sys/kernel/tracing/events)")
        p.add_argument("-i", "--interval", type=seconds_value, default=1.0,
                       help="summary interval, seconds (default 1)")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration, seconds (default: until Ctrl-C)")
        p.add_argument("-c", "--count", type=int, default=0,
                       help="number of summaries (default: until Ctrl-C)")
        p.add_argument("-p", "--pid", type=pid_value, help="only this process id")
        p.add_argument("--by", choices=("event", "comm", "pid"), default="event",
                       help="count per event (default), per process name or per PID")
        p.add_argument("-T", "--timestamp", action="store_true", help="print a time line per interval")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        for spec in args.tracepoints:
            parse_tracepoint(spec)      # every mistake before anything runs
        return args

    def measurement(self, args):
        events = []
        for i, spec in enumerate(args.tracepoints):
            cat, name = parse_tracepoint(spec)
            if any(e.probes[0] == Tracepoint(cat, name) for e in events):
                continue
            # The logical event name is the tracepoint name (unique within a run).
            ev_name = name if all(e.name != name for e in events) else "%s_%d" % (name, i)
            events.append(Event(ev_name, Tracepoint(cat, name)))
        filters = []
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid))
        keys = {"event": (EVENT_NAME,), "comm": ("comm",), "pid": ("pid",)}[args.by]
        if args.count < 0:
            raise UsageError("count must be >= 0")
        return Measurement(events=events, aggregate=Count(keys=keys), filters=filters,
                           schedule=report_every(args.interval, count=args.count,
                                                 duration=args.duration))

    def printer(self, args, out, err):
        header = {"event": "EVENT", "comm": "COMM", "pid": "PID"}[args.by]
        labels = {}
        for spec in args.tracepoints:
            cat, name = parse_tracepoint(spec)
            labels.setdefault(name, "%s:%s" % (cat, name))
        return CountTablePrinter(out, err, key_header=header,
                                 key_format=(lambda key: labels.get(key[0], str(key[0])))
                                 if args.by == "event" else None,
                                 banner="Tracing %d tracepoint%s. Hit Ctrl-C to end." % (
                                     len(args.tracepoints), "s" if len(args.tracepoints) != 1 else ""),
                                 timestamps=args.timestamp)


@hookimpl
def kerntrace_tools():
    return [TpCount()]
