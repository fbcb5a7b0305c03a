"""opensnoop live on both backends: a process that opens a uniquely named
file (its name has a space) N times, a path that does not exist M times
and creates a file K times with creat(); each backend reports exactly
those opens, with the right FD, ERR and full path, and both report the
same."""

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

import clirun
from kernstate import ebpf_skip_reason

N = 40
M = 7

K = 5

# The opener: names its thread (comm), prints its pid, waits for a line on
# stdin, then opens FILE N times (O_RDONLY, closing each), MISSING M times
# and creates CREATED K times with the C library's creat() (the creat
# system call, not openat); then opens FILE for writing WR[0] times
# (O_WRONLY|O_APPEND) and WR[1] times (O_RDWR).
_OPENER = """
import ctypes, os, sys
path, missing, n, m, comm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
created, k, wo, rw = sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
libc = ctypes.CDLL(None, use_errno=True)
with open("/proc/self/comm", "w") as f:
    f.write(comm)
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY))
for _ in range(m):
    try:
        os.open(missing, os.O_RDONLY)
    except FileNotFoundError:
        pass
for _ in range(k):
    fd = libc.creat(created.encode(), 0o600)
    assert fd >= 0
    os.close(fd)
for _ in range(wo):
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
for _ in range(rw):
    os.close(os.open(path, os.O_RDWR))
"""

ROW = re.compile(r"^(\d+)\s+(\S.*?)\s+(-?\d+)\s+(\d+) (.*)$")


class Opener(object):
    def __init__(self, tmpdir, n=N, m=M, wr=(0, 0)):
        tag = uuid.uuid4().hex[:8]
        self.comm = "ktopen" + tag
        self.path = os.path.join(str(tmpdir), "kerntrace opensnoop %s" % tag)
        self.missing = os.path.join(str(tmpdir), "kerntrace-missing-%s" % tag)
        self.created = os.path.join(str(tmpdir), "kerntrace-created-%s" % tag)
        open(self.path, "w").close()
        self.p = subprocess.Popen([sys.executable, "-c", _OPENER, self.path, self.missing,
                                   str(n), str(m), self.comm, self.created, str(K),
                                   str(wr[0]), str(wr[1])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())

    def release(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()
        return self.p.wait(timeout=60)


def backends():
    why = ebpf_skip_reason()
    return ([] if why else ["ebpf"]) + ["ftrace"]


def run_on(opener, args, expect_exit=True):
    """opensnoop with `args` on each backend at once, the opener released
    once all trace; [(backend, stdout, stderr)]."""
    procs = []
    for b in backends():
        p = clirun.start(["opensnoop", "--backend", b, "--explain"] + list(args))
        procs.append((b, p, clirun.wait_for_text(p.stderr, "Tracing ", p)))
    assert opener.release() == 0
    time.sleep(0.5)
    out = []
    for b, p, err0 in procs:
        if not expect_exit:
            p.send_signal(2)
        stdout, err = p.communicate(timeout=60)
        assert p.returncode == 0, err0 + err
        out.append((b, stdout, err0 + err))
    return out


def rows(stdout):
    """(pid, comm, fd, err, path) of every table row."""
    out = []
    for line in stdout.splitlines()[1:]:
        m = ROW.match(line)
        assert m, line
        out.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)),
                     m.group(5)))
    return out


def check_rows(opener, found, n=N, m=M, k=K):
    ok = [r for r in found if r[4] == opener.path]
    bad = [r for r in found if r[4] == opener.missing]
    made = [r for r in found if r[4] == opener.created]
    assert len(ok) == n, found
    assert len(bad) == m, found
    assert len(made) == k, found
    for pid, comm, fd, err, _ in ok + made:
        assert pid == opener.pid and comm == opener.comm and fd >= 0 and err == 0
    for pid, comm, fd, err, _ in bad:
        assert pid == opener.pid and comm == opener.comm and fd == -1 and err == 2   # ENOENT


@pytest.mark.live
def test_exact_opens_on_both_backends_and_the_same(tmp_path):
    opener = Opener(tmp_path)
    results = run_on(opener, ["-p", str(opener.pid)], expect_exit=False)
    tables = []
    for b, stdout, err in results:
        assert stdout.startswith("PID    COMM               FD ERR PATH\n"), stdout
        found = rows(stdout)
        check_rows(opener, found)
        tables.append(sorted(r for r in found
                             if r[4] in (opener.path, opener.missing, opener.created)))
        if b == "ftrace":
            # no kprobes here: the path comes from the uprobe on libc's open()
            assert re.search(r"ftrace: chosen \(event enter from (each\(u:c:open, u:c:creat\)|"
                             r"k:\w+) ", err), err
    assert all(t == tables[0] for t in tables)
    if len(results) == 1:
        pytest.skip("eBPF backend unavailable (%s): only ftrace checked" % ebpf_skip_reason())


