"""The block I/O tools on the live kernel, as a user runs them.

Each test creates its own loop device and does a known number of direct
(O_DIRECT) reads and writes on it, so the counts are exact even while other
engineers' tests do I/O on the same machine: every tool is run with -d on
our device.  Tools run as subprocesses and stop on Ctrl-C (SIGINT), which
prints the unfinished interval.  Both backends run every test (the eBPF
one skips with the reason when bcc cannot run here); the conftest leak check
fails any test that leaves tracing state behind."""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import clirun
import kernstate
import workloads

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

WRITES = 48
READS = 32
BACKENDS = [pytest.param("ftrace", marks=pytest.mark.live),
            pytest.param("ebpf", marks=[pytest.mark.live, pytest.mark.ebpf])]

_backend_reason = {}


def skip_unless_backend_runs(backend, dev_arg):
    """Skip (with the backend's own reason) when eBPF cannot run block
    tracepoints here for a reason of the host: no bcc, or no kernel headers
    bcc can use.  Any other failure (ftrace's, a traceback) fails the test."""
    if backend not in _backend_reason:
        rc, out, err = clirun.run(["iolatency", "--backend", backend, "--print-program",
                                   "-d", dev_arg])
        assert "Traceback" not in err, err
        _backend_reason[backend] = None if rc == 0 else (err.strip() or "exit %d" % rc)
    why = _backend_reason[backend]
    if why:
        host_reason = kernstate.ebpf_skip_reason() or ("headers" in why and why)
        assert backend == "ebpf" and host_reason, "the %s backend failed: %s" % (backend, why)
        pytest.skip("the %s backend cannot run here: %s" % (backend, host_reason))


class LiveTool(object):
    """A tool started as a user would; returns once `ready` (its banner or
    header, printed when tracing is live) appears on `stream`.  In a
    with-statement, killed at its end if it still runs."""

    def __init__(self, argv, ready, stream="stdout", timeout=60):
        self.argv = argv
        self.p = clirun.start(argv)
        self.seen = {"stdout": [], "stderr": []}
        try:
            self.seen[stream] = [clirun.wait_for_text(getattr(self.p, stream), ready, self.p,
                                                      timeout)]
        except AssertionError as e:
            out, err = self.p.communicate(timeout=30)
            raise AssertionError("%s: %s on %s\nstdout after: %s\nstderr after: %s"
                                 % (" ".join(argv), e, stream, out, err))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def stop(self, settle=0.5, timeout=60):
        """Ctrl-C after `settle` seconds; returns (status, stdout, stderr)."""
        time.sleep(settle)
        self.p.send_signal(signal.SIGINT)
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError("%s did not stop on SIGINT" % " ".join(self.argv))
        return (self.p.returncode, "".join(self.seen["stdout"]) + out,
                "".join(self.seen["stderr"]) + err)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


class Disk(object):
    def __init__(self, path, major, minor):
        self.path = path
        self.name = os.path.basename(path)
        self.major = major
        self.minor = minor
        self.majmin = "%d,%d" % (major, minor)
        self.dev = (major << 20) | minor

    def set_scheduler(self, name):
        """A queueing scheduler makes every request pass block_rq_insert
        (with "none" the driver may take requests directly)."""
        path = "/sys/block/%s/queue/scheduler" % self.name
        try:
            with open(path, "w") as f:
                f.write(name)
        except (IOError, OSError) as e:
            pytest.skip("cannot set the %s scheduler on %s: %s" % (name, self.name, e))


@pytest.fixture
def disk():
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    with workloads.loop_device() as (path, major, minor):
        # Let the kernel finish whatever it reads from a new device.
        time.sleep(0.3)
        yield Disk(path, major, minor)


def workload(disk):
    workloads.direct_writes(disk.path, WRITES, bs=4096)
    workloads.direct_reads(disk.path, READS, bs=4096)


_LOST_LINE = re.compile(r"^WARNING: (\d+) events lost in this interval", re.M)
_LOST_JSON = re.compile(r'"lost": (\d+)')


