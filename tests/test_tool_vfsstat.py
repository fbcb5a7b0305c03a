"""vfsstat without a live kernel: its command line, its two whole ways of
measuring (kernel functions, else the system calls that reach them), the
rates it prints in bcc's layout, the kprobe eras of the ftrace backend
(fake tracefs trees) and the eBPF backend's generated kprobe program.

The live tests (test_tool_vfsstat_live.py) run it on this kernel, which has
no kprobes: there it counts system calls."""

import importlib
import io
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "block"))
import blocktest  # noqa: E402
import fake_tracefs  # noqa: E402
from fake_tracefs import FakeTracefs  # noqa: E402
from kerntrace.core import known_formats  # noqa: E402
from kerntrace.core.model import KernelFunction, Schedule, SyscallEntry, SyscallExit  # noqa: E402
from kerntrace.core.output.base import RunContext  # noqa: E402
from kerntrace.core.results import CountSet, Report  # noqa: E402
from kerntrace.plugins import vfsstat  # noqa: E402

# Imported before any fake file system: pyfakefs patches the os module of
# modules present when it starts.
for _name in ("kerntrace.backends.ebpf.backend", "kerntrace.backends.ebpf.bccfind",
              "kerntrace.backends.ebpf.plan", "kerntrace.backends.ebpf.probes",
              "kerntrace.backends.ftrace.backend", "kerntrace.backends.ftrace.instance",
              "kerntrace.backends.ftrace.probes", "kerntrace.backends.ftrace.session",
              "kerntrace.backends.ftrace.stale", "kerntrace.backends.ftrace.tasks",
              "kerntrace.core.cli", "kerntrace.core.doctor", "kerntrace.core.runner",
              "kerntrace.core.variants", "kerntrace.core.pluginhost"):
    importlib.import_module(_name)

FUNCTIONS = ["vfs_read", "vfs_write", "vfs_fsync_range", "vfs_open", "vfs_create"]
HEADER = "TIME         READ/s  WRITE/s  FSYNC/s   OPEN/s CREATE/s"


def tool():
    return vfsstat.VfsStat()


# ---------------------------------------------------------------------------
# Command line
def test_defaults_are_bccs_one_second_until_ctrl_c():
    args = tool().parse_args([])
    assert args.interval == 1.0 and args.count == 0 and args.pid is None
    args = tool().parse_args(["-p", str(os.getpid()), "2", "5"])
    assert (args.pid, args.interval, args.count) == (os.getpid(), 2.0, 5)


@pytest.mark.parametrize("argv, words", [
    (["-p", "abc"], "invalid PID"), (["-p", "1:traceoff"], "invalid PID"),
    (["0"], "invalid interval"), (["1", "-1"], "invalid count"),
    (["1", "x"], "invalid count"), (["1", "2", "3"], "unrecognized arguments"),
    (["--frobnicate"], "unrecognized arguments")])
def test_bad_input_is_one_line_and_status_2(argv, words):
    rc, out, err = blocktest.run_tool("vfsstat", argv)
    assert rc == 2 and out == "", err
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------
# What it measures
def test_kernel_functions_first_then_the_system_calls_that_reach_them():
    me = os.getpid()
    kernel, syscalls, no_legacy = tool().variants(tool().parse_args(["-p", str(me), "2", "3"]))
    assert kernel.name == "kernel" and syscalls.name == no_legacy.name == "syscalls"
    assert [e.probes for e in kernel.measurement.events] == [
        (KernelFunction(f),) for f in FUNCTIONS]
    by_name = {e.name: e.probes for e in syscalls.measurement.events}
    assert by_name == {
        "read": (SyscallEntry("read"),), "pread64": (SyscallEntry("pread64"),),
        "write": (SyscallEntry("write"),), "pwrite64": (SyscallEntry("pwrite64"),),
        "fsync": (SyscallEntry("fsync"),), "fdatasync": (SyscallEntry("fdatasync"),),
        "openat": (SyscallExit("openat"),), "openat2": (SyscallExit("openat2"),),
        "open": (SyscallExit("open"),), "creat": (SyscallExit("creat"),)}
    # Architectures without open(2)/creat(2) (aarch64) still get a variant.
    assert sorted(e.name for e in no_legacy.measurement.events if e.name.startswith(
        ("open", "creat"))) == ["openat", "openat2"]
    for variant in (kernel, syscalls, no_legacy):
        m = variant.measurement
        assert m.schedule.interval == 2.0 and m.schedule.count == 3
        assert m.aggregate.keys == ("event",)
        assert [(f.field, f.op, f.value) for f in m.filters if f.field == "pid"] == [
            ("pid", "==", me)]
    # Only opens that returned a descriptor: a failed open never reached vfs_open.
    (ret,) = [f for f in syscalls.measurement.filters if f.field == "ret"]
    assert (ret.op, ret.value, sorted(ret.events)) == (
        ">=", 0, ["creat", "open", "openat", "openat2"])


