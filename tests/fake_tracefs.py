"""Fake tracefs trees of several kernel eras, for pyfakefs tests.

    from fake_tracefs import FakeTracefs
    def test_x(fs, monkeypatch):
        t = FakeTracefs(fs, "3.10").install(monkeypatch)
        t.root            # "/sys/kernel/debug/tracing"
        t.writes          # [(path, text, append)] every control-file write

Eras (what differs is what kerntrace feature-detects):

  2.6.32  mainline: tracing only in debugfs (/sys/kernel/debug/tracing), no
          tracefs in /proc/filesystems, no instances/, no uprobe_events, no
          kprobe_events (v2.6.33), format files without the signed: column,
          no "~" filter operator (the 2.6.32 formats)
  rhel6   RHEL 6.8's 2.6.32: as 2.6.32, with kprobe_events, "~" and the
          signed: column backported (the rhel6 formats)
  3.4     v3.0-v3.6: debugfs, kprobe_events and "~", no instances/ (v3.10),
          no uprobe_events (v3.5) (the padded 3.4 formats)
  3.10    debugfs, instances/, uprobe_events and kprobe_events (RHEL 7)
  4.4     tracefs auto-mounted under debugfs, set_event_pid (v4.4) but not
          yet options/event-fork (v4.7) or record-tgid
  4.x     (4.19) set_event_pid, event-fork, record-tgid, mono clock
  5.10    /sys/kernel/tracing, README lists the ustring fetch type
  5.15    as 5.10 (5 flag characters in trace text)
  6.11    block ioprio field, buffer_subbuf_size_kb (formats of 6.18)

Format texts come from core/formats/ (the era corpus, core.known_formats)
plus a few small ones laid out here per era (getppid syscalls, the function
tracer's event).  `preload` puts what the kernel recorded into every buffer
(the top level and each instance made later), for runs that read it.

pyfakefs files are plain files, so the kernel behaviour of control files is
emulated here, and ONLY what kerntrace relies on (FakeKernel): mkdir of an
instance populates it and rmdir removes it whole; writes to uprobe_events /
kprobe_events append or remove definitions (`-:grp/ev`) and create/remove
their event directories; trace_clock selects a clock; filter "0" reads back
"none"; kernels without "~" reject it with EINVAL; `deny` paths fail with
EACCES.  The live tests (test_ftrace_live.py) check the real semantics.
"""

import errno
import os
import re
import struct

from kerntrace.core import known_formats
from kerntrace.core import tracefs as core_tracefs

DEBUGFS_ROOT = "/sys/kernel/debug/tracing"
TRACEFS_ROOT = "/sys/kernel/tracing"

# The four common fields of kernels since 3.10 (older eras: known_formats).
COMMON_FIELDS = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

def era_host(fs, monkeypatch, tasks=()):
    """The parts of a fake host of an old kernel era that every era test
    needs: tracefs not mountable by kerntrace (the fake tree is what there
    is), /var/tmp and /run, no third-party plugins, and no bcc (the ftrace
    backend's reason to be: a bcc this process loaded for the real kernel
    must not compile against the fake tree's formats).  `tasks`:
    (comm, pid) of the processes /proc lists when the run starts."""
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    for d in ("/var/tmp", "/run"):
        if not fs.exists(d):
            fs.create_dir(d)
    for comm, pid in tasks:
        fs.create_file("/proc/%d/task/%d/comm" % (pid, pid), contents=comm + "\n")
    monkeypatch.setenv("KERNTRACE_DISABLE_PLUGINS", "1")
    from kerntrace.backends.ebpf import bccfind
    monkeypatch.setattr(bccfind, "status",
                        lambda: bccfind.BccStatus(why_not="no bcc on this era's host"))


def era_common_fields(formats_era):
    """(the common field lines of an era's formats, where its first 8-byte
    aligned payload field goes): 8 after the four common fields of 3.10 and
    later, 16 after 2.6.32's lock_depth or 3.0-3.6's padding (12 bytes)."""
    issue = known_formats.FORMATS[formats_era][("block", "block_rq_issue")]
    common = issue[issue.index("format:\n") + len("format:\n"):issue.index("\n\n")] + "\n"
    padded = "common_lock_depth" in common or "common_padding" in common
    return common, 16 if padded else 8


