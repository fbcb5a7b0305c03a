"""deploy/ansible: the playbook installs kerntrace on localhost (in a
virtualenv, or as the single-file build), runs a tool for a number of
intervals with --json, fetches the output and merges it into the fleet
view; the fleet view's totals are the host's own."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import kernstate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOK = os.path.join(ROOT, "deploy", "ansible", "fleet.yml")
COUNT = 2

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _host():
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("ansible-playbook") is None:
        pytest.skip("ansible-playbook is not installed (scripts/provision-test-host installs "
                    "the distribution's ansible)")


def playbook(tmp_path, **extra):
    results = tmp_path / "results"
    variables = dict(extra, kerntrace_results_dir=str(results),
                     kerntrace_remote_output=str(tmp_path / "remote.json"),
                     kerntrace_tool="tpcount", kerntrace_interval_style="options",
                     kerntrace_tool_args=["--backend", "ftrace", "sched:sched_switch"],
                     kerntrace_interval=0.5, kerntrace_count=COUNT,
                     kerntrace_merge_command=os.path.join(os.path.dirname(sys.executable),
                                                          "kerntrace"))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"))
    p = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", PLAYBOOK,
                        "-e", json.dumps(variables)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:]
    return results


def check_fleet_view(results):
    with open(str(results / "localhost.json")) as f:
        intervals = [json.loads(line) for line in f if line.strip()]
    assert len(intervals) == COUNT and {o["tool"] for o in intervals} == {"tpcount"}
    host_total = sum(c["count"] for o in intervals for c in o["counts"])
    assert host_total > 0
    with open(str(results / "fleet.json")) as f:
        fleet = json.load(f)
    assert fleet["type"] == "counts" and fleet["tool"] == "tpcount"
    assert fleet["hosts"] == [{"host": intervals[0]["host"], "count": host_total, "files": 1}]
    assert sum(c["count"] for c in fleet["counts"]) == host_total
    text = (results / "fleet.txt").read_text()
    assert "EVENT" in text and "sched_switch" in text
    assert [intervals[0]["host"], str(host_total)] in [line.split() for line in text.splitlines()]


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist") / "kerntrace.pyz")
    subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "build-zipapp"), out],
                          stdout=subprocess.DEVNULL)
    return out


def host_python_makes_venvs():
    """What the role's auto choice probes on the host (here: this one)."""
    return subprocess.call(["python3", "-c", "import ensurepip, venv"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def install_vars(tmp_path, pyz, method):
    return dict(kerntrace_install=method, kerntrace_pip_package=ROOT,
                kerntrace_venv=str(tmp_path / "venv"), kerntrace_zipapp_src=pyz,
                kerntrace_zipapp=str(tmp_path / "opt" / "kerntrace.pyz"))


def installed(tmp_path):
    return {m for m, path in (("venv", tmp_path / "venv" / "bin" / "kerntrace"),
                              ("zipapp", tmp_path / "opt" / "kerntrace.pyz"))
            if os.path.exists(str(path))}


def test_auto_install_picks_what_the_host_can_do_runs_and_merges(tmp_path, pyz):
    results = playbook(tmp_path, **install_vars(tmp_path, pyz, "auto"))
    assert installed(tmp_path) == {"venv" if host_python_makes_venvs() else "zipapp"}
    check_fleet_view(results)


def test_the_other_install_method_runs_and_merges(tmp_path, pyz):
    method = "zipapp" if host_python_makes_venvs() else "venv"
    results = playbook(tmp_path, **install_vars(tmp_path, pyz, method))
    assert installed(tmp_path) == {method}
    check_fleet_view(results)
