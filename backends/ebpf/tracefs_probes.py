"""Probe events bcc may leave in tracefs.

On kernels without the kprobe/uprobe perf PMUs (Linux commits e12f03d7031a
("perf/core: Implement the 'perf_kprobe' PMU") and 33ea4b24277b
("perf/core: Implement the 'perf_uprobe' PMU"), v4.17), libbcc defines each probe
through kprobe_events/uprobe_events, naming it `<event>_bcc_<pid>`, and
removes it when the probe is detached.  A process that dies without
detaching leaves them behind; a failed detach can too.  These helpers find
and remove such definitions: our own (after close) or those of dead
processes (cleanup_stale), never a live process's.
"""

import errno
import os
import re

from kerntrace.core import tracefs

PROBE_FILES = ("kprobe_events", "uprobe_events")
_LINE = re.compile(r"^[pr](?::\d+)?:(?P<group>[^/\s]+)/(?P<name>\S+)\s")
_BCC_PID = re.compile(r"_bcc_(\d+)$")


def bcc_events(tracefs_path):
    """[(file, group, name, pid)] of bcc-named probe definitions."""
    out = []
    if not tracefs_path:
        return out
    for fname in PROBE_FILES:
        text = tracefs.read_text(os.path.join(tracefs_path, fname)) or ""
        for line in text.splitlines():
            m = _LINE.match(line + " ")
            if not m:
                continue
            p = _BCC_PID.search(m.group("name"))
            if p:
                out.append((fname, m.group("group"), m.group("name"), int(p.group(1))))
    return out


# No PID is larger (PID_MAX_LIMIT, include/linux/threads.h); a bigger
# number in a probe name would make os.kill() raise OverflowError.
_PID_MAX_LIMIT = 4 * 1024 * 1024


def _alive(pid):
    if pid > _PID_MAX_LIMIT:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError as e:
        return e.errno == errno.EPERM


def remove(tracefs_path, fname, group, name):
    """Remove one probe definition; returns None or a one-line error."""
    try:
        tracefs.write_text(os.path.join(tracefs_path, fname), "-:%s/%s\n" % (group, name),
                           append=True)
        return None
    except OSError as e:
        return "%s: cannot remove %s/%s: %s" % (fname, group, name, os.strerror(e.errno))


def remove_own(tracefs_path, ev_names, pid=None):
    """Remove definitions bcc made for our probe event names (ev_names,
    as bcc passed them to libbcc) in this process, if any remain."""
    pid = os.getpid() if pid is None else pid
    wanted = set("%s_bcc_%d" % (n, pid) for n in ev_names)
    errors = []
    for fname, group, name, _pid in bcc_events(tracefs_path):
        if name in wanted:
            err = remove(tracefs_path, fname, group, name)
            if err:
                errors.append(err)
    return errors


def remove_dead(tracefs_path, problems=None):
    """Remove bcc probe definitions whose creating process is gone; returns
    one description per removed definition ("what", as cleanup_stale()
    reports it); one line per failure is appended to `problems`."""
    done = []
    for fname, group, name, pid in bcc_events(tracefs_path):
        if pid != os.getpid() and not _alive(pid):
            err = remove(tracefs_path, fname, group, name)
            if err is None:
                done.append("%s/%s from %s (bcc probe of dead PID %d)" % (group, name, fname, pid))
            elif problems is not None:
                problems.append(err)
    return done


def cleanup_stale(host, stderr=None, problems=None, notes=None):
    """The eBPF backend's Backend.cleanup_stale(): what killed runs left
    in tracefs is bcc's probe definitions (its maps and programs die with
    the process)."""
    failed = []
    removed = remove_dead(host.tracefs_path(), problems=failed)
    if stderr is not None:
        for what in removed:
            stderr.write("kerntrace: removed %s left by a process that is gone\n" % what)
        for line in failed:
            stderr.write("kerntrace: %s\n" % line)
    if problems is not None:
        problems.extend(failed)
    return removed
