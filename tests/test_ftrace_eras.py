"""The ftrace backend on kernels of other eras, in fake tracefs trees
(pyfakefs; see tests/fake_tracefs.py for the eras and for the small part of
the kernel's control-file behaviour that is emulated there: instance
mkdir/rmdir, probe definition append/remove, clock selection, filter
rejection, permission failures).  What a user would check: where tracefs
is found, that a run leaves the kernel as it found it, what is written and
where, and why a host cannot run a tool."""

import io
import os
import subprocess
import sys

import pytest

from fake_tracefs import (COMMON_FIELDS, DEBUGFS_ROOT, TRACEFS_ROOT, FakeTracefs, make_elf,
                          STT_FUNC, STB_GLOBAL)
from kerntrace.backends.ftrace.backend import FtraceBackend, default_buffer_kb
from kerntrace.backends.ftrace import instance as instance_mod
from kerntrace.backends.ftrace import session as session_module
from kerntrace.backends.ftrace.configure import IF_REJECTED
from kerntrace.core import runner, tracefs as core_tracefs
from kerntrace.core.backend import RunOptions
from kerntrace.core.errors import EnableError, FilterError, LockHeld, UsageError
from kerntrace.core.host import Host
from kerntrace.core.recording import SavedTrace, open_saved_trace
from kerntrace.plugins import blockdev
from kerntrace.core.model import (EVENT_NAME, STR, USTR, Count, Event, Field, Filter,
                                  KernelFunction, Measurement, Tracepoint, UserFunction)

ERAS = ("2.6.32", "rhel6", "3.4", "3.10", "4.4", "4.x", "5.10", "5.15", "6.11")
INSTANCE_ERAS = ("3.10", "4.4", "4.x", "5.10", "5.15", "6.11")
# no instances/ before v3.10: the top-level buffer under the perf-tools lock
TOP_LEVEL_ERAS = ("2.6.32", "rhel6", "3.4")
# block_rq_complete's status field is "errors" until v4.12
ERRORS_ERAS = ("2.6.32", "rhel6", "3.4", "3.10", "4.4")
LOCK = "/var/tmp/.ftrace-lock"


@pytest.fixture
def mounts(fs, monkeypatch):
    """Never run the real mount(8) from a fake tree: mounting "succeeds" by
    populating the fake tree that was built unmounted."""
    state = {"tree": None, "calls": 0}

    def fake_mount():
        state["calls"] += 1
        t = state["tree"]
        if t is None or os.path.exists(os.path.join(TRACEFS_ROOT, "README")):
            return False
        t.populate()
        return True
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", fake_mount)
    fs.create_dir("/var/tmp")
    fs.create_dir("/run")
    return state


def tree(fs, monkeypatch, mounts, era, **kw):
    t = FakeTracefs(fs, era, **kw).install(monkeypatch)
    mounts["tree"] = t
    return t


def block_measurement(*filters, **kw):
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("error", sources=("error", "errors"))])
    return Measurement(kw.get("events") or [issue, done], Count(keys=(EVENT_NAME,)),
                       filters=list(filters))


def prepare(measurement, stderr=None, verbose=False, buffer_kb=None):
    b = FtraceBackend()
    options = RunOptions(tool="erastest", stderr=stderr or io.StringIO(), verbose=verbose,
                         buffer_kb=buffer_kb)
    v = b.check(measurement, Host(mount_tracefs=False), options)
    assert v.ok, v.reasons
    s = b.open(measurement, v, options)
    return v, s


def outside_instances(snapshot):
    return {k: v for k, v in snapshot.items() if not k.startswith("instances/")}


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------
# Locating tracefs
@pytest.mark.parametrize("era,path,how", [
    ("2.6.32", DEBUGFS_ROOT, "debugfs mounted at /sys/kernel/debug"),
    ("rhel6", DEBUGFS_ROOT, "debugfs mounted at /sys/kernel/debug"),
    ("3.4", DEBUGFS_ROOT, "debugfs mounted at /sys/kernel/debug"),
    ("3.10", DEBUGFS_ROOT, "debugfs mounted at /sys/kernel/debug"),
    ("4.4", DEBUGFS_ROOT, "tracefs mounted at /sys/kernel/debug/tracing (/proc/mounts)"),
    ("4.x", DEBUGFS_ROOT, "tracefs mounted at /sys/kernel/debug/tracing (/proc/mounts)"),
    ("5.10", TRACEFS_ROOT, "tracefs mounted at /sys/kernel/tracing (/proc/mounts)"),
    ("5.15", TRACEFS_ROOT, "tracefs mounted at /sys/kernel/tracing (/proc/mounts)"),
    ("6.11", TRACEFS_ROOT, "tracefs mounted at /sys/kernel/tracing (/proc/mounts)"),
])
def test_locate_per_era(fs, monkeypatch, mounts, era, path, how):
    tree(fs, monkeypatch, mounts, era)
    loc = Host().tracefs()
    assert (loc.path, loc.how) == (path, how)
    assert mounts["calls"] == 0 and not loc.mounted_here


