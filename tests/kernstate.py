"""What the tests know about the live kernel's tracing state."""

import os
import re

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_OWNER = re.compile(r"kerntrace[-_](\d+)")


def tracefs():
    for d in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(d, "trace")):
            return d
    return None


def ensure_tracefs():
    """Mount tracefs as a user's first run would (CI boots without it)."""
    if tracefs() is None and os.geteuid() == 0:
        os.system("mount -t tracefs nodev /sys/kernel/tracing >/dev/null 2>&1")
    return tracefs()


def live_skip_reason():
    if os.geteuid() != 0:
        return "needs root to trace the live kernel"
    if ensure_tracefs() is None:
        return "tracefs is not available on this host"
    return None


_ebpf_reason = []


def ebpf_skip_reason():
    if _ebpf_reason:
        return _ebpf_reason[0]
    reason = None
    try:
        from kerntrace.backends.ebpf import bccfind
        bcc = bccfind.import_bcc()
        if bcc is None:
            reason = "the distribution's bcc (python3-bpfcc) is not installed"
    except Exception as e:  # pragma: no cover - reported as the skip reason
        reason = "bcc unusable: %s" % e
    _ebpf_reason.append(reason)
    return reason


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return ""


def snapshot():
    t = tracefs()
    if not t:
        return {}
    return {
        "instances": set(os.listdir(os.path.join(t, "instances")))
        if os.path.isdir(os.path.join(t, "instances")) else set(),
        "uprobe_events": _read(os.path.join(t, "uprobe_events")),
        "kprobe_events": _read(os.path.join(t, "kprobe_events")),
        "set_event": _read(os.path.join(t, "set_event")),
        "current_tracer": _read(os.path.join(t, "current_tracer")).strip(),
    }


_OBJECT = re.compile(r"(kerntrace-\d+-[A-Za-z0-9_]+|kerntrace_\d+_\d+)")


def owner_alive(obj):
    """Does a live run hold the owner lock of this kerntrace object (an
    instance or probe event name; see backends/ftrace/owner.py)?  None: it
    has no lock file."""
    from kerntrace.backends.ftrace.owner import HELD, MISSING, OwnerLock
    lock = OwnerLock(obj)
    state = lock.take_if_abandoned()
    if state is True:
        lock.release(unlink=False)
        return False
    return None if state == MISSING else state == HELD


def owned_by_dead_or_me(name):
    m = _OWNER.search(name)
    if not m:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return True
    obj = _OBJECT.search(name)
    alive = owner_alive(obj.group(1)) if obj else None
    if alive is not None:
        return not alive        # a run in another PID namespace, or a reused PID
    return not _pid_alive(pid)


def kerntrace_state():
    """Instances and probe definitions named after kerntrace or made by bcc,
    with owner PID."""
    t = tracefs()
    out = []
    if not t:
        return out
    inst = os.path.join(t, "instances")
    if os.path.isdir(inst):
        out += ["instance " + n for n in os.listdir(inst) if n.startswith("kerntrace")]
    for f in ("uprobe_events", "kprobe_events"):
        out += ["%s %s" % (f, line) for line in _read(os.path.join(t, f)).splitlines()
                if "kerntrace" in line]
    # What bcc defines in tracefs for the eBPF backend (where the kernel has
    # no probe PMU), named after the defining process.
    from kerntrace.backends.ebpf.tracefs_probes import bcc_events
    out += ["%s %s/%s (bcc, kerntrace-%d)" % e for e in bcc_events(t)]
    return out


def leaks(before):
    """Leaks since `before`: kerntrace state whose owner is dead or is this
    test process, and top-level changes."""
    now = snapshot()
    if not now:
        return []
    out = [s for s in kerntrace_state() if owned_by_dead_or_me(s)]
    if before is not None:
        for key in ("set_event", "current_tracer"):
            if now.get(key) != before.get(key):
                out.append("%s changed: %r -> %r" % (key, before.get(key), now.get(key)))
    return out
