"""exitsnoop: one line per process exit, with its age and its exit code
or the signal that ended it (bcc-compatible columns).

    command line  exitsnoop [-h] [-t] [--utc] [-x] [-p PID] [--per-thread]
    events        exit:        sched:sched_process_exit (the task ending)
                  exit_group:  syscalls:sys_enter_exit_group (its code)
                  thread_exit: syscalls:sys_enter_exit (a thread's code)
                  deliver:     signal:signal_deliver with the default
                               handler (a signal that ends the process)
                  generate:    signal:signal_generate, delivered (which
                               signal it was: the kernel delivers a fatal
                               non-core signal to each thread as SIGKILL)
                  fork:        sched:sched_process_fork (parent and start)
    aggregate     Records of them all (every event declares `value` and
                  `subject`); the tool's combiner joins them into one row
                  per exit, whatever backend ran
    filters       -p PID on the process's own events, on forks by it and
                  on signals sent to it
    output        bcc 0.26's columns
                  [TIME-TZ      ]PCOMM            PID     PPID    TID     AGE(s)  EXIT_CODE

sched_process_exit records no exit code (bcc reads task->exit_code in its
BPF program), so the code comes from the events before it, the same on
every backend: exit_group()'s argument, else a fatal signal.  AGE and PPID
of a task forked while tracing come from its fork event; of one that
existed before, from /proc/PID/stat read when tracing starts (best-effort:
listed in the record's best_effort; a parent that exits later reparents
the task, which this does not follow).
"""

import datetime
import os

from kerntrace.core.api import (EVENT_NAME, INT, Column, Event, EventTablePrinter, Field, Filter,
                                Measurement, Metric, Record, Records, Schedule, SyscallEntry, Tool,
                                Tracepoint, UsageError, hookimpl, pid_value)

from . import processes

KERNTRACE_API_VERSION = "1.1"

EXIT, EXIT_GROUP, THREAD_EXIT = "exit", "exit_group", "thread_exit"
DELIVER, GENERATE, FORK = "deliver", "generate", "fork"
EVENT_FIELDS = (EVENT_NAME, "comm", "pid", "tid", "value", "subject")
ROW_FIELDS = ("comm", "pid", "ppid", "tid", "age", "exit_code", "signal")


def _event(name, probe, value, subject=None, extra=()):
    """Every event declares `value` and `subject` (Records take the fields
    every event has): subject is the task it is about where it names one,
    else a copy of value."""
    return Event(name, probe, fields=[Field("value", INT, sources=(value,)),
                                      Field("subject", INT, sources=(subject or value,))]
                 + list(extra))


def exit_events():
    return [
        # sched_process_exit's pid is the exiting thread (the current task).
        _event(EXIT, Tracepoint("sched", "sched_process_exit"), "pid"),
        _event(EXIT_GROUP, SyscallEntry("exit_group"), "error_code"),
        _event(THREAD_EXIT, SyscallEntry("exit"), "error_code"),
        _event(DELIVER, Tracepoint("signal", "signal_deliver"), "sig",
               extra=[Field("handler", INT, sources=("sa_handler",))]),
        _event(GENERATE, Tracepoint("signal", "signal_generate"), "sig", "pid",
               extra=[Field("result", INT, sources=("result",))]),
        _event(FORK, Tracepoint("sched", "sched_process_fork"), "child_pid"),
    ]


def _pid(fields):
    """The process id of an event's task; where it is unknown (a kernel
    without task events, a task gone from /proc: None), its thread id, as
    for a single-threaded process (best-effort)."""
    return fields["pid"] if fields["pid"] is not None else fields["tid"]


