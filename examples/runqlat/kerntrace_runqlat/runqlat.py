"""runqlat: scheduler run queue latency as a log2 histogram (as bcc's).

    events     wakeup:     sched:sched_wakeup      (a task made runnable)
               wakeup_new: sched:sched_wakeup_new  (a new task's first wakeup)
               run:        sched:sched_switch      (a task switched in)
    pair       a wakeup of a task -> the switch that runs it, by the woken
               task's thread id ("task")
    aggregate  Histogram(latency, LOG2, usecs or msecs), one per thread
               (-L) or per task name (-C)
    filters    never task 0 (the idle task); -t TID: that thread only
    schedule   every `interval` seconds, `count` times (default: one
               histogram at Ctrl-C, as bcc)

The tracepoints name the woken task in their payload: sched_wakeup's `pid`
and sched_switch's `next_pid` are thread ids of that task.  The context
fields (pid, tid, comm) are those of the task running when the event fires
-- the waker, and the task switched out -- so they are of no use here.
Both payload fields have kept their names and types since before Linux 3.10
(include/trace/events/sched.h), so one source each serves every kernel.
"""

from .kerntrace_api import (FOREVER, LATENCY, LOG2, STR, BccHistogramPrinter, Event, Field,
                            Filter, Histogram, Measurement, Pair, Schedule, Tool, Tracepoint,
                            UsageError, count_value, seconds_value)

BANNER = "Tracing run queue latency... Hit Ctrl-C to end."

# The woken (or switched-in) task's thread id, under one name on every
# event so that it can key the pair.  sched_wakeup's payload field is called
# "pid", like the context field, so the logical field gets another name and
# says where it reads from.
TASK = "task"
TASK_COMM = "task_comm"


def wakeup_event(name, tracepoint):
    return Event(name, Tracepoint("sched", tracepoint),
                 fields=[Field(TASK, sources=("pid",))])


def run_event():
    return Event("run", Tracepoint("sched", "sched_switch"),
                 fields=[Field(TASK, sources=("next_pid",)),
                         Field(TASK_COMM, STR, sources=("next_comm",))])


def run_queue_pair():
    """From the wakeup of a task to the switch that runs it.  A pair has one
    start event; the mark supplies the second: a mark with no start pending
    starts the pair itself, and the latency is measured from the mark when
    there is one.  So a new task is timed from sched_wakeup_new, any other
    from sched_wakeup.  A task woken again before it ran is timed from the
    last wakeup, as bcc does (its map update replaces the start time)."""
    return Pair("wakeup_new", "run", key=(TASK,), mark="wakeup")


def thread_id(text):
    """-t TID: a thread id > 0."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise UsageError("invalid thread id %r: expected a whole number > 0" % (text,))
    return value


class RunqLat(Tool):
    name = "runqlat"
    summary = "Summarize scheduler run queue latency as a histogram."
    description = ("The time from a task's wakeup to when it runs on a CPU.  Time a task\n"
                   "waits after being preempted is not included (see the README).")
    examples = (
        ("runqlat", "summarize run queue latency as a histogram"),
        ("runqlat 1 10", "print 1 second summaries, 10 times"),
        ("runqlat -mT 1", "1s summaries, milliseconds, and timestamps"),
        ("runqlat -L", "show each thread id separately"),
        ("runqlat -C", "show each task name separately"),
        ("runqlat -t 185", "trace thread 185 only"),
        ("runqlat --json 5 1", "one 5 second summary as a JSON line"),
    )

    def add_arguments(self, p):
        p.add_argument("-T", "--timestamp", action="store_true",
                       help="include timestamp on output")
        p.add_argument("-m", "--milliseconds", action="store_true",
                       help="millisecond histogram")
        p.add_argument("-L", "--tids", action="store_true",
                       help="print a histogram per thread ID")
        p.add_argument("-C", "--comms", action="store_true",
                       help="print a histogram per task name")
        p.add_argument("-t", "--tid", type=thread_id, metavar="TID",
                       help="trace this thread ID only")
        p.add_argument("interval", nargs="?", type=seconds_value, default=None,
                       help="output interval, in seconds")
        p.add_argument("count", nargs="?", type=count_value, default=0,
                       help="number of outputs")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.tids and args.comms:
            raise UsageError("can only use -L or -C")
        return args

    def measurement(self, args):
        keys = (TASK,) if args.tids else (TASK_COMM,) if args.comms else ()
        # The idle task is never woken; its switches in would only be
        # unmatched ends.  bcc skips pid 0 too.
        filters = [Filter(TASK, "!=", 0)]
        if args.tid is not None:
            filters.append(Filter(TASK, "==", args.tid))
        # bcc's "no interval": one histogram when Ctrl-C is hit.
        interval = args.interval if args.interval is not None else FOREVER
        return Measurement(
            events=[wakeup_event("wakeup_new", "sched_wakeup_new"),
                    wakeup_event("wakeup", "sched_wakeup"), run_event()],
            pair=run_queue_pair(),
            aggregate=Histogram(LATENCY, scale=LOG2,
                                unit="msecs" if args.milliseconds else "usecs", keys=keys),
            filters=filters,
            schedule=Schedule(interval=interval, count=args.count))

    def printer(self, args, out, err):
        section = None
        if args.tids:
            section = lambda key: "tid = %d" % key[0]  # noqa: E731 (bcc's label)
        elif args.comms:
            section = lambda key: "comm = %s" % key[0]  # noqa: E731
        return BccHistogramPrinter(out, err, banner=BANNER, section=section,
                                   timestamps=args.timestamp)
