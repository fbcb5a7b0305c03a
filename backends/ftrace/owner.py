"""Who owns a kerntrace object in tracefs: a lock its run holds open.

A run that creates an instance, a probe event or a top-level journal first
creates /run/kerntrace/<object name>.lock and takes flock(LOCK_EX) on it; it
keeps the descriptor open until it has removed the object.  The kernel drops
the lock when the process ends, however it ends (SIGKILL, OOM kill), so:

    lock file held by someone       the owner is alive: never touch the object
    lock file we can lock           the owner is gone: the object is stale
    no lock file                    made by a kerntrace without owner locks
                                    (or a run whose /run is not ours): see
                                    pid_rule_is_safe()

Unlike the PID in the object's name, the lock means the same thing in every
PID namespace and after the PID is reused.  flock locks a file, not a name:
runs see each other's locks when they share the /run file system (a run
started with `unshare --pid --fork --mount-proc` does; a container with a
private /run tmpfs does not: its objects look lockless to the host).
"""

import errno
import fcntl
import os
import stat

LOCK_DIRS = ("/run/kerntrace", "/var/run/kerntrace")
SUFFIX = ".lock"

# The initial PID namespace's inode number: PROC_PID_INIT_INO in
# include/linux/proc_ns.h, fixed since Linux v3.8 ("proc: Usable inode
# numbers for the namespace file descriptors").
INIT_PID_NS_INO = 0xEFFFFFFC

HELD = "held"           # a live process holds the lock
MISSING = "missing"     # no lock file


def lock_dir(dirs=LOCK_DIRS, create=True):
    """The directory for lock files (created 0700 if `create`), or None."""
    for d in dirs:
        if not os.path.isdir(os.path.dirname(d)):
            continue
        if create:
            try:
                os.mkdir(d, 0o700)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    continue
        if os.path.isdir(d) and not os.path.islink(d):
            return d
    return None


def _open_locked(path, create):
    """(fd, None) holding flock(LOCK_EX) on the file now at `path`, or
    (None, HELD / MISSING).  A lock file unlinked between our open() and
    flock() (its owner removed it) is not the one at `path` any more: retry."""
    flags = (os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
             | (os.O_CREAT if create else 0))
    for _attempt in range(10):
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            if e.errno == errno.ENOENT and not create:
                return None, MISSING
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (IOError, OSError) as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    return None, HELD
                raise
            try:
                now = os.stat(path)
                same = (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
            except OSError:
                same = False
            if same:
                return fd, None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, "lock file keeps being replaced", path)


class OwnerLock(object):
    """The lock of one object name.  claim() for an object we are about to
    create; take_if_abandoned() for one someone else created."""

    def __init__(self, name, dirs=LOCK_DIRS):
        self.name = name
        self.dirs = dirs
        self.path = None
        self.fd = None

    def _path(self, create):
        d = lock_dir(self.dirs, create=create)
        return os.path.join(d, self.name + SUFFIX) if d else None

    def claim(self):
        """True: the name is ours until release() (or the lock directory is
        unusable and nobody can tell: then held is False); False: a live run
        owns it."""
        self.path = self._path(create=True)
        if self.path is None:
            return True
        try:
            self.fd, _state = _open_locked(self.path, create=True)
        except OSError:
            self.path = None
            return True
        if self.fd is None:
            return False
        # (For people reading it: the lock, not this PID, says who owns it.)
        # By path: _open_locked() checked that the path is the file we lock.
        os.truncate(self.path, 0)
        os.write(self.fd, ("%d\n" % os.getpid()).encode("ascii"))
        return True

    def take_if_abandoned(self):
        """HELD (a live run owns it), MISSING (no lock file) or True: the
        owner is gone and we hold its lock now (release() when done)."""
        self.path = self._path(create=False)
        if self.path is None:
            return MISSING
        try:
            self.fd, state = _open_locked(self.path, create=False)
        except OSError:
            return HELD     # an unreadable lock: assume it is in use
        return state if self.fd is None else True

    @property
    def held(self):
        return self.fd is not None

    def release(self, unlink=True):
        """Drop the lock; remove the file too unless the object still
        exists (`unlink` False: a later run must find it stale, not
        lockless).  Idempotent."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if unlink:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        finally:
            os.close(fd)


def live_pids(prefix, dirs=LOCK_DIRS, exclude=()):
    """The PIDs in the names `prefix`<pid> whose lock a live run holds
    (other than the names in `exclude`)."""
    d = lock_dir(dirs, create=False)
    if d is None:
        return []
    out = []
    for fname in sorted(os.listdir(d)):
        name = fname[:-len(SUFFIX)]
        if not fname.endswith(SUFFIX) or not name.startswith(prefix) or name in exclude:
            continue
        lock = OwnerLock(name, dirs)
        state = lock.take_if_abandoned()
        if state is True:
            lock.release(unlink=False)
        elif state == HELD and name[len(prefix):].isdigit():
            out.append(int(name[len(prefix):]))
    return out


def pid_rule_is_safe(proc="/proc"):
    """May an object without a lock file be judged by the PID in its name?

    Only when that PID means the same process for its creator and for us:
    we are in the initial PID namespace and no process we can see lives in
    another one (a container's PID 403 is not our PID 403).  Kernels without
    namespace files (before v3.8) keep the PID rule: nothing else is known."""
    try:
        mine = os.stat(os.path.join(proc, "self", "ns", "pid")).st_ino
    except OSError:
        return not os.path.isdir(os.path.join(proc, "self", "ns"))
    try:
        if mine != INIT_PID_NS_INO or os.readlink(os.path.join(proc, "self")) != str(os.getpid()):
            return False
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return False
    for p in pids:
        nested = _in_child_namespace(os.path.join(proc, p), mine)
        if nested is None:
            continue        # gone meanwhile
        if nested:
            return False
    return True


def _in_child_namespace(pid_dir, mine):
    """True if the process lives in another PID namespace than ours (None:
    it is gone).  NSpid lists its PID in each namespace from ours down
    (the NSpid line of /proc/PID/status, since Linux v4.1; readable where
    ns/pid needs ptrace access); without it, ns/pid."""
    try:
        with open(os.path.join(pid_dir, "status")) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            return None
        return True
    try:
        return os.stat(os.path.join(pid_dir, "ns", "pid")).st_ino != mine
    except OSError as e:
        return None if e.errno == errno.ENOENT else True
