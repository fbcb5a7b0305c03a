"""Who owns tracing state, on the live kernel: runs in another PID namespace
(`unshare --pid --fork --mount-proc`, whose PIDs mean nothing here), dead
runs whose PID now belongs to another process, instances someone holds
open when their run ends, and runs on the eBPF backend cleaning up after a
killed ftrace run.  The real `kerntrace` command line, in subprocesses."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import clirun
import kernstate
import workloads
from kerntrace.backends.ftrace.lock import pid_alive

pytestmark = pytest.mark.live

GETPPID = "syscalls:sys_enter_getppid"
# PIDs a run inside a fresh PID namespace gets after this many forks there.
NS_FORKS = 400


def tracefs():
    return kernstate.tracefs()


def instances_of(pid):
    d = os.path.join(tracefs(), "instances")
    return sorted(n for n in os.listdir(d) if n.startswith("kerntrace-%d-" % pid))


def read(path):
    with open(path) as f:
        return f.read().strip()


def _unshare_skip_reason():
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode != 0:
        return "cannot create a PID namespace here: %s" % r.stderr.strip()
    return None


@pytest.fixture(scope="module")
def pid_namespaces():
    why = _unshare_skip_reason()
    if why:
        pytest.skip(why)


def in_pid_namespace(argv, forks=0):
    """Start argv in a new PID namespace (sharing /run and tracefs), after
    `forks` short-lived processes there so its PID is about forks + 2."""
    script = "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done; \"$@\"; true" % forks
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script,
                             "sh"] + list(argv),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=clirun.env())


def inner_pid(unshare):
    """Host PID of the process `unshare --fork` started."""
    with open("/proc/%d/task/%d/children" % (unshare.pid, unshare.pid)) as f:
        return int(f.read().split()[0])


def wait_instance(prefix, timeout=30):
    d = os.path.join(tracefs(), "instances")
    end = time.time() + timeout
    while time.time() < end:
        found = [n for n in os.listdir(d) if n.startswith(prefix) and
                 kernstate.owner_alive(n) and not pid_alive(int(n.split("-")[1]))]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no instance %s* appeared" % prefix)


def test_a_live_run_in_another_pid_namespace_is_never_touched(pid_namespaces):
    inner = in_pid_namespace(clirun.KERNTRACE + ["tpcount", "--backend", "ftrace", "-d", "6",
                                                 GETPPID], forks=NS_FORKS)
    try:
        name = wait_instance("kerntrace-")
        inner_pid = int(name.split("-")[1])
        if pid_alive(inner_pid):
            pytest.skip("PID %d of the namespaced run is also alive on the host: the "
                        "test needs one that is not" % inner_pid)
        rc, out, err = clirun.run(["tpcount", "--backend", "ftrace", "-d", "0.2", GETPPID])
        assert rc == 0, err
        assert name not in err, err
        rc, out, err = clirun.run(["cleanup"])
        assert rc == 0 and name not in out + err, out + err
        assert name in os.listdir(os.path.join(tracefs(), "instances"))
        assert read(os.path.join(tracefs(), "instances", name, "tracing_on")) == "1"
        for _ in range(100):         # still counting: the live run was left working
            os.getppid()
    finally:
        out, err = inner.communicate(timeout=60)
    assert inner.returncode == 0, err
    assert GETPPID in out
    assert name not in os.listdir(os.path.join(tracefs(), "instances"))


def test_a_dead_run_whose_pid_is_taken_is_removed(pid_namespaces, caller_exe):
    """The victim is PID 1 of its namespace: on the host PID 1 is always
    alive, so only its owner lock can tell that it is gone."""
    victim = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                               "-c", workloads.UPROBE_VICTIM, caller_exe],
                              stdout=subprocess.PIPE, universal_newlines=True, env=clirun.env())
    try:
        assert victim.stdout.readline().strip() == "ready"
        (name,) = instances_of(1)
        assert name.startswith("kerntrace-1-victim")
        assert "p:kerntrace_1/kerntrace_1_" in read(os.path.join(tracefs(), "uprobe_events"))
    finally:
        # SIGKILL its PID 1 (the namespace ends with it).
        os.kill(inner_pid(victim), signal.SIGKILL)
        victim.wait()
    assert instances_of(1) == [name]
    rc, out, err = clirun.run(["cleanup"])
    assert rc == 0, err
    lines = out.splitlines()
    assert "removed instance %s (PID 1)" % name in lines
    assert any(l.startswith("removed uprobe_events kerntrace_1/kerntrace_1_") for l in lines)
    assert instances_of(1) == []
    assert "kerntrace_1/" not in read(os.path.join(tracefs(), "uprobe_events"))


def start_as_pid1(args):
    """A kerntrace run as PID 1 of a new PID namespace, and its instance.
    Whatever judges by PIDs (an older kerntrace, such as other test sessions
    sharing this kernel) takes it for alive forever: only owner locks can
    tell when it is gone, so nothing else removes its instance first."""
    before = set(instances_of(1))
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc"] + clirun.KERNTRACE
                         + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=clirun.env())
    clirun.wait_for_stderr_line(p, "Tracing 1 tracepoint")
    (name,) = set(instances_of(1)) - before
    return p, name


@pytest.mark.ebpf
def test_an_ebpf_run_removes_what_a_killed_ftrace_run_left(pid_namespaces):
    victim, left = start_as_pid1(["tpcount", "--backend", "ftrace", GETPPID])
    os.kill(inner_pid(victim), signal.SIGKILL)
    victim.wait()
    assert read(os.path.join(tracefs(), "instances", left, "tracing_on")) == "1"
    rc, out, err = clirun.run(["tpcount", "--backend", "ebpf", "-d", "0.2", GETPPID])
    assert rc == 0, err
    assert "kerntrace: removed instance %s (PID 1) left by a process that is gone" % left \
        in err.splitlines()
    assert left not in instances_of(1)


def test_an_instance_held_open_at_exit_stops_tracing_and_is_removed_later(pid_namespaces):
    run, name = start_as_pid1(["tpcount", "--backend", "ftrace", "-d", "1", GETPPID])
    inst = os.path.join(tracefs(), "instances", name)
    size_kb = int(read(os.path.join(inst, "buffer_size_kb")).split()[0])
    # Someone (here: this test) holds a file of the run's instance open.
    held = os.open(os.path.join(inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1, err
        assert err.splitlines()[-1] == (
            "kerntrace: cannot remove instance %s yet: a process holds one of its files open; "
            "tracing stopped in it; a later kerntrace run or `kerntrace cleanup` removes it"
            % name)
        assert "Traceback" not in err
        assert read(os.path.join(inst, "tracing_on")) == "0"
        assert read(os.path.join(inst, "events", "syscalls", "sys_enter_getppid",
                                 "enable")) == "0"
        # shrunk to the least the kernel allows (a few pages per CPU)
        assert int(read(os.path.join(inst, "buffer_size_kb")).split()[0]) <= 64 < size_kb
        # While it is still held, cleanup tries once, says so and fails.
        rc, out2, err2 = clirun.run(["cleanup"])
        assert rc == 1 and name not in out2
        assert "kerntrace: cannot remove stale instance %s yet" % name in err2
    finally:
        os.close(held)
    rc, out, err = clirun.run(["tpcount", "--backend", "ftrace", "-d", "0.2", GETPPID])
    assert rc == 0, err
    assert "kerntrace: removed instance %s (PID 1) left by a process that is gone" % name \
        in err.splitlines()
    assert name not in instances_of(1)
    assert not os.path.exists("/run/kerntrace/%s.lock" % name)


def test_runs_with_the_same_pid_in_two_namespaces_each_get_their_own_names(pid_namespaces,
                                                                           caller_exe):
    """Two runs whose PIDs are both 1 (each in its own namespace) at once:
    each works in its own instance and sees every event."""
    n = 300
    c = workloads.Caller(caller_exe, n)
    runs = [subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc"] + clirun.KERNTRACE
                             + ["tpcount", "--backend", "ftrace", "-i", "30", "-c", "1",
                                GETPPID],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, env=clirun.env())
            for _ in range(2)]
    try:
        for p in runs:
            clirun.wait_for_stderr_line(p, "Tracing 1 tracepoint")
        assert len(instances_of(1)) == 2, instances_of(1)
        assert c.release() == 0
        time.sleep(0.3)
    finally:
        for p in runs:
            os.kill(inner_pid(p), signal.SIGINT)
        outs = [p.communicate(timeout=60) for p in runs]
    for p, (out, err) in zip(runs, outs):
        assert p.returncode == 0, err
        counted = [int(l.split()[-1]) for l in out.splitlines() if l.startswith(GETPPID)]
        assert counted and counted[0] >= n, out      # (system-wide: others call it too)
    assert instances_of(1) == []


_NAME_HOLDER = """
import sys
from kerntrace.backends.ftrace.owner import OwnerLock
lock = OwnerLock(sys.argv[1])
print("claimed" if lock.claim() else "refused", flush=True)
sys.stdin.readline()
"""


def test_a_probe_name_another_run_owns_is_not_used(caller_exe):
    """The probe name this process would use is owned by another run (the
    same PID in another PID namespace): the run defines its probe under
    another name and counts all the same."""
    from kerntrace.backends.ftrace.backend import FtraceBackend
    from kerntrace.core.backend import RunOptions
    from kerntrace.core.host import Host
    from kerntrace.core.model import Count, Event, Measurement, UserFunction
    m = Measurement([Event("work", UserFunction(caller_exe, "kerntrace_work"))], Count())
    b = FtraceBackend()
    options = RunOptions(tool="renamed")
    v = b.check(m, Host(), options)
    assert v.ok, v.reasons
    (ev,) = v.plan.events
    taken = ev.event
    holder = subprocess.Popen([sys.executable, "-c", _NAME_HOLDER, taken], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, universal_newlines=True, env=clirun.env())
    try:
        assert holder.stdout.readline().strip() == "claimed"
        c = workloads.Caller(caller_exe, 25)
        with b.open(m, v, options) as s:
            (ev,) = s.configured.events
            assert ev.event != taken and v.plan.events[0].event == taken
            defined = read(os.path.join(tracefs(), "uprobe_events"))
            assert "/%s " % ev.event in defined and "/%s " % taken not in defined
            assert c.release() == 0
            s.wait(0.3)
            report = s.collect()
        assert sum(report.data.counts.values()) == 25
        assert "/%s " % ev.event not in read(os.path.join(tracefs(), "uprobe_events"))
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait()
