"""The plugin author's test kit: kerntrace.core.testing (replay, evaluate)
and the `kerntrace_offline` pytest fixture, registered through the pytest11
entry point of kerntrace's distribution (setup.cfg), so that installing
kerntrace is all a plugin's tests need.

The example package's own tests (examples/runqlat/tests, run by
test_example_plugin.py, also without root) use the fixture on a real
recording; here it is held to what the command line does."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import clirun
from kerntrace.core import api
from kerntrace.core.pluginhost import _metadata_module

HERE = os.path.dirname(os.path.abspath(__file__))
PLAIN_TRACE = os.path.join(HERE, "data", "traces", "replay-block-6.18.txt")


def cli(args):
    p = subprocess.run(clirun.KERNTRACE + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd="/",
                       env=clirun.env())
    return p.returncode, p.stdout, p.stderr


# -- the pytest plugin ---------------------------------------------------------
def test_installing_kerntrace_registers_the_pytest_plugin():
    eps = set((ep.name, ep.value) for dist in _metadata_module().distributions()
              if dist.metadata["Name"] == "kerntrace"
              for ep in dist.entry_points if ep.group == "pytest11")
    assert eps == {("kerntrace", "kerntrace.core.pytest_plugin")}


def test_the_pytest_plugin_loads_nothing_of_kerntrace():
    """pytest imports it in every run where kerntrace is installed: loading
    it must not import the runner, plugins or backends (nor bcc)."""
    code = ("import sys; import kerntrace.core.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.startswith('kerntrace') or m == 'bcc'))")
    out = subprocess.check_output([sys.executable, "-c", code], universal_newlines=True)
    assert out.strip() == "['kerntrace', 'kerntrace.core', 'kerntrace.core.pytest_plugin']"


def run_pytest(tmp_path, test_code, *options):
    (tmp_path / "test_it.py").write_text(textwrap.dedent(test_code))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                       + list(options) + [str(tmp_path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, cwd=str(tmp_path),
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), timeout=300)
    return p.returncode, p.stdout


def test_a_plugin_test_gets_the_fixture_without_any_import(tmp_path):
    rc, out, err = cli(["biolatency", "--json", "--input", PLAIN_TRACE])
    count = json.loads(out)["histograms"][0]["count"]
    rc, out = run_pytest(tmp_path, """
        def test_replay(kerntrace_offline):
            run = kerntrace_offline.replay("biolatency", %r)
            assert run.report.data.histograms[()].count == %d
    """ % (PLAIN_TRACE, count))
    assert rc == 0 and re.search(r"^1 passed", out, re.M), out


def test_runs_that_do_not_use_it_are_not_affected(tmp_path):
    rc, out = run_pytest(tmp_path, "def test_nothing():\n    pass\n")
    assert rc == 0 and re.search(r"^1 passed", out, re.M), out
    rc, out = run_pytest(tmp_path, "def test_nothing():\n    pass\n", "-p", "no:kerntrace")
    assert rc == 0 and re.search(r"^1 passed", out, re.M), out
    rc, out = run_pytest(tmp_path, "def test_it(kerntrace_offline):\n    pass\n",
                         "-p", "no:kerntrace")
    assert rc != 0 and "fixture 'kerntrace_offline' not found" in out, out


# -- replay: what `TOOL ARGS --input FILE` does --------------------------------
@pytest.mark.parametrize("argv", [["biolatency"], ["biolatency", "-D"], ["bitesize"],
                                  ["iolatency"], ["biolatency", "--json"]])
def test_replay_prints_what_the_command_prints(kerntrace_offline, argv):
    rc, out, err = cli(argv + ["--input", PLAIN_TRACE])
    run = kerntrace_offline.replay(argv[0], PLAIN_TRACE, *argv[1:])
    assert (run.status, run.err) == (rc, err)
    if "--json" in argv:
        # (each report carries the wall-clock times of its interval)
        def strip(text):
            return [{k: v for k, v in json.loads(l).items() if not k.startswith("interval_")}
                    for l in text.splitlines()]
        assert strip(run.out) == strip(out)
    else:
        assert run.out == out
    assert run.reports and all(r.backend == "ftrace" and r.tool == argv[0] for r in run.reports)


def test_the_reports_are_the_printed_ones(kerntrace_offline):
    run = kerntrace_offline.replay("biolatency", PLAIN_TRACE, "--json")
    (line,) = [json.loads(l) for l in run.out.splitlines()]
    hist = run.report.data.histograms[()]
    assert (hist.count, hist.total) == (line["histograms"][0]["count"],
                                        line["histograms"][0]["sum"])
    assert (run.report.lost, run.report.unmatched) == (line["lost"], line["unmatched"])


class IssueCount(api.Tool):
    """A tool of the test's own, never installed: replay takes Tool objects."""
    name = "issuecount"
    summary = "Count block I/O issues per rwbs."

    def measurement(self, args):
        return api.Measurement(
            events=[api.Event("issue", api.Tracepoint("block", "block_rq_issue"),
                              fields=[api.Field("rwbs", api.STR)])],
            aggregate=api.Count(keys=("rwbs",)), schedule=api.report_at_end())

    def printer(self, args, out, err):
        return api.CountTablePrinter(out, err, key_header="RWBS")


def test_replay_runs_a_tool_object_on_a_plain_trace_file():
    run = api.replay(IssueCount(), PLAIN_TRACE)
    counted = {}
    with open(PLAIN_TRACE) as f:
        for rwbs in re.findall(r" block_rq_issue: \S+ (\S+) ", f.read()):
            counted[(rwbs,)] = counted.get((rwbs,), 0) + 1
    assert run.report.data.counts == counted
    assert run.report.lost == 5        # the trace's "[LOST 5 EVENTS]" line


def test_a_failed_replay_says_what_the_command_says(kerntrace_offline, tmp_path):
    with pytest.raises(api.ReplayFailed, match=r"cannot read .*no-such-file"):
        kerntrace_offline.replay("biolatency", str(tmp_path / "no-such-file"))
    run = kerntrace_offline.replay("biolatency", PLAIN_TRACE, "-Q", "-x", check=False)
    rc, out, err = cli(["biolatency", "-Q", "-x", "--input", PLAIN_TRACE])
    assert (run.status, run.out, run.err) == (rc, out, err) and rc == 2
    assert len(err.splitlines()) == 1
    with pytest.raises(LookupError, match="no tool 'nosuchtool' is installed"):
        kerntrace_offline.replay("nosuchtool", PLAIN_TRACE)


# -- evaluate: the reference evaluator on events written by hand ----------------
def test_evaluate_on_a_hand_written_stream(kerntrace_offline):
    TraceEvent = kerntrace_offline.TraceEvent

    def io(name, ts, sector):
        fields = {"dev": 8, "sector": sector, "nr_sector": 8, "rwbs": "W"}
        fields.update({"bytes": 4096} if name == "start" else {"error": 0})
        return TraceEvent(name, ts, fields=fields)

    m = kerntrace_offline.measurement("biolatency", "-D")
    reports = kerntrace_offline.evaluate(m, [
        io("start", 1000, 64), kerntrace_offline.Lost(2), io("done", 6000, 64),
        kerntrace_offline.IntervalEnd(),
        io("done", 9000, 72),              # its start was before: unmatched
    ])
    assert [(r.lost, r.unmatched) for r in reports] == [(2, 0), (0, 1)]
    (hist,) = reports[0].data.histograms.values()
    assert (hist.count, hist.total) == (1, 5)          # 5000 ns, in usecs
    assert api.evaluate is kerntrace_offline.evaluate
