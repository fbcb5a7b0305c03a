"""execsnoop: one line per exec() of a new program, with its parent, the
exec's return value and its arguments (bcc-compatible columns).

    command line  execsnoop [-h] [-T] [-t] [-x] [-U] [-n NAME] [-l LINE]
                            [--max-args MAX_ARGS]
    events        ret:     each of syscalls:sys_exit_execve and
                           sys_exit_execveat (the exec's result, in the new
                           program's name when it succeeded)
                  fork:    sched:sched_process_fork (who is the parent)
                  args:    each of syscalls:sys_enter_execve and
                           sys_enter_execveat, argv[0..N] read from the
                           user array (model Field.element), in the
                           "argv" variant only
    variants      argv: with the args event (eBPF reads the array in the
                        kernel);
                  proc: without it (ftrace: no fetch can read an array's
                        elements up to its end), ARGS from /proc
    aggregate     Records of them all (ret and fork declare `value` and
                  `subject`, args a0..aN); the tool's combiner makes one
                  row per exec's return, whatever backend ran
    output        bcc 0.26's columns
                  [TIME     ][TIME(s) ][UID   ]PCOMM            PID     PPID    RET ARGS

ARGS are the exec's argv as the caller passed it, read at the exec's start
where the backend can (eBPF), failed execs' too; else the new program's
/proc/PID/cmdline, read when its exec is reported (a fraction of a second
after it): best-effort, listed in the record's best_effort, and shown as
"?" for a program that had already exited (or a failed exec).  PPID comes
from the fork event of a process forked while tracing, else from
/proc/PID/stat (best-effort).
"""

import re

from kerntrace.core.api import (EVENT_NAME, INT, USTR, Column, Each, Event, EventTablePrinter,
                                Field, Measurement, Metric, Record, Records, Schedule, SyscallEntry,
                                SyscallExit, Tool, Tracepoint, UsageError, Variant, count_value,
                                hookimpl)

from . import processes

KERNTRACE_API_VERSION = "1.1"

RET, FORK, ARGS = "ret", "fork", "args"
EVENT_FIELDS = (EVENT_NAME, "comm", "pid", "tid", "value", "subject")
# The most arguments read in the kernel (bcc's execsnoop: MAXARG 20), one
# more to tell there were more ("...").
MAX_KERNEL_ARGS = 20
ROW_FIELDS = ("comm", "pid", "ppid", "ret", "args", "uid")
DEFAULT_MAX_ARGS = 20


def _event(name, probe, value, subject=None):
    return Event(name, probe, fields=[Field("value", INT, sources=(value,)),
                                      Field("subject", INT, sources=(subject or value,))])


def arg_names(n):
    return tuple("a%d" % i for i in range(n))


def exec_events(n_args=0):
    """The events; with n_args, the args event reading argv[0..n_args-1]."""
    events = [
        _event(RET, Each(SyscallExit("execve"), SyscallExit("execveat")), "ret"),
        _event(FORK, Tracepoint("sched", "sched_process_fork"), "child_pid"),
    ]
    if n_args:
        events.append(Event(ARGS, Each(SyscallEntry("execve"), SyscallEntry("execveat")),
                            fields=[Field(name, USTR, sources=("argv",), element=i)
                                    for i, name in enumerate(arg_names(n_args))]))
    return events


def kernel_args(fields, max_args):
    """The argument list of an args record (None where it read none): up to
    the first element past the array's end (empty), "..." for more than
    max_args."""
    out = []
    for name in arg_names(max_args + 1):
        value = fields.get(name)
        if not value:
            break
        out.append(value)
    if not out:
        return None
    return out[:max_args] + (["..."] if len(out) > max_args else [])


