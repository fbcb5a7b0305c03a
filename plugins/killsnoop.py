"""killsnoop: one line per kill() with sender, signal, target and result
(bcc's killsnoop columns and options).

    command line  killsnoop [-h] [-x] [-p PID] [-T TPID] [-s SIGNAL] [-n NAME]
                            [-d DURATION]   (-n, -d: perf-tools' killsnoop)
                            [--syscall kill|tkill|tgkill ...]
    events        enter: each of syscalls:sys_enter_kill (target: pid),
                  sys_enter_tkill (target: pid, a thread) and
                  sys_enter_tgkill (target: tgid), with sig
                  exit:  each of sys_exit_kill, sys_exit_tkill,
                  sys_exit_tgkill (ret)
    pair          enter -> exit of the same thread, carrying the sender's
                  comm and pid, the target and the signal
    aggregate     Records: pid, comm, sig, tpid, ret
    filters       -p PID (sender) on both events, -T TPID, -s SIGNAL and
                  -n NAME (sender's name contains) on the enter, -x (ret < 0)
                  on the exit
    output        bcc's layout: "%-9s %-*s %-16s %-4s %-*s %s"
                  TIME PID COMM SIG TPID RESULT (PID width from pid_max)

bcc's and perf-tools' killsnoop trace kill(2) only; this one also traces
tkill(2) and tgkill(2) (what raise(3) and pthread_kill(3) use) in the same
run, as one logical event (model.Each).  --syscall (repeatable) narrows it
to the system calls named.
"""

import os
import re
import signal
import time

from kerntrace.core.api import (Column, Each, Event, EventTablePrinter, Field, Filter, Measurement,
                                Metric, Pair, Records, Schedule, SyscallEntry, SyscallExit, Tool,
                                UsageError, hookimpl, pid_value, seconds_value)

KERNTRACE_API_VERSION = "1.1"

ENTER = "enter"
EXIT = "exit"
SYSCALLS = ("kill", "tkill", "tgkill")
# Where each system call's target is: kill(pid, sig), tkill(pid, sig) (a
# thread id), tgkill(tgid, pid, sig) (the target's thread group: the
# process, as TPID is a process id for kill).
TARGET_ARGUMENT = {"kill": "pid", "tkill": "pid", "tgkill": "tgid"}

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


def syscalls(args):
    """The system calls traced, in SYSCALLS' order, each once."""
    chosen = args.syscall or SYSCALLS
    return tuple(c for c in SYSCALLS if c in chosen)


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
    metric = Metric(counter="signal_syscalls",
                    counter_help="kill(), tkill() and tgkill() system calls (signals sent).")
    summary = "Trace signals issued by the kill(), tkill() and tgkill() syscalls."
    description = ("One line per kill(2), tkill(2) or tgkill(2): the sender's PID and name, "
                   "the signal, the target and the result (0, or -errno: -3 is ESRCH, no such "
                   "process).")
    examples = (
        ("killsnoop", "trace all kill(), tkill() and tgkill() signals"),
        ("killsnoop -x", "only show failed kills"),
        ("killsnoop -p 181", "only trace PID 181"),
        ("killsnoop -T 189", "only trace target PID 189"),
        ("killsnoop -s 9", "only trace signal 9"),
        ("killsnoop -s TERM", "only trace SIGTERM"),
        ("killsnoop -n bash", "only senders whose name contains \"bash\""),
        ("killsnoop --syscall kill", "only kill(), as bcc's killsnoop traces"),
        ("killsnoop --syscall tgkill", "only tgkill() (pthread_kill, raise)"),
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
        p.add_argument("--syscall", choices=SYSCALLS, action="append",
                       help="trace only this system call (repeatable; default: kill, tkill "
                            "and tgkill; for tkill TPID is the target thread, for tgkill "
                            "the target process)")
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
        # One logical event over every system call traced, each member
        # reading the target from its own argument (a name the sender's own
        # pid, a context field, already has: hence "tpid").
        calls = syscalls(args)
        enter = Event(ENTER, Each(*[SyscallEntry(c, sources={"tpid": TARGET_ARGUMENT[c]})
                                    for c in calls]),
                      fields=[Field("tpid"), Field("sig")])
        exit_ = Event(EXIT, Each(*[SyscallExit(c) for c in calls]), fields=[Field("ret")])
        return Measurement(
            events=[enter, exit_],
            pair=Pair(ENTER, EXIT, key=("tid",), carry=("comm", "pid", "tpid", "sig")),
            aggregate=Records(("pid", "comm", "sig", "tpid", "ret")),
            filters=filters, schedule=Schedule(duration=args.duration))

    def formatters(self, args):
        return {"tpid": target_text}

    def printer(self, args, out, err):
        return EventTablePrinter(out, err, killsnoop_columns(pid_width()),
                                 banner="Tracing %s signals... Ctrl-C to end." % ", ".join(
                                     "%s()" % c for c in syscalls(args)))


@hookimpl
def kerntrace_tools():
    return [KillSnoop()]
