"""What execsnoop and exitsnoop share: process facts /proc still shows
(parent, start time, command line), signal names, and a bounded table of
what the events told about each task until its row is printed.

Values read from /proc are read after the fact: a process may have exited,
or exec'd again, by then.  The tools say so (best-effort) wherever they use
them; what a kernel event recorded always wins.
"""

import os
import signal
import time

PROC = "/proc"
# A task's state is remembered for this many tasks at most (oldest dropped).
MAX_TASKS = 65536
# clock ticks per second of /proc/PID/stat's times (USER_HZ).
try:
    CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError, AttributeError):
    CLOCK_TICKS = 100

# Signals whose default action does not end the process (kernel/signal.c
# sig_kernel_ignore() and sig_kernel_stop()): a delivery of one of these with
# the default handler is no fatal signal.
_NOT_FATAL = ("SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGSTOP", "SIGTSTP", "SIGTTIN",
              "SIGTTOU")
NOT_FATAL = frozenset(getattr(signal, n) for n in _NOT_FATAL if hasattr(signal, n))
SIGKILL = getattr(signal, "SIGKILL", 9)


def signal_name(sig):
    """"KILL" for 9, as bcc prints it; "SIG<n>" for a number with no name."""
    try:
        name = signal.Signals(sig).name
    except (ValueError, AttributeError):
        return "SIG%d" % sig
    return name[3:] if name.startswith("SIG") else name


def fatal_by_default(sig):
    """Does signal `sig` end a process whose handler is the default one?"""
    return isinstance(sig, int) and 0 < sig < 65 and sig not in NOT_FATAL


class Bounded(dict):
    """A dict that forgets its oldest entries beyond `limit` (insertion
    order: Python 3.7+ dicts keep it; 3.6's CPython dicts do too)."""

    def __init__(self, limit=MAX_TASKS):
        dict.__init__(self)
        self.limit = limit

    def __setitem__(self, key, value):
        if key in self:
            dict.__delitem__(self, key)
        elif len(self) >= self.limit:
            for old in list(self)[:self.limit // 4]:
                dict.__delitem__(self, old)
        dict.__setitem__(self, key, value)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def stat_fields(pid, tid=None, proc=PROC):
    """(ppid, start ticks after boot) from /proc/PID[/task/TID]/stat, or None."""
    path = os.path.join(proc, str(pid), "stat") if tid is None else \
        os.path.join(proc, str(pid), "task", str(tid), "stat")
    data = _read(path)
    if not data:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[1]), int(rest[19])
    except (IndexError, ValueError):
        return None


def cmdline(pid, proc=PROC):
    """The arguments of process `pid` as /proc shows them now, or None."""
    data = _read(os.path.join(proc, str(pid), "cmdline"))
    if not data:
        return None
    return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")]


def boot_offset_ns():
    """CLOCK_BOOTTIME minus CLOCK_MONOTONIC now (time suspended), to put
    /proc start times (ticks after boot) on the events' monotonic clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None or not hasattr(time, "clock_gettime"):
        return 0
    try:
        return int((time.clock_gettime(boottime) - time.monotonic()) * 1e9)
    except OSError:
        return 0


class ProcessTable(object):
    """Parents and start times (monotonic ns) of the tasks /proc lists when
    tracing starts: the tasks no fork event will tell about."""

    def __init__(self, threads=False, proc=PROC):
        self.proc = proc
        self.parent = {}
        self.started = {}
        offset = boot_offset_ns()
        if proc is None:            # replaying a recording: not this host's tasks
            return
        try:
            pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
        except OSError:
            pids = []
        for pid in pids:
            tids = [pid]
            if threads:
                try:
                    tids = [int(t) for t in os.listdir(os.path.join(proc, str(pid), "task"))
                            if t.isdigit()]
                except OSError:
                    continue
            for tid in tids:
                st = stat_fields(pid, None if tid == pid else tid, proc)
                if st is None:
                    continue
                self.parent[tid] = st[0]
                self.started[tid] = st[1] * 1000000000 // CLOCK_TICKS - offset

    def forget(self, tid):
        self.parent.pop(tid, None)
        self.started.pop(tid, None)


__all__ = ["signal_name", "fatal_by_default", "Bounded", "stat_fields", "cmdline",
           "ProcessTable", "SIGKILL"]
