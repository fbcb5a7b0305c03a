"""vfsstat on the live kernel, both backends at once, over a process that
makes a known number of each counted call.

vfsstat is system-wide; the workload is made a quiet process instead:
vfsstat -p PID (bcc's vfsstat has -p too) follows only it, and it makes no
call of its own between its release and its exit but the ones counted
here.  Each run is stopped with Ctrl-C after the workload exited, and its
intervals summed (JSON lines carry exact counts; the text rows are rates).

This kernel has no kprobes (and fentry is refused), so vfsstat counts the
system calls that lead to vfs_read & co.; bcc's vfsstat cannot run here at
all, so the reference run at the same time is a bpftrace program on the
same syscall tracepoints.  The kprobe variant is checked in fake kernel
eras and in generated code (test_tool_vfsstat.py)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import clirun
import kernstate
import workloads
from test_block_live import LiveTool

pytestmark = pytest.mark.live

# What the workload does once released, on one file it creates first.
READS, PREADS, WRITES, PWRITES, FSYNCS, FDATASYNCS, OPENS, FAILED_OPENS = (
    120, 30, 70, 20, 9, 4, 25, 11)
EXPECTED = {"read": READS, "pread64": PREADS, "write": WRITES, "pwrite64": PWRITES,
            "fsync": FSYNCS, "fdatasync": FDATASYNCS, "openat": OPENS}

_WORKLOAD = r"""
import os, sys
path = sys.argv[1]
n = [int(a) for a in sys.argv[2:]]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"0123456789")
os.write(1, b"%d\n" % os.getpid())
os.read(0, 3)                 # blocked here (entered before tracing) until released
reads, preads, writes, pwrites, fsyncs, fdatasyncs, opens, failed = n
for _ in range(opens):
    os.close(os.open(path, os.O_RDONLY))
for i in range(failed):
    try:
        os.open(path + ".missing", os.O_RDONLY)
    except OSError:
        pass
for _ in range(reads):
    os.lseek(fd, 0, 0)
    os.read(fd, 1)
for _ in range(preads):
    os.pread(fd, 1, 0)
for _ in range(writes):
    os.write(fd, b"x")
for _ in range(pwrites):
    os.pwrite(fd, b"y", 0)
for _ in range(fsyncs):
    os.fsync(fd)
for _ in range(fdatasyncs):
    os.fdatasync(fd)