def _extra_formats(formats_era):
    """A few small formats beside known_formats' (getppid syscalls, the
    function tracer's event), laid out as that era's kernels lay them out:
    the era's common fields (with lock_depth or padding: payload from 12),
    its syscall number field (`nr` up to v4.4, none on RHEL 6)."""
    issue = known_formats.FORMATS[formats_era][("block", "block_rq_issue")]
    common = issue[issue.index("format:\n") + len("format:\n"):issue.index("\n\n")] + "\n"
    padded = "common_lock_depth" in common or "common_padding" in common
    signed = "signed:" in common

    def field(decl, off, size, sign):
        return "\tfield:%s;\toffset:%d;\tsize:%d;%s\n" % (decl, off, size,
                                                         "\tsigned:%d;" % sign if signed else "")
    nr_name = "nr" if formats_era in ("2.6.32", "3.4", "3.10", "4.4") else "__syscall_nr"
    nr = "" if formats_era == "rhel6" else field("int " + nr_name, 12 if padded else 8, 4, 1)
    return {
        ("syscalls", "sys_enter_getppid"):
            "name: sys_enter_getppid\nID: 300\nformat:\n%s\n%s\nprint fmt: \"\"\n"
            % (common, nr),
        ("syscalls", "sys_exit_getppid"):
            "name: sys_exit_getppid\nID: 301\nformat:\n%s\n%s%s\nprint fmt: \"0x%%lx\", "
            "REC->ret\n" % (common, nr, field("long ret", 16, 8, 1)),
        ("ftrace", "function"):
            "name: function\nID: 1\nformat:\n%s\n%s%s\nprint fmt: \" %%ps <-- %%ps\", "
            "(void *)REC->ip, (void *)REC->parent_ip\n"
            % (common, field("unsigned long ip", 16 if padded else 8, 8, 0),
               field("unsigned long parent_ip", 24 if padded else 16, 8, 0)),
    }


_README_OLD = """tracing mini-HOWTO:
# mount -t debugfs nodev /sys/kernel/debug
# cat /sys/kernel/debug/tracing/available_tracers
"""
_README_UPROBE = _README_OLD + """  uprobe_events\t\t- Add/remove/show the userspace dynamic events
\t  accepts: event-definitions (one definition per line)
\t     type: s8/16/32/64, u8/16/32/64, x8/16/32/64, string
"""
_README_USTRING = _README_UPROBE.replace("string\n", "string, ustring, symbol\n")


class Era(object):
    def __init__(self, name, formats_era, root, mounts, filesystems, instances, uprobes,
                 kprobes, glob_op, clocks, readme, set_event_pid, subbuf, signed=True,
                 event_fork=None, record_tgid=None, hist=False):
        self.name = name
        self.formats_era = formats_era
        self.root = root
        self.mounts = mounts
        self.filesystems = filesystems
        self.instances = instances
        self.uprobes = uprobes
        self.kprobes = kprobes
        self.glob_op = glob_op
        self.clocks = clocks
        self.readme = readme
        self.set_event_pid = set_event_pid
        self.subbuf = subbuf
        self.signed = signed
        self.event_fork = set_event_pid if event_fork is None else event_fork
        self.record_tgid = set_event_pid if record_tgid is None else record_tgid
        # CONFIG_HIST_TRIGGERS (v4.7, default off): per-event trigger and
        # hist files.  No era has it unless a test asks (hist=True).
        self.hist = hist


_FS_OLD = "nodev\tsysfs\nnodev\tproc\nnodev\tdebugfs\n\text4\n"
_FS_NEW = _FS_OLD + "nodev\ttracefs\n"
_MOUNT_DEBUGFS = "debugfs /sys/kernel/debug debugfs rw,relatime 0 0\n"

_CLOCKS_OLD = ("local", "global")
_CLOCKS_3 = ("local", "global", "counter", "uptime", "perf")
_CLOCKS_4 = _CLOCKS_3 + ("mono", "mono_raw", "x86-tsc")
_CLOCKS_5 = _CLOCKS_3 + ("mono", "mono_raw", "boot", "x86-tsc")
_MOUNTS_DEBUGFS = "/dev/vda1 / ext4 rw 0 0\n" + _MOUNT_DEBUGFS
_MOUNTS_AUTOMOUNT = _MOUNTS_DEBUGFS + "tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0\n"
_MOUNTS_TRACEFS = "/dev/vda1 / ext4 rw 0 0\ntracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n"

