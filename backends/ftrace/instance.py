"""The tracefs buffer a run uses, and every write made to configure it.

Instance mode (kernels with instances/, 3.10+): the run mkdirs its own
`instances/kerntrace-<pid>-<tool><n>`; everything it writes is inside that
directory (removed with it) except probe definitions, which are global.

Top-level mode (older kernels): the run uses the shared top-level buffer
under the perf-tools lock; every file is read before its first write and
written back at the end.  The saved values are also journalled to
/run/kerntrace/toplevel-<pid>.json so that if the run is SIGKILLed the next
run (or `kerntrace cleanup`) can restore them (see stale.py).

ControlFiles performs (or, dry, only records) the writes; live or dry, it
records each one the same way, so the dry record (--print-program) is what
a live run writes (configure.py makes them).  Each write that must be
undone pushes its undo onto an UndoStack that the session runs in reverse
on close.
"""

import errno
import json
import os
import re
import time

from kerntrace.core import tracefs
from kerntrace.core.errors import EnableError

from . import owner

INSTANCE_PREFIX = "kerntrace-"
_INSTANCE_NAME = re.compile(r"^kerntrace-(\d+)-[A-Za-z0-9_]+$")
_TOOL = re.compile(r"[^a-z0-9_]")

JOURNAL_DIRS = ("/run/kerntrace", "/var/run/kerntrace")

_counter = [0]

# Kernel objects (instance names, "group/event" probes) this process created
# and has not removed yet.  An object named after our PID that is not here
# was left by an earlier process that had the same PID: stale.
CREATED = set()

# rmdir of an instance is EBUSY while a file in it is still open (a reader
# that has not been closed yet, or a user's `cat trace_pipe`).
_RMDIR_TRIES = 50
_RMDIR_WAIT_S = 0.02
# Per-CPU KB an instance that cannot be removed is shrunk to (the kernel
# refuses 0).
QUIESCED_BUFFER_KB = "1"


def instance_name(tool, pid=None):
    """`kerntrace-<pid>-<tool><n>`: unique per process and run."""
    pid = os.getpid() if pid is None else pid
    n = _counter[0]
    _counter[0] += 1
    tool = _TOOL.sub("", (tool or "run").lower())[:24] or "run"
    return "%s%d-%s%d" % (INSTANCE_PREFIX, pid, tool, n)


def instance_owner(name):
    """PID an instance name belongs to, or None if it is not ours."""
    m = _INSTANCE_NAME.match(name)
    return int(m.group(1)) if m else None


def remove_instance(path, tries=_RMDIR_TRIES):
    """rmdir an instance directory, retrying while it is busy.  Returns
    None on success (or if it is already gone), else the OSError."""
    last = None
    for attempt in range(tries):
        if attempt:
            time.sleep(_RMDIR_WAIT_S)
        try:
            os.rmdir(path)
            return None
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            last = e
            if e.errno != errno.EBUSY:
                return e
    return last


def quiesce(path):
    """Stop an instance that cannot be removed yet from tracing: tracing_on
    0, every event off, buffer shrunk.  Returns what could not be done."""
    failed = []
    for rel, value in (("tracing_on", "0"), (os.path.join("events", "enable"), "0"),
                       ("buffer_size_kb", QUIESCED_BUFFER_KB)):
        try:
            tracefs.write_text(os.path.join(path, rel), value + "\n")
        except (IOError, OSError) as e:
            if e.errno != errno.ENOENT:
                failed.append("%s: %s" % (rel, e.strerror or e))
    return failed


def remove_or_quiesce(path, label="instance", tries=1):
    """rmdir an instance; if a file of it is held open (EBUSY), stop it
    tracing instead.  None when removed, else one line saying what is left."""
    err = remove_instance(path, tries=tries)
    if err is None:
        return None
    name = os.path.basename(path)
    if err.errno != errno.EBUSY:
        return "cannot remove %s %s: %s" % (label, name, err.strerror or err)
    failed = quiesce(path)
    return ("cannot remove %s %s yet: a process holds one of its files open; %s; "
            "a later kerntrace run or `kerntrace cleanup` removes it"
            % (label, name, "tracing stopped in it" if not failed else
               "could not stop tracing in it (%s)" % "; ".join(failed)))


