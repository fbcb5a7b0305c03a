"""funccount: count calls of kernel functions, user functions,
tracepoints and USDT probes (bcc-compatible).

    command line  funccount [-h] [-p PID] [-i INTERVAL] [-d DURATION] [-T] [-r]
                            [-c CPU] [-t TOP] [--max-functions N] pattern
                  (perf-tools' `funccount [-hT] [-i secs] [-d secs] [-t top]
                  funcstring` is a subset: the options mean the same)
    events        one Event per function (or tracepoint) the pattern names on
                  this host, expanded in Python (plugins/funcspec.py): kernel
                  functions (kprobe; the eBPF backend may use fentry, the
                  ftrace backend the function profiler or tracer), user
                  functions (uprobe, at the ELF symbol's file offset),
                  tracepoints, USDT probes (u:LIB:PROBE: a uprobe at each
                  site of the probe, its semaphore as the uprobe's
                  reference counter)
    aggregate     Count per event, printed under the function's name
    filters       -p PID (process id), -c CPU
    schedule      every -i seconds; -d alone: one report after that long;
                  neither: one report at Ctrl-C, as bcc
    output        bcc's FUNC/COUNT table, ascending by count; -t TOP: the
                  TOP largest counts only (perf-tools)

Differences from bcc, on purpose: the banner goes to stderr; a pattern
matching more than --max-functions (default 1000) is refused, saying how
many matched; USDT probes also take bpftrace's u:LIB:PROVIDER:PROBE and are
printed by name (provider:name where two providers share one); bcc's -D
(print the BPF program) is --print-program.
"""

from kerntrace.core.api import (EVENT_NAME, Count, CountTablePrinter, Event, Filter, Measurement,
                                Metric, Tool, UsageError, hookimpl, report_every, top_value)

from . import funcspec

KERNTRACE_API_VERSION = "1.2"


def cpu_value(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < 65536:
        raise UsageError("invalid CPU %r" % (text,))
    return value


class FuncCount(Tool):
    name = "funccount"
    metric = Metric(counter="function_calls", labels={"event": "function"},
                    counter_help="Calls of traced functions (or tracepoint hits).")
    summary = "Count functions, tracepoints, USDT probes (bcc funccount)."
    display_options = ("-t",)
    examples = (
        ("funccount 'vfs_*'", "count kernel fns starting with \"vfs\""),
        ("funccount -r '^vfs.*'", "same as above, using regular expressions"),
        ("funccount -Ti 5 'vfs_*'", "output every 5 seconds, with timestamps"),
        ("funccount -d 10 'vfs_*'", "trace for 10 seconds only"),
        ("funccount -p 185 'vfs_*'", "count vfs calls for PID 185 only"),
        ("funccount t:sched:sched_fork", "count calls to the sched_fork tracepoint"),
        ("funccount c:malloc", "count all malloc() calls in libc"),
        ("funccount -p 185 'c:str*'", "count str* calls in the libc PID 185 maps"),
        ("funccount /usr/bin/bash:readline", "count readline() calls of bash"),
        ("funccount 'u:/usr/bin/python3:gc__*'", "count Python's gc USDT probes"),
        ("funccount -p 185 'u:/opt/app:prov:*'", "count USDT probes of provider prov, PID 185"),
        ("funccount -c 1 'vfs_*'", "count vfs calls on CPU 1 only"),
        ("funccount -t 5 -i 1 'vfs_*'", "the 5 most called only, every second"),
    )
    sample_args = ("c:getppid",)

    def add_arguments(self, p):
        funcspec.add_summary_options(p)
        p.add_argument("-c", "--cpu", type=cpu_value, help="trace this CPU only")
        p.add_argument("-t", "--top", type=top_value, metavar="TOP",
                       help="show the TOP most frequent functions only (perf-tools)")
        funcspec.add_pattern_arguments(p, "events")

    def targets(self, args):
        return funcspec.pattern_targets(args)

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        self.targets(args)      # every mistake before anything runs
        return args

    def event_names(self, args):
        """The logical event name of each target: its function (or
        tracepoint) name, which --json shows as the key; "f<N>" where two
        targets share a name (tracepoints of two categories)."""
        targets = self.targets(args)
        names = [t.name for t in targets]
        return [n if names.count(n) == 1 else "f%d" % i for i, n in enumerate(names)]

    def measurement(self, args):
        events = [Event(n, t.entry()) for n, t in zip(self.event_names(args),
                                                       self.targets(args))]
        filters = []
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid))
        if args.cpu is not None:
            filters.append(Filter("cpu", "==", args.cpu))
        interval = args.interval
        if interval is None and args.duration is not None:
            interval = args.duration        # bcc: -d alone is one interval
        return Measurement(events=events, aggregate=Count(keys=(EVENT_NAME,)),
                           filters=filters,
                           schedule=report_every(interval, duration=args.duration))

    def printer(self, args, out, err):
        targets = self.targets(args)
        return CountTablePrinter(
            out, err, key_header="FUNC",
            banner='Tracing %d functions for "%s"... Hit Ctrl-C to end.' % (
                len(targets), args.pattern),
            timestamps=args.timestamp, top=args.top)

    def formatters(self, args):
        # every output shows the function (or category:tracepoint)
        labels = dict(zip(self.event_names(args), (t.label for t in self.targets(args))))
        return {EVENT_NAME: lambda name: labels.get(name, name)}


@hookimpl
def kerntrace_tools():
    return [FuncCount()]


__all__ = ["FuncCount"]