os._exit(0)                   # no flush, no atexit: nothing more to count
"""


class Workload(workloads.Process):
    release_timeout = 60

    def __init__(self, tmp_path):
        self.path = str(tmp_path / ("kerntrace-vfsstat-%d" % os.getpid()))
        counts = [READS, PREADS, WRITES, PWRITES, FSYNCS, FDATASYNCS, OPENS, FAILED_OPENS]
        self.p = subprocess.Popen([sys.executable, "-c", _WORKLOAD, self.path]
                                  + [str(c) for c in counts],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())
        # Wait until it sleeps in that read(): its entry is then not traced.
        end = time.time() + 30
        while time.time() < end:
            with open("/proc/%d/stat" % self.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "S":
                    return
            time.sleep(0.05)
        raise AssertionError("workload never blocked in read()")


def summed_json(out):
    """{event: count} summed over every interval of a --json run."""
    total = {}
    for line in out.splitlines():
        obj = json.loads(line)
        assert obj["type"] == "counts", obj
        assert obj["seconds"] is not None and obj["seconds"] > 0
        for item in obj["counts"]:
            name = item["key"]["event"]
            total[name] = total.get(name, 0) + item["count"]
            # the rate is the count over the interval's real length
            assert abs(item["rate"] - item["count"] / obj["seconds"]) < 1e-6 * item["count"]
    return total


# BEGIN runs once every probe is attached: "ready" means tracing.
BPFTRACE = """
BEGIN { printf("ready\\n"); }
tracepoint:syscalls:sys_enter_read /pid == PID/ { @read = count(); }
tracepoint:syscalls:sys_enter_pread64 /pid == PID/ { @pread64 = count(); }
tracepoint:syscalls:sys_enter_write /pid == PID/ { @write = count(); }
tracepoint:syscalls:sys_enter_pwrite64 /pid == PID/ { @pwrite64 = count(); }
tracepoint:syscalls:sys_enter_fsync /pid == PID/ { @fsync = count(); }
tracepoint:syscalls:sys_enter_fdatasync /pid == PID/ { @fdatasync = count(); }
tracepoint:syscalls:sys_exit_openat /pid == PID && args->ret >= 0/ { @openat = count(); }
"""


def bpftrace_skip_reason():
    if not shutil.which("bpftrace"):
        return "bpftrace is not installed"
    return kernstate.ebpf_skip_reason()


def test_both_backends_and_bpftrace_count_exactly_the_workloads_calls(tmp_path):
    w = Workload(tmp_path)
    runs = {}
    backends = ([] if kernstate.ebpf_skip_reason() else ["ebpf"]) + ["ftrace"]
    bt = None
    try:
        for b in backends:
            runs[b] = LiveTool(["vfsstat", "--backend", b, "--json", "--explain",
                                "-p", str(w.pid), "1"], "Tracing with vfsstat", "stderr")
        runs["text"] = LiveTool(["vfsstat", "--backend", "ftrace", "-p", str(w.pid), "1"],
                                "Ctrl-C to end", "stderr")
        runs["prometheus"] = LiveTool(["vfsstat", "--backend", "ftrace", "--prometheus",
                                       "-p", str(w.pid), "1"], "Tracing with vfsstat",
                                      "stderr")
        if not bpftrace_skip_reason():
            bt = subprocess.Popen(["bpftrace", "-B", "line", "-e",
                                   BPFTRACE.replace("PID", str(w.pid))],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True)
            lines = [bt.stdout.readline() for _ in range(2)]
            assert lines[1] == "ready\n", "".join(lines) + bt.stderr.read()
        assert w.release() == 0
        results = {name: run.stop(settle=1.5) for name, run in runs.items()}
    finally:
        w.kill()
        for run in runs.values():
            run.kill()
        if bt is not None and bt.poll() is None:
            bt.send_signal(signal.SIGINT)
    for name, (rc, out, err) in results.items():
        assert rc == 0, (name, err)
        assert "Traceback" not in err, err
    for b in backends:
        rc, out, err = results[b]
        # This kernel has no kprobes: the banner-less JSON run says so on --explain.
        assert "kerntrace: vfsstat: measuring " in err, err
        if "measuring system calls" in err:
            assert summed_json(out) == EXPECTED, (b, out)
        else:
            got = summed_json(out)
            assert got["vfs_read"] == READS + PREADS and got["vfs_write"] == WRITES + PWRITES
            assert got["vfs_fsync_range"] == FSYNCS + FDATASYNCS and got["vfs_open"] == OPENS
    # Text: one rate row per interval, each column summing its calls; the
    # rates times the intervals' lengths (about a second each) add up to
    # about the counts.
    rc, out, err = results["text"]
    lines = out.splitlines()
    assert lines[0] == "TIME         READ/s  WRITE/s  FSYNC/s   OPEN/s CREATE/s"
    rows = [l.split() for l in lines[1:]]
    assert rows and all(re.match(r"^\d\d:\d\d:\d\d:$", r[0]) and len(r) == 6 for r in rows)
    assert sum(int(r[1]) for r in rows) >= 0.4 * (READS + PREADS)
    assert all(r[5] == "-" for r in rows)
    assert "counting system calls" in err or "Tracing VFS calls" in err
    # Prometheus: counters of the whole run, not rates.
    rc, out, err = results["prometheus"]
    for event, n in EXPECTED.items():
        assert re.search(r'^kerntrace_vfs_operations_total\{tool="vfsstat",operation="%s"\} %d$'
                         % (event, n), out, re.M), out
    assert "# TYPE kerntrace_vfs_operations_total counter" in out
    if bt is not None:
        bout, berr = clirun.finish_interrupted(bt)
        got = {m.group(1): int(m.group(2)) for m in re.finditer(r"^@(\w+): (\d+)$", bout, re.M)}
        assert got == EXPECTED, bout + berr
    else:
        pytest.skip("bpftrace reference not run: %s" % bpftrace_skip_reason())


def test_bcc_vfsstat_agrees_where_it_runs(tmp_path):
    """bcc's vfsstat needs kprobes or fentry; where it runs, both count the
    same vfs_* calls of the workload (its -p filter)."""
    bcc = shutil.which("vfsstat-bpfcc") or shutil.which("vfsstat")
    if bcc is None or bcc.startswith(os.path.dirname(sys.executable)):
        pytest.skip("bcc's vfsstat is not installed")
    probe = subprocess.run([bcc, "1", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["status %d" % probe.returncode])[-1]
        pytest.skip("bcc's vfsstat cannot run on this kernel: %s" % last)
    w = Workload(tmp_path)
    ours = LiveTool(["vfsstat", "--json", "-p", str(w.pid), "1"], "Tracing with vfsstat",
                    "stderr")
    theirs = subprocess.Popen([bcc, "-p", str(w.pid), "1"], stdout=subprocess.PIPE,
                              universal_newlines=True)
    assert theirs.stdout.readline().startswith("TIME")
    assert w.release() == 0
    rc, out, err = ours.stop(settle=2.5)
    theirs.send_signal(signal.SIGINT)
    bout, _ = theirs.communicate(timeout=60)
    got = summed_json(out)
    # bcc prints count / interval (1 s): its rows sum to the counts
    rows = [l.split() for l in bout.splitlines() if re.match(r"^\d\d:\d\d:\d\d:", l)]
    bcc_sum = [sum(int(r[i]) for r in rows) for i in range(1, 6)]
    assert bcc_sum[0] == got.get("vfs_read", 0) and bcc_sum[1] == got.get("vfs_write", 0)


def test_runs_prints_and_exits_promptly_on_sigint():
    run = LiveTool(["vfsstat", "0.3"], "TIME ", "stdout")
    time.sleep(1.0)
    rc, out, err = run.stop(settle=0, timeout=30)
    assert rc == 0, err
    rows = [l for l in out.splitlines()[1:] if l.strip()]
    assert len(rows) >= 2 and all(re.match(r"^\d\d:\d\d:\d\d: ", r) for r in rows), out


def test_a_pid_that_does_not_exist_is_one_line_and_leaves_nothing():
    pid = 4194303          # PID_MAX_LIMIT - 1: no process has it here
    assert not os.path.exists("/proc/%d" % pid)
    rc, out, err = clirun.run(["vfsstat", "-p", str(pid), "1", "1"])
    assert rc == 2 and out == "", err
    assert err == "vfsstat: no process with PID %d\n" % pid

def test_a_recording_replays_to_the_workloads_exact_counts(tmp_path):
    """kerntrace record vfsstat -p PID over the workload, then vfsstat
    --input: the replay counts what the workload did, and its rates are
    counts over the interval asked for."""
    rec = tmp_path / "vfsstat.rec"
    with Workload(tmp_path) as w, \
            LiveTool(["record", "-o", str(rec), "vfsstat", "-p", str(w.pid)],
                     "kerntrace: recording ", "stderr") as record:
        assert w.release() == 0
        rc, _, err = record.stop(settle=1.0)
    assert rc == 0, err
    rc, out, err = clirun.run(["vfsstat", "--input", str(rec), "--json", "2"])
    assert rc == 0, err
    assert summed_json(out) == EXPECTED, out
    for line in out.splitlines():
        assert json.loads(line)["seconds"] == 2.0
    rc, text, err = clirun.run(["vfsstat", "--input", str(rec), "100"])
    assert rc == 0, err
    (row,) = [l.split() for l in text.splitlines()[1:]]
    # one 100 s interval: rates are the counts / 100, truncated
    assert row[1:] == ["%d" % ((READS + PREADS) // 100), "%d" % ((WRITES + PWRITES) // 100),
                       "0", "0", "-"], text
