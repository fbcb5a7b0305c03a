"""After-the-fact lookups of record fields no probe could read (model
Field.lookup): done when the records are reported, each value marked
best-effort in its Record.  Backends leave such a field None; a value a
probe did read is never replaced."""

import os

from .model import ProcFdPath

PROC = "/proc"


def proc_fd_path(pid, fd, proc=PROC):
    """What /proc/<pid>/fd/<fd> points to, or None (closed, process gone,
    not ours to read)."""
    if not isinstance(pid, int) or not isinstance(fd, int) or pid <= 0 or fd < 0:
        return None
    try:
        return os.readlink(os.path.join(proc, str(pid), "fd", str(fd)))
    except (IOError, OSError):
        return None


class Lookups(object):
    """The lookups of a measurement, applied to each report's records."""

    def __init__(self, measurement, proc=PROC):
        self.fields = [f for f in measurement.lookup_fields()]
        self.proc = proc

    def __bool__(self):
        return bool(self.fields)

    __nonzero__ = __bool__

    def apply(self, records):
        """Fill the unread fields of `records` (a list of Record) in place."""
        if not self.fields or not isinstance(records, list):
            return
        for r in records:
            for f in self.fields:
                if r.fields.get(f.name, "") is not None:
                    continue
                lk = f.lookup
                if isinstance(lk, ProcFdPath):
                    r.fields[f.name] = proc_fd_path(r.fields.get(lk.pid), r.fields.get(lk.fd),
                                                    self.proc)
                r.best_effort = r.best_effort | frozenset((f.name,))
