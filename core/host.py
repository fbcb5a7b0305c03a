"""Facts about this host that do not belong to one backend: privileges,
kernel lockdown, where tracefs is and which events exist.  Every probe
answers; none raises (ENOENT and EPERM are answers)."""

import os
import platform

from . import lockdown, tracefs
from .backend import Capability


class Host(object):
    """Lazily probed, cached host facts.  `mount_tracefs`: whether
    tracefs() may mount tracefs where none is (as root); `stderr`: where
    mounting it says so.  Tests fake the file system (pyfakefs) rather
    than point a Host elsewhere."""

    def __init__(self, mount_tracefs=True, stderr=None):
        self._mount = mount_tracefs
        self._stderr = stderr
        self._tracefs = None
        self._tracefs_probed = False
        self._formats = {}
        self._lockdown = None
        # The saved trace (core.recording.SavedTrace) to replay instead of
        # tracing this host (--input): backends plan a replay of it.
        self.saved_trace = None

    # -- identity ----------------------------------------------------------
    @property
    def hostname(self):
        return os.uname().nodename    # (gethostname(2) is uname's nodename)

    @property
    def kernel_release(self):
        return platform.release()

    # -- privileges --------------------------------------------------------
    def is_root(self):
        return os.geteuid() == 0

    def lockdown(self):
        """The kernel's lockdown.Lockdown (mode "none", "integrity",
        "confidentiality" or "unknown", and how we know)."""
        if self._lockdown is None:
            self._lockdown = lockdown.detect()
        return self._lockdown

    # -- tracefs -----------------------------------------------------------
    def tracefs(self):
        """tracefs.Location or None.  Mounts tracefs when root and allowed."""
        if not self._tracefs_probed:
            self._tracefs_probed = True
            self._tracefs = tracefs.locate(mount=self._mount and self.is_root(),
                                           stderr=self._stderr)
        return self._tracefs

    def tracefs_missing(self):
        """Why tracefs() found nothing, as one reason: a tracefs that is
        there but root's alone (permission denied), or none mounted."""
        path = tracefs.denied()
        if path is not None:
            return "tracefs at %s: permission denied (tracing needs root)" % path
        return "no tracefs: not mounted and could not be mounted"

    def tracefs_path(self):
        loc = self.tracefs()
        return loc.path if loc else None

    def event_format(self, category, name):
        """The EventFormat of a tracepoint, or None if absent/unreadable."""
        key = (category, name)
        if key not in self._formats:
            p = self.tracefs_path()
            self._formats[key] = tracefs.read_format(p, category, name) if p else None
        return self._formats[key]

    def capabilities(self):
        caps = [Capability("root", self.is_root(),
                           "effective uid %d" % os.geteuid())]
        lock = self.lockdown()
        caps.append(Capability("lockdown", lock.mode == "none",
                               "%s (%s)" % (lock.mode, lock.how)))
        loc = self.tracefs()
        caps.append(Capability("tracefs", loc is not None,
                               loc.how if loc else self.tracefs_missing()))
        return caps