@pytest.mark.live
@pytest.mark.parametrize("how", ["name", "filename", "failed", "tid"])
def test_filters(tmp_path, how):
    opener = Opener(tmp_path)
    if how == "name":
        args, n, m, k = ["-n", opener.comm], N, M, K
    elif how == "filename":
        # end-anchored: the file, not the missing path beside it
        args, n, m, k = ["*" + os.path.basename(opener.path)], N, 0, 0
    elif how == "failed":
        args, n, m, k = ["-x", "-p", str(opener.pid)], 0, M, 0
    else:
        args, n, m, k = ["-t", str(opener.pid)], N, M, K
    for b, stdout, err in run_on(opener, args, expect_exit=False):
        found = rows(stdout)
        assert found, (b, stdout, err)
        check_rows(opener, found, n, m, k)
        if how in ("name", "tid", "failed"):
            assert all(r[0] == opener.pid for r in found), (b, found)
        if how == "filename":
            assert all(r[4] == opener.path for r in found), (b, found)


@pytest.mark.live
def test_flag_filter(tmp_path):
    """-f O_WRONLY -f O_RDWR: only the opens for writing, of any of those
    bits (bcc's semantics); -f O_APPEND: only those with O_APPEND."""
    wo, rw = 6, 4
    for flags, want in ((["-f", "O_WRONLY", "-f", "O_RDWR"], {os.O_WRONLY | os.O_APPEND: wo,
                                                              os.O_RDWR: rw}),
                        (["-f", "O_APPEND"], {os.O_WRONLY | os.O_APPEND: wo})):
        opener = Opener(tmp_path, wr=(wo, rw))
        for b, stdout, err in run_on(opener, ["--json", "-p", str(opener.pid)] + flags,
                                     expect_exit=False):
            recs = [json.loads(line)["fields"] for line in stdout.splitlines() if line.strip()]
            assert all(r["pid"] == opener.pid for r in recs), (b, recs)
            got = {}
            for r in recs:
                assert r["path"] == opener.path and r["ret"] >= 0, (b, flags, r)
                # O_CLOEXEC and O_LARGEFILE ride along: the access and append bits decide
                bits = r["flags"] & (os.O_ACCMODE | os.O_APPEND)
                got[bits] = got.get(bits, 0) + 1
            assert got == want, (b, flags, recs, err)


@pytest.mark.live
def test_json_records(tmp_path):
    opener = Opener(tmp_path)
    for b, stdout, err in run_on(opener, ["--json", "-p", str(opener.pid)], expect_exit=False):
        recs = [json.loads(line)["fields"] for line in stdout.splitlines() if line.strip()]
        mine = [r for r in recs if r.get("path") in (opener.path, opener.missing)]
        assert len([r for r in mine if r["path"] == opener.path and r["ret"] >= 0]) == N, recs
        assert len([r for r in mine if r["path"] == opener.missing and r["ret"] == -2]) == M
        assert len([r for r in recs if r.get("path") == opener.created and r["ret"] >= 0]) == K
        assert all(r["pid"] == opener.pid and r["comm"] == opener.comm for r in mine)


@pytest.mark.live
def test_duration_ends_the_run():
    for b in backends():
        t0 = time.time()
        rc, out, err = clirun.run(["opensnoop", "--backend", b, "-d", "1", "-n", "nosuchtask"])
        assert rc == 0, err
        assert out == "PID    COMM               FD ERR PATH\n", out
        # eBPF compiles before tracing starts: a few seconds at most
        assert time.time() - t0 < 30


@pytest.mark.live
def test_a_pid_that_does_not_exist_is_one_line():
    p = subprocess.Popen(["true"])
    p.wait()                                  # a pid that just ended
    rc, out, err = clirun.run(["opensnoop", "-p", str(p.pid)])
    assert rc != 0 and out == ""
    assert err == "opensnoop: no process with PID %d\n" % p.pid