def reported_lost(out, err):
    """Events the run said the kernel dropped (stderr notices, JSON)."""
    return (sum(int(n) for n in _LOST_LINE.findall(err))
            + sum(int(n) for n in _LOST_JSON.findall(out)))


def run_with(argv, ready, stream, disk, work=workload, attempts=3):
    """Run the tool around `work`; returns (stdout, stderr).  The exact
    counts these tests check hold when the kernel ran the tool for every
    event.  Where it did not, and the tool said so (the eBPF backend's lost
    count: skipped BPF runs, perfhook.py), the run is repeated, at most
    `attempts` times; a shortfall the tool does not report still fails."""
    for attempt in range(attempts):
        with LiveTool(argv, ready, stream) as tool:
            work(disk)
            rc, out, err = tool.stop()
        assert rc == 0, err
        if not reported_lost(out, err):
            break
    return out, err


def pow2ms_rows(out):
    """iolatency output -> {row: count} summed over every interval."""
    rows = {}
    for block in blocktest.histogram_blocks(out):
        for i, line in enumerate(block[1:]):
            rows[i] = rows.get(i, 0) + int(line.split(":")[1].split("|")[0])
    return rows


def log2_total(out):
    return sum(int(m) for m in re.findall(r"^\s+\d+ -> \d+\s+: (\d+)\s+\|", out, re.M))


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_iolatency_counts_every_io_of_the_device_exactly(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["iolatency", "--backend", backend, "-d", disk.majmin, "1"],
                        "Tracing block I/O.", "stdout", disk)
    assert out.startswith("Tracing block I/O. Output every 1 seconds. Ctrl-C to end.\n")
    assert out.endswith("\nEnding tracing...\n")
    assert sum(pow2ms_rows(out).values()) == WRITES + READS, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_iolatency_device_filter_ignores_another_device(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    with workloads.loop_device() as (other_path, _major, _minor):
        def both(d):
            workloads.direct_writes(other_path, 20)
            workload(d)
            workloads.direct_reads(other_path, 20)
        out, err = run_with(["iolatency", "--backend", backend, "-d", disk.name, "1"],
                            "Tracing block I/O.", "stdout", disk, work=both)
    assert sum(pow2ms_rows(out).values()) == WRITES + READS, out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern, expected", [("*R*", READS), ("*W*", WRITES)])
def test_iolatency_type_filter(backend, disk, pattern, expected):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["iolatency", "--backend", backend, "-d", disk.majmin, "-i", pattern],
                        "Tracing block I/O.", "stdout", disk)
    assert sum(pow2ms_rows(out).values()) == expected, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_queue_time_latencies_are_never_shorter(backend, disk):
    """Two iolatency runs at once on the same I/O, one with -Q: every I/O
    counted by both, and no row of the -Q histogram is reached by more I/O
    than the same row without -Q (cumulatively)."""
    skip_unless_backend_runs(backend, disk.majmin)
    disk.set_scheduler("mq-deadline")
    with LiveTool(["iolatency", "--backend", backend, "-d", disk.majmin, "1"],
                  "Tracing block I/O.") as plain, \
            LiveTool(["iolatency", "--backend", backend, "-Q", "-d", disk.majmin, "1"],
                     "Tracing block I/O.") as queued:
        workload(disk)
        rc_q, out_q, err_q = queued.stop()
        rc_p, out_p, err_p = plain.stop(settle=0)
    assert rc_q == 0 and rc_p == 0, err_q + err_p
    rows_p, rows_q = pow2ms_rows(out_p), pow2ms_rows(out_q)
    assert sum(rows_p.values()) == sum(rows_q.values()) == WRITES + READS, (out_p, out_q)
    top = max(list(rows_p) + list(rows_q))
    for r in range(top + 1):
        assert (sum(rows_q.get(i, 0) for i in range(r + 1))
                <= sum(rows_p.get(i, 0) for i in range(r + 1))), (r, rows_p, rows_q)


