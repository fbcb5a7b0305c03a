"""The ftrace backend on the live kernel, as a user runs it: the real
`kerntrace` command line in a subprocess (or, for probes no built-in tool
takes yet, the backend API in this process), on workloads with a known
number of events that are ours alone (our own loop device, our own PIDs).

Checked: counts are exact; every run works in its own instance named after
its PID and leaves nothing behind, however it ends (normal end, Ctrl-C,
SIGTERM, SIGHUP, a closed stdout, an exception, SIGKILL followed by another
run); concurrent runs do not disturb each other; losses are reported; the
kernel-side filters are really installed.  The conftest leak check runs
after every test too."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import clirun
import kernstate
import workloads
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.core.backend import RunOptions, Verdict
from kerntrace.core.errors import LockHeld
from kerntrace.core.host import Host
from kerntrace.core.model import (EVENT_NAME, LATENCY, Count, Event, Field, Filter, Histogram,
                                  Measurement, Pair, Tracepoint, UserFunction)

pytestmark = pytest.mark.live

N = 300
GETPPID = "syscalls:sys_enter_getppid"

# A process that makes exactly n getppid() calls when told to (no sleeps:
# a burst that overruns a small buffer).
_BURST = ("import os, sys\nprint(os.getpid(), flush=True)\nsys.stdin.readline()\n"
          "g = os.getppid\nfor _ in range(%d):\n    g()\n")


class Burst(object):
    def __init__(self, n):
        self.p = subprocess.Popen([sys.executable, "-c", _BURST % n], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, universal_newlines=True)
        self.pid = int(self.p.stdout.readline())

    def release(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        return self.p.wait()


def tracefs():
    return kernstate.tracefs()


def owned_by(pid):
    """Kernel objects named after `pid` (instances, probe definitions)."""
    return [s for s in kernstate.kerntrace_state() if re.search(r"kerntrace[-_]%d(?!\d)" % pid, s)]


def instances_of(pid):
    d = os.path.join(tracefs(), "instances")
    return sorted(n for n in os.listdir(d) if n.startswith("kerntrace-%d-" % pid))


def tpcount(*args):
    return ["tpcount", "--backend", "ftrace"] + list(args)


def counts(out, label=GETPPID):
    return sum(int(c) for c in re.findall(r"^%s\s+(\d+)$" % re.escape(label), out, re.M))


def lost(err):
    return sum(int(n) for n in re.findall(r"WARNING: (\d+) events lost", err))


def start_tpcount(pid, *extra):
    p = clirun.start(tpcount("-p", str(pid), *(extra + (GETPPID,))))
    clirun.wait_for_stderr_line(p, "Tracing 1 tracepoint")
    return p


# ---------------------------------------------------------------------------
def test_exact_count_in_own_instance_then_nothing_left(caller_exe):
    c = workloads.Caller(caller_exe, N)
    p = start_tpcount(c.pid, "-i", "30", "-c", "1")
    try:
        names = instances_of(p.pid)
        assert len(names) == 1 and names[0].startswith("kerntrace-%d-tpcount" % p.pid)
        inst = os.path.join(tracefs(), "instances", names[0])
        with open(os.path.join(inst, "events/syscalls/sys_enter_getppid/enable")) as f:
            assert f.read().strip() == "1"
        with open(os.path.join(inst, "set_event_pid")) as f:
            assert f.read().split() == [str(c.pid)]
        assert c.release() == 0
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert counts(out) == N and lost(err) == 0
    assert owned_by(p.pid) == []


def test_block_io_filtered_by_device_in_the_kernel():
    n = 64
    with workloads.loop_device() as (path, major, minor):
        p = clirun.start(["iolatency", "--backend", "ftrace", "-d", "%d,%d" % (major, minor),
                          "30", "1"])
        try:
            assert p.stdout.readline().startswith("Tracing block I/O.")
            (name,) = [n for n in instances_of(p.pid) if enabled_events(n) == ["block_rq_issue"]]
            filt = os.path.join(tracefs(), "instances", name, "events/block/block_rq_issue/filter")
            with open(filt) as f:
                assert f.read().strip() == "dev == %d" % ((major << 20) | minor)
            workloads.direct_writes(path, n)
            workloads.direct_reads(path, n)
            time.sleep(0.3)
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    rows = re.findall(r"^\s+\d+ -> \d+\s+: (\d+)\s", out, re.M)
    assert sum(int(r) for r in rows) == 2 * n, out
    assert owned_by(p.pid) == []


def test_two_concurrent_runs_are_both_exact(caller_exe):
    c = workloads.Caller(caller_exe, N)
    a = start_tpcount(c.pid, "-i", "30", "-c", "1")
    b = start_tpcount(c.pid, "-i", "30", "-c", "1", "--by", "comm")
    try:
        assert len(instances_of(a.pid)) == 1 and len(instances_of(b.pid)) == 1
        assert c.release() == 0
        time.sleep(0.3)
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGINT)
        out_a, err_a = a.communicate(timeout=30)
        out_b, err_b = b.communicate(timeout=30)
    assert counts(out_a) == N, err_a
    assert counts(out_b, "kerntrace_calle") == N, out_b + err_b
    assert owned_by(a.pid) == [] and owned_by(b.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_state_restored_after_signal(caller_exe, sig):
    before = kernstate.snapshot()
    c = workloads.Caller(caller_exe, N)
    p = start_tpcount(c.pid)
    assert len(instances_of(p.pid)) == 1
    assert c.release() == 0
    time.sleep(0.3)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    # The unfinished interval is printed, with everything it saw.
    assert counts(out) == N
    assert owned_by(p.pid) == []
    now = kernstate.snapshot()
    assert (now["set_event"], now["current_tracer"]) == (before["set_event"],
                                                          before["current_tracer"])


def test_state_restored_when_stdout_closes():
    p = subprocess.Popen(clirun.KERNTRACE + tpcount("-i", "0.1", "sched:sched_switch"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clirun.env())
    p.stdout.readline()
    p.stdout.close()            # like `| head -1`
    rc = p.wait(timeout=30)
    err = p.stderr.read().decode()
    assert rc == 0, err
    assert "Traceback" not in err
    assert owned_by(p.pid) == []


def test_sigkill_leftovers_removed_by_the_next_run(caller_exe):
    c = workloads.Caller(caller_exe, 10)
    victim = start_tpcount(c.pid)
    (left,) = instances_of(victim.pid)
    victim.kill()
    victim.wait()
    c.release()
    assert instances_of(victim.pid) == [left]           # SIGKILL: nothing restored
    rc, out, err = clirun.run(tpcount("-d", "0.3", GETPPID))
    assert rc == 0, err
    assert "kerntrace: removed instance %s (PID %d) left by a process that is gone" % (
        left, victim.pid) in err
    assert instances_of(victim.pid) == []


def test_kerntrace_cleanup_after_sigkill_removes_instance_and_probes(caller_exe):
    child = subprocess.Popen([sys.executable, "-c", workloads.UPROBE_VICTIM, caller_exe],
                             stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        left = owned_by(child.pid)
        assert any(s.startswith("instance kerntrace-%d-victim" % child.pid) for s in left)
        assert any(s.startswith("uprobe_events p:kerntrace_%d/" % child.pid) for s in left)
    finally:
        child.kill()
        child.wait()
    rc, out, err = clirun.run(["cleanup"])
    assert rc == 0, err
    lines = out.splitlines()
    assert any(l.startswith("removed instance kerntrace-%d-victim" % child.pid) for l in lines)
    assert any(l.startswith("removed uprobe_events kerntrace_%d/kerntrace_%d_" % (
        child.pid, child.pid)) for l in lines)
    assert owned_by(child.pid) == []


def test_losses_reported_when_a_tiny_buffer_overflows():
    n = 200000
    w = Burst(n)
    p = start_tpcount(w.pid, "--buffer-kb", "4", "-i", "30", "-c", "1")
    try:
        assert w.release() == 0
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    seen, missed = counts(out), lost(err)
    assert missed > 0
    # Every event is either counted or reported lost, never both, never neither.
    assert seen + missed == n
    assert owned_by(p.pid) == []


def test_print_program_installs_nothing():
    rc, out, err = clirun.run(tpcount("--print-program", "-p", "1", GETPPID))
    assert rc == 0, err
    lines = out.splitlines()
    assert re.match(r"^mkdir %s/instances/kerntrace-\d+-tpcount\d+$" % re.escape(tracefs()),
                    lines[0])
    assert any(l.endswith("/events/syscalls/sys_enter_getppid/enable") for l in lines)
    pid = int(re.search(r"kerntrace-(\d+)-", lines[0]).group(1))
    assert owned_by(pid) == []


# ---------------------------------------------------------------------------
# In this process, through the backend API
@pytest.mark.parametrize("step", ["instance mkdir", "probe definition", "enable write"])
def test_stop_signal_while_creating_state_leaves_nothing(caller_exe, step, monkeypatch):
    """A Ctrl-C that lands just after a piece of kernel state was created
    (the instance, the uprobe definition, the event enable), before the
    code that made it has recorded how to undo it, is delivered once
    start() is done, so close() removes everything."""
    import threading
    from kerntrace.core import tracefs as core_tracefs
    from kerntrace.core.stopsignals import SignalsAsStop, Stop
    poked = []

    def then_signal(real, wanted):
        def wrapper(path, *a, **kw):
            r = real(path, *a, **kw)
            if not poked and wanted(path):
                poked.append(path)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            return r
        return wrapper

    if step == "instance mkdir":
        monkeypatch.setattr(os, "mkdir", then_signal(os.mkdir, lambda p: "/instances/" in p))
    else:
        name = "uprobe_events" if step == "probe definition" else "enable"
        monkeypatch.setattr(core_tracefs, "write_text", then_signal(
            core_tracefs.write_text, lambda p: os.path.basename(p) == name))
    m = Measurement([Event("work", UserFunction(caller_exe, "kerntrace_work"))], Count())
    _, s = _session(m)
    stopped = []
    with SignalsAsStop():
        try:
            with s:
                pass
        except Stop:
            stopped.append(True)
    assert poked and stopped, "the signal was lost"
    assert owned_by(os.getpid()) == []


def _session(measurement, tool="livetest", **kw):
    b = FtraceBackend()
    options = RunOptions(tool=tool, **kw)
    v = b.check(measurement, Host(), options)
    assert v.ok, v.reasons
    return v, b.open(measurement, v, options)


def _total(report):
    return sum(report.data.counts.values())


def enabled_events(instance):
    """The block events enabled in one of the instances."""
    d = os.path.join(tracefs(), "instances", instance, "events", "block")
    out = []
    for ev in sorted(os.listdir(d)):
        try:
            with open(os.path.join(d, ev, "enable")) as f:
                if f.read().strip() == "1":
                    out.append(ev)
        except (IOError, OSError):
            pass
    return out


def start_iolatency(major, minor):
    """An iolatency run on our device, once it traces: (process, its
    instances)."""
    p = clirun.start(["iolatency", "--backend", "ftrace", "-d", "%d,%d" % (major, minor),
                      "30", "1"])
    assert p.stdout.readline().startswith("Tracing block I/O.")
    return p, instances_of(p.pid)


def io_rows(out):
    return sum(int(r) for r in re.findall(r"^\s+\d+ -> \d+\s+: (\d+)\s", out, re.M))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_iolatency_reads_an_instance_per_event_and_removes_them_all(sig):
    """Bulk pairing takes an instance per event (pages of one entry
    size): both are the run's, both are removed however it is stopped."""
    n = 40
    with workloads.loop_device() as (path, major, minor):
        p, names = start_iolatency(major, minor)
        try:
            assert sorted(enabled_events(n_) for n_ in names) == [["block_rq_complete"],
                                                                  ["block_rq_issue"]]
            workloads.direct_writes(path, n)
            time.sleep(0.3)
        finally:
            p.send_signal(sig)
            out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert io_rows(out) == n, out + err
    assert owned_by(p.pid) == []


