"""killsnoop: one line per kill() with sender, signal, target and result
(bcc's killsnoop columns and options).

    command line  killsnoop [-h] [-x] [-p PID] [-T TPID] [-s SIGNAL] [-n NAME]
                            [-d DURATION]   (-n, -d: perf-tools' killsnoop)
                            [--syscall kill|tkill|tgkill]
    events        enter: syscalls:sys_enter_kill (target pid, sig) (or of
                  tkill: target thread; tgkill: target tgid)
                  exit:  syscalls:sys_exit_kill (ret) (or of tkill, tgkill)
    pair          enter -> exit of the same thread, carrying the sender's
                  comm and pid, the target and the signal
    aggregate     Records: pid, comm, sig, tpid, ret
    filters       -p PID (sender) on both events, -T TPID, -s SIGNAL and
                  -n NAME (sender's name contains) on the enter, -x (ret < 0)
                  on the exit
    output        bcc's layout: "%-9s %-*s %-16s %-4s %-*s %s"
                  TIME PID COMM SIG TPID RESULT (PID width from pid_max)

Like bcc's and perf-tools' killsnoop it traces kill(2); --syscall traces
tkill(2) or tgkill(2) (what raise(3) and pthread_kill(3) use) instead, one
system call per run.
"""

import os
import re
import signal
import time

from kerntrace.core.api import (Column, Event, EventTablePrinter, Field, Filter, Measurement,
                                Metric, Pair, Records, Schedule, SyscallEntry, SyscallExit, Tool,
                                UsageError, hookimpl, pid_value, seconds_value)

KERNTRACE_API_VERSION = "1.1"

ENTER = "enter"
EXIT = "exit"
SYSCALLS = ("kill", "tkill", "tgkill")

# Linux has signals 1..64 (_NSIG, include/uapi/asm-generic/signal.h); 0
# checks that the target exists without sending anything.
MAX_SIGNAL = 64


def signal_value(text):
    """-s: a signal number (0 to 64) or name (KILL, SIGKILL, sigterm)."""
    if isinstance(text, str) and 0 < len(text) <= 3 and all("0" <= c <= "9" for c in text):
        if int(text) <= MAX_SIGNAL:
            return int(text)
    elif isinstance(text, str) and 0 < len(text) <= 16 and text.replace("+", "").isalnum():
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal, name, None)
        if isinstance(number, int) and not name.startswith("SIG_") and 0 < number <= MAX_SIGNAL:
            return int(number)
    shown = "".join(c if c.isprintable() else "?" for c in str(text))[:64]
    raise UsageError("invalid signal %r: expected a number from 0 to %d or a name such as "
                     "TERM or SIGKILL" % (shown, MAX_SIGNAL))


# A task name is at most 15 characters (TASK_COMM_LEN 16, with its NUL).
_NAME = re.compile(r"^[A-Za-z0-9_.+][A-Za-z0-9_.+-]{0,14}\Z")


def name_value(text):
    """-n NAME: a part of the sender's task name.  Only what a string filter
    may carry, and never tracefs command syntax (':traceoff', '!', '-:')."""
    if not isinstance(text, str) or not _NAME.match(text):
        shown = "".join(c if c.isprintable() else "?" for c in str(text))[:64]
        raise UsageError("invalid process name %r (letters, digits and _.+- only, at most "
                         "15)" % shown)
    return text


def target_text(value):
    """kill()'s pid argument is an int the syscall tracepoint records as an
    unsigned long: -1 (every process) and -PGID (a process group) show
    signed, as bcc's `int tpid` does."""
    value = int(value) & 0xFFFFFFFF
    return "%d" % (value - (1 << 32) if value >= 1 << 31 else value)


def pid_width():
    """bcc's PID column width: the digits of pid_max, plus one."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return len(f.read().strip()) + 1
    except (IOError, OSError):
        return 6


def local_time(record, ctx):
    """HH:MM:SS when printed, as bcc's killsnoop shows it."""
    return time.strftime("%H:%M:%S")


