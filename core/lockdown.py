"""Kernel lockdown: which mode, and how we know.

The lockdown LSM's securityfs file says it ("none [integrity]
confidentiality").  But securityfs is not always mounted, and a missing
file then proves nothing: a kernel can be locked down by its configuration
with no securityfs in sight.  So, in order:

1. the file, where securityfs is mounted (mounted without the file: the
   kernel has no lockdown LSM, so nothing is locked down);
2. the file in a private mount of securityfs, made by a child process in
   its own mount namespace (root, util-linux `unshare`): the host's mounts
   are untouched;
3. the effect: with CAP_SYS_RAWIO, opening /proc/kcore (a confidentiality
   reason, LOCKDOWN_KCORE) or /dev/mem (an integrity one, LOCKDOWN_DEV_MEM)
   fails with EPERM only under lockdown; the opens read nothing;
4. otherwise "unknown", never "none".
"""

import errno
import os
import subprocess

MODES = ("none", "integrity", "confidentiality")
UNKNOWN = "unknown"
SECURITYFS = "/sys/kernel/security"
LOCKDOWN_FILE = SECURITYFS + "/lockdown"
KCORE = "/proc/kcore"
DEV_MEM = "/dev/mem"
CAP_SYS_RAWIO = 17


class Lockdown(object):
    """mode  "none", "integrity", "confidentiality" or "unknown"
    how   one line: how we know (or why we cannot tell)"""

    __slots__ = ("mode", "how")

    def __init__(self, mode, how):
        self.mode = mode
        self.how = how

    def __repr__(self):
        return "Lockdown(%s: %s)" % (self.mode, self.how)


def parse(text):
    """The bracketed mode of the lockdown file's text, or None."""
    for word in (text or "").split():
        if word.startswith("[") and word.strip("[]") in MODES:
            return word.strip("[]")
    return None


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def securityfs_mounted(mounts="/proc/mounts"):
    for line in (_read(mounts) or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "securityfs" and parts[1] == SECURITYFS:
            return True
    return False


def read_privately(timeout=10):
    """The lockdown file's text from a securityfs mounted in a private
    mount namespace (gone with the child), "" when securityfs has no such
    file, or None when that cannot be done here."""
    import shutil   # (pulls in compression modules: only when asked)
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare:
        return None
    # util-linux before 2.27 leaves the new namespace's mounts shared with
    # ours: made private first, the securityfs mount cannot propagate back.
    script = ("mount --make-rprivate / || exit 2; "
              "mount -t securityfs securityfs %s || exit 2; "
              "[ -e %s ] || exit 3; cat %s" % (SECURITYFS, LOCKDOWN_FILE, LOCKDOWN_FILE))
    try:
        p = subprocess.run([unshare, "--mount", "sh", "-c", script], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, universal_newlines=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode == 3:
        return ""
    return p.stdout if p.returncode == 0 else None


def _capable(cap, status="/proc/self/status"):
    for line in (_read(status) or "").splitlines():
        if line.startswith("CapEff:"):
            try:
                return bool(int(line.split()[1], 16) >> cap & 1)
            except (IndexError, ValueError):
                return False
    return False


def open_errno(path):
    """0 if `path` opens read-only (closed at once), else the errno."""
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except OSError as e:
        return e.errno


def from_effects(kcore, mem):
    """Lockdown told by the errnos of opening /proc/kcore and /dev/mem
    (with CAP_SYS_RAWIO), or None when they do not tell."""
    if kcore == errno.EPERM:
        return Lockdown("confidentiality", "opening %s: EPERM" % KCORE)
    if mem == errno.EPERM and kcore == 0:
        return Lockdown("integrity", "opening %s: EPERM, %s opens" % (DEV_MEM, KCORE))
    if mem == errno.EPERM:
        return Lockdown(UNKNOWN, "locked down (opening %s: EPERM), integrity or "
                                 "confidentiality: %s does not tell" % (DEV_MEM, KCORE))
    if mem == 0:
        return Lockdown("none", "%s opens" % DEV_MEM)
    return None


def detect():
    """The Lockdown of the running kernel; never raises."""
    text = _read(LOCKDOWN_FILE)
    if text is not None and parse(text):
        return Lockdown(parse(text), LOCKDOWN_FILE)
    if securityfs_mounted():
        return Lockdown("none", "no lockdown LSM (securityfs has no lockdown file)")
    text = read_privately()
    if text == "":
        return Lockdown("none", "no lockdown LSM (securityfs, mounted privately, has no "
                                "lockdown file)")
    if parse(text):
        return Lockdown(parse(text), "%s of a private securityfs mount" % LOCKDOWN_FILE)
    if _capable(CAP_SYS_RAWIO):
        told = from_effects(open_errno(KCORE), open_errno(DEV_MEM))
        if told is not None:
            return told
    return Lockdown(UNKNOWN, "securityfs is not mounted and no probe could tell")