@pytest.mark.live
@pytest.mark.ebpf
def test_both_backends_at_once_agree(disk):
    for backend in ("ftrace", "ebpf"):
        skip_unless_backend_runs(backend, disk.majmin)
    with LiveTool(["iolatency", "--backend", "ftrace", "-d", disk.majmin, "1"],
                  "Tracing block I/O.") as ftrace, \
            LiveTool(["iolatency", "--backend", "ebpf", "-d", disk.majmin, "1"],
                     "Tracing block I/O.") as ebpf:
        workload(disk)
        rc_e, out_e, err_e = ebpf.stop()
        rc_f, out_f, err_f = ftrace.stop(settle=0)
    assert rc_e == 0 and rc_f == 0, err_e + err_f
    rows_f, rows_e = pow2ms_rows(out_f), pow2ms_rows(out_e)
    assert sum(rows_f.values()) == sum(rows_e.values()) == WRITES + READS
    # The backends timestamp each event with their own clock read (trace
    # clock vs bpf_ktime_get_ns), nanoseconds apart: an I/O within a hair
    # of a row boundary may land on either side.  Anything more is a bug.
    moved = sum(abs(rows_f.get(r, 0) - rows_e.get(r, 0)) for r in set(rows_f) | set(rows_e))
    assert moved <= 2, (rows_f, rows_e)


def _prometheus_value(out, name):
    """The last value of a metric in a Prometheus exposition stream."""
    values = re.findall(r'^%s\{tool="iosnoop"\} (\d+)$' % re.escape(name), out, re.M)
    assert values, out
    return int(values[-1])


def test_start_only_filter_drops_other_io_without_calling_it_unmatched(disk, tmp_path):
    """iosnoop -n keeps the I/O of one process name (a filter on the issue
    only).  Another process's I/O on the same disk is neither printed nor
    counted as "unmatched" (an end without its start), on either backend."""
    for backend in ("ftrace", "ebpf"):
        skip_unless_backend_runs(backend, disk.majmin)
    writer = str(tmp_path / "ktwriter")
    shutil.copy(shutil.which("dd"), writer)
    tools = []
    try:
        for backend in ("ftrace", "ebpf"):
            tools.append(LiveTool(["iosnoop", "--backend", backend, "--prometheus",
                                   "-d", disk.majmin, "-n", "ktwriter"],
                                  "Tracing", "stderr"))
        subprocess.check_call([writer, "if=/dev/zero", "of=" + disk.path, "bs=4096",
                               "count=%d" % WRITES, "oflag=direct", "status=none"])
        workloads.direct_reads(disk.path, READS)
        results = [t.stop() for t in tools]
    finally:
        for t in tools:
            t.kill()
    for rc, out, err in results:
        assert rc == 0, err
        assert _prometheus_value(out, "kerntrace_block_io_requests_total") == WRITES
        assert _prometheus_value(out, "kerntrace_unmatched_events_total") == 0