def test_without_a_pid_it_does_not_count_its_own_calls():
    m = tool().measurement(tool().parse_args([]))
    assert [(f.field, f.op, f.value) for f in m.filters] == [("tid", "!=", os.getpid())]


# ---------------------------------------------------------------------------
# Printing: bcc's layout, rates over the real interval
def report(counts, start, end):
    return Report(CountSet(("event",), {(k,): v for k, v in counts.items()}),
                  start=start, end=end)


def context(variant_index, replay=False):
    variant = tool().variants(tool().parse_args(["1"]))[variant_index]
    return RunContext("vfsstat", "ftrace", Schedule(interval=1), measurement=variant.measurement,
                      variant=variant, replay=replay)


def test_kernel_rows_divide_by_the_real_interval_and_truncate():
    out, err = io.StringIO(), io.StringIO()
    p = tool().printer(tool().parse_args([]), out, err)
    ctx = context(0)
    p.start(ctx)
    # 2 s really elapsed: 9 reads are 4.5/s, printed 4 as bcc's %d does.
    p.report(report({"vfs_read": 9, "vfs_write": 4, "vfs_open": 1}, 100.0, 102.0), ctx)
    lines = out.getvalue().splitlines()
    assert lines[0] == HEADER
    # bcc: "%-8s: " % "HH:MM:SS", then " %8d" per column
    assert re.match(r"^\d\d:\d\d:\d\d:  {8}4 {8}2 {8}0 {8}0 {8}0$", lines[1]), lines[1]
    assert err.getvalue() == "Tracing VFS calls... Ctrl-C to end.\n"


def test_syscall_rows_sum_the_calls_and_show_create_as_not_measured():
    out, err = io.StringIO(), io.StringIO()
    p = tool().printer(tool().parse_args([]), out, err)
    ctx = context(1)
    p.start(ctx)
    p.report(report({"read": 6, "pread64": 4, "write": 3, "pwrite64": 2, "fsync": 1,
                     "fdatasync": 1, "openat": 5, "creat": 1}, 10.0, 10.5), ctx)
    row = out.getvalue().splitlines()[1]
    assert row.split()[1:] == ["20", "10", "4", "12", "-"], row
    assert len(row) == len(HEADER)
    # The banner says what is counted instead of kernel functions.
    assert "kernel functions cannot be probed here: counting system calls" in err.getvalue()
    assert "CREATE not measured" in err.getvalue()


def test_a_replay_divides_by_the_schedule_interval():
    out, err = io.StringIO(), io.StringIO()
    p = tool().printer(tool().parse_args([]), out, err)
    ctx = context(1, replay=True)
    p.start(ctx)
    p.report(report({"read": 7}, 10.0, 10.001), ctx)
    assert out.getvalue().splitlines()[1].split()[1] == "7"


# ---------------------------------------------------------------------------
# Kernel eras (fake tracefs): kprobes where kprobe_events exists, syscall
# tracepoints where it does not.
def syscall_formats():
    """Format files of the syscall events vfsstat may use, made from this
    corpus's sys_enter_openat/sys_exit_openat (vfsstat reads no entry field,
    and every sys_exit_* has the same layout)."""
    base = known_formats.FORMATS["6.18"]
    out = {}
    next_id = 9000
    for kind in ("enter", "exit"):
        template = base[("syscalls", "sys_%s_openat" % kind)]
        for call in ("read", "pread64", "write", "pwrite64", "fsync", "fdatasync", "openat2",
                     "open", "creat"):
            next_id += 1
            out[("syscalls", "sys_%s_%s" % (kind, call))] = re.sub(
                r"^ID: \d+", "ID: %d" % next_id,
                template.replace("sys_%s_openat" % kind, "sys_%s_%s" % (kind, call)), flags=re.M)
    return out


@pytest.fixture
def era_host(fs, monkeypatch):
    fake_tracefs.era_host(fs, monkeypatch)

    def make(era, **kw):
        return FakeTracefs(fs, era, extra_events=syscall_formats(), **kw).install(monkeypatch)
    return make


