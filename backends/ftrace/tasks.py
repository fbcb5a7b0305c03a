"""Who a thread id belongs to: process id (tgid) and task name (comm).

The ring buffer records only the thread id (common_pid).  The text path
also shows the task name and, with options/record-tgid, the process id;
otherwise they are looked up here after the fact: /proc/<tid>/status and
/proc/<tid>/comm, then tracefs' saved_cmdlines / saved_tgids.  Best effort:
a thread that already exited may have no answer (None), and nothing here
ever raises.  Answers are cached (bounded) because the same threads emit
most events.
"""

import os
import time

# Thread id 0 is the idle task; the kernel prints it as "<idle>".
IDLE_COMM = "<idle>"
_MAX_ENTRIES = 65536
# How often the saved_cmdlines / saved_tgids files are re-read on a miss.
_TABLE_REFRESH_S = 1.0


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (IOError, OSError, ValueError):
        return None


def _now():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()


class _Table(object):
    """A tracefs "PID VALUE" file (saved_cmdlines, saved_tgids), re-read at
    most every _TABLE_REFRESH_S seconds when asked for an unknown PID."""

    def __init__(self, path, convert):
        self.path = path
        self.convert = convert
        self.entries = {}
        self.read_at = None

    def get(self, tid):
        v = self.entries.get(tid)
        if v is not None or self.path is None:
            return v
        now = _now()
        if self.read_at is not None and now - self.read_at < _TABLE_REFRESH_S:
            return None
        self.read_at = now
        text = _read(self.path) or ""
        entries = {}
        for line in text.splitlines():
            pid, _sep, value = line.partition(" ")
            try:
                entries[int(pid)] = self.convert(value.strip())
            except ValueError:
                continue
        self.entries = entries
        return entries.get(tid)


class TaskInfo(object):
    """tid -> tgid and tid -> comm, cached.

    proc_root       where /proc is; None never looks there (replay of a trace
                    from another host, where local PIDs mean nothing)
    saved_cmdlines  path of tracefs' saved_cmdlines file, or None
    saved_tgids     path of tracefs' saved_tgids file (record-tgid), or None
    """

    def __init__(self, proc_root="/proc", saved_cmdlines=None, saved_tgids=None,
                 max_entries=_MAX_ENTRIES):
        self.proc_root = proc_root
        self.max_entries = max_entries
        self._tgid = {0: 0}
        self._comm = {0: IDLE_COMM}
        self._cmdlines = _Table(saved_cmdlines, str)
        self._tgids = _Table(saved_tgids, int)
        self.lookups = 0        # cache misses answered from files (for tests/diagnostics)

    def learn(self, tid, tgid=None, comm=None):
        """Remember what a trace line told us about a thread."""
        if tgid is not None:
            self._store(self._tgid, tid, tgid)
        if comm is not None:
            self._store(self._comm, tid, comm)

    def _store(self, cache, tid, value):
        if len(cache) >= self.max_entries:
            cache.clear()
            cache[0] = 0 if cache is self._tgid else IDLE_COMM
        cache[tid] = value

    def tgid(self, tid):
        """The process id of a thread, or None if it cannot be known."""
        v = self._tgid.get(tid)
        if v is not None:
            return v
        if tid in self._tgid:
            return None
        self.lookups += 1
        v = self._proc_tgid(tid)
        if v is None:
            v = self._tgids.get(tid)
        self._store(self._tgid, tid, v)
        return v

    def comm(self, tid):
        """The task name of a thread, or None if it cannot be known."""
        v = self._comm.get(tid)
        if v is not None:
            return v
        if tid in self._comm:
            return None
        self.lookups += 1
        v = None
        if self.proc_root:
            text = _read(os.path.join(self.proc_root, str(int(tid)), "comm"))
            if text:
                v = text.rstrip("\n")
        if v is None:
            v = self._cmdlines.get(tid)
        self._store(self._comm, tid, v)
        return v

    def _proc_tgid(self, tid):
        if not self.proc_root:
            return None
        try:
            path = os.path.join(self.proc_root, str(int(tid)), "status")
        except (TypeError, ValueError):
            return None
        text = _read(path)
        if not text:
            return None
        for line in text.splitlines():
            if line.startswith("Tgid:"):
                try:
                    return int(line.split(":", 1)[1])
                except ValueError:
                    return None
        return None

    def forget(self):
        """Drop cached answers (threads come and go; PIDs are reused)."""
        self._tgid = {0: 0}
        self._comm = {0: IDLE_COMM}
