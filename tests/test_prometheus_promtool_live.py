"""`promtool check metrics` (the distribution's prometheus package) passes
on every built-in tool's Prometheus output: a short live run of each tool
while a small workload runs, on the backend `auto` picks (eBPF where bcc
works) and on the ftrace backend.  promtool's linter is what fails
when a name breaks Prometheus' conventions (a counter without _total, a
non-base unit such as _usecs, a metric named after the tool's unit ...)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

import clirun
import kernstate
import workloads
from kerntrace.core.pluginhost import PluginHost

pytestmark = [pytest.mark.live]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = PluginHost(load_third_party=False).tools()

# Command lines that end an interval within a second where the tool has
# intervals, and trace what WORKLOAD below does.
ARGS = {
    "argdist": ["-i", "1", "-H", "t:block:block_rq_issue():u32:bytes"],
    "biolatency": ["-D", "1"],
    "biosnoop": [],
    "bitesize": [],
    "execsnoop": [],
    "exitsnoop": [],
    "funccount": ["-i", "1", "c:getppid"],
    "funclatency": ["-i", "1", "c:getppid"],
    "funcslower": ["-u", "0", "c:getppid"],
    "iolatency": ["1"],
    "iosnoop": [],
    "killsnoop": [],
    "opensnoop": [],
    "syscount": ["-L", "-i", "1"],
    "tpcount": ["-i", "1", "--by", "comm", "block:block_rq_issue", "syscalls:sys_enter_getppid"],
    "tpoint": ["block:block_rq_issue"],
    "vfsstat": ["1"],
}
CASES = [(tool, backend) for backend in ("auto", "ftrace") for tool in sorted(TOOLS)]


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    assert path, "promtool missing: scripts/provision-test-host installs prometheus"
    return path


@pytest.fixture(scope="module")
def loopdev():
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    with workloads.loop_device(size_mb=8, directory="/dev/shm") as dev:
        yield dev[0]


def workload(dev):
    """Block I/O, execs, exits, opens, getppid() calls and a kill(0)."""
    workloads.direct_writes(dev, 8)
    workloads.direct_reads(dev, 4)
    subprocess.check_call([sys.executable, "-c",
                           "import os\nfor _ in range(50): os.getppid()\n"
                           "os.kill(os.getpid(), 0)\nopen(os.devnull).close()\n"])


def test_every_builtin_tool_has_a_command_line():
    assert sorted(ARGS) == sorted(TOOLS)


@pytest.mark.parametrize("tool,backend", CASES)
def test_promtool_accepts_the_output(tool, backend, promtool, loopdev):
    d = tempfile.mkdtemp(prefix="kerntrace-promtool-")
    path = os.path.join(d, "%s.prom" % tool)
    try:
        p = clirun.start([tool] + ARGS[tool] + ["--backend", backend,
                                                "--prometheus-file", path])
        try:
            clirun.wait_for_stderr_line(p, "Tracing with", timeout=120)
            for _ in range(2):
                workload(loopdev)
            workloads.wait_for(lambda: os.path.exists(path), timeout=3)
        finally:
            p.send_signal(signal.SIGINT)
            out, err = clirun.finish_interrupted(p)
        assert p.returncode == 0, err
        assert out == ""
        with open(path) as f:
            text = f.read()
        assert '{tool="%s"' % tool in text
        check = subprocess.run([promtool, "check", "metrics"], input=text,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
        assert check.returncode == 0, check.stdout + "\n" + text
        # What promtool 2.42 does not lint: histograms in base units, named
        # for what they measure (argdist's values are the user's expression).
        for line in text.splitlines():
            if line.startswith("# TYPE ") and line.endswith(" histogram") and tool != "argdist":
                family = line.split()[2]
                assert family.endswith(("_seconds", "_bytes")), line
                assert tool not in family, line
        # ... and documented.
        with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
            doc = f.read()
        for line in text.splitlines():
            if line.startswith("# TYPE ") and tool != "argdist":
                assert "`%s`" % line.split()[2] in doc, line
    finally:
        shutil.rmtree(d, ignore_errors=True)