# The opener for the /proc route: keeps every descriptor open until told to
# end, so /proc/PID/fd/FD still names the file when the record is reported.
_HOLDER = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
print(os.getpid(), flush=True)
sys.stdin.readline()
fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
print(" ".join(map(str, fds)), flush=True)
sys.stdin.readline()
"""


@pytest.mark.live
def test_proc_lookup_route_live(tmp_path, monkeypatch):
    """Where neither a kprobe nor a uprobe can fetch the path (forced here:
    this kernel has uprobes), the ftrace backend takes the tracepoint and
    each path is looked up in /proc when reported, marked best-effort."""
    import io
    import threading
    from kerntrace.backends.ftrace.backend import FtraceBackend
    from kerntrace.core import cli
    monkeypatch.setattr(FtraceBackend, "_uprobe", lambda self, event, probe, feats: (
        None, "no uprobe support (uprobe_events missing)"))
    monkeypatch.setattr(FtraceBackend, "_kprobe", lambda self, event, probe, host, feats: (
        None, "no kprobe support (kprobe_events missing)"))
    path = str(tmp_path / ("kerntrace-held-%s" % uuid.uuid4().hex[:8]))
    open(path, "w").close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path, str(N)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pid = int(holder.stdout.readline())
    out, err = io.StringIO(), io.StringIO()
    fds = []

    def release():
        end = time.time() + 120
        while "Tracing " not in err.getvalue() and time.time() < end:
            time.sleep(0.05)
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        fds.extend(int(x) for x in holder.stdout.readline().split())
    t = threading.Thread(target=release)
    t.start()
    try:
        rc = cli.run_tool("opensnoop", ["--backend", "ftrace", "--explain", "-d", "3", "-p",
                                        str(pid)], out=out, err=err, prog="opensnoop")
    finally:
        t.join()
        holder.stdin.write(b"end\n")
        holder.stdin.flush()
        holder.wait()
    assert rc == 0, err.getvalue()
    assert "path from /proc/<pid>/fd/<ret> after the fact (best-effort)" in err.getvalue()
    found = rows(out.getvalue())
    mine = [r for r in found if r[2] in fds]
    assert len(fds) == N and len(mine) == N, (fds, found)
    assert sorted(r[2] for r in mine) == sorted(fds)
    for r in mine:
        assert r[0] == pid and r[3] == 0 and r[4] == path + " (from /proc)"


# bpftrace's view of the same opens: each syscall's entry with its path and
# its exit with the return value, paired per thread below.
_BPFTRACE = (
    "tracepoint:syscalls:sys_enter_creat /pid == %(pid)d/ "
    "{ printf(\"E %%d %%s\\n\", tid, str(args->pathname)); } "
    "tracepoint:syscalls:sys_enter_open,tracepoint:syscalls:sys_enter_openat /pid == %(pid)d/ "
    "{ printf(\"E %%d %%s\\n\", tid, str(args->filename)); } "
    "tracepoint:syscalls:sys_exit_open,tracepoint:syscalls:sys_exit_openat,"
    "tracepoint:syscalls:sys_exit_creat /pid == %(pid)d/ "
    "{ printf(\"X %%d %%d\\n\", tid, args->ret); }")


def bpftrace_opens(text):
    """[(fd, err, path)] from _BPFTRACE's lines."""
    pending, out = {}, []
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        tid, _, value = rest.partition(" ")
        if kind == "E":
            pending[tid] = value
        elif kind == "X" and tid in pending:
            ret = int(value)
            out.append((ret if ret >= 0 else -1, 0 if ret >= 0 else -ret, pending.pop(tid)))
    return out


@pytest.mark.live
def test_both_backends_agree_with_bpftrace(tmp_path):
    import resource
    import shutil
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        pytest.skip("bpftrace is not installed: no third tool to compare with")
    opener = Opener(tmp_path)

    def more_locked_memory():
        # bpftrace 0.17 warns under a low limit (its stderr is not checked)
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        except (ValueError, OSError):
            pass
    bt = subprocess.Popen([bpftrace, "-e", _BPFTRACE % {"pid": opener.pid}],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, preexec_fn=more_locked_memory,
                          env=dict(os.environ, BPFTRACE_STRLEN="200"))   # (default 64)
    try:
        line = bt.stdout.readline()
        assert line.startswith("Attaching"), (line, bt.stderr.read() if bt.poll() else "")
        results = run_on(opener, ["-p", str(opener.pid)], expect_exit=False)
    finally:
        bt.send_signal(2)
        bt_out, _ = clirun.finish_interrupted(bt)
    seen = [r for r in bpftrace_opens(bt_out)
            if r[2] in (opener.path, opener.missing, opener.created)]
    assert len(seen) == N + M + K, bt_out
    for b, stdout, err in results:
        mine = sorted((fd, e, path) for _pid, _comm, fd, e, path in rows(stdout)
                      if path in (opener.path, opener.missing, opener.created))
        assert mine == sorted(seen), (b, mine, seen)