class ExitCombiner(object):
    """Joins the event records into one row (a Record of ROW_FIELDS) per
    exit.  State is per process (tgid): exit_group() in one thread ends the
    others with the code it was given."""

    def __init__(self, per_thread=False, failed=False, pid=None, table=None):
        self.per_thread = per_thread
        self.failed = failed
        self.pid = pid
        self.table = table if table is not None else processes.ProcessTable(per_thread)
        self.code = processes.Bounded()        # tgid -> exit_group code
        self.thread_code = processes.Bounded()  # tid -> exit() code
        self.delivered = processes.Bounded()   # tgid -> fatal signal delivered
        self.generated = processes.Bounded()   # target id -> fatal signal sent
        self.parent = processes.Bounded()      # tid -> parent tgid (fork)
        self.started = processes.Bounded()     # tid -> fork ts

    def __call__(self, records):
        rows = []
        for r in sorted(records, key=lambda r: r.ts):
            f = r.fields
            ev = f.get(EVENT_NAME)
            if ev == EXIT:
                row = self._exit(r)
                if row is not None:
                    rows.append(row)
            elif ev == EXIT_GROUP:
                self.code[_pid(f)] = f["value"] & 0xFF
            elif ev == THREAD_EXIT:
                self.thread_code[f["tid"]] = f["value"] & 0xFF
            elif ev == DELIVER:
                self._deliver(_pid(f), f["value"])
            elif ev == GENERATE:
                if processes.fatal_by_default(f["value"]):
                    self.generated[f["subject"]] = f["value"]
            elif ev == FORK:
                self._fork(r)
        return rows

    def _fork(self, r):
        child = r.fields["subject"]
        for table in (self.code, self.delivered, self.generated, self.thread_code):
            table.pop(child, None)          # a reused id: a new task
        self.table.forget(child)
        self.parent[child] = _pid(r.fields)
        self.started[child] = r.ts

    def _deliver(self, pid, sig):
        if not processes.fatal_by_default(sig) or pid in self.delivered:
            return
        if sig == processes.SIGKILL:
            # The kernel delivers a fatal non-core signal, and an
            # exit_group() of another thread, to every thread as SIGKILL
            # (kernel/signal.c complete_signal(), get_signal()).
            if pid in self.code:
                return
            sig = self.generated.get(pid, sig)
        self.delivered[pid] = sig

    def _exit(self, r):
        f = r.fields
        pid, tid = _pid(f), f["tid"]
        if not self.per_thread and tid != pid:
            return None
        if self.pid is not None and pid != self.pid:
            return None
        code, sig = None, None
        if pid in self.code:
            code = self.code[pid]
        elif pid in self.delivered:
            sig = self.delivered[pid]
        elif tid in self.thread_code:
            code = self.thread_code[tid]
        if self.failed and code == 0:
            return None
        best_effort = ["pid"] if f["pid"] is None else []
        ppid = self.parent.get(tid)
        started = self.started.get(tid)
        if ppid is None and tid in self.table.parent:
            ppid = self.table.parent[tid]
            best_effort.append("ppid")
        if started is None and tid in self.table.started:
            started = self.table.started[tid]
            best_effort.append("age")
        age = max(0, r.ts - started) / 1e9 if started is not None else None
        if tid == pid:
            for table in (self.code, self.delivered, self.generated):
                table.pop(pid, None)
        self.thread_code.pop(tid, None)
        return Record(r.ts, {"comm": f["comm"], "pid": pid, "ppid": ppid, "tid": tid,
                             "age": age, "exit_code": code, "signal": sig},
                      best_effort=best_effort)


def exit_text(record, ctx=None):
    """bcc's EXIT_CODE: "0", "code N", "signal N (NAME)"; "?" where no
    event before the exit told (it ran before tracing started)."""
    sig = record.get("signal")
    if sig is not None:
        return "signal %d (%s)" % (sig, processes.signal_name(sig))
    code = record.get("exit_code")
    if code is None:
        return "?"
    return "0" if code == 0 else "code %d" % code


def _clock(utc):
    def now(record, ctx):
        t = datetime.datetime.utcnow() if utc else datetime.datetime.now()
        return t.strftime("%H:%M:%S.%f")[:-3]
    return now