# ---------------------------------------------------------------------------
# Saved values: what to write back for a file, given what it contained.
def restore_value(path, text):
    """The value to write to `path` to bring back a state read as `text`
    (None: nothing to write back)."""
    name = os.path.basename(path)
    text = text or ""
    stripped = text.strip()
    if name in ("tracing_on", "enable") or "/options/" in path:
        return stripped[:1] or None          # "1", "0", "0*" (soft-disabled) -> first char
    if name == "trace_clock":
        m = re.search(r"\[([^\]]+)\]", text)
        return m.group(1) if m else None
    if name == "buffer_size_kb":
        # "1410" or, before the buffer was first used, "7 (expanded: 1408)":
        # put back the size it would expand to.  "X": sizes differ per CPU
        # (saved per CPU by the caller).
        m = re.search(r"expanded:\s*(\d+)", text) or re.match(r"\s*(\d+)", text)
        return m.group(1) if m else None
    if name == "filter":
        # "none", an expression, or after a rejected write the expression
        # followed by a caret line and parse_error: (keep the first line only
        # when it is the whole content).
        if not stripped or stripped == "none" or "\n" in stripped:
            return "0"
        return stripped
    if name == "current_tracer":
        return stripped or None
    if name in ("set_event_pid", "set_ftrace_filter", "set_event"):
        if stripped.startswith("#"):         # "#### all functions enabled ####"
            return ""
        return stripped
    return stripped


class Unrestored(EnableError):
    """Something close() could not undo, said in one line (the run then
    ends with a non-zero status)."""


class UndoStack(object):
    """Undo actions, run last-first.  An action interrupted by a signal
    (BaseException) stays on the stack so a later close() retries it; one
    that fails is reported and dropped."""

    def __init__(self):
        self._items = []

    def push(self, what, fn):
        self._items.append((what, fn))

    def __len__(self):
        return len(self._items)

    def discard_last(self):
        self._items.pop()

    def run(self):
        """Run every action; returns [(what, error)] for the failed ones."""
        errors = []
        while self._items:
            what, fn = self._items[-1]
            try:
                fn()
            except Exception as e:
                errors.append((what, e))
            self._items.pop()
        return errors


class Journal(object):
    """Top-level values to restore, on disk, for recovery after SIGKILL.
    Best effort: a run that cannot write it still restores normally.  Its
    owner lock (owner.py) says whether the run that wrote it is alive."""

    def __init__(self, pid=None, dirs=JOURNAL_DIRS):
        self.pid = os.getpid() if pid is None else pid
        self.dirs = dirs
        self.path = None
        self.entries = []    # [(abs path, value)] in save order
        self.tracefs_root = None
        self.owner = None

    def _dir(self):
        return owner.lock_dir(self.dirs)

    def begin(self, tracefs_root):
        """Claim the journal and write it, empty, before the run takes the
        perf-tools lock: whenever the run is killed after this, the next
        run finds the journal stale and releases that lock with it."""
        self.tracefs_root = tracefs_root
        self.owner = owner.OwnerLock("toplevel-%d" % self.pid, self.dirs)
        self.owner.claim()
        self._write()

    def record(self, path, value, tracefs_root):
        self.entries.append((path, value))
        self.tracefs_root = tracefs_root
        self._write()

    def _write(self):
        d = self._dir()
        if d is None:
            return
        self.path = os.path.join(d, "toplevel-%d.json" % self.pid)
        tmp = self.path + ".tmp"
        data = json.dumps({"pid": self.pid, "tracefs": self.tracefs_root,
                           "restore": self.entries}).encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            CREATED.add(self.path)
        except OSError:
            self.path = None

    def remove(self):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            CREATED.discard(self.path)
            self.path = None
        if self.owner is not None:
            self.owner.release()


def read_journals(dirs=JOURNAL_DIRS):
    """[(pid, tracefs root, [(path, value)], journal path)] of every journal
    (once: /var/run is usually a link to /run)."""
    out = []
    seen = set()
    for d in dirs:
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        try:
            st = os.stat(d)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in sorted(os.listdir(d)):
            m = re.match(r"^toplevel-(\d{1,10})\.json$", name)
            if not m:
                continue
            p = os.path.join(d, name)
            try:
                with open(p) as f:
                    data = json.load(f)
                entries = [(str(a), str(b)) for a, b in data.get("restore", [])]
                out.append((int(m.group(1)), data.get("tracefs"), entries, p))
            except (IOError, OSError, ValueError, TypeError, AttributeError):
                continue
    return out