def test_iolatency_counts_the_losses_of_every_instance():
    """A tiny buffer per instance overflows: every I/O is counted unless
    one of its two events was lost, and every lost event is reported,
    whichever instance lost it."""
    n = 4000
    with workloads.loop_device(directory="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as (path, major, minor):
        p = clirun.start(["iolatency", "--backend", "ftrace", "--buffer-kb", "4",
                          "-d", "%d,%d" % (major, minor), "30", "1"])
        try:
            assert p.stdout.readline().startswith("Tracing block I/O.")
            assert len(instances_of(p.pid)) == 2
            workloads.direct_writes(path, n, bs=512)
            time.sleep(0.3)
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    seen, missed = io_rows(out), lost(err)
    if not missed:
        pytest.skip("this host drained a 4 KB buffer of %d I/Os without a loss" % n)
    assert n - missed <= seen <= n, (seen, missed)
    assert owned_by(p.pid) == []


def test_iolatency_instances_left_by_sigkill_are_removed_by_the_next_run():
    with workloads.loop_device() as (path, major, minor):
        victim, names = start_iolatency(major, minor)
        victim.kill()
        victim.wait()
    assert len(names) == 2 and instances_of(victim.pid) == names   # SIGKILL: nothing undone
    rc, out, err = clirun.run(tpcount("-d", "0.3", GETPPID))
    assert rc == 0, err
    for name in names:
        assert "kerntrace: removed instance %s (PID %d) left by a process that is gone" % (
            name, victim.pid) in err
    assert instances_of(victim.pid) == []


def test_an_exception_removes_every_instance_of_the_run():
    from kerntrace.core.pluginhost import PluginHost
    tool = PluginHost(load_third_party=False).tools()["iolatency"]
    m = tool.measurement(tool.parse_args([]))
    v, s = _session(m, tool="iolatency")
    assert len(v.plan.event_instances) == 2
    with pytest.raises(RuntimeError, match="boom"):
        with s:
            assert instances_of(os.getpid()) == sorted(v.plan.event_instances)
            raise RuntimeError("boom")
    assert owned_by(os.getpid()) == []


def test_exception_inside_the_session_restores_everything():
    m = Measurement([Event("g", Tracepoint("syscalls", "sys_enter_getppid"))], Count(),
                    filters=[Filter("pid", "==", os.getpid())])
    v, s = _session(m)
    with pytest.raises(RuntimeError, match="boom"):
        with s:
            assert len(instances_of(os.getpid())) == 1
            raise RuntimeError("boom")
    assert owned_by(os.getpid()) == []
    s.close()           # idempotent
    assert owned_by(os.getpid()) == []


def test_uprobe_on_the_caller_counted_exactly_and_removed(caller_exe):
    m = Measurement([Event("entry", UserFunction(caller_exe, "kerntrace_work"),
                           fields=[Field("usec", sources=("arg0",))]),
                     Event("ret", UserFunction(caller_exe, "kerntrace_work", ret=True),
                           fields=[Field("rv", sources=("retval",))])],
                    Count(keys=(EVENT_NAME,)))
    v, s = _session(m)
    c = workloads.Caller(caller_exe, N, usec=3)
    with s:
        with open(os.path.join(tracefs(), "uprobe_events")) as f:
            mine = [l for l in f.read().splitlines() if "kerntrace_%d/" % os.getpid() in l]
        assert len(mine) == 2
        assert c.release() == 0
        s.wait(0.3)
        report = s.collect()
    assert report.data.counts == {("entry",): N, ("ret",): N}
    assert report.lost == 0
    with open(os.path.join(tracefs(), "uprobe_events")) as f:
        assert "kerntrace_%d/" % os.getpid() not in f.read()
    assert owned_by(os.getpid()) == []


def test_uprobe_arguments_and_return_values(caller_exe):
    m = Measurement([Event("ret", UserFunction(caller_exe, "kerntrace_work", ret=True),
                           fields=[Field("rv", sources=("retval",))])],
                    Histogram("rv", keys=()))
    v, s = _session(m)
    c = workloads.Caller(caller_exe, 20, usec=100)
    with s:
        assert c.release() == 0
        s.wait(0.2)
        report = s.collect()
    (h,) = report.data.histograms.values()
    # kerntrace_work(100) returns 100: log2 slot of 100 is 7.
    assert h.buckets == {7: 20} and h.total == 2000


def test_latency_pairs_across_cpus_are_all_matched():
    """Issue and completion often run on different CPUs: the per-CPU buffers
    must reach the pairing in timestamp order, or completions arrive before
    their issue and count as unmatched."""
    n = 200
    events = [Event("issue", Tracepoint("block", "block_rq_issue"),
                    fields=[Field("dev"), Field("sector")]),
              Event("done", Tracepoint("block", "block_rq_complete"),
                    fields=[Field("dev"), Field("sector")])]
    with workloads.loop_device() as (path, major, minor):
        m = Measurement(events, Histogram(LATENCY, unit="usecs"),
                        pair=Pair("issue", "done", key=("dev", "sector")),
                        filters=[Filter("dev", "==", (major << 20) | minor)])
        for _attempt in range(3):
            v, s = _session(m)
            with s:
                workloads.direct_writes(path, n)
                s.wait(0.2)
                report = s.collect()
            (h,) = report.data.histograms.values()
            assert h.count == n and report.unmatched == 0 and report.lost == 0


def test_top_level_mode_on_the_real_kernel_restores_every_file():
    """The pre-3.10 path (no instances) against real control files: our
    saved values must be accepted back by the kernel.  Skipped if a
    perf-tools tool holds the lock right now."""
    root = tracefs()
    watched = ["tracing_on", "trace_clock", "buffer_size_kb", "current_tracer", "set_event",
               "events/syscalls/sys_enter_getppid/enable",
               "events/syscalls/sys_enter_getppid/filter",
               "options/record-tgid"]

    def read_all():
        out = {}
        for rel in watched:
            with open(os.path.join(root, rel)) as f:
                out[rel] = f.read()
        return out
    m = Measurement([Event("g", Tracepoint("syscalls", "sys_enter_getppid"))], Count(),
                    filters=[Filter("tid", "==", os.getpid())])
    b = FtraceBackend()
    options = RunOptions(tool="toplevel", buffer_kb=64)
    v = b.check(m, Host(), options)
    # the plan of a kernel without instances (plans are immutable: a new one)
    v = Verdict(v.backend, True, v.reasons,
                v.plan.replace(instances=False, instance_name=None, trace_clock=None))
    s = b.open(m, v, options)
    before = read_all()
    try:
        with s:
            assert open("/var/tmp/.ftrace-lock").read().strip() == str(os.getpid())
            with open(os.path.join(root, "events/syscalls/sys_enter_getppid/filter")) as f:
                assert f.read().strip() == "common_pid == %d" % os.getpid()
            for _ in range(N):
                os.getppid()
            s.wait(0.2)
            report = s.collect()
    except LockHeld as e:
        pytest.skip("the perf-tools lock is in use: %s" % e)
    assert _total(report) == N
    after = read_all()
    # A buffer never used yet reads "7 (expanded: 1408)"; any tracing
    # expands it for good, so the best restore is the size it expands to
    # (the kernel rounds it to whole pages).
    m = re.match(r"\d+ \(expanded: (\d+)\)", before["buffer_size_kb"])
    if m:
        assert abs(int(after.pop("buffer_size_kb")) - int(m.group(1))) < 8
        before.pop("buffer_size_kb")
    assert after == before


def test_text_trace_pipe_path_counts_exactly(caller_exe):
    """Kernels without trace_pipe_raw read the text trace_pipe: forced here
    on the real kernel."""
    c = workloads.Caller(caller_exe, N)
    m = Measurement([Event("g", Tracepoint("syscalls", "sys_enter_getppid"))],
                    Count(keys=("comm", "pid")), filters=[Filter("pid", "==", c.pid)])
    b = FtraceBackend()
    options = RunOptions(tool="textpath")
    v = b.check(m, Host(), options)
    v = Verdict(v.backend, True, v.reasons, v.plan.replace(read_path="text"))
    s = b.open(m, v, options)
    assert s.program_text().splitlines()[-1] == "# read trace_pipe"
    with s:
        assert c.release() == 0
        s.wait(0.3)
        report = s.collect()
    assert report.data.counts == {("kerntrace_calle", c.pid): N}
    assert owned_by(os.getpid()) == []
