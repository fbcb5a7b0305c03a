"""`kerntrace record` on the live kernel, replayed with --input.

A recording made over a known workload replays to the counts a live run
over the same I/Os printed; a third-party tool (a plugin defined here,
installed through package metadata) replays a recording of a tracepoint
no stored format covers, decoded with the formats the recording carries.
The conftest leak check fails a test whose recording left tracing state."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import clirun
import kernstate
import workloads
from test_block_live import LiveTool, READS, WRITES, disk, pow2ms_rows, workload  # noqa: F401

from kerntrace.core.recording import open_saved_trace

pytestmark = pytest.mark.live


def recorder(path, argv):
    """`kerntrace record -o path argv...`, returned once it is recording."""
    return LiveTool(["record", "-o", str(path)] + argv, "kerntrace: recording ", "stderr")


def test_iolatency_replay_of_a_recording_counts_what_the_live_run_counted(disk, tmp_path):
    rec = tmp_path / "io.rec"
    with recorder(rec, ["iolatency", "-d", disk.majmin]) as record:
        with LiveTool(["iolatency", "--backend", "ftrace", "-d", disk.majmin, "1"],
                      "Tracing block I/O.", "stdout") as live:
            workload(disk)
            rc, live_out, err = live.stop()
        assert rc == 0, err
        rc, _, rec_err = record.stop()
    assert rc == 0, rec_err
    assert re.search(r"recorded \d+ trace lines to %s" % re.escape(str(rec)), rec_err)
    saved = open_saved_trace(str(rec))
    assert saved.recorded and saved.meta["tool"] == "iolatency"
    assert set(saved.formats) == {("block", "block_rq_issue"), ("block", "block_rq_complete")}
    assert saved.meta["release"] == os.uname().release and saved.meta["clock"]

    rc, replay_out, err = clirun.run(["iolatency", "-d", disk.majmin, "--input", str(rec), "1"])
    assert rc == 0, err
    live_rows, replay_rows = pow2ms_rows(live_out), pow2ms_rows(replay_out)
    assert sum(live_rows.values()) == WRITES + READS, live_out
    assert sum(replay_rows.values()) == WRITES + READS, replay_out
    # The trace text has microsecond timestamps where the live run reads
    # nanoseconds: a latency within a microsecond of a bucket boundary may
    # land one row apart.  Anything more is a real difference.
    moved = sum(abs(live_rows.get(r, 0) - replay_rows.get(r, 0))
                for r in set(live_rows) | set(replay_rows))
    assert moved <= 2, (live_out, replay_out)


def _snoop_rows(out):
    """biosnoop rows as (COMM, PID, DISK, T, SECTOR, BYTES): what a replay
    must reproduce exactly (TIME and LAT are printed from the timestamps)."""
    return sorted(tuple(line.split()[1:7]) for line in out.splitlines()[1:] if line.strip())


def test_biosnoop_replay_of_a_recording_lists_the_live_runs_ios(disk, tmp_path):
    rec = tmp_path / "snoop.rec"
    with recorder(rec, ["biosnoop", "-d", disk.name]) as record:
        with LiveTool(["biosnoop", "--backend", "ftrace", "-d", disk.name], "TIME(s)",
                      "stdout") as live:
            workload(disk)
            rc, live_out, err = live.stop()
        assert rc == 0, err
        rc, _, rec_err = record.stop()
    assert rc == 0, rec_err
    rc, replay_out, err = clirun.run(["biosnoop", "-d", disk.name, "--input", str(rec)])
    assert rc == 0, err
    live_rows = _snoop_rows(live_out)
    assert len(live_rows) == WRITES + READS, live_out
    assert _snoop_rows(replay_out) == live_rows, replay_out


def test_record_for_a_duration_stops_by_itself_and_leaves_nothing(tmp_path):
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    rec = tmp_path / "short.rec"
    t0 = time.monotonic()
    rc, out, err = clirun.run(["record", "-o", str(rec), "-d", "0.5", "iolatency"], timeout=60)
    assert rc == 0, err
    assert out == ""                     # stdout carries nothing
    assert time.monotonic() - t0 < 30
    assert open_saved_trace(str(rec)).recorded


# -- a third-party tool --------------------------------------------------------
FORKCOUNT = '''
from kerntrace.core.hookspecs import hookimpl
from kerntrace.core.model import Count, Each, Event, Field, Measurement, SyscallExit, Tracepoint
from kerntrace.core.output.table import CountTablePrinter
from kerntrace.core.tool import Tool

class ForkCount(Tool):
    name = "forkcount"
    summary = "Forks per parent process (a test plugin)."
    def measurement(self, args):
        fork = Event("fork", Tracepoint("sched", "sched_process_fork"),
                     fields=[Field("parent_pid")])
        return Measurement([fork], Count(keys=("parent_pid",)))
    def printer(self, args, out, err):
        return CountTablePrinter(out, err, key_header="PARENT")

class ParentAsked(Tool):
    name = "parentasked"
    summary = "getppid() calls per answer (a test plugin)."
    def measurement(self, args):
        ret = Event("ret", SyscallExit("getppid"), fields=[Field("ret")])
        return Measurement([ret], Count(keys=("ret",)))
    def printer(self, args, out, err):
        return CountTablePrinter(out, err, key_header="PARENT")

class IdsAsked(Tool):
    name = "idsasked"
    summary = "getppid() and getpid() calls per answer (an Each of two syscalls)."
    def measurement(self, args):
        ret = Event("ret", Each(SyscallExit("getppid"), SyscallExit("getpid")),
                    fields=[Field("ret")])
        return Measurement([ret], Count(keys=("ret",)))
    def printer(self, args, out, err):
        return CountTablePrinter(out, err, key_header="ANSWER")

@hookimpl
def kerntrace_tools():
    return [ForkCount(), ParentAsked(), IdsAsked()]
'''


@pytest.fixture
def plugin_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "kt_forkcount.py").write_text(textwrap.dedent(FORKCOUNT))
    dist = site / "kt_forkcount-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kt-forkcount\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kerntrace.plugins]\nforkcount = kt_forkcount\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    env.pop("KERNTRACE_DISABLE_PLUGINS", None)
    return env


def _counts(out):
    """Key -> count summed over every interval's table (a workload that
    spans an interval boundary is in two of them)."""
    counts = {}
    for k, v in re.findall(r"^(\d+)\s+(\d+)$", out, re.M):
        counts[int(k)] = counts.get(int(k), 0) + int(v)
    return counts


def test_third_party_tool_replays_a_recording_of_an_unstored_tracepoint(tmp_path, plugin_env):
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    from kerntrace.core import known_formats
    assert known_formats.candidates("sched", "sched_process_fork") == []   # not stored
    n = 25
    rec = tmp_path / "fork.rec"
    forker = workloads.Forker(n)
    p = subprocess.Popen(clirun.KERNTRACE + ["record", "-o", str(rec), "forkcount"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=plugin_env)
    try:
        lines = clirun.wait_for_stderr_line(p, "kerntrace: recording ")
        assert "sched:sched_process_fork" in lines[-1]
        forker.release()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert ("sched", "sched_process_fork") in open_saved_trace(str(rec)).formats

    def replay(path):
        return subprocess.run(clirun.KERNTRACE + ["forkcount", "--input", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=plugin_env, timeout=120)
    r = replay(rec)
    assert r.returncode == 0, r.stderr
    assert _counts(r.stdout).get(forker.pid) == n, r.stdout

    # The same trace text without the formats it carries (a plain `cat
    # trace` file) cannot be decoded: the stored eras do not have the event.
    with open(str(rec), "rb") as f:
        data = f.read()
    plain = tmp_path / "fork.txt"
    plain.write_bytes(data[open_saved_trace(str(rec)).trace_offset:])
    r = replay(plain)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "no known format for sched:sched_process_fork" \
        in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and sys.executable not in r.stderr


# -- stopping --------------------------------------------------------------------
def _instances_of(pid):
    root = kernstate.tracefs()
    return sorted(n for n in os.listdir(os.path.join(root, "instances"))
                  if n.startswith("kerntrace-%d-" % pid))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_the_recording_with_a_whole_file(disk, tmp_path, sig):
    rec = tmp_path / "stop.rec"
    with recorder(rec, ["iolatency", "-d", disk.majmin]) as record:
        pid = record.p.pid
        assert len(_instances_of(pid)) == 1
        workload(disk)
        time.sleep(0.5)
        record.p.send_signal(sig)
        out, err = record.p.communicate(timeout=60)
    assert (record.p.returncode, out) == (0, ""), err
    assert _instances_of(pid) == []
    with open_saved_trace(str(rec)).open_trace() as f:
        lines = f.read().decode().splitlines()
    # every I/O of the workload, issued and completed, in whole lines
    issued = [l for l in lines if ": block_rq_issue: %d,%d " % (disk.major, disk.minor) in l]
    done = [l for l in lines if ": block_rq_complete: %d,%d " % (disk.major, disk.minor) in l]
    assert len(issued) == len(done) == WRITES + READS, lines


def test_a_killed_recording_is_cleaned_up_by_the_next_run(disk, tmp_path):
    record = recorder(tmp_path / "killed.rec", ["iolatency", "-d", disk.majmin])
    pid = record.p.pid
    left = _instances_of(pid)
    assert len(left) == 1
    record.p.kill()                              # SIGKILL: nothing restored
    record.p.communicate()
    assert _instances_of(pid) == left
    rc, out, err = clirun.run(["record", "-o", str(tmp_path / "next.rec"), "-d", "0.2",
                               "iolatency", "-d", disk.majmin])
    assert rc == 0, err
    assert _instances_of(pid) == []
    assert err.splitlines()[0] == ("kerntrace: removed instance %s (PID %d) left by a "
                                   "process that is gone" % (left[0], pid)), err


def test_third_party_syscall_tool_replays_its_recording(tmp_path, plugin_env, caller_exe):
    """sys_exit_getppid (no stored format): a syscall event, which the
    kernel prints with its own output function, from its carried format."""
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    n = 40
    rec = tmp_path / "getppid.rec"
    caller = workloads.Caller(caller_exe, n)
    p = subprocess.Popen(clirun.KERNTRACE + ["record", "-o", str(rec), "parentasked"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=plugin_env)
    try:
        clirun.wait_for_stderr_line(p, "kerntrace: recording syscalls:sys_exit_getppid")
        caller.release()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    r = subprocess.run(clirun.KERNTRACE + ["parentasked", "--input", str(rec)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=plugin_env, timeout=120)
    assert r.returncode == 0, r.stderr
    # the caller's parent is this test process: its getppid() answers are ours
    assert _counts(r.stdout).get(os.getpid()) == n, r.stdout


_ASKER = """
import os, sys
n, m = int(sys.argv[1]), int(sys.argv[2])
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(n):
    os.getppid()
