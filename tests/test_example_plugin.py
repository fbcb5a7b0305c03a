"""The example plugin package (examples/runqlat) installs with pip as a
third party's would, registers through the `kerntrace.plugins` entry-point
group, and runs live on both backends with the same results.

It is pip-installed with --target into a temporary directory (on
PYTHONPATH for the commands run), from a temporary copy of the example (pip
builds in the source tree), so a run leaves nothing installed and nothing in
the checkout."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import clirun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "runqlat")


class Installed(object):
    """The example installed under `target`: run its console script or
    `kerntrace runqlat` with the package importable."""

    def __init__(self, source, target):
        self.source = source
        self.target = target
        self.script = os.path.join(target, "bin", "runqlat")

    def env(self):
        env = dict(os.environ)
        env.pop("KERNTRACE_DISABLE_PLUGINS", None)
        env["PYTHONPATH"] = os.pathsep.join([self.target] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        return env

    def command(self, args, console_script=False):
        head = [self.script] if console_script else clirun.KERNTRACE + ["runqlat"]
        return head + list(args)

    def run(self, args, console_script=False, timeout=120):
        p = subprocess.run(self.command(args, console_script), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, env=self.env(),
                           cwd="/", timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def start(self, args, console_script=False):
        return subprocess.Popen(self.command(args, console_script), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                env=self.env(), cwd="/")


@pytest.fixture(scope="module")
def installed():
    # (not tmp_path_factory's: its base is root's alone, and the example's
    # tests also run as an unprivileged user)
    base = tempfile.mkdtemp(prefix="kerntrace-example-plugin-")
    os.chmod(base, 0o755)
    try:
        source = os.path.join(base, "source")
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__"))
        target = os.path.join(base, "site")
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--disable-pip-version-check", "--target", target, source],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=600)
        assert p.returncode == 0, "pip install of examples/runqlat failed:\n" + p.stdout
        yield Installed(source, target)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- installed, without the kernel ----------------------------------------
def test_listed_as_a_third_party_tool(installed):
    p = subprocess.run(clirun.KERNTRACE + ["list"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, env=installed.env())
    assert p.returncode == 0 and p.stderr == ""
    line = [l for l in p.stdout.splitlines() if l.split()[:1] == ["runqlat"]]
    assert line and line[0].endswith("[runqlat]"), p.stdout      # origin: the entry point


def test_not_there_without_plugins(installed):
    p = subprocess.run(clirun.KERNTRACE + ["--no-plugins", "runqlat", "-h"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=installed.env())
    assert p.returncode == 2 and "unknown tool 'runqlat'" in p.stderr


@pytest.mark.parametrize("console_script", (True, False), ids=("runqlat", "kerntrace-runqlat"))
def test_help_has_examples(installed, console_script):
    rc, out, err = installed.run(["-h"], console_script=console_script)
    assert rc == 0 and err == ""
    assert out.startswith("usage: runqlat ")
    assert "examples:\n    runqlat " in out and "--backend NAME" in out


@pytest.mark.parametrize("args, message", [
    (["-t", "0"], "runqlat: invalid thread id '0': expected a whole number > 0"),
    (["-L", "-C"], "runqlat: can only use -L or -C"),
    (["0"], "runqlat: invalid interval '0': expected a number of seconds > 0"),
    (["-x"], "runqlat: unrecognized arguments: -x"),
])
def test_bad_input_is_one_line(installed, args, message):
    rc, out, err = installed.run(args, console_script=True)
    assert (rc, out, err) == (2, "", message + "\n")


def test_print_program_names_the_sched_tracepoints(installed):
    rc, out, err = installed.run(["--backend", "ftrace", "--print-program", "-t", "42"])
    if rc != 0 and "needs root" in err:
        pytest.skip("the ftrace backend's check needs root: %s" % err.strip())
    assert rc == 0, err
    for event in ("sched_wakeup_new", "sched_wakeup", "sched_switch"):
        assert "events/sched/%s/enable" % event in out
    assert "next_pid != 0" in out and "next_pid == 42" in out


def example_test_names():
    """The test functions in the example's tests/."""
    names = []
    for name in os.listdir(os.path.join(EXAMPLE, "tests")):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(EXAMPLE, "tests", name)) as f:
                names += re.findall(r"^def (test_\w+)", f.read(), re.M)
    return names


