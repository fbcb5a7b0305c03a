"""tpoint live: both backends at once and bpftrace beside them print the
same events of a known workload (direct writes to our own loop device;
a process making a known number of getppid() calls), one trace_pipe-style
line each."""

import json
import re
import select
import shutil
import signal
import subprocess
import time

import pytest

import clirun
import workloads
from test_tool_argdist_live import Bpftrace, backends, disk  # noqa: F401
from test_tool_tpoint_eras import LINE

WRITES = 9


def start(argv, timeout=90):
    """Start tpoint; wait for its banner on stdout (printed once tracing is
    live, as perf-tools' tpoint prints it)."""
    p = clirun.start(["tpoint"] + argv)
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            line = p.stdout.readline()
            if line.startswith("Tracing "):
                return p
            if not line:
                break
        elif p.poll() is not None:
            break
    p.kill()
    raise AssertionError("tpoint did not start: %r" % (p.communicate(),))


def stop(procs):
    time.sleep(0.5)
    for p in procs:
        p.send_signal(signal.SIGINT)
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "lost" not in err, err
        assert out.rstrip("\n").endswith("Ending tracing..."), out
        outs.append(out)
    return outs


def events(out):
    rows = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            rows.append((m.group("comm"), int(m.group("tid")), m.group("event"),
                         m.group("payload")))
    return rows


@pytest.mark.live
def test_block_issues_identical_on_both_backends_and_bpftrace(disk):
    path, dev = disk
    bt = Bpftrace('tracepoint:block:block_rq_issue /args->dev == %d/ '
                  '{ printf("%%d %%d %%d\\n", args->sector, args->nr_sector, args->bytes); }'
                  % dev)
    try:
        procs = [start(["--backend", b, "block:block_rq_issue",
                        "dev == %d && nr_sector > 0" % dev]) for b in backends()]
        workloads.direct_writes(path, WRITES, bs=4096, seek=100)
        outs = stop(procs)
        bt_out, _ = bt.stop()
    finally:
        bt.kill()
    rows = [events(o) for o in outs]
    assert len(rows[0]) == WRITES, outs[0]
    # the same lines, task and fields, on every backend
    assert all(r == rows[0] for r in rows), outs
    seen = []
    for comm, tid, event, payload in rows[0]:
        fields = dict(kv.split("=", 1) for kv in payload.split(" "))
        assert (comm, event, int(fields["dev"])) == ("dd", "block_rq_issue", dev)
        assert fields["rwbs"].startswith("W") and fields["comm"] == "dd"
        seen.append("%s %s %s" % (fields["sector"], fields["nr_sector"], fields["bytes"]))
    assert seen == ["%d 8 4096" % ((100 + i) * 8) for i in range(WRITES)]
    assert [l for l in bt_out.splitlines() if re.match(r"^\d+ \d+ \d+$", l)] == seen


@pytest.mark.live
def test_pid_and_tid_select_one_process_on_both_backends(caller_exe):
    n = 40
    c = workloads.Caller(caller_exe, n)
    procs = [start(["--backend", b, opt, str(c.pid), "syscalls:sys_enter_getppid"])
             for b in backends() for opt in ("-p", "-L")]
    assert c.release() == 0
    outs = stop(procs)
    for out in outs:
        rows = events(out)
        assert len(rows) == n, out
        assert set((comm, tid, event) for comm, tid, event, _ in rows) == {
            ("kerntrace_calle", c.pid, "sys_enter_getppid")}, out


@pytest.mark.live
def test_header_and_duration():
    rc, out, err = clirun.run(["tpoint", "-H", "-d", "0.5", "sched:sched_switch",
                               'prev_comm == "kerntrace-none"'])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "Tracing sched:sched_switch for 0.5 seconds..."
    assert lines[1].startswith("#") and "TASK-TID" in lines[1] and lines[2].startswith("#")
    assert lines[-1] == "Ending tracing..." and not events(out)


@pytest.mark.live
def test_list_and_view_on_this_kernel():
    rc, out, err = clirun.run(["tpoint", "-l", "block:block_rq_*"])
    assert rc == 0 and "block:block_rq_issue" in out.split(), err
    rc, out, err = clirun.run(["tpoint", "-v", "block:block_rq_issue"])
    with open("/sys/kernel/tracing/events/block/block_rq_issue/format") as f:
        assert rc == 0 and out == f.read()


@pytest.mark.live
@pytest.mark.parametrize("backend", ["ebpf", "ftrace"])
@pytest.mark.parametrize("argv, message", [
    (["block:block_rq_issue", "dev == 1 || dev == 2"], "'\\|\\|' is not supported"),
    (["block:block_rq_issue", "dev == 1\n-:kprobes/x"], "not supported"),
    (["block:block_rq_issue", "nope == 1"], "unknown field"),
    (["nope:nope"], "^ERROR: tracepoint nope:nope not found. Exiting$"),
])
def test_bad_input_live_one_line_nothing_left(backend, argv, message):
    rc, out, err = clirun.run(["tpoint", "--backend", backend] + argv)
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and re.search(message, err.strip()), err