@pytest.mark.live
def test_sigkill_leaves_probes_the_next_run_removes():
    """opensnoop on ftrace killed with SIGKILL leaves its uprobes and
    instance; the next run of any tool removes them (they name a dead
    PID) and the kernel is as it was."""
    from kernstate import tracefs
    root = tracefs()
    p = clirun.start(["opensnoop", "--backend", "ftrace"])
    clirun.wait_for_text(p.stderr, "Tracing ", p)
    tag = "kerntrace_%d/" % p.pid

    def probes():
        with open(os.path.join(root, "uprobe_events")) as f:
            return [line for line in f.read().splitlines() if tag in line]
    left = probes()
    assert len(left) >= 1, "no uprobe of the running opensnoop"
    p.kill()
    p.communicate(timeout=30)
    assert probes() == left         # SIGKILL: nothing could clean up
    assert any(d.startswith("kerntrace-%d-" % p.pid)
               for d in os.listdir(os.path.join(root, "instances")))
    rc, out, err = clirun.run(["opensnoop", "--backend", "ftrace", "-d", "0.2", "-n", "nosuch"])
    assert rc == 0, err
    assert probes() == []
    assert not any(d.startswith("kerntrace-%d-" % p.pid)
                   for d in os.listdir(os.path.join(root, "instances")))


# Opens PATH N times once a line comes on stdin, says so, then stays until
# stdin closes (the ftrace backend reads a uid from /proc: a live process).
_UID_OPENER = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY))
print("done", flush=True)
sys.stdin.read()
"""


def _as_nobody_argv():
    """setpriv's command line to run this Python as nobody, or skip saying why."""
    import shutil
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a workload as an unprivileged user")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run(argv + ["-c", "pass"], cwd="/", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("this Python cannot run as an unprivileged user: %s"
                    % (probe.stdout.strip().splitlines() or ["status %d" % probe.returncode])[-1])
    return argv


@pytest.mark.live
def test_uid_filter_and_column():
    """-u 65534: exactly the opens of a process running as nobody, none of
    root's beside it, each with uid 65534 (-U's column); the ftrace backend
    says the uid is best-effort (read from /proc), eBPF reads it at the open."""
    import shutil
    import tempfile
    nobody = _as_nobody_argv()
    d = tempfile.mkdtemp(prefix="ktuid")
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, "kerntrace-uid-%s" % uuid.uuid4().hex[:8])
        open(path, "w").close()
        os.chmod(path, 0o644)
        workers = []
        for argv, n in ((nobody, 9), ([sys.executable], 4)):
            p = subprocess.Popen(argv + ["-c", _UID_OPENER, path, str(n)], cwd="/",
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 universal_newlines=True)
            workers.append((p, int(p.stdout.readline()), n))
        procs = []
        for b in backends():
            for args in (["-u", "65534", "--json"], ["-U"]):
                p = clirun.start(["opensnoop", "--backend", b, "*/" + os.path.basename(path)]
                                 + args)
                procs.append((b, args, p, clirun.wait_for_text(p.stderr, "Tracing", p)))
        for p, _pid, _n in workers:
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "done"
        time.sleep(1.5)              # the ftrace backend decodes while they live
        out = {}
        for b, args, p, err0 in procs:
            p.send_signal(2)
            stdout, err = p.communicate(timeout=60)
            assert p.returncode == 0, err0 + err
            out[(b, args[0])] = stdout
        for p, _pid, _n in workers:
            p.stdin.close()
            p.wait(timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    nobody_pid, n = workers[0][1], workers[0][2]
    root_pid, m = workers[1][1], workers[1][2]
    for b in backends():
        recs = [json.loads(line) for line in out[(b, "-u")].splitlines() if line.strip()]
        assert [(r["fields"]["pid"], r["fields"]["uid"], r["fields"]["path"]) for r in recs] \
            == [(nobody_pid, 65534, path)] * n, (b, recs)
        assert all(("uid" in r["best_effort"]) == (b == "ftrace") for r in recs), (b, recs)
        table = out[(b, "-U")].splitlines()
        assert table[0].startswith("UID   PID    COMM"), table
        got = sorted(tuple(line.split()[:2]) for line in table[1:])
        assert got == sorted([("65534", str(nobody_pid))] * n + [("0", str(root_pid))] * m), \
            (b, table)