def uid_of(pid, proc=processes.PROC):
    """The real uid of a running process, from /proc/PID/status, or None."""
    data = processes._read("%s/%d/status" % (proc, pid))
    for line in (data or b"").splitlines():
        if line.startswith(b"Uid:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


class ExecCombiner(object):
    """Joins the event records into one row (a Record of ROW_FIELDS) per
    exec return: successful ones, and failed ones with `failed`."""

    def __init__(self, failed=False, name=None, line=None, max_args=DEFAULT_MAX_ARGS,
                 proc=processes.PROC, table=None):
        self.failed = failed
        self.name = re.compile(name) if name else None
        self.line = re.compile(line) if line else None
        self.max_args = max_args
        self.proc = proc
        self.table = table if table is not None else processes.ProcessTable(proc=proc)
        self.parent = processes.Bounded()     # tid -> (parent tgid, guessed) (fork)
        self.argv = processes.Bounded()       # tid -> argv read at its exec's start

    def __call__(self, records):
        rows = []
        for r in sorted(records, key=lambda r: r.ts):
            f = r.fields
            ev = f.get(EVENT_NAME)
            if ev == FORK:
                # (the forking thread where its process id is unknown:
                # the parent of a single-threaded process, best-effort)
                self.parent[f["subject"]] = (f["pid"], False) if f["pid"] is not None \
                    else (f["tid"], True)
                self.table.forget(f["subject"])
            elif ev == ARGS:
                self.argv[f["tid"]] = kernel_args(f, min(self.max_args, MAX_KERNEL_ARGS))
            elif ev == RET:
                row = self._ret(r)
                if row is not None:
                    rows.append(row)
        return rows

    def _ret(self, r):
        f = r.fields
        pid, ret = f["pid"], f["value"]
        if ret != 0 and not self.failed:
            return None
        if pid is None and ret == 0:
            # The process id is unknown (a kernel without task events, a
            # task gone from /proc); a successful exec made its caller the
            # thread group's leader (fs/exec.c de_thread()): tid is the pid.
            pid = f["tid"]
        best_effort = []
        # read at the exec's start, by the thread that called it (one
        # other than the leader takes the leader's id when it succeeds)
        args = self.argv.pop(f["tid"], None)
        known = pid is not None and self.proc is not None
        if args is None and ret == 0 and known:
            args = processes.cmdline(pid, self.proc)
            best_effort.append("args")
            if args is not None:
                args = args[:self.max_args] + (["..."] if len(args) > self.max_args else [])
        text = " ".join(args) if args is not None else None
        if self.name and not self.name.search(f["comm"] or ""):
            return None
        if self.line and (text is None or not self.line.search(text)):
            return None
        ppid, guessed = self.parent.get(pid, (None, False)) if pid is not None \
            else (None, False)
        if guessed:
            best_effort.append("ppid")
        if ppid is None and known:
            st = processes.stat_fields(pid, proc=self.proc)
            ppid = st[0] if st else self.table.parent.get(pid)
            best_effort.append("ppid")
        uid = uid_of(pid, self.proc) if known else None
        return Record(r.ts, {"comm": f["comm"], "pid": pid, "ppid": ppid, "ret": ret,
                             "args": text, "uid": uid},
                      best_effort=best_effort + (["uid"] if uid is not None else []))


def args_text(record, ctx=None):
    text = record.get("args")
    return "?" if text is None else text.replace("\n", "\\n")


def execsnoop_columns(time_column=False, timestamp=False, uid=False):
    """bcc 0.26 execsnoop: ["%-9s" TIME] ["%-8.3f" TIME(s)] ["%-6d" UID]
    "%-16s %-7d %-7s %3d %s" PCOMM PID PPID RET ARGS."""
    cols = []
    if time_column:
        import time
        cols.append(Column("TIME", lambda r, ctx: time.strftime("%H:%M:%S"), 9, sep=""))
    if timestamp:
        first = []

        def elapsed(record, ctx):
            if not first:
                first.append(record.ts)
            return "%.3f" % ((record.ts - first[0]) / 1e9)
        cols.append(Column("TIME(s)", elapsed, 8, sep=""))
    if uid:
        cols.append(Column("UID", lambda r, ctx: "?" if r.get("uid") is None else r["uid"], 6,
                           sep=""))
    cols += [
        Column("PCOMM", "comm", 16, sep=""),
        Column("PID", "pid", 7),
        Column("PPID", lambda r, ctx: "?" if not r.get("ppid") else r["ppid"], 7),
        Column("RET", "ret", 3, align=">"),
        Column("ARGS", args_text, 0),
    ]
    return cols


def regex_value(what):
    def parse(text):
        try:
            re.compile(text)
        except (re.error, TypeError) as e:
            raise UsageError("invalid %s %r: %s" % (what, text, e))
        return text
    return parse


# On stderr (bcc prints none): when the table starts, tracing is on.
BANNER = "Tracing exec()s. Ctrl-C to end. (ARGS from /proc/PID/cmdline: best-effort)"
ARGV_BANNER = "Tracing exec()s. Ctrl-C to end."


class ExecTablePrinter(EventTablePrinter):
    """Says in the banner where ARGS come from: the variant that runs."""

    def start(self, ctx):
        variant = getattr(ctx, "variant", None)
        self.banner = ARGV_BANNER if variant is not None and variant.name == "argv" else BANNER
        EventTablePrinter.start(self, ctx)


class ExecSnoop(Tool):
    name = "execsnoop"
    metric = Metric(counter="process_execs", counter_help="Program executions (exec calls).")
    summary = "Trace new processes: one line per exec() with parent, result and arguments."
    description = ("ARGS are the exec's argv, read in the kernel where the backend can "
                   "(eBPF); else from /proc/PID/cmdline when the exec is reported "
                   "(best-effort: \"?\" for a program that has exited by then, and for "
                   "failed execs).  --explain says which.")
    best_effort = ("ARGS, where no backend reads argv at the exec (ftrace), from "
                   "/proc/PID/cmdline when the exec is reported; \"?\" once the program has "
                   "exited, and for failed execs",
                   "-U's UID from /proc/PID/status when the exec is reported",
                   "PPID from /proc/PID/stat for a process not forked while tracing, and "
                   "the forking thread's id where its process id is unknown")
    examples = (
        ("execsnoop", "trace all exec() syscalls"),
        ("execsnoop -x", "include failed exec()s"),
        ("execsnoop -T", "include time (HH:MM:SS)"),
        ("execsnoop -U", "include UID"),
        ("execsnoop -t", "include timestamps"),
        ("execsnoop -n main", "only print command lines containing \"main\""),
        ("execsnoop -l tpkg", "only print command where arguments contains \"tpkg\""),
        ("execsnoop --max-args 5", "print at most 5 arguments"),
    )

    def add_arguments(self, p):
        p.add_argument("-T", "--time", action="store_true",
                       help="include time column on output (HH:MM:SS)")
        p.add_argument("-t", "--timestamp", action="store_true",
                       help="include timestamp on output")
        p.add_argument("-x", "--fails", action="store_true", help="include failed exec()s")
        p.add_argument("-n", "--name", type=regex_value("name"),
                       help="only print commands matching this name (regex)")
        p.add_argument("-l", "--line", type=regex_value("line"),
                       help="only print commands where arg contains this line (regex)")
        p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
        p.add_argument("--max-args", type=count_value, default=DEFAULT_MAX_ARGS,
                       help="maximum number of arguments displayed (default 20)")

    def variants(self, args):
        n = min(args.max_args, MAX_KERNEL_ARGS) + 1
        return [
            Variant("argv", Measurement(events=exec_events(n),
                                        aggregate=Records(EVENT_FIELDS + arg_names(n)),
                                        schedule=Schedule()),
                    "ARGS: argv read at the exec (at most %d)" % MAX_KERNEL_ARGS),
            Variant("proc", Measurement(events=exec_events(), aggregate=Records(EVENT_FIELDS),
                                        schedule=Schedule()),
                    "ARGS: /proc/PID/cmdline when the exec is reported (best-effort)"),
        ]

    def measurement(self, args):
        return self.variants(args)[0].measurement

    def combiner(self, args):
        replay = bool(getattr(args, "input_file", None))
        return ExecCombiner(failed=args.fails, name=args.name, line=args.line,
                            max_args=args.max_args, proc=None if replay else processes.PROC)

    def printer(self, args, out, err):
        return ExecTablePrinter(out, err, execsnoop_columns(args.time, args.timestamp,
                                                            args.print_uid), banner=BANNER)


@hookimpl
def kerntrace_tools():
    return [ExecSnoop()]


__all__ = ["ExecSnoop", "ExecCombiner", "execsnoop_columns", "exec_events", "ROW_FIELDS"]
