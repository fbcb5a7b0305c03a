"""Cleaning up after kerntrace runs that died without restoring (SIGKILL,
OOM kill, power loss of the process but not the machine).

A run's kernel objects carry its PID in their names:

    instances/kerntrace-<pid>-<tool><n>          its private buffer
    uprobe_events/kprobe_events  kerntrace_<pid>/kerntrace_<pid>_<n>
    /run/kerntrace/toplevel-<pid>.json           top-level values to restore

Only objects whose PID is no longer running are touched: runs that are alive
(this machine may run several at once) are never interfered with.  Every
removal is reported in one line.
"""

import errno
import os

from kerntrace.core import tracefs

from . import instance as instance_mod
from . import probes
from .lock import FtraceLock, pid_alive

PROBE_FILES = ("uprobe_events", "kprobe_events")


def _is_stale(pid, name, is_alive, me):
    """Dead owner; or our own PID on an object this process did not create
    (an earlier process had the same PID and was killed)."""
    if pid is None:
        return False
    if pid == me:
        return name not in instance_mod.CREATED
    return not is_alive(pid)


def _instances(root, is_alive, me):
    d = os.path.join(root, "instances")
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    out = []
    for name in names:
        pid = instance_mod.instance_owner(name)
        if _is_stale(pid, name, is_alive, me):
            out.append((name, pid))
    return out


def _probes(root, is_alive, me):
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
            if _is_stale(pid, "%s/%s" % (group, event), is_alive, me):
                out.append((fname, group, event, pid))
    return out


def find_stale(root, is_alive=pid_alive, me=None):
    """Descriptions of what dead runs left, without removing anything."""
    me = os.getpid() if me is None else me
    out = ["instance %s (PID %d)" % (n, p) for n, p in _instances(root, is_alive, me)]
    out += ["%s %s/%s (PID %d)" % (f, g, e, p) for f, g, e, p in _probes(root, is_alive, me)]
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


def restore_journals(root, stderr=None, is_alive=pid_alive, me=None, dirs=None,
                     lock_path=None):
    """Write back the top-level values journalled by dead runs.  Done under
    the ftrace lock (taken over from the dead run if it still holds it); if
    a live process holds it, the journal waits for a later run."""
    me = os.getpid() if me is None else me
    done = []
    kw = {"dirs": dirs} if dirs is not None else {}
    for pid, jroot, entries, jpath in instance_mod.read_journals(**kw):
        if jroot and jroot != root:
            continue
        if (jpath in instance_mod.CREATED) if pid == me else is_alive(pid):
            continue
        lock_kw = {"path": lock_path} if lock_path else {}
        lock = FtraceLock(stderr=None, is_alive=is_alive, **lock_kw)
        try:
            lock.acquire()
        except Exception:
            continue
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
    return done


def cleanup(root, stderr=None, is_alive=pid_alive, me=None, journal_dirs=None, lock_path=None):
    """Remove what dead runs left in the tracefs at `root`; returns one line
    per removed thing (and says so on `stderr` if given)."""
    me = os.getpid() if me is None else me
    removed = []

    def say(what):
        removed.append(what)
        if stderr is not None:
            stderr.write("kerntrace: removed %s left by a process that is gone\n" % what)

    # Instances first: removing one disables its events, which frees the
    # probe definitions it used for removal.
    for name, pid in _instances(root, is_alive, me):
        err = instance_mod.remove_instance(os.path.join(root, "instances", name))
        if err is None:
            say("instance %s (PID %d)" % (name, pid))
        elif stderr is not None:
            stderr.write("kerntrace: cannot remove stale instance %s: %s\n"
                         % (name, err.strerror or err))
    removed += restore_journals(root, stderr, is_alive, me, dirs=journal_dirs,
                                lock_path=lock_path)
    for fname, group, event, pid in _probes(root, is_alive, me):
        _disable_everywhere(root, group, event)
        try:
            tracefs.write_text(os.path.join(root, fname), probes.removal_line(group, event),
                               append=True)
            say("%s %s/%s (PID %d)" % (fname, group, event, pid))
        except (IOError, OSError) as e:
            if e.errno != errno.ENOENT and stderr is not None:
                stderr.write("kerntrace: cannot remove stale probe %s/%s: %s\n"
                             % (group, event, e.strerror or e))
    return removed
