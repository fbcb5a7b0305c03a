"""Finding tracefs and reading event format files.

Shared by both backends (the eBPF backend needs to know which tracepoints and
fields exist; the ftrace backend decodes with the formats) and by `doctor`.
"""

import errno
import os
import re
import sys

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"


class Location(object):
    """Where tracefs is, how it was found, and whether we mounted it."""

    def __init__(self, path, how, mounted_here=False):
        self.path = path
        self.how = how
        self.mounted_here = mounted_here

    def __repr__(self):
        return "Location(%r, %r)" % (self.path, self.how)


def _is_tracing_dir(path):
    # A tracefs root has a README (since 2.6.31) and a trace file.
    return os.path.isfile(os.path.join(path, "README")) or os.path.exists(os.path.join(path, "trace"))


def _mounts(proc_mounts="/proc/mounts"):
    try:
        with open(proc_mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    # /proc/mounts escapes spaces in paths as \040
                    yield parts[0], parts[1].replace("\\040", " "), parts[2]
    except (IOError, OSError):
        return


def locate(mount=False, proc_mounts="/proc/mounts", stderr=None):
    """Find tracefs in this order: a tracefs entry in /proc/mounts,
    /sys/kernel/tracing with a README, mounting tracefs there (only when
    `mount` and we are root), /sys/kernel/debug/tracing (kernels before 4.1,
    where tracing lives in debugfs).  Returns a Location or None."""
    for _dev, path, fstype in _mounts(proc_mounts):
        if fstype == "tracefs" and _is_tracing_dir(path):
            return Location(path, "tracefs mounted at %s (/proc/mounts)" % path)
    if _is_tracing_dir(TRACEFS):
        return Location(TRACEFS, "%s has a README" % TRACEFS)
    if mount and os.path.isdir(TRACEFS) and os.geteuid() == 0 and tracefs_supported():
        if _mount_tracefs():
            if stderr is not None:
                stderr.write("kerntrace: mounted tracefs at %s for this run only\n" % TRACEFS)
            return Location(TRACEFS, "mounted tracefs at %s for this run only" % TRACEFS,
                            mounted_here=True)
    for _dev, path, fstype in _mounts(proc_mounts):
        if fstype == "debugfs" and _is_tracing_dir(os.path.join(path, "tracing")):
            p = os.path.join(path, "tracing")
            return Location(p, "debugfs mounted at %s" % path)
    if _is_tracing_dir(DEBUGFS_TRACING):
        return Location(DEBUGFS_TRACING, "%s exists" % DEBUGFS_TRACING)
    return None


def denied(proc_mounts="/proc/mounts"):
    """Where tracefs is mounted but this process may not look inside (it is
    root's alone, mode 0700), or None.  locate() cannot tell such a tracefs
    from none at all; this tells the user "permission denied" instead of
    "not mounted"."""
    candidates = [path for _dev, path, fstype in _mounts(proc_mounts) if fstype == "tracefs"]
    candidates += [os.path.join(path, "tracing")
                   for _dev, path, fstype in _mounts(proc_mounts) if fstype == "debugfs"]
    candidates += [TRACEFS, DEBUGFS_TRACING]
    for path in candidates:
        try:
            os.listdir(path)
        except (IOError, OSError) as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                return path
    return None


def tracefs_supported(proc_filesystems="/proc/filesystems"):
    try:
        with open(proc_filesystems) as f:
            return any(line.split()[-1:] == ["tracefs"] for line in f)
    except (IOError, OSError):
        return False


# unshare(2) and mount(2) flags (include/uapi/linux/sched.h, fs.h).
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_SLAVE = 0x80000


def _mount_tracefs():
    """Mount tracefs at TRACEFS for this process only.

    The mount is made in a mount namespace of our own, whose mounts are
    slaves of the host's (host mounts still reach us, ours never reach the
    host): it disappears when the process ends, however it ends, and a
    concurrent run never loses a tracefs another run mounted.  Tracing
    state is the same whichever mount it is seen through.  unshare() needs
    a single-threaded process (true before any tool starts) and
    CAP_SYS_ADMIN; without them nothing is mounted."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0:
            return False
        # From here on we are alone in the namespace: nothing may propagate
        # back before the root is made a slave.
        if libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) != 0:
            return False
        if libc.mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return _is_tracing_dir(TRACEFS)


# ---------------------------------------------------------------------------
# Event format files:
#   name: block_rq_issue
#   ID: 1234
#   format:
#       field:unsigned short common_type;  offset:0;  size:2;  signed:0;
#       ...
#       field:char rwbs[10];  offset:20;  size:10;  signed:0;
#       field:__data_loc char[] cmd;  offset:32;  size:4;  signed:1;
#   print fmt: "%d,%d %s ..."
class FormatField(object):
    __slots__ = ("name", "ctype", "offset", "size", "signed", "array_len",
                 "data_loc", "common")

    def __init__(self, name, ctype, offset, size, signed, array_len=None,
                 data_loc=False, common=False):
        self.name = name
        self.ctype = ctype
        self.offset = offset
        self.size = size
        self.signed = signed
        self.array_len = array_len
        self.data_loc = data_loc
        self.common = common

    @property
    def rel_loc(self):
        """A dynamic field whose offset counts from the end of its own 4 bytes.
        Since Linux commit 05770dd0ad11 ("tracing: Support __rel_loc relative
        dynamic data location attribute") (v5.17)."""
        return self.ctype.startswith("__rel_loc")

    @property
    def is_string(self):
        """A char array or a __data_loc / __rel_loc char[] (a NUL-terminated
        string)."""
        base = re.sub(r"^__(data|rel)_loc", "", self.ctype).replace("unsigned", "").strip()
        return base.startswith("char") and (self.array_len is not None or self.data_loc)

    def __repr__(self):
        return "FormatField(%r %r @%d/%d%s)" % (self.ctype, self.name, self.offset,
                                                self.size, " signed" if self.signed else "")


class EventFormat(object):
    def __init__(self, system, name, id, fields, print_fmt):
        self.system = system
        self.name = name
        self.id = id
        self.fields = fields
        self.print_fmt = print_fmt
        self.by_name = {f.name: f for f in fields}

    def field(self, name):
        return self.by_name.get(name)

    def payload_fields(self):
        return [f for f in self.fields if not f.common]


_FIELD_RE = re.compile(r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                       r"(?:\s*signed:(?P<signed>-?\d+);)?")


def parse_field_decl(decl):
    """'unsigned char rwbs[10]' -> ('unsigned char', 'rwbs', 10, False);
    '__data_loc char[] name' -> ('__data_loc char[]', 'name', None, True)."""
    decl = decl.strip()
    data_loc = decl.startswith("__data_loc") or decl.startswith("__rel_loc")
    m = re.match(r"^(?P<type>.*?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(?P<len>[^\]]*)\])?$", decl)
    if not m:
        raise ValueError("cannot parse field declaration %r" % decl)
    array_len = None
    if m.group("len") is not None:
        try:
            array_len = int(m.group("len"), 0)
        except ValueError:
            array_len = 0   # e.g. [TASK_COMM_LEN] in old kernels; size tells
    return m.group("type").strip(), m.group("name"), array_len, data_loc


# C types that are signed on x86 (char is, before v6.2's -funsigned-char),
# and the kernel's signed typedefs.  Any other type, a pointer or an unknown
# typedef (sector_t, dev_t, size_t, gfp_t ...) is read as unsigned, so an
# all-ones sector_t never turns into -1.
_SIGNED_TYPES = frozenset(("char", "signed char", "short", "short int", "signed short", "int",
                           "signed", "signed int", "long", "long int", "signed long",
                           "long long", "long long int", "signed long long", "s8", "s16",
                           "s32", "s64", "__s8", "__s16", "__s32", "__s64", "pid_t", "ssize_t",
                           "loff_t", "off_t", "time_t", "clock_t", "ktime_t", "local_t"))


def guess_signed(ctype, array_len=None, data_loc=False):
    """Signedness of a field of a format file without the signed: column."""
    if data_loc or "*" in ctype:
        return False
    base = " ".join(w for w in ctype.split() if w not in ("const", "volatile", "struct"))
    return base in _SIGNED_TYPES


def parse_format(text, system=None):
    name = None
    ev_id = None
    fields = []
    print_fmt = ""
    in_common = True
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            ev_id = int(line.split(":", 1)[1])
        elif line.startswith("print fmt:"):
            print_fmt = line.split(":", 1)[1].strip()
        elif not line.strip() and fields:
            # The blank line after the common_* block separates it from the payload.
            in_common = False
        else:
            m = _FIELD_RE.match(line)
            if m:
                ctype, fname, array_len, data_loc = parse_field_decl(m.group("decl"))
                size = int(m.group("size"))
                signed = m.group("signed")
                if signed is None:
                    # Before Linux 2.6.33 ("tracing: Add signed field to format
                    # files") there was no signed: column; infer from the type.
                    signed_flag = guess_signed(ctype, array_len, data_loc)
                else:
                    signed_flag = signed.strip() == "1"
                fields.append(FormatField(fname, ctype, int(m.group("off")), size,
                                          signed_flag, array_len, data_loc,
                                          common=fname.startswith("common_") and in_common))
    if name is None:
        raise ValueError("not an event format file")
    return EventFormat(system, name, ev_id, fields, print_fmt)


def event_dir(root, category, name):
    return os.path.join(root, "events", category, name)


def read_format(root, category, name):
    """The EventFormat of an event, or None if the kernel does not have it
    (or we may not read it: EACCES/EPERM is an answer, not a crash)."""
    path = os.path.join(event_dir(root, category, name), "format")
    try:
        with open(path) as f:
            return parse_format(f.read(), category)
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM):
            return None
        raise
    except ValueError:
        return None


def read_text(path, default=None):
    """A small text file's content (tracefs, sysfs, procfs, headers), or
    `default` when it cannot be read or is not text."""
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError, UnicodeDecodeError):
        return default


def write_text(path, text, append=False):
    """Write a tracefs control file in one write() call, as the kernel
    expects; raises OSError with the kernel's errno."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
        os.write(fd, data)
    finally:
        os.close(fd)


if __name__ == "__main__":  # pragma: no cover - debugging aid
    loc = locate()
    sys.stdout.write("%r\n" % (loc,))