ERAS = {
    "2.6.32": Era("2.6.32", "2.6.32", DEBUGFS_ROOT, _MOUNTS_DEBUGFS, _FS_OLD,
                  instances=False, uprobes=False, kprobes=False, glob_op=False,
                  clocks=_CLOCKS_OLD, readme=_README_OLD, set_event_pid=False,
                  subbuf=False, signed=False),
    "rhel6": Era("rhel6", "rhel6", DEBUGFS_ROOT, _MOUNTS_DEBUGFS, _FS_OLD,
                 instances=False, uprobes=False, kprobes=True, glob_op=True,
                 clocks=_CLOCKS_OLD, readme=_README_OLD, set_event_pid=False, subbuf=False),
    "3.4": Era("3.4", "3.4", DEBUGFS_ROOT, _MOUNTS_DEBUGFS, _FS_OLD,
               instances=False, uprobes=False, kprobes=True, glob_op=True,
               clocks=("local", "global", "counter"), readme=_README_OLD,
               set_event_pid=False, subbuf=False),
    "4.4": Era("4.4", "4.4", DEBUGFS_ROOT, _MOUNTS_AUTOMOUNT, _FS_OLD + "nodev\ttracefs\n",
               instances=True, uprobes=True, kprobes=True, glob_op=True, clocks=_CLOCKS_4,
               readme=_README_UPROBE, set_event_pid=True, subbuf=False, event_fork=False,
               record_tgid=False),
    "5.10": Era("5.10", "5.10", TRACEFS_ROOT, _MOUNTS_TRACEFS, _FS_OLD + "nodev\ttracefs\n",
                instances=True, uprobes=True, kprobes=True, glob_op=True, clocks=_CLOCKS_5,
                readme=_README_UPROBE.replace("string\n", "string, ustring\n"),
                set_event_pid=True, subbuf=False),
    "3.10": Era("3.10", "3.10", DEBUGFS_ROOT,
                "/dev/vda1 / xfs rw 0 0\n" + _MOUNT_DEBUGFS, _FS_OLD,
                instances=True, uprobes=True, kprobes=True, glob_op=True,
                clocks=("local", "global", "counter", "uptime", "perf"),
                readme=_README_UPROBE, set_event_pid=False, subbuf=False),
    "4.x": Era("4.x", "4.19", DEBUGFS_ROOT,
               "/dev/vda1 / ext4 rw 0 0\n" + _MOUNT_DEBUGFS
               + "tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0\n", _FS_NEW,
               instances=True, uprobes=True, kprobes=True, glob_op=True,
               clocks=("local", "global", "counter", "uptime", "perf", "mono", "mono_raw",
                       "x86-tsc"),
               readme=_README_UPROBE, set_event_pid=True, subbuf=False),
    "5.15": Era("5.15", "5.15", TRACEFS_ROOT,
                "/dev/vda1 / ext4 rw 0 0\ntracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n",
                _FS_NEW, instances=True, uprobes=True, kprobes=True, glob_op=True,
                clocks=("local", "global", "counter", "uptime", "perf", "mono", "mono_raw",
                        "boot", "x86-tsc"),
                readme=_README_USTRING, set_event_pid=True, subbuf=False),
    "6.11": Era("6.11", "6.18", TRACEFS_ROOT,
                "/dev/vda1 / ext4 rw 0 0\ntracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n",
                _FS_NEW, instances=True, uprobes=True, kprobes=False, glob_op=True,
                clocks=("local", "global", "counter", "uptime", "perf", "mono", "mono_raw",
                        "boot", "tai", "x86-tsc"),
                readme=_README_USTRING, set_event_pid=True, subbuf=True),
}

# Files of a buffer (the top level and each instance) and their contents.
_OPTIONS = ("overwrite", "record-tgid", "event-fork", "irq-info", "stacktrace")


def _clock_text(clocks, selected):
    return " ".join("[%s]" % c if c == selected else c for c in clocks) + "\n"


def _strip_signed(text):
    return re.sub(r"\tsigned:-?\d+;", "", text)