@pytest.mark.parametrize("era", ["rhel6", "3.10", "4.x", "5.15"])
def test_kprobe_eras_probe_the_vfs_functions(era_host, era):
    era_host(era)
    rc, out, err = blocktest.run_tool("vfsstat", ["--backend", "ftrace", "--print-program",
                                                  "--explain", "1", "1"])
    assert rc == 0, err
    defs = re.findall(r"^echo 'p:(\S+) (\w+)' >> \S+/kprobe_events$", out, re.M)
    assert [fn for _, fn in defs] == FUNCTIONS, out
    assert "kerntrace: vfsstat: measuring kernel functions (vfs_read" in err
    assert "sys_enter" not in out


def test_without_kprobes_it_counts_system_calls_and_says_why(era_host):
    t = era_host("6.11")
    assert not t.era.kprobes
    t.fs.create_file("/proc/4011/stat", contents="4011 (dd) S 1\n")
    rc, out, err = blocktest.run_tool("vfsstat", ["--backend", "ftrace", "--print-program",
                                                  "--explain", "-p", "4011", "1", "1"])
    assert rc == 0, err
    assert "kerntrace: vfsstat: measuring system calls (READ: read, pread64;" in err
    assert re.search(r"not measuring kernel functions \(vfs_read.*\): the ftrace backend "
                     r"cannot run here: event vfs_read: no kprobe support", err), err
    assert "p:" not in out
    assert re.search(r"^echo 'ret >= 0' > \S+/events/syscalls/sys_exit_openat/filter$", out,
                     re.M), out
    assert re.search(r"^echo '4011' > \S+/set_event_pid$", out, re.M), out
    assert re.search(r"events/syscalls/sys_enter_read/enable", out), out


def test_doctor_names_the_variant_and_why(era_host):
    era_host("6.11")
    from kerntrace.core import doctor as doctor_mod
    from kerntrace.core.pluginhost import PluginHost
    out, err = io.StringIO(), io.StringIO()
    assert doctor_mod.doctor(PluginHost(), [], out, err) == 0
    text = out.getvalue()
    assert re.search(r"vfsstat\s+-> ftrace\n\s+measuring system calls", text), text
    assert "not measuring kernel functions" in text


# ---------------------------------------------------------------------------
# eBPF: the kernel variant's program, where kprobes attach
def test_ebpf_kernel_variant_is_five_kprobes_counted_by_event():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen
    m = tool().variants(tool().parse_args(["-p", "1"]))[0].measurement
    prog = codegen.generate(m, make_plan(m))
    assert [(a.kind, a.event.probe.function) for a in prog.attachments] == [
        ("kprobe", f) for f in FUNCTIONS]
    assert sorted(prog.event_names.values()) == sorted(FUNCTIONS)
    assert prog.text.count("if (!(((u64)(f->f_pid) == 1ULL)))") == len(FUNCTIONS)


# ---------------------------------------------------------------------------
# core.variants: a variant is taken or left whole, in the tool's order
class _KprobeLessBackend(object):
    """A backend of a host without kprobes: it runs what has no kernel
    function probe."""

    name, preference = "fake", 0

    def check(self, measurement, host):
        from kerntrace.core.backend import Verdict
        kprobes = [e.name for e in measurement.events
                   if any(p.kind == "kprobe" for p in e.probes)]
        return Verdict(self.name, not kprobes, ["no kprobes for %s" % n for n in kprobes])


class _Host(object):
    saved_trace = None

    def is_root(self):
        return True

    def tracefs(self):
        return "/sys/kernel/tracing"

    def tracefs_path(self):
        return None


def test_the_first_variant_a_backend_can_run_is_taken_and_the_skipped_say_why():
    from kerntrace.core.variants import choose
    t = tool()
    choice = choose(t, t.parse_args([]), [_KprobeLessBackend()], _Host())
    assert choice.variant.name == "syscalls" and choice.measurement is choice.variant.measurement
    assert [v.name for v, _ in choice.skipped] == ["kernel"]
    lines = choice.explain()
    assert lines[0].startswith("measuring system calls (READ: read, pread64;")
    assert lines[1].startswith("not measuring kernel functions (vfs_read") and \
        "no kprobes for vfs_read" in lines[1]


def test_a_tool_without_variants_has_its_one_measurement_and_no_explanation():
    from kerntrace.core.variants import choose, variants
    from kerntrace.plugins.tpcount import TpCount
    t = TpCount()
    args = t.parse_args(["sched:sched_switch"])
    (only,) = variants(t, args)
    assert only.name is None
    choice = choose(t, args, [_KprobeLessBackend()], _Host())
    assert choice.explain() == [] and choice.skipped == []
