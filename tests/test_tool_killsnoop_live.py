"""killsnoop live on both backends at once, and a bpftrace one-liner beside
them, over one workload that sends known signals with kill() (one of them
to a process that no longer exists: ESRCH), tgkill() and tkill() (one of
each failing): each reports exactly those, each with its own target."""

import json
import re
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

import clirun
import workloads
from kerntrace.core.api import syscall_number
from kernstate import ebpf_skip_reason

pytestmark = pytest.mark.live

ESRCH = 3

# Prints its pid and the pid of a child it has reaped (so no process has
# it, barring reuse), waits for a line on stdin, then: SIGUSR1 (ignored)
# to itself 3 times, signal 0 to itself twice, SIGTERM to the reaped
# child once (fails: ESRCH), SIGUSR2 (ignored) to itself once; then with
# the other system calls: SIGUSR1 to its main thread with tgkill()
# (pthread_kill), SIGUSR2 with tkill(); SIGHUP with tgkill() to a thread of
# the reaped child and SIGINT with tkill() to it (both ESRCH); then SIGWINCH
# with tgkill() to another thread of its own (its TPID: the process).
_WORKLOAD = """
import ctypes, os, signal, sys, threading
with open("/proc/self/comm", "w") as f:
    f.write(sys.argv[1])
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
child = os.fork()
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
print(os.getpid(), child, flush=True)
sys.stdin.readline()
me = os.getpid()
for _ in range(3):
    os.kill(me, signal.SIGUSR1)
for _ in range(2):
    os.kill(me, 0)
try:
    os.kill(child, signal.SIGTERM)
except ProcessLookupError:
    pass
os.kill(me, signal.SIGUSR2)
signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(int(sys.argv[2]), me, signal.SIGUSR2)
libc.syscall(int(sys.argv[3]), child, child, signal.SIGHUP)
libc.syscall(int(sys.argv[2]), child, signal.SIGINT)
tids, done = [], threading.Event()
def other():
    tids.append(libc.syscall(int(sys.argv[4])))
    done.wait()
t = threading.Thread(target=other)
t.start()
while not tids:
    pass
libc.syscall(int(sys.argv[3]), me, tids[0], signal.SIGWINCH)
done.set()
t.join()
"""


def expected_kill(pid, dead):
    """What kill() reports."""
    return [(pid, signal.SIGUSR1, pid, 0)] * 3 + [(pid, 0, pid, 0)] * 2 + [
        (pid, signal.SIGTERM, dead, -ESRCH), (pid, signal.SIGUSR2, pid, 0)]


def expected_tkill(pid, dead):
    return [(pid, signal.SIGUSR2, pid, 0), (pid, signal.SIGINT, dead, -ESRCH)]


def expected_tgkill(pid, dead):
    return [(pid, signal.SIGUSR1, pid, 0), (pid, signal.SIGHUP, dead, -ESRCH),
            (pid, signal.SIGWINCH, pid, 0)]


def expected(pid, dead):
    """Every signal the workload sends, with kill, tkill and tgkill."""
    return sorted(expected_kill(pid, dead) + expected_tkill(pid, dead)
                  + expected_tgkill(pid, dead))


