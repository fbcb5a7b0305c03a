"""Cleaning up after kerntrace runs that died without restoring (SIGKILL,
OOM kill, power loss of the process but not the machine).

A run's kernel objects carry its PID in their names:

    instances/kerntrace-<pid>-<tool><n>          its private buffer
    uprobe_events/kprobe_events  kerntrace_<pid>/kerntrace_<pid>_<n>
    /run/kerntrace/toplevel-<pid>.json           top-level values to restore

but the PID does not say whether the run is alive (another PID namespace,
a reused PID): each object's owner lock does (owner.py).  An object is
removed only when its lock can be taken; one without a lock file (made by a
kerntrace without owner locks) only when the PID in its name is dead and
pid_rule_is_safe().  Runs that are alive, wherever they run, are never
touched or waited on.  Every removal is reported in one line.
"""

import errno
import os
import re

from kerntrace.core import tracefs

from . import instance as instance_mod
from . import owner, probes
from .lock import FtraceLock, pid_alive

PROBE_FILES = ("uprobe_events", "kprobe_events")


class _Judge(object):
    """Decides, object by object, whether its owner is gone."""

    def __init__(self, is_alive, me, lock_dirs=owner.LOCK_DIRS):
        self.is_alive = is_alive
        self.me = me
        self.lock_dirs = lock_dirs
        self._pid_rule = None
        self.undecided = []     # lockless objects left alone: their PID may be alive elsewhere

    def pid_rule(self):
        if self._pid_rule is None:
            self._pid_rule = owner.pid_rule_is_safe()
        return self._pid_rule

    def abandoned(self, name, pid, what, created=None):
        """The owner lock, now ours, of a stale object (release() it when
        done), a lockless stand-in, or None: leave the object alone.
        `created`: the object's key in instance.CREATED (default: name)."""
        if pid is None:
            return None
        lock = owner.OwnerLock(name, self.lock_dirs)
        state = lock.take_if_abandoned()
        if state is True:
            return lock
        if state == owner.HELD:
            return None
        # No lock file: only the PID in the name can tell.
        if pid == self.me:
            # An earlier process with our PID (if that PID meant the same
            # process for it), unless we made it ourselves.
            stale = (created or name) not in instance_mod.CREATED
        else:
            stale = not self.is_alive(pid)
        if not stale:
            self.undecided.append("%s: it has no owner lock and PID %d is running" % (what, pid))
            return None
        if not self.pid_rule():
            self.undecided.append("%s: it has no owner lock and PID %d may be running in "
                                  "another PID namespace" % (what, pid))
            return None
        return lock         # holds nothing; release() is a no-op


def _instances(root, judge):
    d = os.path.join(root, "instances")
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    out = []
    for name in names:
        pid = instance_mod.instance_owner(name)
        lock = judge.abandoned(name, pid, "instance %s" % name)
        if lock is not None:
            out.append((name, pid, lock))
    return out


def _probes(root, judge):
    out = []
    for fname in PROBE_FILES:
        text = tracefs.read_text(os.path.join(root, fname))
        if not text:
            continue
        for line in text.splitlines():
            parsed = probes.parse_definition(line)
            if not parsed:
                continue
            _kind, group, event = parsed
            pid = probes.owner_pid(group)
            key = "%s/%s" % (group, event)
            lock = judge.abandoned(event, pid, "%s %s" % (fname, key), created=key)
            if lock is not None:
                out.append((fname, group, event, pid, lock))
    return out


def _disable_everywhere(root, group, event):
    """A probe event cannot be removed while enabled (EBUSY): disable it at
    the top level and in every instance that still has it."""
    bases = [root]
    inst = os.path.join(root, "instances")
    try:
        bases += [os.path.join(inst, n) for n in os.listdir(inst)]
    except OSError:
        pass
    for base in bases:
        enable = os.path.join(base, "events", group, event, "enable")
        if os.path.exists(enable):
            try:
                if (tracefs.read_text(enable) or "0").strip()[:1] != "0":
                    tracefs.write_text(enable, "0\n")
            except (IOError, OSError):
                pass


def restore_journals(root, stderr=None, judge=None, dirs=None, lock_path=None):
    """Write back the top-level values journalled by dead runs.  Done under
    the ftrace lock (taken over from the dead run if it still holds it); if
    a live process holds it, the journal waits for a later run."""
    judge = judge or _Judge(pid_alive, os.getpid())
    done = []
    kw = {"dirs": dirs} if dirs is not None else {}
    for pid, jroot, entries, jpath in instance_mod.read_journals(**kw):
        if jroot and jroot != root:
            continue
        name = os.path.basename(jpath)[:-len(".json")]
        owner_lock = judge.abandoned(name, pid, "journal %s" % jpath, created=jpath)
        if owner_lock is None:
            continue
        try:
            _restore_journal(root, pid, entries, jpath, judge, lock_path, stderr, done)
        finally:
            owner_lock.release(unlink=not os.path.exists(jpath))
    return done