# ---------------------------------------------------------------------------
class ControlFiles(object):
    """Writes tracefs control files for one run.

    dry_run   record the writes only (for --print-program)
    save      top-level mode: read each file before its first write and
              push a write-back of the original onto `undo` (and journal it)
    """

    def __init__(self, tracefs_root, undo=None, dry_run=False, save=False, journal=None):
        self.root = tracefs_root
        self.undo = undo if undo is not None else UndoStack()
        self.dry_run = dry_run
        self.save = save
        self.journal = journal
        self.log = []
        self._saved = set()

    def _note(self, text):
        self.log.append(text)

    def note(self, text):
        """A step that is no write (taking a lock, reading /proc), as a
        comment in the record."""
        self.log.append("# " + text)

    def read(self, path):
        return tracefs.read_text(path)

    def _save(self, path):
        """Save `path` before its first write; True if a restore was pushed."""
        if not self.save or path in self._saved:
            return False
        self._saved.add(path)
        original = self.read(path)
        if original is None:
            return False
        value = restore_value(path, original)
        if value is None:
            return False
        if self.journal is not None and not self.dry_run:
            self.journal.record(path, value, self.root)
        self.undo.push("restore %s" % path, lambda: self._write_now(path, value, None))
        return True

    def save_only(self, path):
        """Save a file's value for restore without writing it now."""
        if not self.dry_run:
            self._save(path)

    def _write_now(self, path, value, what):
        try:
            tracefs.write_text(path, value if value.endswith("\n") or not value else value + "\n")
        except (IOError, OSError) as e:
            raise EnableError("%scannot write %r to %s: %s (errno %d)"
                              % (what + ": " if what else "", value.strip(), path,
                                 e.strerror or e, e.errno or 0))

    def write(self, path, value, what=None, undo_value=None):
        """Write `value` to the control file at `path`.  In top-level mode
        the original is saved first; `undo_value` (instance mode) is written
        back on close when the write must be undone even there."""
        self._note("echo '%s' > %s" % (value, path))
        if self.dry_run:
            return
        saved = self._save(path)
        try:
            self._write_now(path, value, what)
        except EnableError:
            if saved:
                # Nothing was changed: no restore (it would fail the same way).
                self.undo.discard_last()
                self._saved.discard(path)
            raise
        if undo_value is not None and not self.save:
            self.undo.push("reset %s" % path, lambda: self._write_now(path, undo_value, None))

    def try_write(self, path, value):
        """Write, returning the OSError instead of raising (filters, whose
        rejection we handle); the original is saved either way."""
        self._note("echo '%s' > %s" % (value, path))
        if self.dry_run:
            return None
        self._save(path)
        try:
            tracefs.write_text(path, value + "\n")
        except (IOError, OSError) as e:
            return e
        return None

    def claim(self, name, key=None):
        """Take the owner lock of an object before creating it (owner.py);
        False if a live run owns that name.  The lock is released on close,
        after the object's removal, and its file removed with it unless the
        object (`key` in CREATED, default `name`) could not be removed."""
        if self.dry_run:
            return True
        lock = owner.OwnerLock(name)
        if not lock.claim():
            return False
        key = key or name
        self.undo.push("release owner lock %s" % name,
                       lambda: lock.release(unlink=key not in CREATED))
        return True

    def append_definition(self, path, line, removal, what):
        """Append a probe definition to uprobe_events/kprobe_events (O_APPEND:
        never truncating other users' probes); its removal line is appended
        on close."""
        self._note("echo '%s' >> %s" % (line.rstrip("\n"), path))
        if self.dry_run:
            return
        try:
            tracefs.write_text(path, line, append=True)
        except (IOError, OSError) as e:
            raise EnableError("%s: cannot define probe in %s: %s (errno %d)"
                              % (what, path, e.strerror or e, e.errno or 0))
        name = removal.strip()[2:]          # "-:group/event" -> "group/event"
        CREATED.add(name)

        def remove():
            try:
                tracefs.write_text(path, removal, append=True)
            except (IOError, OSError) as e:
                if e.errno != errno.ENOENT:
                    raise EnableError("cannot remove probe %s from %s: %s (errno %d)"
                                      % (removal.strip(), path, e.strerror or e, e.errno or 0))
            CREATED.discard(name)
        self.undo.push("remove probe %s" % removal.strip(), remove)

    def mkdir_instance(self, path):
        self._note("mkdir %s" % path)
        if self.dry_run:
            return
        try:
            os.mkdir(path)
        except OSError as e:
            raise EnableError("cannot create instance %s: %s (errno %d)"
                              % (path, e.strerror or e, e.errno or 0))
        name = os.path.basename(path)
        CREATED.add(name)

        def rmdir():
            left = remove_or_quiesce(path, tries=_RMDIR_TRIES)
            if left is not None:
                raise Unrestored(left)
            CREATED.discard(name)
        self.undo.push("remove instance %s" % path, rmdir)

    def clear_buffer(self, buffer_path):
        """Empty a buffer (opening `trace` with O_TRUNC clears it)."""
        path = os.path.join(buffer_path, "trace")
        self._note("echo > %s" % path)
        if self.dry_run:
            return
        try:
            tracefs.write_text(path, "")
        except (IOError, OSError):
            pass