class Workload(workloads.Process):
    release_timeout = 60

    def __init__(self):
        self.comm = "ktkill" + uuid.uuid4().hex[:8]
        calls = [str(syscall_number(c)) for c in ("tkill", "tgkill", "gettid")]
        self.p = subprocess.Popen([sys.executable, "-c", _WORKLOAD, self.comm] + calls,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid, self.dead = [int(x) for x in self.p.stdout.readline().split()]


def backends():
    return ([] if ebpf_skip_reason() else ["ebpf"]) + ["ftrace"]


# BEGIN runs once every probe is attached.
BPFTRACE = """
BEGIN { printf("READY\\n"); }
tracepoint:syscalls:sys_enter_kill, tracepoint:syscalls:sys_enter_tkill /pid == %(pid)d/ {
    @sig[tid] = args->sig; @tp[tid] = args->pid;
}
tracepoint:syscalls:sys_enter_tgkill /pid == %(pid)d/ { @sig[tid] = args->sig; @tp[tid] = args->tgid; }
tracepoint:syscalls:sys_exit_kill, tracepoint:syscalls:sys_exit_tkill,
tracepoint:syscalls:sys_exit_tgkill /pid == %(pid)d/ {
    printf("K %%d %%d %%d %%d\\n", pid, @sig[tid], @tp[tid], args->ret);
    delete(@sig[tid]); delete(@tp[tid]);
}
"""


def run_all(args, json_out=True, with_bpftrace=False):
    with Workload() as w:
        tracers = [(b, clirun.KERNTRACE + ["killsnoop", "--backend", b, "-p", str(w.pid)]
                    + (["--json"] if json_out else [])
                    + list(args(w) if callable(args) else args), "stderr", "Tracing")
                   for b in backends()]
        bt = shutil.which("bpftrace") if with_bpftrace and not ebpf_skip_reason() else None
        if bt:
            tracers.append(("bpftrace", [bt, "-B", "line", "-e", BPFTRACE % {"pid": w.pid}],
                            "stdout", "READY"))
        status, ran = clirun.trace_around(tracers, w.release)
    assert status == 0
    out = {}
    for b, (stdout, err, rc) in ran.items():
        assert rc == 0, (b, err)
        out[b] = (stdout, err)
    return w, out


def json_kills(stdout):
    rows = []
    for line in stdout.splitlines():
        rec = json.loads(line)
        if rec.get("type") == "record" or "fields" in rec:
            f = rec.get("fields", rec)
            labels = rec.get("labels", {})
            rows.append((f["pid"], f["sig"], int(labels.get("tpid", f["tpid"])), f["ret"]))
    return sorted(rows)


def test_every_kill_on_both_backends_and_bpftrace(tmp_path):
    w, out = run_all([], with_bpftrace=True)
    want = expected(w.pid, w.dead)
    for b, (stdout, err) in out.items():
        if b == "bpftrace":
            got = sorted(tuple(int(x) for x in line.split()[1:])
                         for line in stdout.splitlines() if line.startswith("K "))
        else:
            got = json_kills(stdout)
        assert got == want, (b, got, want, err)


def test_failed_only(tmp_path):
    w, out = run_all(["-x"])
    for b, (stdout, err) in out.items():
        assert json_kills(stdout) == [r for r in expected(w.pid, w.dead) if r[3] < 0], (b, stdout)
        assert len(json_kills(stdout)) == 3


def test_signal_by_name(tmp_path):
    w, out = run_all(["-s", "USR1"])
    for b, (stdout, err) in out.items():
        # three with kill(), one with tgkill()
        assert json_kills(stdout) == [(w.pid, signal.SIGUSR1, w.pid, 0)] * 4, (b, stdout)


def test_sender_name(tmp_path):
    w, out = run_all(lambda w: ["-n", w.comm[2:12]])
    for b, (stdout, err) in out.items():
        assert json_kills(stdout) == expected(w.pid, w.dead), (b, stdout)
        assert all(json.loads(line)["fields"]["comm"] == w.comm
                   for line in stdout.splitlines()), stdout
    w, out = run_all(lambda w: ["-n", w.comm[::-1][:10]])
    for b, (stdout, err) in out.items():
        assert json_kills(stdout) == [], (b, stdout)


@pytest.mark.parametrize("calls", [("kill",), ("tgkill",), ("tkill",), ("tkill", "tgkill")])
def test_syscall_narrows_the_calls(calls):
    w, out = run_all([a for c in calls for a in ("--syscall", c)])
    want = []
    for c in calls:
        want += globals()["expected_" + c](w.pid, w.dead)
    for b, (stdout, err) in out.items():
        # the main thread's id is the process id; tgkill's target is the
        # thread group, whichever thread of it gets the signal
        assert json_kills(stdout) == sorted(want), (b, calls, stdout, err)


def test_target_pid(tmp_path):
    w, out = run_all(lambda w: ["-T", str(w.dead)])
    for b, (stdout, err) in out.items():
        assert json_kills(stdout) == sorted([(w.pid, signal.SIGTERM, w.dead, -ESRCH),
                                             (w.pid, signal.SIGINT, w.dead, -ESRCH),
                                             (w.pid, signal.SIGHUP, w.dead, -ESRCH)]), (b, stdout)


def test_text_columns(tmp_path):
    w, out = run_all(["-s", "TERM"], json_out=False)
    for b, (stdout, err) in out.items():
        lines = stdout.splitlines()
        width = len(open("/proc/sys/kernel/pid_max").read().strip()) + 1
        assert lines[0] == "%-9s %-*s %-16s %-4s %-*s %s" % (
            "TIME", width, "PID", "COMM", "SIG", width, "TPID", "RESULT"), stdout
        assert len(lines) == 2, stdout
        m = re.match(r"^\d\d:\d\d:\d\d  (\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(-?\d+)$", lines[1])
        assert m and m.groups() == (str(w.pid), m.group(2), "15", str(w.dead), "-3"), lines[1]


def test_replay_of_a_recording_lists_the_same_kills(tmp_path):
    rec = str(tmp_path / "killsnoop.rec")
    with Workload() as w:
        clirun.record_around(rec, ["killsnoop", "-p", str(w.pid)], w.release)
    rc, out, err = clirun.run(["killsnoop", "--input", rec, "--json", "-p", str(w.pid)])
    assert rc == 0, err
    assert json_kills(out) == expected(w.pid, w.dead), out


@pytest.mark.parametrize("argv", [["-s", "NOPE"], ["-s", "TERM:traceoff"],
                                  ["-p", "4194303"], ["-s", "9\n"]])
def test_bad_input_leaves_nothing_behind(argv):
    for b in backends():
        rc, out, err = clirun.run(["killsnoop", "--backend", b] + argv)
        assert rc == 2 and out == "" and len(err.splitlines()) == 1, err
