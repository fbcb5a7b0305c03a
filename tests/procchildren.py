"""A parent that forks and execs known children, for execsnoop and
exitsnoop's live tests: each child execs /bin/sh with known arguments (one
with spaces) and ends with a known exit code or signal; one child's exec
fails (ENOENT) and it exits with FAILED_EXEC_CODE.

    kids = Children(tag); kids.release(); kids.wait() -> {pid: spec}

Each shell lives LIFETIME_S before it ends, so /proc still shows its
arguments when a tracer reports its exec a fraction of a second later.
"""

import json
import subprocess
import sys

LIFETIME_S = 2.5
FAILED_EXEC_CODE = 42
MISSING = "/nonexistent/kerntrace-no-such-program"

# (how it ends, what it is): ("code", N) or ("signal", SIG)
ENDINGS = [("code", 0), ("code", 3), ("code", 7), ("signal", 15), ("signal", 9)]

_PARENT = r"""
import json, os, sys
tag, lifetime, missing, failed_code = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
endings = json.loads(sys.argv[5])
print(os.getpid(), flush=True)
sys.stdin.readline()
kids = {}
for i, (how, value) in enumerate(endings):
    end = "exit %d" % value if how == "code" else "kill -%d $$" % value
    argv = ["sh", "-c", "sleep %s; %s" % (lifetime, end), "kt-%s-%d" % (tag, i),
            "arg with spaces %d" % i]
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sh", argv)
    kids[pid] = {"how": how, "value": value, "args": " ".join(argv), "exec_ret": 0}
pid = os.fork()
if pid == 0:
    try:
        os.execv(missing, [missing, "kt-%s-missing" % tag])
    finally:
        os._exit(failed_code)
kids[pid] = {"how": "code", "value": failed_code, "args": None, "exec_ret": -2}
for pid in list(kids):
    _, status = os.waitpid(pid, 0)
    kids[pid]["status"] = status
print(json.dumps(kids), flush=True)
"""


class Parent(object):
    """A Python parent process: runs `script` with the tag and `args`,
    prints its PID, forks its children once released ("go" on stdin) and
    prints {pid: spec} of them as JSON on its last line.  run_tracers()
    drives one through release(), wait() and kill()."""

    def __init__(self, tag, script, args):
        self.tag = tag
        self.p = subprocess.Popen([sys.executable, "-c", script, tag] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  universal_newlines=True)
        self.pid = int(self.p.stdout.readline())

    def release(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def children(self, timeout=60):
        """{pid: spec} the parent printed once all its children ended."""
        out, _ = self.p.communicate(timeout=timeout)
        return {int(pid): spec for pid, spec in json.loads(out.strip().splitlines()[-1]).items()}

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class Children(Parent):
    def __init__(self, tag, endings=ENDINGS):
        Parent.__init__(self, tag, _PARENT, [str(LIFETIME_S), MISSING, str(FAILED_EXEC_CODE),
                                             json.dumps(endings)])

    def wait(self, timeout=60):
        """{pid: {"how", "value", "args", "exec_ret", "status"}} once all ended."""
        kids = self.children(timeout)
        assert self.p.returncode == 0
        for spec in kids.values():         # what the parent's waitpid() saw
            st = spec["status"]
            if spec["how"] == "signal":
                assert st & 0x7F == spec["value"], spec
            else:
                assert st & 0x7F == 0 and st >> 8 == spec["value"], spec
        return kids


# ---------------------------------------------------------------------------
# Running tracers around the children.
def run_tracers(kids, tracers):
    """Start `tracers` [(name, argv, stream, ready needle)] at once, release
    the children once all of them trace, wait for the children, stop the
    tracers with SIGINT and check they left nothing in the kernel; returns
    (children, {name: (stdout, stderr, rc)})."""
    import clirun
    import kernstate
    before = kernstate.snapshot()
    try:
        children, out = clirun.trace_around(tracers, lambda: (kids.release(), kids.wait())[1],
                                            settle=1.0)   # a report period or two
    finally:
        kids.kill()
    # every run leaves the kernel as it found it
    assert kernstate.leaks(before) == []
    return children, out