def run_example_tests(installed, prefix=()):
    p = subprocess.run(list(prefix) + [sys.executable, "-m", "pytest", "-v", "-p",
                                       "no:cacheprovider",
                                       os.path.join(installed.source, "tests")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       env=dict(installed.env(), PYTHONDONTWRITEBYTECODE="1"),
                       cwd="/", timeout=300)     # not the source: the installed package
    assert p.returncode == 0, p.stdout
    assert not re.search(r" (SKIPPED|XFAIL|ERROR)", p.stdout), p.stdout
    for name in example_test_names():
        assert re.search(r"::%s\b\S* PASSED" % name, p.stdout), (name, p.stdout)
    return p.stdout


def test_the_example_package_tests_pass(installed):
    """Its own tests (docs/plugins.md section 8), run as its author would,
    against the installed package: kerntrace's pytest fixture replays its
    recording (tests/data) and evaluates events written by hand."""
    run_example_tests(installed)


def test_the_example_package_tests_pass_without_root(installed):
    """The same as an unprivileged user: replaying a recording with the
    shipped fixture needs neither root nor tracefs."""
    if os.geteuid() != 0:
        run_example_tests(installed)
        return
    if not shutil.which("setpriv"):
        pytest.skip("running as root, and no setpriv to run the tests as an unprivileged user")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(nobody + [sys.executable, "-c", "import kerntrace.core.api"],
                           cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60)
    if probe.returncode != 0:     # e.g. a checkout under a home only root may enter
        pytest.skip("this Python and kerntrace cannot run as an unprivileged user: %s"
                    % (probe.stdout.strip().splitlines() or ["status %d" % probe.returncode])[-1])
    run_example_tests(installed, prefix=nobody)


def test_man_page_renders():
    from test_tool_smoke import assert_man_page_renders
    assert_man_page_renders(os.path.join(EXAMPLE, "man", "man8", "runqlat.8"))


def test_example_output_file():
    with open(os.path.join(EXAMPLE, "runqlat_example.txt")) as f:
        text = f.read()
    assert "# runqlat" in text and "usecs               : count     distribution" in text


# -- live: both backends over one workload ----------------------------------
SPIN_MS = 5
WORKLOAD = """
import os, sys, time
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    time.sleep(0.001)
    end = time.perf_counter() + %f
    while time.perf_counter() < end:
        pass
""" % (SPIN_MS / 1000.0)


def sleeper(n):
    """A process that, once released by a line on its stdin, sleeps 1 ms n
    times and runs SPIN_MS after each wakeup: its thread is woken once by
    the release and once per sleep, each wakeup ends in a switch to it, and
    each switch away from it comes SPIN_MS or more after that."""
    p = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    return p, int(p.stdout.readline())


def one_histogram(out):
    lines = [json.loads(l) for l in out.splitlines()]
    assert [l["type"] for l in lines] == ["histogram"], out
    report = lines[0]
    assert report["tool"] == "runqlat" and report["key_names"] == []
    hists = report["histograms"]
    assert len(hists) == 1 and hists[0]["unit"] == "usecs" and hists[0]["scale"] == "log2"
    return report, hists[0]


def check_log2_shape(hist):
    """What a reader of the histogram takes for granted: bcc's log2 rows,
    counts adding up, a sum no row contradicts."""
    buckets = hist["buckets"]
    assert buckets[0]["low"] == 0 and buckets[0]["high"] == 1
    for i, b in enumerate(buckets[1:], 1):
        assert (b["low"], b["high"]) == (1 << i, (1 << (i + 1)) - 1)
    assert sum(b["count"] for b in buckets) == hist["count"]
    assert sum(b["count"] * b["low"] for b in buckets) <= hist["sum"]
    assert hist["sum"] <= sum(b["count"] * b["high"] for b in buckets)


@pytest.mark.live
@pytest.mark.ebpf
def test_both_backends_at_once_over_one_workload(installed):
    n = 200
    work, tid = sleeper(n)
    tools = {}
    try:
        # The console script on eBPF, `kerntrace runqlat` on ftrace: both
        # launch paths, tracing the same wakeups at the same time.
        tools["ebpf"] = installed.start(["--backend", "ebpf", "--json", "-t", str(tid)],
                                        console_script=True)
        tools["ftrace"] = installed.start(["--backend", "ftrace", "--json", "-t", str(tid)])
        for p in tools.values():
            clirun.wait_for_stderr_line(p, "Ctrl-C to end")
        work.stdin.write(b"go\n")
        work.stdin.flush()
        assert work.wait(timeout=60) == 0
        time.sleep(0.5)     # let the last switch reach both readers
    finally:
        if work.poll() is None:
            work.kill()
        for p in tools.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
    results = {}
    for name, p in tools.items():
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "Traceback" not in err
        results[name] = one_histogram(out)
    (rep_e, hist_e), (rep_f, hist_f) = results["ebpf"], results["ftrace"]
    assert rep_e["backend"] == "ebpf" and rep_f["backend"] == "ftrace"
    lost = rep_e["lost"] + rep_f["lost"]
    for report, hist in results.values():
        check_log2_shape(hist)
        # The release and the n sleeps wake the thread; a wakeup the kernel
        # dropped (reported as lost) may be missing.
        assert n - report["lost"] <= hist["count"] <= n + 1, (report, hist)
        # Timed to the switch *to* the thread: mostly well below the SPIN_MS
        # it then runs (a pair ending at its switch away would never be).
        quick = sum(b["count"] for b in hist["buckets"] if b["high"] < SPIN_MS * 1000 * 4 // 5)
        assert quick * 2 >= hist["count"], (report, hist)
    assert abs(hist_e["count"] - hist_f["count"]) <= lost
    # Both timed the same wakeups; the clocks read at slightly different
    # moments may move a latency near a power of two to the next row.
    moved = sum(abs(a["count"] - b["count"]) for a, b in
                zip(hist_e["buckets"], hist_f["buckets"]))
    moved += sum(b["count"] for b in hist_e["buckets"][len(hist_f["buckets"]):])
    moved += sum(b["count"] for b in hist_f["buckets"][len(hist_e["buckets"]):])
    assert moved // 2 <= lost + max(2, n // 20), (hist_e, hist_f)


@pytest.mark.live
@pytest.mark.parametrize("backend", [pytest.param("ftrace"),
                                     pytest.param("ebpf", marks=pytest.mark.ebpf)])
def test_a_recording_replays_to_what_a_live_run_counts(installed, backend, tmp_path):
    """`kerntrace record` and a live run trace the same workload at once;
    the recording replayed with --input (on another run, as any user
    could) counts the wakeups the live run counted."""
    n = 100
    work, tid = sleeper(n)
    recording = str(tmp_path / "runqlat.rec")
    live = recorder = None
    try:
        live = installed.start(["--backend", backend, "--json", "-t", str(tid)])
        clirun.wait_for_stderr_line(live, "Ctrl-C to end")
        recorder = subprocess.Popen(clirun.KERNTRACE + ["record", "-o", recording, "runqlat",
                                                        "-t", str(tid)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    universal_newlines=True, env=installed.env(), cwd="/")
        clirun.wait_for_stderr_line(recorder, "Ctrl-C to stop")
        work.stdin.write(b"go\n")
        work.stdin.flush()
        assert work.wait(timeout=60) == 0
        time.sleep(0.5)     # let the last switch reach both readers
    finally:
        if work.poll() is None:
            work.kill()
        for p in (live, recorder):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
    out, err = live.communicate(timeout=60)
    assert live.returncode == 0 and "Traceback" not in err, err
    live_report, live_hist = one_histogram(out)
    out, err = recorder.communicate(timeout=60)
    assert recorder.returncode == 0 and out == "" and "Traceback" not in err, err
    assert re.search(r"^kerntrace: recorded \d+ trace lines to ", err, re.M), err

    replays = []
    for console_script in (True, False):
        rc, out, err = installed.run(["--json", "--input", recording],
                                     console_script=console_script)
        assert rc == 0 and "Traceback" not in err, err
        replays.append(one_histogram(out))
    (report, hist), (_report2, hist2) = replays
    assert report["backend"] == "ftrace" and hist == hist2
    check_log2_shape(hist)
    assert n - report["lost"] <= hist["count"] <= n + 1, (report, hist)
    assert abs(hist["count"] - live_hist["count"]) <= report["lost"] + live_report["lost"], \
        (report, live_report)
