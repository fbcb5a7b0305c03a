"""Which kernel headers bcc will compile against, and whether they belong
to the running kernel.

bcc compiles against $BCC_KERNEL_SOURCE when it is set (and nothing else
from /lib/modules), else /lib/modules/$(uname -r)/build (its source/ beside
it when both exist); when that tree lacks include/linux/kconfig.h it falls
back to the kernel's built-in headers archive (CONFIG_IKHEADERS,
/sys/kernel/kheaders.tar.xz), else it prints "Unable to find kernel
headers" and fails.  Headers of another release still compile
tracepoint and uprobe programs (their arguments come from tracefs formats and
registers) but kernel-internal struct layouts in them may be wrong; we only
read tracepoint fields, registers and user memory, and say so.
"""

import os
import platform
import re

from kerntrace.core.tracefs import read_text

KHEADERS = "/sys/kernel/kheaders.tar.xz"
KCONFIG_H = os.path.join("include", "linux", "kconfig.h")
_UTS = re.compile(r'^\s*#\s*define\s+UTS_RELEASE\s+"([^"]+)"', re.M)


class HeadersInfo(object):
    """path      where bcc will find headers (None: nowhere)
    version   the release they were built for, when we can tell
    release   the running kernel's release
    source    "BCC_KERNEL_SOURCE", "modules" or "kheaders"
    env_path  $BCC_KERNEL_SOURCE when set (bcc then looks nowhere else)
    """

    __slots__ = ("path", "version", "release", "source", "env_path")

    def __init__(self, path, version, release, source, env_path=None):
        self.path = path
        self.version = version
        self.release = release
        self.source = source
        self.env_path = env_path

    @property
    def found(self):
        return self.path is not None

    @property
    def matches(self):
        """True/False, or None when the headers' version is unknown."""
        if self.source == "kheaders":
            return True
        if not self.version:
            return None
        return self.version == self.release

    def describe(self):
        if not self.found and self.env_path:
            return ("no kernel headers in BCC_KERNEL_SOURCE=%s (no %s there), no %s"
                    % (self.env_path, KCONFIG_H, KHEADERS))
        if not self.found:
            return ("no kernel headers for %s (none in /lib/modules/%s/build, no %s); install "
                    "the distribution's linux-headers package" % (self.release, self.release,
                                                                   KHEADERS))
        if self.source == "kheaders":
            return "the kernel's built-in headers (%s)" % KHEADERS
        if self.matches is False:
            return "headers %s for kernel %s: tracepoint/uprobe args only" % (
                self.version, self.release)
        if self.matches is None:
            return "headers at %s (version unknown) for kernel %s" % (self.path, self.release)
        return "headers %s at %s" % (self.version, self.path)


def headers_version(path):
    """The kernel release a headers tree was built for: utsrelease.h, then
    include/config/kernel.release, then the directory name
    (linux-headers-<release>)."""
    text = read_text(os.path.join(path, "include", "generated", "utsrelease.h"))
    if text:
        m = _UTS.search(text)
        if m:
            return m.group(1)
    text = read_text(os.path.join(path, "include", "config", "kernel.release"))
    if text and text.strip():
        return text.strip()
    base = os.path.basename(os.path.realpath(path))
    if base.startswith("linux-headers-"):
        return base[len("linux-headers-"):]
    return None


def has_headers(path):
    # bcc's test for a usable tree (iovisor/bcc#3588: a leftover build
    # directory without headers must not count).
    return os.path.isfile(os.path.join(path, KCONFIG_H))


def locate(release=None, environ=None, modules_root="/lib/modules"):
    release = release or platform.release()
    env = os.environ if environ is None else environ
    src = env.get("BCC_KERNEL_SOURCE")
    if src:
        if has_headers(src):
            return HeadersInfo(src, headers_version(src), release, "BCC_KERNEL_SOURCE", src)
    else:
        build = os.path.join(modules_root, release, "build")
        source = os.path.join(modules_root, release, "source")
        compiled = source if os.path.isdir(build) and os.path.isdir(source) else build
        if has_headers(compiled):
            p = build if os.path.isdir(build) else compiled
            return HeadersInfo(p, headers_version(p), release, "modules")
    if os.path.exists(KHEADERS):
        return HeadersInfo(KHEADERS, release, release, "kheaders", src)
    return HeadersInfo(None, None, release, None, src)
