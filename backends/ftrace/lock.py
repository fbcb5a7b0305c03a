"""The perf-tools ftrace lock: /var/tmp/.ftrace-lock holding the owner's PID.

perf-tools tools (iolatency, iosnoop, ...) take it while they use the
top-level ftrace buffer; kerntrace takes it too when it must use the top
level (kernels without instances, before 3.10).  In instance mode kerntrace
does NOT take it: its private instance never touches the top-level buffer
perf-tools uses, so both can run at once.

/var/tmp is world-writable, so the file is created atomically with
O_CREAT|O_EXCL|O_NOFOLLOW (never through a symlink someone planted) and read
with O_NOFOLLOW; a symlink or non-regular file there is refused, not
followed.  A lock whose PID is dead is reported on stderr as stale and taken
over; one held by a live PID raises LockHeld.
"""

import errno
import os
import stat
import time

from kerntrace.core.errors import KerntraceError, LockHeld

LOCK_PATH = "/var/tmp/.ftrace-lock"

# A lock file can be seen empty between its creator's open() and write().
_EMPTY_RETRIES = 10
_EMPTY_WAIT_S = 0.01


# No PID is larger (PID_MAX_LIMIT on 64-bit kernels, include/linux/threads.h).
PID_MAX_LIMIT = 4 * 1024 * 1024


def parse_pid(text):
    """The PID a file's text starts with, or None if it holds none (empty,
    garbage, or a number no PID can be)."""
    word = text.split()[0] if text and text.split() else ""
    if not word.isdigit() or len(word) > 7:
        return None
    pid = int(word)
    return pid if 0 < pid <= PID_MAX_LIMIT else None


def pid_alive(pid):
    """True if a process with this PID exists (EPERM: exists, not ours)."""
    if pid <= 0 or pid > PID_MAX_LIMIT:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


class FtraceLock(object):
    """acquire() / release(); also a context manager."""

    def __init__(self, path=LOCK_PATH, pid=None, stderr=None, is_alive=pid_alive,
                 held_elsewhere=None):
        """`held_elsewhere()`: the PIDs of live kerntrace runs that use the
        top level (told by their owner locks, owner.py).  A lock whose PID
        is dead here is still in use when it is one of them: a run in
        another PID namespace holds it."""
        self.path = path
        self.held_elsewhere = held_elsewhere
        self.pid = pid if pid is not None else os.getpid()
        self.stderr = stderr
        self.is_alive = is_alive
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def _create(self):
        """Create the lock with our PID; False if it already exists."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if e.errno == errno.EEXIST:
                return False
            raise KerntraceError("cannot create lock %s: %s" % (self.path, e.strerror))
        try:
            os.write(fd, ("%d\n" % self.pid).encode("ascii"))
        finally:
            os.close(fd)
        return True

    def owner(self):
        """PID written in the existing lock file (None: missing, empty or
        unparsable; raises KerntraceError for a symlink or non-regular file)."""
        return self._read()[0]

    def _read(self, path=None):
        """(pid or None, identity or None) of the lock file; the identity
        (inode and content) tells one lock file from another."""
        path = path or self.path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None, None
            if e.errno == errno.ELOOP:
                raise KerntraceError("refusing lock %s: it is a symbolic link" % self.path)
            raise KerntraceError("cannot read lock %s: %s" % (self.path, e.strerror))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KerntraceError("refusing lock %s: not a regular file" % self.path)
            text = os.read(fd, 64).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return parse_pid(text), (st.st_dev, st.st_ino, text)

    def acquire(self):
        for _attempt in range(5):
            if self._create():
                self.held = True
                return
            pid, identity = self._read()
            for _ in range(_EMPTY_RETRIES):
                if pid is not None or identity is None:
                    break
                time.sleep(_EMPTY_WAIT_S)
                pid, identity = self._read()
            if identity is None:
                continue        # removed meanwhile: try to create it again
            if pid is not None and pid != self.pid and (
                    self.is_alive(pid) or (self.held_elsewhere and pid in self.held_elsewhere())):
                raise LockHeld("ftrace may be in use by PID %d %s" % (pid, self.path),
                               pid=pid, path=self.path)
            if self._remove_stale(identity) and self.stderr is not None:
                self.stderr.write("kerntrace: took over stale lock %s (%s)\n" % (
                    self.path, "PID %d is not running" % pid if pid is not None else
                    "it holds no PID: %r" % identity[2][:32]))
        raise KerntraceError("could not take the lock %s (contended)" % self.path)

    def _remove_stale(self, identity):
        """Remove the stale lock file we inspected and nothing else: two
        processes taking over the same stale lock must not remove each
        other's fresh one.  rename() moves the name atomically; if what it
        moved is not the file we judged stale (inode numbers are reused, so
        its content is compared too), it is put back."""
        aside = "%s.stale-%d" % (self.path, self.pid)
        try:
            os.rename(self.path, aside)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise KerntraceError("cannot remove stale lock %s: %s" % (self.path, e.strerror))
        try:
            try:
                moved = self._read(aside)[1]
            except KerntraceError:
                moved = None
            if moved != identity:
                try:
                    os.link(aside, self.path)   # fails if a third one created it meanwhile
                except OSError:
                    pass
                return False
            return True
        finally:
            try:
                os.unlink(aside)
            except OSError:
                pass

    def release(self):
        """Remove the lock if it is still ours; idempotent."""
        if not self.held:
            return
        self.held = False
        try:
            if self.owner() == self.pid:
                os.unlink(self.path)
        except (OSError, KerntraceError):
            pass