def _restore_journal(root, pid, entries, jpath, judge, lock_path, stderr, done):
    # The perf-tools lock holding the dead run's PID is that run's (its PID
    # may belong to another process here, or to none in our namespace).
    lock_kw = {"path": lock_path} if lock_path else {}
    lock = FtraceLock(stderr=None, is_alive=lambda p: p != pid and judge.is_alive(p),
                      **lock_kw)
    try:
        lock.acquire()
    except Exception:
        return
    try:
        # Undo in reverse order of saving, as the run itself would.
        for path, value in reversed(entries):
            if not path.startswith(root.rstrip("/") + "/"):
                continue    # never write outside this tracefs
            try:
                tracefs.write_text(path, value + "\n" if value else "")
            except (IOError, OSError):
                pass
        try:
            os.unlink(jpath)
        except OSError:
            pass
        msg = "top-level tracing settings of PID %d (restored %d)" % (pid, len(entries))
        done.append(msg)
        if stderr is not None:
            stderr.write("kerntrace: restored %s left by a process that is gone\n" % msg)
    finally:
        lock.release()


def cleanup(root, stderr=None, is_alive=pid_alive, me=None, journal_dirs=None, lock_path=None,
            lock_dirs=owner.LOCK_DIRS, problems=None, notes=None):
    """Remove what dead runs left in the tracefs at `root`; returns one line
    per removed thing (and says so on `stderr` if given).  What could not be
    removed is appended to `problems` (and said on `stderr`); objects left
    alone because nothing tells whether their owner is alive, to `notes`."""
    judge = _Judge(is_alive, os.getpid() if me is None else me, lock_dirs)
    removed = []
    problems = problems if problems is not None else []

    def say(what):
        removed.append(what)
        if stderr is not None:
            stderr.write("kerntrace: removed %s left by a process that is gone\n" % what)

    def problem(text):
        problems.append(text)
        if stderr is not None:
            stderr.write("kerntrace: %s\n" % text)

    # Instances first: removing one disables its events, which frees the
    # probe definitions it used for removal.  One try each: the dead owner
    # holds nothing open, and whoever does will not let go in a second.
    for name, pid, lock in _instances(root, judge):
        left = instance_mod.remove_or_quiesce(os.path.join(root, "instances", name),
                                              label="stale instance")
        if left is None:
            say("instance %s (PID %d)" % (name, pid))
        else:
            problem(left)
        lock.release(unlink=left is None)
    removed += restore_journals(root, stderr, judge, dirs=journal_dirs, lock_path=lock_path)
    for fname, group, event, pid, lock in _probes(root, judge):
        _disable_everywhere(root, group, event)
        gone = False
        try:
            tracefs.write_text(os.path.join(root, fname), probes.removal_line(group, event),
                               append=True)
            say("%s %s/%s (PID %d)" % (fname, group, event, pid))
            gone = True
        except (IOError, OSError) as e:
            gone = e.errno == errno.ENOENT
            if not gone:
                problem("cannot remove stale probe %s/%s: %s" % (group, event, e.strerror or e))
        lock.release(unlink=gone)
    _sweep_locks(root, judge.lock_dirs, journal_dirs)
    if notes is not None:
        notes.extend("left alone %s" % what for what in judge.undecided)
    return removed


def _lock_object_exists(root, name, journal_dirs):
    """Does the object an owner lock file is named after still exist?"""
    if instance_mod.instance_owner(name) is not None:
        return os.path.isdir(os.path.join(root, "instances", name))
    if name.startswith("toplevel-"):
        return any(p == name for p in (os.path.basename(j[3])[:-len(".json")] for j in
                                       instance_mod.read_journals(
                                           **({"dirs": journal_dirs} if journal_dirs else {}))))
    m = re.match(r"^(kerntrace_\d+)_\d+$", name)
    if m:
        return os.path.isdir(os.path.join(root, "events", m.group(1), name))
    return True     # not ours to judge


def _sweep_locks(root, lock_dirs, journal_dirs):
    """Remove lock files whose owner is gone and whose object is too (a run
    killed between taking the lock and creating the object, or an object
    removed by hand or by an older kerntrace)."""
    d = owner.lock_dir(lock_dirs, create=False)
    if d is None:
        return
    for fname in sorted(os.listdir(d)):
        if not fname.endswith(owner.SUFFIX):
            continue
        name = fname[:-len(owner.SUFFIX)]
        lock = owner.OwnerLock(name, lock_dirs)
        if lock.take_if_abandoned() is True:
            lock.release(unlink=not _lock_object_exists(root, name, journal_dirs))