def record(rec, argv, work):
    """`kerntrace record -o rec argv...` around work()."""
    p = clirun.start(["record", "-o", rec] + argv)
    try:
        clirun.wait_for_stderr_line(p, "kerntrace: recording ")
        work()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.mark.live
def test_replay_of_a_recording_prints_the_same_events(tmp_path):
    n = 4
    true = shutil.which("true")
    prog = workloads.named_copy(shutil.copy(true, str(tmp_path / "true")), "kt_tpoint_exec")
    rec = str(tmp_path / "exec.rec")
    record(rec, ["tpoint", "sched:sched_process_exec"],
           lambda: [subprocess.check_call([prog]) for _ in range(n)])
    rc, out, err = clirun.run(["tpoint", "--input", rec, "sched:sched_process_exec",
                               'filename ~ "*/kt_tpoint_exec"'])
    assert rc == 0, err
    rows = events(out)
    assert len(rows) == n, out
    for comm, tid, event, payload in rows:
        fields = dict(kv.split("=", 1) for kv in payload.split(" "))
        assert (comm, event, fields["filename"]) == ("kt_tpoint_exec", "sched_process_exec", prog)
        assert int(fields["pid"]) == tid
    rc, out, err = clirun.run(["tpoint", "--json", "--input", rec, "sched:sched_process_exec",
                               'filename ~ "*/kt_tpoint_exec"'])
    assert rc == 0, err
    records = [json.loads(l) for l in out.splitlines()]
    assert [(r["type"], r["fields"]["comm"], r["fields"]["filename"], r["fields"]["pid_"])
            for r in records] == [("event", comm, prog, tid) for comm, tid, _, _ in rows]


@pytest.mark.live
def test_replay_of_a_block_recording_counts_the_same_bytes(disk, tmp_path):
    path, dev = disk
    rec = str(tmp_path / "block.rec")
    record(rec, ["argdist", "-C", "t:block:block_rq_issue():u32:bytes"],
           lambda: workloads.direct_writes(path, WRITES, bs=4096, seek=200))
    rc, out, err = clirun.run(["argdist", "--input", rec, "-i", "3600", "-C",
                               "t:block:block_rq_issue():u32:bytes:dev == %d" % dev])
    assert rc == 0, err
    assert re.findall(r"^\t(\d+)\s+bytes = (\d+)$", out, re.M) == [(str(WRITES), "4096")], out


@pytest.mark.live
def test_stacks_on_both_backends_and_bpftraces_kstack(caller_exe):
    """tpoint -s: every event's kernel stack follows its line, on each
    backend at once: the syscall entry path is in it (do_syscall_64 on
    x86-64), and below each backend's own tracing code (its first frames)
    the frames are the same on both and in bpftrace's kstack."""
    n = 7
    c = workloads.Caller(caller_exe, n)
    bt = None
    if shutil.which("bpftrace") and "ebpf" in backends():
        bt = Bpftrace('tracepoint:syscalls:sys_enter_getppid /pid == %d/ { @[kstack] = count(); }'
                      % c.pid)
    try:
        procs = [start(["--backend", b, "-s", "-p", str(c.pid), "syscalls:sys_enter_getppid"])
                 for b in backends()]
        assert c.release() == 0
        outs = stop(procs)
        bt_out = bt.stop()[0] if bt else ""
    finally:
        if bt:
            bt.kill()
    per_backend = [one_stack(out, n) for out in outs]
    import platform
    if platform.machine() == "x86_64":
        assert all("do_syscall_64" in frames for frames in per_backend), per_backend
    if bt:
        m = re.search(r"@\[\n(.*?)\n\]: (\d+)", bt_out, re.S)
        assert m and int(m.group(2)) == n, bt_out
        per_backend.append(tuple(f.strip().split("+")[0] for f in m.group(1).splitlines()))
    below = [below_tracing(f, per_backend) for f in per_backend]
    assert len(below[0]) >= 2 and all(b == below[0] for b in below), per_backend


def one_stack(out, n):
    """The frames of the n events' stacks in tpoint's output, one call
    site: the same stack after each of the n event lines."""
    lines = out.splitlines()
    heads = [i for i, l in enumerate(lines) if l.endswith("<stack trace>")]
    assert len(heads) == n and len(events(out)) == n, out
    assert all(LINE.match(lines[i - 1]) for i in heads), out     # each after its event
    stacks = set()
    for i in heads:
        frames = []
        for l in lines[i + 1:]:
            if not l.startswith(" => "):
                break
            frames.append(l[4:])
        stacks.add(tuple(frames))
    assert len(stacks) == 1, stacks         # one call site: one stack
    return stacks.pop()


def below_tracing(frames, all_stacks):
    """The frames from the first one every stack has: what is left when
    each tracer's own code (the innermost frames) is taken off."""
    shared = [f for f in frames if all(f in other for other in all_stacks)]
    assert shared, all_stacks
    return frames[frames.index(shared[0]):]
