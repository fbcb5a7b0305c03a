"""syscount live on both backends at once, and bcc's syscount-bpfcc beside
them, over one workload that calls getppid() N times and fails M open()s
with ENOENT: each reports exactly those, and all agree."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

import clirun
import workloads
from kernstate import ebpf_skip_reason

pytestmark = pytest.mark.live

N = 137
M = 23

# Prints its pid, waits for a line on stdin (everything Python does to
# start up happens before tracing), then makes the known calls.
_WORKLOAD = """
import os, sys
n, m, missing = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(n):
    os.getppid()
for _ in range(m):
    try:
        os.open(missing, os.O_RDONLY)
    except FileNotFoundError:
        pass
"""


class Workload(workloads.Process):
    release_timeout = 60

    def __init__(self, tmpdir):
        self.missing = os.path.join(str(tmpdir), "kerntrace-syscount-%s" % uuid.uuid4().hex)
        self.p = subprocess.Popen([sys.executable, "-c", _WORKLOAD, str(N), str(M),
                                   self.missing], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())


def backends():
    return ([] if ebpf_skip_reason() else ["ebpf"]) + ["ftrace"]


def counts_by_name(stdout):
    """{label: count} summed over the --json reports of a counts run."""
    out = {}
    for line in stdout.splitlines():
        rep = json.loads(line)
        for c in rep.get("counts", ()):
            labels = c.get("labels") or {}
            label = " ".join(str(labels.get(k, v)) for k, v in c["key"].items())
            out[label] = out.get(label, 0) + c["count"]
    return out


def bcc_syscount():
    exe = shutil.which("syscount-bpfcc")
    if exe is None or ebpf_skip_reason():
        return None
    return exe


def run_all(tmp_path, args, with_bcc=False, fmt="--json"):
    """syscount ARGS -p PID on each backend (and bcc's) at once over one
    workload: its pid, {backend: (stdout, stderr)}."""
    with Workload(tmp_path) as w:
        tracers = [(b, clirun.KERNTRACE + ["syscount", "--backend", b, fmt, "-p", str(w.pid)]
                    + args, "stderr", "Tracing") for b in backends()]
        bcc = bcc_syscount() if with_bcc else None
        if bcc:
            tracers.append(("bcc", [bcc, "-p", str(w.pid), "-T", "1000"] + args, "stdout",
                            "Tracing"))
        status, ran = clirun.trace_around(tracers, w.release)
    assert status == 0
    out = {}
    for b, (stdout, err, rc) in ran.items():
        assert rc == 0, (b, err)
        out[b] = (stdout, err)
    return w.pid, out


def bcc_counts(stdout):
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)$", line)
        if m:
            rows[m.group(1)] = rows.get(m.group(1), 0) + int(m.group(2))
    return rows


def test_counts_per_syscall_agree_with_bcc(tmp_path):
    pid, out = run_all(tmp_path, [], with_bcc=True)
    seen = {}
    for b, (stdout, err) in out.items():
        counts = bcc_counts(stdout) if b == "bcc" else counts_by_name(stdout)
        assert counts.get("getppid") == N, (b, counts, err)
        assert counts.get("openat", 0) >= M, (b, counts)
        assert "lost" not in err.lower() or b == "bcc", err
        seen[b] = counts
    # Same workload, same events: every tracer counts every syscall alike.
    first = seen[backends()[0]]
    for b, counts in seen.items():
        assert counts == first, (b, counts, first)


def test_errno_filter_counts_the_failed_opens(tmp_path):
    pid, out = run_all(tmp_path, ["-e", "ENOENT"], with_bcc=True)
    for b, (stdout, err) in out.items():
        counts = bcc_counts(stdout) if b == "bcc" else counts_by_name(stdout)
        assert counts == {"openat": M}, (b, counts, err)


def test_failures_only_and_syscall_filter(tmp_path):
    pid, out = run_all(tmp_path, ["-x", "--syscall", "openat"])
    for b, (stdout, err) in out.items():
        assert counts_by_name(stdout) == {"openat": M}, (b, stdout, err)


def test_per_process_counts_every_call_of_the_workload(tmp_path):
    pid, out = run_all(tmp_path, ["-P", "--syscall", "getppid"])
    for b, (stdout, err) in out.items():
        counts = counts_by_name(stdout)
        assert list(counts.values()) == [N], (b, counts, err)
        assert str(pid) in list(counts)[0].split(), counts


def test_latency_counts_and_times_each_call(tmp_path):
    pid, out = run_all(tmp_path, ["-L", "--syscall", "getppid"])
    for b, (stdout, err) in out.items():
        hists = [h for line in stdout.splitlines() for h in json.loads(line)["histograms"]]
        assert len(hists) == 1, (b, stdout)
        assert hists[0]["labels"] == {"id": "getppid"}
        assert sum(x["count"] for x in hists[0]["buckets"]) == N
        assert hists[0]["sum"] > 0


def test_prometheus_counter_per_syscall_name(tmp_path):
    pid, out = run_all(tmp_path, ["--syscall", "getppid"], fmt="--prometheus")
    for b, (stdout, err) in out.items():
        assert ('kerntrace_syscalls_total{tool="syscount",syscall="getppid"} %d\n' % N
                in stdout), (b, stdout)


def test_text_output_names_the_syscalls(tmp_path):
    with Workload(tmp_path) as w:
        status, ran = clirun.trace_around(
            [(b, clirun.KERNTRACE + ["syscount", "--backend", b, "-p", str(w.pid), "-T", "3",
                                     "-L", "-m"], "stderr", "Tracing") for b in backends()],
            w.release)
    assert status == 0
    for b, (stdout, err, rc) in ran.items():
        assert rc == 0, err
        lines = stdout.splitlines()
        assert re.match(r"^\[\d\d:\d\d:\d\d\]$", lines[0]), stdout
        assert lines[1] == "%-22s %8s %16s" % ("SYSCALL", "COUNT", "TIME (ms)")
        rows = [re.match(r"^(\S+)\s+(\d+)\s+(\d+\.\d{6})$", line) for line in lines[2:] if line]
        assert rows and all(rows) and len(rows) <= 3, stdout
        assert "Detaching..." in err


def test_replay_of_a_recording_counts_what_ran(tmp_path):
    rec = str(tmp_path / "syscount.rec")
    with Workload(tmp_path) as w:
        clirun.record_around(rec, ["syscount", "-p", str(w.pid), "--syscall", "getppid"],
                             w.release)
    rc, out, err = clirun.run(["syscount", "--input", rec, "--json", "-p", str(w.pid)])
    assert rc == 0, err
    assert counts_by_name(out) == {"getppid": N}, out


@pytest.mark.parametrize("argv", [["--syscall", "nosuchcall"], ["-e", "ENOENT:traceoff"],
                                  ["-p", "4194303"], ["--syscall", "read\n"]])
def test_bad_input_leaves_nothing_behind(argv):
    # the autouse leak check (conftest) fails the test if anything is left
    for b in backends():
        rc, out, err = clirun.run(["syscount", "--backend", b] + argv)
        assert rc == 2 and out == "" and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_is_cleaned_up_by_the_next(sig):
    """SIGTERM: syscount removes what it made; SIGKILL: the next run does
    (the autouse leak check fails the test if anything stays behind)."""
    for b in backends():
        p = clirun.start(["syscount", "--backend", b, "-i", "1"])
        clirun.wait_for_text(p.stderr, "Tracing", p)
        p.send_signal(sig)
        p.communicate(timeout=60)
        assert p.returncode in (0, -sig), p.returncode
        rc, out, err = clirun.run(["syscount", "--backend", b, "-d", "1", "--syscall",
                                   "getppid"])
        assert rc == 0, err