def exitsnoop_columns(timestamp=False, utc=False):
    """bcc 0.26 exitsnoop: ["%-13s" TIME-TZ] "%-16s %-7d %-7d %-7d %-7.2f "
    PCOMM PID PPID TID AGE(s), then the exit code or signal."""
    cols = []
    if timestamp:
        import time
        title = "TIME-" + ("UTC" if utc else time.strftime("%Z"))
        cols.append(Column(title, _clock(utc), 13, sep=""))
    cols += [
        Column("PCOMM", "comm", 16, sep=""),
        Column("PID", "pid", 7),
        Column("PPID", lambda r, ctx: "?" if r.get("ppid") is None else r["ppid"], 7),
        Column("TID", "tid", 7),
        Column("AGE(s)", lambda r, ctx: "?" if r.get("age") is None else "%.2f" % r["age"], 7),
        Column("EXIT_CODE", exit_text, 10),
    ]
    return cols


# On stderr (bcc prints none): when the table starts, tracing is on.
BANNER = ("Tracing process exits. Ctrl-C to end. (AGE and PPID of processes started "
          "before now: from /proc, best-effort)")


class ExitSnoop(Tool):
    name = "exitsnoop"
    metric = Metric(counter="process_exits", counter_help="Process and thread exits.")
    summary = "Trace process termination: exit code or fatal signal, and the process's age."
    description = ("The exit code is exit_group()'s argument, or the fatal signal delivered "
                   "before the exit; PPID and AGE of a process that existed before tracing "
                   "started are read from /proc/PID/stat when it starts (best-effort).")
    best_effort = ("AGE(s) and PPID of a process that existed before tracing started, from "
                   "/proc/PID/stat read when it starts",
                   "PID where the backend cannot tell a thread's process (no task events, "
                   "task gone from /proc): its thread id")
    examples = (
        ("exitsnoop", "trace all process termination"),
        ("exitsnoop -x", "trace only fails, exclude exit(0)"),
        ("exitsnoop -t", "include timestamps (local time)"),
        ("exitsnoop --utc", "include timestamps (UTC)"),
        ("exitsnoop -p 181", "only trace PID 181"),
        ("exitsnoop --per-thread", "trace per thread termination"),
    )

    def add_arguments(self, p):
        p.add_argument("-t", "--timestamp", action="store_true",
                       help="include timestamp (local time default)")
        p.add_argument("--utc", action="store_true", help="include timestamp in UTC (-t implied)")
        p.add_argument("-p", "--pid", type=pid_value, help="trace this PID only")
        p.add_argument("-x", "--failed", action="store_true",
                       help="trace only fails, exclude exit(0)")
        p.add_argument("--per-thread", action="store_true", help="trace per thread termination")

    def measurement(self, args):
        filters = []
        if args.pid is not None and not getattr(args, "input_file", None) \
                and not os.path.isdir("/proc/%d" % args.pid):
            raise UsageError("no process with PID %d" % args.pid)
        if args.pid is not None:
            filters += [Filter("pid", "==", args.pid,
                               events=(EXIT, EXIT_GROUP, THREAD_EXIT, DELIVER, FORK)),
                        Filter("subject", "==", args.pid, events=(GENERATE,))]
        filters += [Filter("handler", "==", 0, events=(DELIVER,)),
                    Filter("result", "==", 0, events=(GENERATE,))]
        return Measurement(events=exit_events(), aggregate=Records(EVENT_FIELDS),
                           filters=filters, schedule=Schedule())

    def combiner(self, args):
        return ExitCombiner(per_thread=args.per_thread, failed=args.failed, pid=args.pid,
                            table=None if not getattr(args, "input_file", None)
                            else processes.ProcessTable(proc=None))

    def printer(self, args, out, err):
        return EventTablePrinter(out, err, exitsnoop_columns(args.timestamp or args.utc,
                                                             args.utc), banner=BANNER)


@hookimpl
def kerntrace_tools():
    return [ExitSnoop()]


__all__ = ["ExitSnoop", "ExitCombiner", "exitsnoop_columns", "exit_text", "exit_events",
           "ROW_FIELDS"]