def test_locate_readme_when_proc_mounts_lacks_tracefs(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11")
    with open("/proc/mounts", "w") as f:
        f.write("/dev/vda1 / ext4 rw 0 0\n")
    loc = Host().tracefs()
    assert loc.path == TRACEFS_ROOT and "README" in loc.how
    assert t.root == TRACEFS_ROOT


def test_locate_mounts_tracefs_and_says_so(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11", mounted=False)
    err = io.StringIO()
    loc = Host(stderr=err).tracefs()
    assert loc.path == TRACEFS_ROOT and loc.mounted_here
    assert err.getvalue() == "kerntrace: mounted tracefs at /sys/kernel/tracing for this run only\n"


def test_old_kernel_without_tracefs_filesystem_is_not_mounted(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "2.6.32")
    Host().tracefs()
    assert mounts["calls"] == 0


def test_no_tracefs_at_all(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11", mounted=False)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    v = FtraceBackend().check(block_measurement(), Host())
    assert not v.ok and v.reasons == ["no tracefs: not mounted and could not be mounted"]
    caps = {c.name: c for c in FtraceBackend().capabilities(Host())}
    assert not caps["tracefs"].ok


# ---------------------------------------------------------------------------
# check(): plans and reasons
@pytest.mark.parametrize("era", ERAS)
def test_plan_per_era(fs, monkeypatch, mounts, era):
    tree(fs, monkeypatch, mounts, era)
    v = FtraceBackend().check(block_measurement(), Host())
    assert v.ok, v.reasons
    assert v.plan.instances == (era not in TOP_LEVEL_ERAS)
    assert v.plan.read_path == "raw"
    done = [e for e in v.plan.events if e.name == "done"][0]
    # RHEL 7 era kernels call the completion status "errors".
    assert done.fields["error"] == ("errors" if era in ERRORS_ERAS else "error")
    if era in TOP_LEVEL_ERAS:
        assert v.reasons[0] == "no instances: top-level buffer under the perf-tools lock"
    # a plain count of whole-number fields is counted per page in every era
    assert v.reasons[-1] == ("counted per trace_pipe_raw page (event types and key fields, "
                             "no event decoded)")


def test_missing_event_and_field_are_named(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11", missing_events=[("block", "block_rq_complete")])
    m = Measurement([Event("issue", Tracepoint("block", "block_rq_issue"),
                           fields=[Field("dev"), Field("queue_depth")]),
                     Event("done", Tracepoint("block", "block_rq_complete")),
                     Event("exec", Tracepoint("syscalls", "sys_enter_nothere"))],
                    Count())
    v = FtraceBackend().check(m, Host())
    assert not v.ok
    assert v.reasons == [
        "event issue: tracepoint block:block_rq_issue has no field queue_depth",
        "event done: no tracepoint block:block_rq_complete",
        "event exec: no tracepoint syscalls:sys_enter_nothere "
        "(syscall tracepoints need CONFIG_FTRACE_SYSCALLS)"]


def test_field_type_must_match(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    m = Measurement([Event("issue", Tracepoint("block", "block_rq_issue"),
                           fields=[Field("dev", STR)])], Count())
    v = FtraceBackend().check(m, Host())
    assert v.reasons == ["event issue: tracepoint block:block_rq_issue has no string field dev"]


def test_first_supported_alternative_wins(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "4.x")
    m = Measurement([Event("start", Tracepoint("block", "block_io_start"),
                           Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])], Count())
    v = FtraceBackend().check(m, Host())
    assert v.ok and (v.plan.events[0].system, v.plan.events[0].event) == ("block", "block_rq_issue")


def test_two_events_on_one_tracepoint_are_refused(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    m = Measurement([Event("a", Tracepoint("block", "block_rq_issue")),
                     Event("b", Tracepoint("block", "block_rq_issue"))], Count())
    v = FtraceBackend().check(m, Host())
    assert v.reasons == ["events a and b both use block:block_rq_issue (cannot be told apart)"]


def test_not_root(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    v = FtraceBackend().check(block_measurement(), Host())
    assert not v.ok and v.reasons[0] == "needs root (effective uid 1000)"


def _fake_library(fs, path="/usr/lib/libfake.so.1"):
    fs.create_file(path, contents=make_elf([("fake_fn", 0x1230, STT_FUNC, STB_GLOBAL),
                                            ("fake_open", 0x1300, STT_FUNC, STB_GLOBAL)]))
    return path


def test_no_uprobe_support(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "2.6.32")
    lib = _fake_library(fs)
    m = Measurement([Event("call", UserFunction(lib, "fake_fn"))], Count())
    v = FtraceBackend().check(m, Host())
    assert v.reasons == ["event call: no uprobe support (uprobe_events missing)"]


def test_uprobe_symbol_missing(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    lib = _fake_library(fs)
    m = Measurement([Event("call", UserFunction(lib, "nope_fn"))], Count())
    v = FtraceBackend().check(m, Host())
    assert v.reasons == ["event call: u:%s:nope_fn: %s: no function symbol 'nope_fn'" % (lib, lib)]


@pytest.mark.parametrize("era,string_type", [("3.10", "string"), ("5.15", "ustring")])
def test_uprobe_definition_per_era(fs, monkeypatch, mounts, era, string_type):
    tree(fs, monkeypatch, mounts, era)
    lib = _fake_library(fs)
    m = Measurement([Event("open", UserFunction(lib, "fake_open"),
                           fields=[Field("path", USTR, sources=("arg0",)),
                                   Field("flags", sources=("arg1",))]),
                     Event("ret", UserFunction(lib, "fake_open", ret=True),
                           fields=[Field("fd", sources=("retval",))])], Count())
    v = FtraceBackend().check(m, Host())
    assert v.ok, v.reasons
    pid = os.getpid()
    op, rt = v.plan.events
    assert op.system == "kerntrace_%d" % pid and op.event.startswith("kerntrace_%d_" % pid)
    assert op.probe_def == "p:%s/%s %s:0x1300 path=+0(%%di):%s flags=%%si:s64\n" % (
        op.system, op.event, lib, string_type)
    assert rt.probe_def == "r:%s/%s %s:0x1300 fd=$retval:s64\n" % (rt.system, rt.event, lib)


def test_kprobe_without_kprobe_events(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    m = Measurement([Event("f", KernelFunction("vfs_read"))], Count())
    v = FtraceBackend().check(m, Host())
    assert v.reasons == ["event f: no kprobe support (kprobe_events missing); function tracer: "
                         "set_ftrace_filter not writable: EPERM (Operation not permitted)",
                         "function profiler: function_profile_enabled missing "
                         "(CONFIG_FUNCTION_PROFILER off)"]


def test_kfunc_entry_count_falls_back_to_function_tracer(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11", ftrace_filter_writable=True)
    m = Measurement([Event("f", KernelFunction("vfs_read"))], Count())
    v, s = prepare(m)
    ev = v.plan.events[0]
    assert (ev.system, ev.event) == ("ftrace", "function")
    with s:
        inst = os.path.join(t.root, "instances", t.instances()[0])
        assert open(os.path.join(inst, "set_ftrace_filter")).read() == "vfs_read\n"
        assert open(os.path.join(inst, "current_tracer")).read() == "function\n"
    assert t.instances() == []


def test_kprobe_definition(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    monkeypatch.setattr("kerntrace.backends.ftrace.probes.kernel_function_exists", lambda f: True)
    m = Measurement([Event("f", KernelFunction("vfs_read", ret=True),
                           fields=[Field("ret", sources=("retval",))])], Count())
    v = FtraceBackend().check(m, Host())
    ev = v.plan.events[0]
    assert ev.probe_def == "r:%s/%s vfs_read ret=$retval:s64\n" % (ev.system, ev.event)


# ---------------------------------------------------------------------------
# Instance mode: everything inside our own instance, gone afterwards
@pytest.mark.parametrize("era", INSTANCE_ERAS)
def test_instance_mode_touches_only_its_instance(fs, monkeypatch, mounts, era):
    t = tree(fs, monkeypatch, mounts, era)
    before = t.snapshot()
    m = block_measurement(Filter("dev", "==", (8 << 20) | 16), Filter("rwbs", "glob", "*W*"))
    v, s = prepare(m)
    with s:
        names = t.instances()
        assert names == ["kerntrace-%d-erastest%s" % (os.getpid(), names[0].rsplit("erastest", 1)[1])]
        base = "instances/%s/" % names[0]
        assert t.read(base + "events/block/block_rq_issue/enable") == "1\n"
        assert t.read(base + "events/block/block_rq_issue/filter") == \
            'dev == 8388624 && rwbs ~ "*W*"\n'
        # block_rq_complete has no declared rwbs field here: only the dev clause.
        assert t.read(base + "events/block/block_rq_complete/filter") == "dev == 8388624\n"
        assert t.read(base + "tracing_on") == "1\n"
        assert t.read(base + "buffer_size_kb") == "%d\n" % default_buffer_kb(v.plan)
        clock = t.read(base + "trace_clock")
        assert ("[mono]" in clock) == (era not in ("3.10",))
        assert outside_instances(t.snapshot()) == outside_instances(before)
        assert not os.path.exists(LOCK)
    assert t.instances() == []
    assert t.snapshot() == before
    # Every write went into the instance.
    assert all("/instances/kerntrace-" in p for p, _text, _app in t.writes)


def test_kernel_filter_text_is_recorded_in_the_plan(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.15")
    m = block_measurement(Filter("dev", "==", 5), Filter("rwbs", "glob", "*R*", events=["issue"]))
    v, s = prepare(m)
    assert v.plan.kernel_filters == {"issue": 'dev == 5 && rwbs ~ "*R*"', "done": "dev == 5"}
    with s:
        pass


def test_glob_rejected_by_old_kernel_falls_back(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "3.10", glob_op=False)
    m = block_measurement(Filter("dev", "==", 5), Filter("rwbs", "glob", "*R*", events=["issue"]))
    err = io.StringIO()
    v, s = prepare(m, stderr=err, verbose=True)
    with s:
        base = "instances/%s/" % t.instances()[0]
        assert t.read(base + "events/block/block_rq_issue/filter") == "dev == 5\n"
    # planned: the glob, and without it if the kernel rejects it; accepted: that
    assert v.plan.kernel_filters["issue"] == 'dev == 5 && rwbs ~ "*R*"'
    assert v.plan.filter_fallbacks["issue"] == "dev == 5"
    assert s.configured.kernel_filters["issue"] == "dev == 5"
    assert "rejected filter 'dev == 5 && rwbs ~ \"*R*\"'" in err.getvalue()



@pytest.mark.parametrize("era,glob", [("2.6.32", False), ("rhel6", True)])
def test_glob_on_the_two_2_6_32_eras(fs, monkeypatch, mounts, era, glob):
    """Mainline 2.6.32 has no "~" filter operator; RHEL 6 backports it
    (and kprobe_events, which mainline gained in 2.6.33)."""
    t = tree(fs, monkeypatch, mounts, era)
    assert os.path.exists(os.path.join(t.root, "kprobe_events")) == glob
    m = block_measurement(Filter("dev", "==", 5), Filter("rwbs", "glob", "*R*", events=["issue"]))
    v, s = prepare(m, stderr=io.StringIO(), verbose=True)
    with s:
        assert t.instances() == []                 # no instances before 3.10
        assert t.read("events/block/block_rq_issue/filter") == (
            'dev == 5 && rwbs ~ "*R*"\n' if glob else "dev == 5\n")
    assert s.configured.kernel_filters["issue"] == (
        'dev == 5 && rwbs ~ "*R*"' if glob else "dev == 5")

def test_filter_rejection_is_silent_without_verbose(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    t.reject_filters.add("block_rq_issue/filter")
    err = io.StringIO()
    v, s = prepare(block_measurement(Filter("dev", "==", 5)), stderr=err)
    with s:
        base = "instances/%s/" % t.instances()[0]
        assert t.read(base + "events/block/block_rq_issue/filter") == "none\n"
    assert v.plan.kernel_filters == {"issue": "dev == 5", "done": "dev == 5"}
    assert s.configured.kernel_filters == {"issue": None, "done": "dev == 5"}
    assert err.getvalue() == ""


@pytest.mark.parametrize("era,expected", [("3.10", None), ("4.x", "1234")])
def test_pid_filter_uses_set_event_pid_where_it_exists(fs, monkeypatch, mounts, era, expected):
    t = tree(fs, monkeypatch, mounts, era)
    m = block_measurement(Filter("pid", "==", 1234))
    v, s = prepare(m)
    # check() decides it: the session writes the plan's pid
    assert v.plan.event_pid == (None if expected is None else 1234)
    with s:
        base = "instances/%s/" % t.instances()[0]
        if expected is None:
            assert not os.path.exists(os.path.join(t.root, base, "set_event_pid"))
        else:
            assert t.read(base + "set_event_pid") == expected + "\n"
            assert t.read(base + "options/event-fork") == "1\n"
        # Never common_pid for a process filter: it would drop its other threads.
        assert "common_pid" not in t.read(base + "events/block/block_rq_issue/filter")


def test_buffer_kb_option(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11")
    v, s = prepare(block_measurement(), buffer_kb=64)
    with s:
        assert t.read("instances/%s/buffer_size_kb" % t.instances()[0]) == "64\n"
    for bad in (0, -5, 10 ** 9, True, "64"):
        with pytest.raises(UsageError, match="--buffer-kb"):
            RunOptions(buffer_kb=bad)


def test_program_text_lists_writes_and_changes_nothing(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11")
    lib = _fake_library(fs)
    m = Measurement([Event("issue", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")]),
                     Event("call", UserFunction(lib, "fake_fn"))], Count(),
                    filters=[Filter("dev", "==", 7, events=["issue"])])
    before = t.snapshot()
    v, s = prepare(m)
    text = s.program_text()
    inst = "/sys/kernel/tracing/instances/kerntrace-%d-erastest" % os.getpid()
    lines = text.splitlines()
    assert lines[0].startswith("mkdir " + inst)
    assert any(l.startswith("echo 'p:kerntrace_%d/" % os.getpid()) and
               l.endswith(">> /sys/kernel/tracing/uprobe_events") for l in lines)
    assert any(l.startswith("echo 'dev == 7' > " + inst) for l in lines)
    assert lines[-1] == "# read per_cpu/cpu*/trace_pipe_raw"
    assert t.snapshot() == before and t.writes == []


# ---------------------------------------------------------------------------
# Top-level mode (no instances): lock, save and restore of every file
def _dirty_top_level(t):
    """Settings someone else left, which the run must change and restore."""
    with open(os.path.join(t.root, "trace_clock"), "w") as f:
        f.write("local [global]\n")
    with open(os.path.join(t.root, "events/block/block_rq_issue/filter"), "w") as f:
        f.write("sector > 100\n")
    with open(os.path.join(t.root, "events/block/block_rq_complete/enable"), "w") as f:
        f.write("1\n")


def test_top_level_saves_and_restores_every_written_file(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32", tracing_on="0", buffer_size="2048")
    _dirty_top_level(t)
    before = t.snapshot()
    err = io.StringIO()
    m = block_measurement(Filter("dev", "==", 5))
    v, s = prepare(m, stderr=err)
    with s:
        assert open(LOCK).read() == "%d\n" % os.getpid()
        assert t.read("tracing_on") == "1\n"
        assert t.read("events/block/block_rq_issue/enable") == "1\n"
        assert t.read("events/block/block_rq_issue/filter") == "dev == 5\n"
        assert t.read("buffer_size_kb") == "%d\n" % default_buffer_kb(v.plan)
        journal = "/run/kerntrace/toplevel-%d.json" % os.getpid()
        assert os.path.exists(journal)
    written = set(p for p, _t, _a in t.writes)
    assert {os.path.join(t.root, f) for f in (
        "tracing_on", "buffer_size_kb", "events/block/block_rq_issue/enable",
        "events/block/block_rq_issue/filter", "events/block/block_rq_complete/filter",
        "events/block/block_rq_complete/enable")} <= written
    assert t.snapshot() == before
    assert not os.path.exists(LOCK) and not os.path.exists(journal)
    assert "tracing is off in the top-level buffer (tracing_on=0)" in err.getvalue()
    assert err.getvalue().endswith("kerntrace: tracing_on set back to 0\n")


def test_top_level_lock_held_by_live_process(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32")
    holder = os.getppid()
    with open(LOCK, "w") as f:
        f.write("%d\n" % holder)
    before = t.snapshot()
    v, s = prepare(block_measurement())
    with pytest.raises(LockHeld) as exc:
        with s:
            pass
    assert exc.value.pid == holder
    assert str(exc.value) == "ftrace may be in use by PID %d /var/tmp/.ftrace-lock" % holder
    assert t.snapshot() == before and open(LOCK).read() == "%d\n" % holder


def test_top_level_stale_lock_is_taken_over(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "2.6.32")
    gone = dead_pid()
    with open(LOCK, "w") as f:
        f.write("%d\n" % gone)
    err = io.StringIO()
    v, s = prepare(block_measurement(), stderr=err)
    with s:
        assert open(LOCK).read() == "%d\n" % os.getpid()
    assert "took over stale lock /var/tmp/.ftrace-lock (PID %d is not running)" % gone \
        in err.getvalue()
    assert not os.path.exists(LOCK)


def test_instance_mode_ignores_the_perf_tools_lock(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    with open(LOCK, "w") as f:
        f.write("%d\n" % os.getppid())
    v, s = prepare(block_measurement())
    with s:
        assert len(t.instances()) == 1
    assert open(LOCK).read() == "%d\n" % os.getppid()


def test_top_level_per_cpu_buffer_sizes_restored(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32")
    with open(os.path.join(t.root, "buffer_size_kb"), "w") as f:
        f.write("X\n")
    with open(os.path.join(t.root, "per_cpu/cpu1/buffer_size_kb"), "w") as f:
        f.write("512\n")
    before = t.snapshot()
    v, s = prepare(block_measurement(), buffer_kb=256)
    with s:
        pass
    after = t.snapshot()
    assert after["per_cpu/cpu1/buffer_size_kb"] == "512\n"
    assert after["per_cpu/cpu0/buffer_size_kb"] == before["per_cpu/cpu0/buffer_size_kb"]


# ---------------------------------------------------------------------------
# tracing_on = 0
def test_instance_mode_with_top_level_tracing_off(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15", tracing_on="0")
    err = io.StringIO()
    v, s = prepare(block_measurement(), stderr=err)
    with s:
        assert t.read("instances/%s/tracing_on" % t.instances()[0]) == "1\n"
    assert t.read("tracing_on") == "0\n" and err.getvalue() == ""
    caps = {c.name: c for c in FtraceBackend().capabilities(Host())}
    assert not caps["tracing_on"].ok and "tracing_on=0" in caps["tracing_on"].detail


# ---------------------------------------------------------------------------
# Uprobe definitions: appended, removed by name, never truncating the file
@pytest.mark.parametrize("era", ["3.10", "6.11"])
def test_uprobe_definitions_appended_and_removed(fs, monkeypatch, mounts, era):
    t = tree(fs, monkeypatch, mounts, era)
    lib = _fake_library(fs)
    other = "p:someone/else /usr/lib/libfake.so.1:0x0000000000001230"
    t.define_probe(other)
    m = Measurement([Event("call", UserFunction(lib, "fake_fn"))], Count())
    v, s = prepare(m)
    ev = v.plan.events[0]
    with s:
        lines = t.read("uprobe_events").splitlines()
        assert lines[0] == other
        assert lines[1].startswith("p:%s/%s %s:0x" % (ev.system, ev.event, lib))
        base = "instances/%s/" % t.instances()[0]
        assert t.read(base + "events/%s/%s/enable" % (ev.system, ev.event)) == "1\n"
    assert t.read("uprobe_events") == other + "\n"
    probe_writes = [(p, txt, app) for p, txt, app in t.writes if p.endswith("uprobe_events")]
    assert [txt for _p, txt, _a in probe_writes] == [ev.probe_def,
                                                      "-:%s/%s\n" % (ev.system, ev.event)]
    assert all(app for _p, _t, app in probe_writes)
    assert not hasattr(t, "truncated_probe_file")
    assert t.instances() == []


# ---------------------------------------------------------------------------
# Permission failures: one clear error, nothing left behind
@pytest.mark.parametrize("era,denied", [
    ("6.11", "events/block/block_rq_complete/enable"),
    ("6.11", "/tracing_on"),
    ("2.6.32", "/tracing_on"),
    ("2.6.32", "events/block/block_rq_complete/enable"),
])
def test_permission_denied_is_one_line_and_undone(fs, monkeypatch, mounts, era, denied):
    t = tree(fs, monkeypatch, mounts, era)
    lib = _fake_library(fs)
    events = [Event("issue", Tracepoint("block", "block_rq_issue")),
              Event("done", Tracepoint("block", "block_rq_complete"))]
    if era != "2.6.32":
        events.append(Event("call", UserFunction(lib, "fake_fn")))
        t.define_probe("p:someone/else /usr/lib/libfake.so.1:0x1230")
    before = t.snapshot()
    t.deny.add(denied)
    err = io.StringIO()
    v, s = prepare(Measurement(events, Count()), stderr=err)
    with pytest.raises(EnableError) as exc:
        with s:
            pass
    msg = str(exc.value)
    assert "\n" not in msg and "Permission denied (errno 13)" in msg and denied in msg
    assert t.snapshot() == before
    assert not os.path.exists(LOCK)
    assert err.getvalue() == ""
    s.close()       # idempotent after a failed start
    assert t.snapshot() == before and err.getvalue() == ""


def test_instance_creation_denied(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    t.deny.add("-erastest%d" % instance_mod._counter[0])
    v, s = prepare(block_measurement())
    with pytest.raises(EnableError, match=r"cannot create instance .*Permission denied \(errno 13\)"):
        with s:
            pass
    assert t.instances() == []


def test_filter_write_denied(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    t.deny.add("block_rq_issue/filter")
    v, s = prepare(block_measurement(Filter("dev", "==", 1)))
    with pytest.raises(FilterError, match=r"event issue: cannot write filter .*errno 13"):
        with s:
            pass
    assert t.instances() == []


# ---------------------------------------------------------------------------
# Runs killed with SIGKILL leave objects named after their dead PID
def test_start_removes_what_dead_runs_left(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    lib = _fake_library(fs)
    gone, alive = dead_pid(), os.getppid()
    t.define_probe("p:kerntrace_%d/kerntrace_%d_0 %s:0x1230" % (gone, gone, lib))
    t.define_probe("p:kerntrace_%d/kerntrace_%d_0 %s:0x1230" % (alive, alive, lib))
    t.add_instance("kerntrace-%d-tpcount0" % gone)
    t.add_instance("kerntrace-%d-tpcount0" % alive)
    t.add_instance("someone-elses")
    with open(os.path.join(t.root, "instances/kerntrace-%d-tpcount0/events/kerntrace_%d/"
                           "kerntrace_%d_0/enable" % (gone, gone, gone)), "w") as f:
        f.write("1\n")
    err = io.StringIO()
    v, s = prepare(block_measurement(), stderr=err)
    runner.cleanup_stale([FtraceBackend()], Host(), err)     # what every run does first
    with s:
        names = t.instances()
        assert "kerntrace-%d-tpcount0" % gone not in names
        assert "kerntrace-%d-tpcount0" % alive in names and "someone-elses" in names
        assert "kerntrace_%d/" % gone not in t.read("uprobe_events")
        assert "kerntrace_%d/" % alive in t.read("uprobe_events")
    assert err.getvalue().splitlines() == [
        "kerntrace: removed instance kerntrace-%d-tpcount0 (PID %d) left by a process that is gone"
        % (gone, gone),
        "kerntrace: removed uprobe_events kerntrace_%d/kerntrace_%d_0 (PID %d) left by a "
        "process that is gone" % (gone, gone, gone)]


def test_cleanup_stale_on_demand(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11")
    gone = dead_pid()
    t.add_instance("kerntrace-%d-iolatency3" % gone)
    removed = FtraceBackend().cleanup_stale(Host())
    assert removed == ["instance kerntrace-%d-iolatency3 (PID %d)" % (gone, gone)]
    assert t.instances() == []
    assert FtraceBackend().cleanup_stale(Host()) == []


def test_top_level_journal_of_a_killed_run_is_restored(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32", tracing_on="0")
    before = t.snapshot()
    gone = dead_pid()
    # A top-level run of PID `gone` that was SIGKILLed mid-run: its journal
    # and lock remain, and the kernel still has its settings.
    monkeypatch.setattr(os, "getpid", lambda: gone)
    v, s = prepare(block_measurement(Filter("dev", "==", 3)))
    s.start()
    s.undo._items = []          # what SIGKILL does: nothing is undone
    monkeypatch.undo()
    t.install(monkeypatch)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    assert t.snapshot() != before
    assert os.path.exists("/run/kerntrace/toplevel-%d.json" % gone)
    err = io.StringIO()
    removed = FtraceBackend().cleanup_stale(Host())
    assert t.snapshot() == before
    assert removed and "top-level tracing settings of PID %d" % gone in removed[0]
    assert not os.path.exists("/run/kerntrace/toplevel-%d.json" % gone)
    assert not os.path.exists(LOCK)
    assert err.getvalue() == ""


# ---------------------------------------------------------------------------
# --input: replaying a saved trace needs no kernel at all
def test_replay_needs_no_tracefs(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11", mounted=False)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    fs.create_file("/home/u/saved.trace", contents="# tracer: nop\n")
    host = Host()
    host.saved_trace = open_saved_trace("/home/u/saved.trace")
    b = FtraceBackend()
    v = b.check(block_measurement(), host)
    assert v.ok and v.reasons == ["replaying /home/u/saved.trace"]
    s = b.open(block_measurement(), v, RunOptions())
    assert type(s).__name__ == "ReplaySession"
    assert mounts["calls"] == 0


def test_replay_of_probes_we_would_define_needs_a_recording_naming_them(fs, monkeypatch,
                                                                        mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    host = Host()
    host.saved_trace = SavedTrace("/x.trace")
    m = Measurement([Event("call", UserFunction("/usr/lib/libfake.so.1", "fake_fn"))], Count())
    v = FtraceBackend().check(m, host)
    assert not v.ok and v.reasons == [
        "event call cannot be replayed from a saved trace: u:/usr/lib/libfake.so.1:fake_fn: "
        "a plain trace file does not say what its probe events probed (a recording made "
        "with `kerntrace record` does)"]


def test_leftovers_of_an_earlier_process_with_our_pid_are_stale(fs, monkeypatch, mounts):
    """PIDs are reused: an object named after our PID that this process did
    not create was left by a killed process that had the same PID."""
    t = tree(fs, monkeypatch, mounts, "5.15")
    lib = _fake_library(fs)
    me = os.getpid()
    t.add_instance("kerntrace-%d-old99" % me)
    t.define_probe("p:kerntrace_%d/kerntrace_%d_99 %s:0x1230" % (me, me, lib))
    err = io.StringIO()
    v, s = prepare(block_measurement(), stderr=err)
    runner.cleanup_stale([FtraceBackend()], Host(), err)
    with s:
        mine = t.instances()
        assert len(mine) == 1 and "old99" not in mine[0]
        assert "kerntrace_%d_99" % me not in t.read("uprobe_events")
    assert "removed instance kerntrace-%d-old99 (PID %d)" % (me, me) in err.getvalue()


def test_filters_on_derived_values_stay_in_user_space(fs, monkeypatch, mounts):
    """bytes falls back to nr_sector * 512 where the kernel recorded 0 (up
    to v4.10): a kernel filter on the raw bytes field would drop every file
    system request there, so only the dev clause goes to the kernel."""
    tree(fs, monkeypatch, mounts, "3.10")
    m = Measurement([blockdev.issue_event()], Count(),
                    filters=[Filter("dev", "==", 5), Filter("bytes", ">=", 4096),
                             Filter("sector", "==", 0)])
    v, s = prepare(m)
    assert v.plan.kernel_filters == {"start": "dev == 5"}
    with s:
        pass


def test_top_level_run_killed_before_saving_anything_leaves_no_lock(fs, monkeypatch, mounts):
    """Killed after taking the perf-tools lock but before its first saved
    file: `kerntrace cleanup` must release the lock (perf-tools refuses to
    run while it is there)."""
    t = tree(fs, monkeypatch, mounts, "2.6.32")
    before = t.snapshot()
    gone = dead_pid()

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed()
    monkeypatch.setattr(os, "getpid", lambda: gone)
    v, s = prepare(block_measurement())
    monkeypatch.setattr(session_module, "configure", killed)
    with pytest.raises(Killed):
        s.start()
    s.undo._items = []          # what SIGKILL does: nothing is undone
    monkeypatch.undo()
    t.install(monkeypatch)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    assert open(LOCK).read() == "%d\n" % gone
    removed = FtraceBackend().cleanup_stale(Host())
    assert removed == ["top-level tracing settings of PID %d (restored 0)" % gone]
    assert not os.path.exists(LOCK)
    assert t.snapshot() == before
    assert os.listdir("/run/kerntrace") == []


def test_killed_top_level_run_is_restored_once_when_var_run_is_run(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32", tracing_on="0")
    fs.create_symlink("/var/run", "/run")
    before = t.snapshot()
    gone = dead_pid()
    monkeypatch.setattr(os, "getpid", lambda: gone)
    v, s = prepare(block_measurement())
    s.start()
    s.undo._items = []
    monkeypatch.undo()
    t.install(monkeypatch)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    err = io.StringIO()
    removed = FtraceBackend().cleanup_stale(Host(), stderr=err)
    assert len([r for r in removed if r.startswith("top-level tracing settings of PID %d"
                                                   % gone)]) == 1
    assert err.getvalue().count("restored top-level tracing settings") == 1
    assert t.snapshot() == before


def test_stale_lock_holding_a_huge_number_is_taken_over(fs, monkeypatch, mounts):
    """Any local user can write /var/tmp/.ftrace-lock: a number no PID can
    be is a stale lock, said in one line, never an internal error."""
    tree(fs, monkeypatch, mounts, "2.6.32")
    with open(LOCK, "w") as f:
        f.write("9" * 25 + "\n")
    err = io.StringIO()
    v, s = prepare(block_measurement(), stderr=err)
    with s:
        assert open(LOCK).read() == "%d\n" % os.getpid()
    assert err.getvalue().splitlines() == [
        "kerntrace: took over stale lock %s (it holds no PID: '%s')" % (LOCK, "9" * 25)]
    assert not os.path.exists(LOCK)


def test_objects_named_after_impossible_pids_are_judged_without_error(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    huge = 10 ** 30
    t.add_instance("kerntrace-%d-tpcount0" % huge)
    fs.create_file("/run/kerntrace/toplevel-%d.json" % huge,
                   contents='{"pid": 1, "tracefs": null, "restore": []}')
    removed = FtraceBackend().cleanup_stale(Host())
    assert removed == ["instance kerntrace-%d-tpcount0 (PID %d)" % (huge, huge)]


def test_lock_files_of_objects_that_are_gone_are_swept(fs, monkeypatch, mounts):
    """A run killed between taking an owner lock and creating its object
    (or an object removed by hand) leaves only the lock file: removed; a
    lock file whose object still exists stays with it."""
    tree(fs, monkeypatch, mounts, "5.15")
    gone = dead_pid()
    fs.create_file("/run/kerntrace/kerntrace-%d-tpcount0.lock" % gone)
    fs.create_file("/run/kerntrace/kerntrace_%d_0.lock" % gone)
    fs.create_file("/run/kerntrace/someone-elses.lock")
    FtraceBackend().cleanup_stale(Host())
    assert sorted(os.listdir("/run/kerntrace")) == ["someone-elses.lock"]


def test_cleanup_notes_lockless_objects_it_cannot_judge(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15")
    alive = os.getppid()
    t.add_instance("kerntrace-%d-old0" % alive)       # an older kerntrace's, no lock file
    problems, notes = [], []
    assert FtraceBackend().cleanup_stale(Host(), problems=problems, notes=notes) == []
    assert problems == [] and notes == [
        "left alone instance kerntrace-%d-old0: it has no owner lock and PID %d is running"
        % (alive, alive)]
    assert "kerntrace-%d-old0" % alive in t.instances()


# ---------------------------------------------------------------------------
# Task names: the kernel's task events, enabled beside the measured ones
# As include/trace/events/task.h declares them in 3.10-era kernels (an
# unsigned long clone_flags, an int oom_score_adj).
TASK_EVENTS_3_10 = {
    ("task", "task_newtask"): """name: task_newtask
ID: 60
format:
%s
\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:1;
\tfield:unsigned long clone_flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:int oom_score_adj;\toffset:40;\tsize:4;\tsigned:1;

print fmt: "pid=%%d comm=%%s clone_flags=%%lx oom_score_adj=%%d", REC->pid, REC->comm, REC->clone_flags, REC->oom_score_adj
""" % COMMON_FIELDS,
    ("task", "task_rename"): """name: task_rename
ID: 61
format:
%s
\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char oldcomm[16];\toffset:12;\tsize:16;\tsigned:1;
\tfield:char newcomm[16];\toffset:28;\tsize:16;\tsigned:1;
\tfield:int oom_score_adj;\toffset:44;\tsize:4;\tsigned:1;

print fmt: "pid=%%d oldcomm=%%s newcomm=%%s oom_score_adj=%%d", REC->pid, REC->oldcomm, REC->newcomm, REC->oom_score_adj
""" % COMMON_FIELDS,
}


def by_comm_measurement():
    issue = Event("issue", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])
    return Measurement([issue], Count(keys=("comm", "pid")))


def test_task_events_enabled_in_the_instance_only_when_names_are_read(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "3.10", extra_events=TASK_EVENTS_3_10)
    before = t.snapshot()
    v, s = prepare(block_measurement())
    assert v.plan.task_events is None
    v, s = prepare(by_comm_measurement())
    assert [te.event for te in v.plan.task_events] == ["task_newtask", "task_rename"]
    with s:
        inst = s.buffer_path
        for ev in ("task/task_newtask", "task/task_rename", "block/block_rq_issue"):
            assert t.read(os.path.join(inst, "events", ev, "enable")) == "1\n", ev
        assert outside_instances(t.snapshot()) == outside_instances(before)
    assert t.snapshot() == before


def test_top_level_task_events_restored_with_their_filters(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "2.6.32", extra_events=TASK_EVENTS_3_10)
    with open(os.path.join(t.root, "events/task/task_rename/filter"), "w") as f:
        f.write("pid == 3\n")
    before = t.snapshot()
    v, s = prepare(by_comm_measurement())
    with s:
        assert t.read("events/task/task_rename/enable") == "1\n"
        # someone's filter would hide renames we need
        assert t.read("events/task/task_rename/filter") == "none\n"
    assert t.snapshot() == before


def test_no_task_events_no_tracking_and_says_so(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    v = FtraceBackend().check(by_comm_measurement(), Host())
    assert v.ok and v.plan.task_events == ()
    assert ("no task:task_newtask/task_rename events: task names and process ids from "
            "/proc at the start and saved_cmdlines") in v.reasons


# ---------------------------------------------------------------------------
# The plan: what check() decided is what runs, and nothing changes it
def _written_lines(writes):
    """Control-file writes as --print-program words them (ControlFiles)."""
    lines = []
    for path, text, append in writes:
        value = text[:-1] if text.endswith("\n") else text
        if os.path.basename(path) == "trace" and not value:
            lines.append("echo > %s" % path)
        else:
            lines.append("echo '%s' %s %s" % (value, ">>" if append else ">", path))
    return lines


def _plan_state(plan):
    return (plan.describe(), dict(plan.kernel_filters), dict(plan.filter_fallbacks),
            [(e.system, e.event, e.format, dict(e.fields), e.probe_def) for e in plan.events],
            plan.instance_name, plan.buffer_kb, plan.trace_clock, plan.task_events)


@pytest.mark.parametrize("era", ["2.6.32", "3.10", "6.11"])
def test_program_text_is_every_write_start_makes_in_order(fs, monkeypatch, mounts, era):
    """--print-program, byte for byte, against the writes of a real start()
    on kernels of three eras (top level; no glob operator; a probe)."""
    t = tree(fs, monkeypatch, mounts, era, glob_op=era != "3.10")
    if era == "2.6.32":
        _dirty_top_level(t)
    lib = _fake_library(fs)
    events = [Event("issue", Tracepoint("block", "block_rq_issue"),
                    fields=[Field("dev"), Field("rwbs", STR)]),
              Event("done", Tracepoint("block", "block_rq_complete"), fields=[Field("dev")])]
    if era != "2.6.32":
        events.append(Event("call", UserFunction(lib, "fake_fn")))
    m = Measurement(events, Count(keys=("comm", EVENT_NAME)),
                    filters=[Filter("dev", "==", 7, events=["issue", "done"]),
                             Filter("rwbs", "glob", "*R*", events=["issue"])])
    v, s = prepare(m)
    before = _plan_state(v.plan)
    text = s.program_text()
    with s:
        written = _written_lines(t.writes)
    retry = "# %s " % IF_REJECTED
    f = os.path.join("instances/" + v.plan.instance_name if v.plan.instances else "",
                     "events/block/block_rq_issue/filter")
    assert retry + "'dev == 7' > %s/%s" % (t.root, f) in text.splitlines()
    if era == "3.10":
        # The one stated difference: a kernel that rejects the glob gets the
        # retry --print-program shows as a comment; otherwise it is the same.
        assert [l for l in written if l.endswith(f)] == [
            "echo 'dev == 7 && rwbs ~ \"*R*\"' > %s/%s" % (t.root, f),
            "echo 'dev == 7' > %s/%s" % (t.root, f)]
        expected = text.replace(retry, "echo ")
    else:
        assert "\n".join(s.ops.log) + "\n" == text
        expected = text
    assert written == [l for l in expected.splitlines()
                       if not l.startswith("#") and not l.startswith("mkdir ")]
    assert ("# take lock %s" % LOCK in text.splitlines()) == (era == "2.6.32")
    # the run changed nothing in the plan, and prints the same again
    assert _plan_state(v.plan) == before
    assert s.program_text() == text


def test_a_plan_cannot_be_changed(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    v, s = prepare(block_measurement(Filter("dev", "==", 5)))
    plan, ev = v.plan, v.plan.events[0]
    for obj, attr, value in [(plan, "buffer_kb", 1), (plan, "instance_name", "x"),
                             (plan, "kernel_filters", {}), (plan, "events", []),
                             (ev, "system", "x"), (ev, "format", None), (v, "plan", None)]:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(obj, attr, value)
    with pytest.raises(TypeError):
        plan.kernel_filters["issue"] = None
    with pytest.raises(TypeError):
        ev.fields["dev"] = "sector"
    with pytest.raises(AttributeError):
        plan.events.append(ev)
    assert plan.kernel_filters["issue"] == "dev == 5" and ev.fields["dev"] == "dev"


def test_open_refuses_options_the_plan_was_not_made_for(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    b = FtraceBackend()
    v = b.check(block_measurement(), Host(mount_tracefs=False), RunOptions(tool="a"))
    with pytest.raises(ValueError, match="plan was made for"):
        b.open(block_measurement(), v, RunOptions(tool="a", buffer_kb=64))
    assert b.open(block_measurement(), v, RunOptions(tool="a")).plan is v.plan


def test_explain_describes_the_plan_the_run_uses(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    v, s = prepare(block_measurement(Filter("dev", "==", 5)), buffer_kb=2048)
    lines = v.describe()
    assert "event issue <- block:block_rq_issue; kernel filter dev == 5" in lines
    assert "instance %s, 2048 KB per CPU (--buffer-kb)" % v.plan.instance_name in lines
    text = s.program_text()
    assert "mkdir %s/instances/%s" % (TRACEFS_ROOT, v.plan.instance_name) in text
    assert "echo '2048' > %s/instances/%s/buffer_size_kb" % (
        TRACEFS_ROOT, v.plan.instance_name) in text