for _ in range(m):
    os.getpid()
"""


def test_a_tool_with_an_each_alternative_replays_every_member(tmp_path, plugin_env):
    """Each(sys_exit_getppid, sys_exit_getpid): a recording carries both
    members' formats and the replay counts the events of both."""
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    n, m = 30, 17
    rec = tmp_path / "ids.rec"
    asker = subprocess.Popen([sys.executable, "-c", _ASKER, str(n), str(m)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    asker_pid = int(asker.stdout.readline())
    p = subprocess.Popen(clirun.KERNTRACE + ["record", "-o", str(rec), "idsasked"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=plugin_env)
    try:
        clirun.wait_for_stderr_line(p, "kerntrace: recording ")
        asker.stdin.write(b"go\n")
        asker.stdin.flush()
        asker.wait()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    finally:
        if asker.poll() is None:
            asker.kill()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    carried = open_saved_trace(str(rec)).formats
    assert ("syscalls", "sys_exit_getppid") in carried and \
        ("syscalls", "sys_exit_getpid") in carried
    r = subprocess.run(clirun.KERNTRACE + ["idsasked", "--input", str(rec)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=plugin_env, timeout=120)
    assert r.returncode == 0, r.stderr
    counts = _counts(r.stdout)
    # getppid() answers the parent (this test), getpid() the asker itself
    assert counts.get(os.getpid()) == n and counts.get(asker_pid) == m, r.stdout