def killsnoop_columns(width=6):
    return [Column("TIME", local_time, 9),
            Column("PID", "pid", width),
            Column("COMM", "comm", 16),
            Column("SIG", "sig", 4),
            Column("TPID", "tpid", width),
            Column("RESULT", "ret", 0)]


class KillSnoop(Tool):
    name = "killsnoop"
    metric = Metric(counter="kill_calls", counter_help="kill() system calls (signals sent).")
    summary = "Trace signals issued by the kill() syscall."
    description = ("One line per kill(2): the sender's PID and name, the signal, the target "
                   "and the result (0, or -errno: -3 is ESRCH, no such process).")
    examples = (
        ("killsnoop", "trace all kill() signals"),
        ("killsnoop -x", "only show failed kills"),
        ("killsnoop -p 181", "only trace PID 181"),
        ("killsnoop -T 189", "only trace target PID 189"),
        ("killsnoop -s 9", "only trace signal 9"),
        ("killsnoop -s TERM", "only trace SIGTERM"),
        ("killsnoop -n bash", "only senders whose name contains \"bash\""),
        ("killsnoop --syscall tgkill", "trace tgkill() (pthread_kill, raise) instead"),
    )

    def add_arguments(self, p):
        p.add_argument("-x", "--failed", action="store_true",
                       help="only show failed kill syscalls")
        p.add_argument("-p", "--pid", type=pid_value,
                       help="trace this PID only which is the sender of signal")
        p.add_argument("-T", "--tpid", type=pid_value,
                       help="trace this target PID only which is the receiver of signal")
        p.add_argument("-s", "--signal", type=signal_value,
                       help="trace this signal only (number or name)")
        p.add_argument("-n", "--name", type=name_value,
                       help="only senders whose task name contains NAME")
        p.add_argument("--syscall", choices=SYSCALLS, default="kill",
                       help="trace this system call (default kill; tkill, tgkill: TPID is "
                            "the target thread, or for tgkill the target process)")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration of trace in seconds")

    def measurement(self, args):
        if args.pid is not None and not getattr(args, "input_file", None) \
                and not os.path.exists("/proc/%d" % args.pid):
            raise UsageError("no process with PID %d" % args.pid)
        filters = []
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid))
        if args.tpid is not None:
            filters.append(Filter("tpid", "==", args.tpid, events=(ENTER,)))
        if args.signal is not None:
            filters.append(Filter("sig", "==", args.signal, events=(ENTER,)))
        if args.name is not None:
            filters.append(Filter("comm", "glob", "*%s*" % args.name, events=(ENTER,)))
        if args.failed:
            filters.append(Filter("ret", "<", 0, events=(EXIT,)))
        # kill(pid, sig), tkill(pid, sig), tgkill(tgid, pid, sig): the target
        # is tgkill's "tgid", else the "pid" argument (a name the sender's
        # own pid, a context field, already has).
        enter = Event(ENTER, SyscallEntry(args.syscall),
                      fields=[Field("tpid", sources=("tgid", "pid")), Field("sig")])
        exit_ = Event(EXIT, SyscallExit(args.syscall), fields=[Field("ret")])
        return Measurement(
            events=[enter, exit_],
            pair=Pair(ENTER, EXIT, key=("tid",), carry=("comm", "pid", "tpid", "sig")),
            aggregate=Records(("pid", "comm", "sig", "tpid", "ret")),
            filters=filters, schedule=Schedule(duration=args.duration))

    def formatters(self, args):
        return {"tpid": target_text}

    def printer(self, args, out, err):
        return EventTablePrinter(out, err, killsnoop_columns(pid_width()),
                                 banner="Tracing %s() signals... Ctrl-C to end." % args.syscall)


@hookimpl
def kerntrace_tools():
    return [KillSnoop()]