@pytest.mark.live
def test_same_count_as_a_bpftrace_one_liner(disk):
    bpftrace = "/usr/bin/bpftrace"
    if not os.access(bpftrace, os.X_OK):
        pytest.skip("bpftrace is not installed")
    program = ("tracepoint:block:block_rq_issue /args->dev == %d/ { @issued = count(); } "
               "tracepoint:block:block_rq_complete /args->dev == %d/ { @completed = count(); }"
               % (disk.dev, disk.dev))
    bt = subprocess.Popen(["bash", "-c", 'ulimit -l unlimited; exec "$0" -e "$1"', bpftrace,
                           program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    try:
        line = ""
        end = time.time() + 60
        while time.time() < end and "Attaching" not in line:
            r, _, _ = select.select([bt.stdout], [], [], 0.2)
            if r:
                line = bt.stdout.readline()
                if not line:
                    break
            elif bt.poll() is not None:
                break
        if "Attaching" not in line:
            bt.kill()
            pytest.skip("bpftrace cannot run here: %s" % bt.communicate()[1].strip())
        time.sleep(0.5)   # "Attaching" comes just before the probes are live
        out, err = run_with(["iolatency", "--backend", "ftrace", "-d", disk.majmin],
                            "Tracing block I/O.", "stdout", disk)
        bt.send_signal(signal.SIGINT)
        bt_out, bt_err = clirun.finish_interrupted(bt)
    finally:
        if bt.poll() is None:
            bt.kill()
            bt.communicate()
    counts = dict(re.findall(r"^@(\w+): (\d+)$", bt_out, re.M))
    assert int(counts.get("issued", 0)) == WRITES + READS, bt_out + bt_err
    assert int(counts.get("completed", 0)) == WRITES + READS, bt_out + bt_err
    assert sum(pow2ms_rows(out).values()) == WRITES + READS


# ---------------------------------------------------------------------------
# The bcc-style tools and iosnoop on the same workload
@pytest.mark.parametrize("backend", BACKENDS)
def test_biolatency_per_disk(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["biolatency", "--backend", backend, "-D", "-d", disk.name],
                        "Tracing block device I/O", "stderr", disk)
    assert "\ndisk = %s\n" % disk.name in out, out
    assert log2_total(out) == WRITES + READS, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_biolatency_flags(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["biolatency", "--backend", backend, "-F", "-d", disk.name],
                        "Tracing block device I/O", "stderr", disk)
    sections = re.split(r"^flags = (.*)$", out, flags=re.M)
    totals = {name: log2_total(body) for name, body in zip(sections[1::2], sections[2::2])}
    # O_DIRECT writes are synchronous; reads are too on recent kernels.
    reads = "Sync-Read" if "Sync-Read" in totals else "Read"
    assert totals == {"Sync-Write": WRITES, reads: READS}, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_bitesize(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["bitesize", "--backend", backend, "-d", disk.name],
                        "Tracing block I/O", "stderr", disk)
    # dd's 4 KB requests: the 4 -> 7 Kbytes row.
    m = re.search(r"^Process Name = dd\n.*?^\s+4 -> 7\s+: (\d+)", out, re.M | re.S)
    assert m and int(m.group(1)) == WRITES + READS, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_biosnoop_one_line_per_io(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["biosnoop", "--backend", backend, "-d", disk.name],
                        "TIME(s)", "stdout", disk)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == WRITES + READS, out
    assert {r[1] for r in rows} == {"dd"}
    assert {r[3] for r in rows} == {disk.name}
    assert sum(1 for r in rows if r[4] == "W") == WRITES
    assert sum(1 for r in rows if r[4] == "R") == READS
    assert {r[6] for r in rows} == {"4096"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_biosnoop_prints_rows_while_tracing(backend, disk):
    # Fewer records than wake the eBPF reader (a quarter of its ring
    # buffer): they must still print within a moment, not at Ctrl-C.
    skip_unless_backend_runs(backend, disk.majmin)
    tool = LiveTool(["biosnoop", "--backend", backend, "-d", disk.name], "TIME(s)", "stdout")
    try:
        workload(disk)
        fd = tool.p.stdout.fileno()
        text = "".join(tool.seen["stdout"])
        end = time.time() + 20
        while text.count("\n") < 1 + WRITES + READS and time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                text += chunk.decode("utf-8", "replace")
        assert tool.p.poll() is None, "biosnoop ended: %r" % text
        rows_while_tracing = text.count("\n") - 1
        tool.seen["stdout"] = [text]
        rc, out, err = tool.stop(settle=0)
    finally:
        tool.kill()
    assert rc == 0, err
    # (a run the kernel skipped events of says so: those rows never come)
    assert rows_while_tracing + reported_lost(out, err) == WRITES + READS, out
    assert len(out.splitlines()) == 1 + rows_while_tracing, out


SENTINEL_BLOCK = 4000                       # far from the workload's blocks
SENTINEL_SECTOR = SENTINEL_BLOCK * 4096 // 512


def started_by_a_sentinel_write(argv, disk):
    """Start a tool that prints nothing until it sees I/O (--json): write
    one block at SENTINEL_BLOCK until the tool reports it, so its tracing
    is live when this returns.  Tests leave that sector out of their counts."""
    stop = threading.Event()

    def poke():
        while not stop.is_set():
            workloads.direct_writes(disk.path, 1, seek=SENTINEL_BLOCK)
            stop.wait(0.3)
    t = threading.Thread(target=poke)
    t.start()
    try:
        return LiveTool(argv, '"sector": %d' % SENTINEL_SECTOR)
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scheduler", ["mq-deadline", "none"])
def test_biosnoop_queue_time_one_line_per_io(backend, scheduler, disk):
    """-Q on our own device: every I/O once, with QUE(ms) and LAT(ms).  With
    mq-deadline every request is inserted before its issue; with "none" the
    driver may take it directly (no insert): the issue starts the pair and
    its queue time is 0.  A table and a --json run watch the same I/O."""
    skip_unless_backend_runs(backend, disk.majmin)
    disk.set_scheduler(scheduler)
    argv = ["biosnoop", "--backend", backend, "-Q", "-d", disk.name]
    with LiveTool(argv, "TIME(s)") as table, \
            started_by_a_sentinel_write(argv + ["--json"], disk) as as_json:
        workload(disk)
        rc_j, out_j, err_j = as_json.stop()
        rc_t, out_t, err_t = table.stop(settle=0)
    assert rc_t == 0 and rc_j == 0, err_t + err_j
    lines = out_t.splitlines()
    assert lines[0] == ("TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  "
                        "QUE(ms) LAT(ms)"), out_t
    rows = [line.split() for line in lines[1:]]
    rows = [r for r in rows if r[5] != str(SENTINEL_SECTOR)]
    assert len(rows) == WRITES + READS, out_t
    assert sum(1 for r in rows if r[4] == "W") == WRITES
    assert sum(1 for r in rows if r[4] == "R") == READS
    assert {r[1] for r in rows} == {"dd"} and {r[6] for r in rows} == {"4096"}
    assert all(float(r[7]) >= 0 and float(r[8]) >= 0 for r in rows), out_t
    events = [json.loads(line) for line in out_j.splitlines() if line.startswith("{")]
    ios = [e["fields"] for e in events
           if e["type"] == "event" and e["fields"]["sector"] != SENTINEL_SECTOR]
    assert len(ios) == WRITES + READS, out_j
    assert all(f["queued"] >= 0 and f["latency"] > 0 for f in ios), out_j
    assert sorted(f["sector"] for f in ios if f["rwbs"].startswith("W")) == [
        8 * i for i in range(WRITES)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iosnoop_one_line_per_io(backend, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    out, err = run_with(["iosnoop", "--backend", backend, "-d", disk.majmin],
                        "Tracing block I/O", "stdout", disk)
    lines = out.splitlines()
    assert lines[1].split() == ["COMM", "PID", "TYPE", "DEV", "BLOCK", "BYTES", "LATms"]
    rows = [line.split() for line in lines[2:] if line.strip() and not line.startswith("Ending")]
    assert len(rows) == WRITES + READS, out
    assert {r[3] for r in rows} == {disk.majmin}
    assert sum(1 for r in rows if "W" in r[2]) == WRITES
    assert sum(1 for r in rows if r[2].startswith("R")) == READS


# ---------------------------------------------------------------------------
# Bad input on the live host: one line, the reference tools' exit status,
# nothing left in tracefs (checked by the conftest leak fixture).
@pytest.mark.live
@pytest.mark.parametrize("argv, status, words", [
    (["iolatency", "-d", "nosuchdisk"], 1, "no such disk"),
    (["iolatency", "-d", "999,999"], 1, "no such disk 999,999"),
    (["iolatency", "-i", "R?"], 1, "invalid -i pattern"),
    (["iolatency", "-1"], 0, "negative number"),      # perf-tools: usage, exit 0
    (["iosnoop", "-d", "999,999"], 1, "no such disk"),
    (["biolatency", "-d", "nosuchdisk"], 1, "no such disk 'nosuchdisk'"),
    (["biolatency", "--", "-1"], 2, "invalid interval"),
    (["biosnoop", "-d", "nosuchdisk"], 1, "no such disk"),
    (["bitesize", "-d", "999,999"], 1, "no such disk"),
])
def test_bad_input_leaves_nothing_behind(argv, status, words):
    rc, out, err = clirun.run(argv)
    assert rc == status, err
    lines = err.strip().splitlines()
    assert words in lines[0], err
    # one line, or (perf-tools' way, exit 0) the line and then the usage
    assert len(lines) == 1 or (status == 0 and lines[1].startswith("USAGE: ")), err
    assert "Traceback" not in err
    # The tool's process is gone: anything it left named after it is a
    # leak of a dead PID, which the conftest fixture fails this test for.
    assert not [s for s in kernstate.kerntrace_state() if kernstate.owned_by_dead_or_me(s)]


def flush_workload(disk):
    """Two direct writes (the first at sector 0), then fsync of the device:
    the kernel sends the disk a flush request, which since Linux commit
    0803de78049f issue/insert record at sector 0 and the completion at
    all-ones."""
    workloads.direct_writes(disk.path, 2, bs=4096)
    fd = os.open(disk.path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("queue", [[], ["-Q"]])
@pytest.mark.parametrize("backend", BACKENDS)
def test_flush_is_measured_and_never_taken_for_sector_0(backend, queue, disk):
    skip_unless_backend_runs(backend, disk.majmin)
    with open("/sys/block/%s/queue/write_cache" % disk.name) as f:
        if f.read().strip() != "write back":
            pytest.skip("%s has no volatile write cache: the kernel sends it no "
                        "flushes" % disk.name)
    out, err = run_with(["biosnoop", "--backend", backend, "-d", disk.name] + queue,
                        "TIME(s)", "stdout", disk, work=flush_workload)
    rows = [line.split() for line in out.splitlines()[1:]]
    writes = [r for r in rows if r[4] == "W"]
    flushes = [r for r in rows if r[4] == "F"]
    assert [(r[1], r[5], r[6]) for r in writes] == [("dd", "0", "4096"), ("dd", "8", "4096")]
    assert flushes and all((r[5], r[6]) == ("-", "0") for r in flushes), out
    assert len(rows) == len(writes) + len(flushes), out


# ---------------------------------------------------------------------------
# Process ids of I/O whose process has exited before its line is printed
DD_RUNS, WRITES_PER_DD = 20, 2


def dd_runs(disk):
    """DD_RUNS dd processes in turn, each writing WRITES_PER_DD blocks
    (its own range); returns their PIDs.  Each has exited by the time the
    next starts, and all have long before the tool is stopped."""
    pids = []
    for i in range(DD_RUNS):
        p = subprocess.Popen(["dd", "if=/dev/zero", "of=" + disk.path, "bs=4096",
                              "count=%d" % WRITES_PER_DD, "seek=%d" % (i * WRITES_PER_DD),
                              "oflag=direct", "status=none"])
        assert p.wait() == 0
        pids.append(p.pid)
    return pids


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tool", ["biosnoop", "iosnoop"])
def test_snoop_pid_of_an_exited_process(backend, tool, disk):
    """Each line names the dd that wrote its blocks (the sector tells which
    one), though every dd has exited when the line is made."""
    skip_unless_backend_runs(backend, disk.majmin)
    if tool == "biosnoop":
        argv, ready, comm_col, pid_col, sector_col = ["biosnoop", "-d", disk.name], "TIME(s)", \
            1, 2, 5
    else:
        argv, ready, comm_col, pid_col, sector_col = ["iosnoop", "-d", disk.majmin], "COMM", \
            0, 1, 4
    pids = []

    def work(d):
        pids[:] = dd_runs(d)            # this run's (run_with may repeat it)
    out, err = run_with(argv[:1] + ["--backend", backend] + argv[1:], ready, "stdout", disk,
                        work=work)
    rows = [line.split() for line in out.splitlines()
            if line.strip() and line.split()[0] not in ("TIME(s)", "COMM", "Tracing", "Ending")]
    # (that every I/O gets its line is test_biosnoop/iosnoop_one_line_per_io's business)
    assert {r[comm_col] for r in rows} == {"dd"}, out
    sectors_per_dd = WRITES_PER_DD * 4096 // 512
    assert [r[pid_col] for r in rows] == [
        str(pids[int(r[sector_col]) // sectors_per_dd]) for r in rows], out
    assert {r[pid_col] for r in rows} == {str(pid) for pid in pids}, out