class FakeTracefs(object):
    """Builds a tracefs tree in pyfakefs for one era."""

    def __init__(self, fs, era="6.11", ncpus=2, tracing_on="1", buffer_size="1408",
                 tracers=("blk", "function", "nop"), ftrace_filter_writable=False,
                 mounted=True, extra_events=None, missing_events=(), preload=None, raw=True,
                 **overrides):
        self.fs = fs
        self.era = ERAS[era]
        for k, v in overrides.items():
            if not hasattr(self.era, k):
                raise TypeError("unknown era attribute %r" % k)
        if overrides:
            e = self.era
            self.era = Era(**dict(e.__dict__, **overrides))
        self.root = self.era.root
        self.ncpus = ncpus
        # What the kernel has recorded when a buffer (the top level or an
        # instance) is read: {"trace_pipe": text, "per_cpu/cpuN/trace_pipe_raw":
        # page bytes}.  raw=False: a kernel without per-CPU raw pipes.
        # A callable preload(self) gives it from the tree as it is then (the
        # probes defined so far): called for each new buffer and, after each
        # probe definition, for the buffers that exist.
        self.preload = preload if callable(preload) else dict(preload or {})
        self.raw = raw
        self.writes = []
        self.deny = set()           # path suffixes whose writes (and mkdir) fail with EACCES
        self.reject_filters = set()  # filter path suffixes that fail with EINVAL
        self.ftrace_filter_writable = ftrace_filter_writable
        self._event_ids = 2000
        self.formats = {}
        for key, text in known_formats.FORMATS[self.era.formats_era].items():
            self.formats[key] = text
        self.formats.update(_extra_formats(self.era.formats_era))
        self.formats.update(extra_events or {})
        for key in missing_events:
            self.formats.pop(key, None)
        self._build(tracing_on, buffer_size, tracers, mounted)

    # -- building ------------------------------------------------------------
    def _file(self, path, contents=""):
        self.fs.create_file(path, contents=contents)

    def _buffer_files(self, base, tracing_on="1", buffer_size="1408"):
        e = self.era
        self._file(os.path.join(base, "tracing_on"), tracing_on + "\n")
        self._file(os.path.join(base, "buffer_size_kb"), buffer_size + "\n")
        self._file(os.path.join(base, "trace_clock"), _clock_text(e.clocks, "local"))
        self._file(os.path.join(base, "current_tracer"), "nop\n")
        self._file(os.path.join(base, "set_event"), "")
        self._file(os.path.join(base, "trace"), "")
        preload = self._preloaded()
        self._file(os.path.join(base, "trace_pipe"), preload.get("trace_pipe", ""))
        if e.set_event_pid:
            self._file(os.path.join(base, "set_event_pid"), "")
        if e.subbuf:
            self._file(os.path.join(base, "buffer_subbuf_size_kb"), "4\n")
        self._file(os.path.join(base, "set_ftrace_filter"), "#### all functions enabled ####\n")
        for opt in _OPTIONS:
            if (opt == "event-fork" and not e.event_fork) or \
                    (opt == "record-tgid" and not e.record_tgid):
                continue        # both arrived in the 4.x era
            self._file(os.path.join(base, "options", opt),
                       "0\n" if opt in ("event-fork", "record-tgid", "stacktrace") else "1\n")
        for cpu in range(self.ncpus):
            d = os.path.join(base, "per_cpu", "cpu%d" % cpu)
            if self.raw:
                self._file(os.path.join(d, "trace_pipe_raw"),
                           preload.get("per_cpu/cpu%d/trace_pipe_raw" % cpu, b""))
            self._file(os.path.join(d, "buffer_size_kb"), buffer_size + "\n")
            self._file(os.path.join(d, "stats"),
                       "entries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\n"
                       "oldest event ts: 0.000000\nnow ts: 1.000000\ndropped events: 0\n"
                       "read events: 0\n")
        self._file(os.path.join(base, "events", "enable"), "0\n")
        for (system, event), text in self.formats.items():
            self._event_files(base, system, event, text)

    def _preloaded(self):
        return self.preload(self) if callable(self.preload) else self.preload

    def reload_pipes(self):
        """Refill every buffer's pipes from a callable preload."""
        if not callable(self.preload):
            return
        preload = self._preloaded()
        for base in self.kernel._buffers():
            with open(os.path.join(base, "trace_pipe"), "w") as f:
                f.write(preload.get("trace_pipe", ""))
            for cpu in range(self.ncpus):
                path = os.path.join(base, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
                if os.path.exists(path):
                    with open(path, "wb") as f:
                        f.write(preload.get("per_cpu/cpu%d/trace_pipe_raw" % cpu, b""))

    def _event_files(self, base, system, event, text):
        d = os.path.join(base, "events", system, event)
        if not self.era.signed:
            text = _strip_signed(text)
        self._file(os.path.join(d, "format"), text)
        self._file(os.path.join(d, "enable"), "0\n")
        self._file(os.path.join(d, "filter"), "none\n")
        m = re.search(r"^ID: (\d+)", text, re.M)
        self._file(os.path.join(d, "id"), (m.group(1) if m else "0") + "\n")
        if self.era.hist:
            self._file(os.path.join(d, "trigger"), TRIGGER_EMPTY)
            self._file(os.path.join(d, "hist"), "")

    def _build(self, tracing_on, buffer_size, tracers, mounted):
        e = self.era
        self._file("/proc/filesystems", e.filesystems)
        self._file("/proc/mounts", e.mounts if mounted else "/dev/vda1 / ext4 rw 0 0\n")
        if not self.fs.exists("/sys/kernel/debug"):
            self.fs.create_dir("/sys/kernel/debug")
        if e.root == TRACEFS_ROOT and not self.fs.exists(TRACEFS_ROOT):
            self.fs.create_dir(TRACEFS_ROOT)
        if not mounted:
            return
        self.populate(tracing_on, buffer_size, tracers)

    def populate(self, tracing_on="1", buffer_size="1408", tracers=("blk", "function", "nop")):
        """Create the tracing files (what mounting tracefs makes appear)."""
        e = self.era
        r = self.root
        self._file(os.path.join(r, "README"), e.readme)
        self._file(os.path.join(r, "available_tracers"), " ".join(tracers) + "\n")
        self._file(os.path.join(r, "events", "header_page"),
                   known_formats.HEADER_PAGE[e.formats_era])
        self._file(os.path.join(r, "events", "header_event"),
                   known_formats.HEADER_EVENT[e.formats_era])
        self._buffer_files(r, tracing_on, buffer_size)
        if e.instances:
            self.fs.create_dir(os.path.join(r, "instances"))
        if e.uprobes:
            self._file(os.path.join(r, "uprobe_events"), "")
        if e.kprobes:
            self._file(os.path.join(r, "kprobe_events"), "")

    # -- hooks ---------------------------------------------------------------
    def install(self, monkeypatch):
        """Route control-file writes and instance mkdir/rmdir through the
        fake kernel; returns self."""
        kernel = FakeKernel(self)
        real_write = core_tracefs.write_text
        monkeypatch.setattr(core_tracefs, "write_text",
                            lambda path, text, append=False: kernel.write(path, text, append,
                                                                          real_write))
        from kerntrace.backends.ftrace import instance as instance_mod
        monkeypatch.setattr(instance_mod, "os", _OsWithInstances(instance_mod.os, kernel))
        from kerntrace.backends.ftrace import backend as backend_mod
        monkeypatch.setattr(backend_mod, "_writable", kernel.writable)
        self.kernel = kernel
        return self

    def denied(self, path):
        return any(path.endswith(d) for d in self.deny)

    # -- inspection ----------------------------------------------------------
    def read(self, rel):
        with open(os.path.join(self.root, rel)) as f:
            return f.read()

    def snapshot(self):
        """{relative path: contents} of every file in the tree."""
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = os.path.join(dirpath, name)
                with open(p) as f:
                    out[os.path.relpath(p, self.root)] = f.read()
        return out

    def instances(self):
        d = os.path.join(self.root, "instances")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def add_instance(self, name):
        """An instance as another process would have left it."""
        self.kernel.make_instance(os.path.join(self.root, "instances", name))

    def count_hist(self, event_dir, rows, dropped=0):
        """What the kernel's table of the hist trigger on `event_dir`
        (relative to the root) holds: rows [((key name, value), ...),
        hitcount] cumulative, printed as the kernel prints them."""
        path = os.path.join(self.root, event_dir)
        trigger = self.kernel.triggers[os.path.join(path, "trigger")]
        with open(os.path.join(path, "hist"), "w") as f:
            f.write(hist_text(trigger, rows, dropped))

    def define_probe(self, line):
        """A probe definition as another process would have made it."""
        fname = "uprobe_events" if "/" in line.split()[1] else "kprobe_events"
        self.kernel._probe_write(os.path.join(self.root, fname), line + "\n", True)


class _OsWithInstances(object):
    """The os module as seen by instance.py, with the kernel's semantics for
    mkdir/rmdir under instances/."""

    def __init__(self, real, kernel):
        self._real = real
        self._kernel = kernel

    def __getattr__(self, name):
        return getattr(self._real, name)

    def mkdir(self, path, *args, **kw):
        if os.path.dirname(path.rstrip("/")) == os.path.join(self._kernel.t.root, "instances"):
            if self._real.path.exists(path):
                raise OSError(errno.EEXIST, "File exists", path)
            if self._kernel.t.denied(path):
                raise OSError(errno.EACCES, "Permission denied", path)
            self._kernel.make_instance(path)
            return
        return self._real.mkdir(path, *args, **kw)

    def rmdir(self, path):
        if os.path.dirname(path.rstrip("/")) == os.path.join(self._kernel.t.root, "instances"):
            if not self._real.path.exists(path):
                raise OSError(errno.ENOENT, "No such file or directory", path)
            self._kernel.t.fs.remove_object(path)
            # (removing an instance removes its events' triggers)
            for trig in [p for p in self._kernel.triggers if p.startswith(path + "/")]:
                del self._kernel.triggers[trig]
            return
        return self._real.rmdir(path)


class FakeKernel(object):
    """Control-file semantics kerntrace relies on (see the module doc)."""

    def __init__(self, t):
        self.t = t
        self.triggers = {}          # trigger file path -> its hist trigger

    def make_instance(self, path):
        self.t.fs.create_dir(path)
        self.t._buffer_files(path)
        # Dynamic events defined before the instance exist in it too.
        for group, event, text in self._dynamic_events():
            self.t._event_files(path, group, event, text)

    def _dynamic_events(self):
        out = []
        for fname in ("uprobe_events", "kprobe_events"):
            p = os.path.join(self.t.root, fname)
            if not os.path.exists(p):
                continue
            for line in open(p).read().splitlines():
                m = re.match(r"^[prf]:(\w+)/(\w+)", line)
                if m:
                    fmt = os.path.join(self.t.root, "events", m.group(1), m.group(2), "format")
                    out.append((m.group(1), m.group(2), open(fmt).read()))
        return out

    def writable(self, path):
        if os.path.basename(path) == "set_ftrace_filter" and not self.t.ftrace_filter_writable:
            return "EPERM (Operation not permitted)"
        return None if os.path.exists(path) else "ENOENT (No such file or directory)"

    def _buffers(self):
        yield self.t.root
        d = os.path.join(self.t.root, "instances")
        if os.path.isdir(d):
            for n in os.listdir(d):
                yield os.path.join(d, n)

    def _probe_format(self, group, event, args, ret):
        self.t._event_ids += 1
        # The era's common fields, then struct kprobe_trace_entry_head's
        # unsigned longs (kernel/trace/trace_kprobe.c): 8-byte aligned, so
        # from 16 after a lock_depth or padding field, else from 8.
        common, base = era_common_fields(self.t.era.formats_era)
        fields = ["\tfield:unsigned long __probe_func;\toffset:%d;\tsize:8;\tsigned:0;" % base,
                  "\tfield:unsigned long __probe_ret_ip;\toffset:%d;\tsize:8;\tsigned:0;"
                  % (base + 8)] \
            if ret else ["\tfield:unsigned long __probe_ip;\toffset:%d;\tsize:8;\tsigned:0;"
                         % base]
        off = base + (16 if ret else 8)
        for a in args:
            name, _, spec = a.partition("=")
            if spec.endswith("string") or spec.endswith("ustring"):
                fields.append("\tfield:__data_loc char[] %s;\toffset:%d;\tsize:4;\tsigned:1;"
                              % (name, off))
                off += 4
            else:
                # the fetch type (s64 when none is given) sets the field's type
                ftype = spec.rpartition(":")[2] if ":" in spec else "s64"
                if not re.match(r"^[su](8|16|32|64)$", ftype):
                    ftype = "s64"
                size = int(ftype[1:]) // 8
                fields.append("\tfield:%s %s;\toffset:%d;\tsize:%d;\tsigned:%d;"
                              % (ftype, name, off, size, ftype[0] == "s"))
                off += size
        return "name: %s\nID: %d\nformat:\n%s\n%s\n\nprint fmt: \"\"\n" % (
            event, self.t._event_ids, common, "\n".join(fields))

    def _probe_write(self, path, text, append):
        p = path
        lines = open(p).read().splitlines() if append else []
        if not append:
            # Truncating the file removes every definition: kerntrace must never do this.
            self.t.truncated_probe_file = p
        for cmd in text.splitlines():
            cmd = cmd.strip()
            if not cmd:
                continue
            m = re.match(r"^-:(\w+)/(\w+)$", cmd)
            if m:
                group, event = m.groups()
                keep = [l for l in lines if not re.match(r"^[prf]:%s/%s " % (group, event), l)]
                if len(keep) == len(lines):
                    raise OSError(errno.ENOENT, "No such file or directory", p)
                for b in self._buffers():
                    en = os.path.join(b, "events", group, event, "enable")
                    if os.path.exists(en) and open(en).read().strip() == "1":
                        raise OSError(errno.EBUSY, "Device or resource busy", p)
                lines = keep
                for b in self._buffers():
                    d = os.path.join(b, "events", group, event)
                    if os.path.exists(d):
                        self.t.fs.remove_object(d)
                    gd = os.path.join(b, "events", group)
                    if os.path.isdir(gd) and not os.listdir(gd):
                        self.t.fs.remove_object(gd)
                continue
            m = re.match(r"^([pr])\d*:(\w+)/(\w+) (\S+)((?: \w+=\S+)*)$", cmd)
            if not m:
                raise OSError(errno.EINVAL, "Invalid argument", p)
            kind, group, event, place, args = m.groups()
            if kind == "p" and "%return" in place:
                kind = "r"
            args = args.split()
            text_fmt = self._probe_format(group, event, args, kind == "r")
            lines.append(cmd)
            for b in self._buffers():
                self.t._event_files(b, group, event, text_fmt)
        with open(p, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        self.t.reload_pipes()

    def _trigger_write(self, path, value, append):
        """One hist trigger per event: "hist:..." creates its (empty)
        table, "!hist:..." with the same text removes it; truncating the
        file removes every trigger of the event (event_trigger_open)."""
        hist = os.path.join(os.path.dirname(path), "hist")
        if not append:
            self.triggers.pop(path, None)
        if value.startswith("!"):
            if self.triggers.get(path) == value[1:]:
                del self.triggers[path]
        elif value.startswith("hist:") and re.match(
                r"^hist:keys=[\w,]+:vals=hitcount:size=\d+( if .+)?$", value):
            if path in self.triggers:
                raise OSError(errno.EEXIST, "File exists", path)
            self.triggers[path] = value
        elif value:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        with open(hist, "w") as f:
            f.write(hist_text(self.triggers[path], ()) if path in self.triggers else "")
        with open(path, "w") as f:
            f.write(TRIGGER_EMPTY if path not in self.triggers else
                    self.triggers[path] + " [active]\n")

    def write(self, path, text, append, real_write):
        self.t.writes.append((path, text, append))
        if self.t.denied(path):
            raise OSError(errno.EACCES, "Permission denied", path)
        if not os.path.exists(path):
            raise OSError(errno.ENOENT, "No such file or directory", path)
        text = text.decode("ascii") if isinstance(text, bytes) else text
        name = os.path.basename(path)
        value = text.strip()
        if name in ("uprobe_events", "kprobe_events"):
            return self._probe_write(path, text, append)
        if name == "trigger":
            return self._trigger_write(path, value, append)
        if name == "filter":
            if any(path.endswith(r) for r in self.t.reject_filters) \
                    or ("~" in value and not self.t.era.glob_op):
                raise OSError(errno.EINVAL, "Invalid argument", path)
            value = "none" if value in ("0", "") else value
        elif name == "trace_clock":
            if value not in self.t.era.clocks:
                raise OSError(errno.EINVAL, "Invalid argument", path)
            value = _clock_text(self.t.era.clocks, value).strip()
        elif name == "set_ftrace_filter" and not self.t.ftrace_filter_writable:
            raise OSError(errno.EPERM, "Operation not permitted", path)
        elif name == "trace":
            value = ""
        mode = "a" if append else "w"
        with open(path, mode) as f:
            f.write(value + "\n" if value else "")
        if name == "enable" and value == "1":
            self._record_enabled_only(path)

    def _record_enabled_only(self, enable_path):
        """An instance records only the events enabled in it: its raw pipes
        keep the preloaded entries of its enabled events (and of what
        has no enable file: kernel stacks), as a run with an instance per
        event sees them.  (The top level keeps what is preloaded.)"""
        inst = os.path.join(self.t.root, "instances")
        rel = os.path.relpath(enable_path, inst)
        if rel.startswith("..") or not self.t.raw:
            return
        base = os.path.join(inst, rel.split(os.sep)[0])
        off = set()
        events = os.path.join(base, "events")
        for system in os.listdir(events):
            d = os.path.join(events, system)
            for event in (os.listdir(d) if os.path.isdir(d) else ()):
                en = os.path.join(d, event, "enable")
                ident = os.path.join(d, event, "id")
                if os.path.exists(en) and os.path.exists(ident) and \
                        open(en).read().strip() != "1":
                    off.add(int(open(ident).read().strip() or 0))
        preload = self.t._preloaded()
        hp = known_formats.HEADER_PAGE[self.t.era.formats_era]
        for cpu in range(self.t.ncpus):
            path = os.path.join(base, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
            if os.path.exists(path):
                data = preload.get("per_cpu/cpu%d/trace_pipe_raw" % cpu, b"")
                with open(path, "wb") as f:
                    f.write(without_events(data, hp, off))


# An event's trigger file without triggers, as Linux 5.x-6.x lists them.
TRIGGER_EMPTY = ("# Available triggers:\n# traceon traceoff snapshot stacktrace enable_event "
                 "disable_event enable_hist disable_hist hist\n")


def hist_text(trigger, rows, dropped=0):
    """An events/<system>/<event>/hist file as Linux prints it
    (kernel/trace/trace_events_hist.c: hist_trigger_show() and
    hist_trigger_entry_print(); integer keys "%s: %10llu", the hitcount
    "%10llu", largest first as sort=hitcount has it), for one trigger."""
    keys = re.match(r"^hist:keys=([\w,]+)", trigger).group(1)
    filt = trigger.partition(" if ")[2]
    info = "hist:keys=%s:vals=hitcount:sort=hitcount:size=%s%s [active]" % (
        keys, re.search(r":size=(\d+)", trigger).group(1), " if " + filt if filt else "")
    lines = ["# event histogram", "#", "# trigger info: " + info, "#", ""]
    for key, n in sorted(rows, key=lambda r: r[1]):
        lines.append("{ %s } hitcount: %10d" % (
            ", ".join("%s: %10d" % (k, v % (1 << 64)) for k, v in key), n))
    lines += ["", "Totals:", "    Hits: %d" % sum(n for _k, n in rows),
              "    Entries: %d" % len(rows), "    Dropped: %d" % dropped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Small synthetic ELF files (uprobe targets in a fake tree; 32-bit and
# big-endian cases real binaries on this machine do not cover).
STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 1, 2, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2


def make_elf(symbols, bits=64, little=True, table="dynsym", segments=None, machine=62):
    """Bytes of an ELF shared object.

    symbols   [(name, vaddr, stt, stb)], defined in section 1 (.text), or
              stb None for an undefined symbol
    segments  [(file offset, vaddr, size, flags)] PT_LOAD headers
              (default: one R+X segment mapping offset 0 at vaddr 0)
    """
    import struct
    e = "<" if little else ">"
    is64 = bits == 64
    segments = segments or [(0, 0, 0x10000, 5)]
    ehsize = 64 if is64 else 52
    phentsize = 56 if is64 else 32
    shentsize = 64 if is64 else 40
    symsize = 24 if is64 else 16
    # Layout: [ehdr][phdrs][strtab][symtab][shstrtab][pad to 0x1000 .text][shdrs]
    strtab = b"\0"
    name_off = []
    for name, _v, _t, _b in symbols:
        name_off.append(len(strtab))
        strtab += name.encode() + b"\0"
    syms = b"\0" * symsize
    for (name, vaddr, stt, stb), off in zip(symbols, name_off):
        shndx = 0 if stb is None else 1
        info = ((stb or 0) << 4) | stt
        if is64:
            syms += struct.pack(e + "IBBHQQ", off, info, 0, shndx, vaddr, 16)
        else:
            syms += struct.pack(e + "IIIBBH", off, vaddr, 16, info, 0, shndx)
    secnames = [b"", b".text", b"." + table.encode(), b".dynstr" if table == "dynsym" else b".strtab",
                b".shstrtab"]
    shstrtab = b"\0"
    sec_name_off = [0]
    for n in secnames[1:]:
        sec_name_off.append(len(shstrtab))
        shstrtab += n + b"\0"
    ph_off = ehsize
    strtab_off = ph_off + phentsize * len(segments)
    symtab_off = strtab_off + len(strtab)
    symtab_off += (-symtab_off) % 8
    shstr_off = symtab_off + len(syms)
    text_off = 0x1000
    text_size = 0x100
    sh_off = text_off + text_size
    body = bytearray(sh_off + shentsize * len(secnames))
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1, 0]) + b"\0" * 8
    if is64:
        ehdr = struct.pack(e + "HHIQQQIHHHHHH", 3, machine, 1, 0, ph_off, sh_off, 0, ehsize,
                           phentsize, len(segments), shentsize, len(secnames), 4)
    else:
        ehdr = struct.pack(e + "HHIIIIIHHHHHH", 3, machine, 1, 0, ph_off, sh_off, 0, ehsize,
                           phentsize, len(segments), shentsize, len(secnames), 4)
    body[0:16] = ident
    body[16:ehsize] = ehdr
    for i, (off, vaddr, size, flags) in enumerate(segments):
        if is64:
            ph = struct.pack(e + "IIQQQQQQ", 1, flags, off, vaddr, vaddr, size, size, 0x1000)
        else:
            ph = struct.pack(e + "IIIIIIII", 1, off, vaddr, vaddr, size, size, flags, 0x1000)
        body[ph_off + i * phentsize: ph_off + (i + 1) * phentsize] = ph
    body[strtab_off:strtab_off + len(strtab)] = strtab
    body[symtab_off:symtab_off + len(syms)] = syms
    body[shstr_off:shstr_off + len(shstrtab)] = shstrtab
    sht = 11 if table == "dynsym" else 2
    # (name, type, addr, offset, size, link, entsize)
    secs = [(0, 0, 0, 0, 0, 0, 0),
            (sec_name_off[1], 1, text_off, text_off, text_size, 0, 0),
            (sec_name_off[2], sht, 0, symtab_off, len(syms), 3, symsize),
            (sec_name_off[3], 3, 0, strtab_off, len(strtab), 0, 0),
            (sec_name_off[4], 3, 0, shstr_off, len(shstrtab), 0, 0)]
    for i, (nm, typ, addr, off, size, link, ent) in enumerate(secs):
        if is64:
            sh = struct.pack(e + "IIQQQQIIQQ", nm, typ, 0, addr, off, size, link, 0, 8, ent)
        else:
            sh = struct.pack(e + "IIIIIIIIII", nm, typ, 0, addr, off, size, link, 0, 4, ent)
        body[sh_off + i * shentsize: sh_off + (i + 1) * shentsize] = sh
    return bytes(body)


def without_events(data, header_page_text, ids):
    """Ring-buffer pages (little-endian) without the entries of event ids
    `ids`; a page with anything but plain entries, time extends and end
    padding (or a loss flag) is kept as it is."""
    from kerntrace.backends.ftrace.rawparse import parse_header_page
    h = parse_header_page(header_page_text)
    out = []
    for at in range(0, len(data), h.page_size):
        page = data[at:at + h.page_size]
        out.append(_page_without(page, header_page_text, h, ids) or page)
    return b"".join(out)


def _page_without(page, header_page_text, h, ids):
    from kerntrace.backends.ftrace.rawparse import PageBuilder
    if len(page) < h.data_offset:
        return None
    (ts,) = struct.unpack_from("<Q", page, h.ts_offset)
    (commit,) = struct.unpack_from("<Q" if h.commit_size == 8 else "<I", page, h.commit_offset)
    if commit >> 27:
        return None                 # a loss flag: as it is
    i, stop = h.data_offset, h.data_offset + commit
    pb = PageBuilder(header_page_text, start_ts=ts)
    while i + 4 <= stop:
        (w,) = struct.unpack_from("<I", page, i)
        tl, delta = w & 31, w >> 5
        if tl == 29 and delta == 0:
            break
        if tl == 30:
            (hi,) = struct.unpack_from("<I", page, i + 4)
            ts += delta + (hi << 27)
            i += 8
            continue
        if tl == 0:
            (n,) = struct.unpack_from("<I", page, i + 4)
            payload, i = page[i + 8:i + 4 + n], i + 4 + n
        elif tl <= 28:
            payload, i = page[i + 4:i + 4 + 4 * tl], i + 4 + 4 * tl
        else:
            return None
        ts += delta
        (ev_id,) = struct.unpack_from("<H", payload, 0)
        if ev_id not in ids:
            pb.add(payload, ts)
    return pb.page()
