"""The command line contract: exit statuses, one-line errors, list, doctor."""

import json
import re

import pytest

import clirun
from clirun import run


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_no_command_is_a_usage_error():
    rc, out, err = run([])
    assert rc == 2 and "usage: kerntrace" in err


def test_unknown_tool():
    rc, out, err = run(["nosuchtool"])
    assert rc == 2 and "unknown tool 'nosuchtool'" in one_line(err)


def test_version():
    rc, out, err = run(["version"])
    assert rc == 0 and out.startswith("kerntrace ")


@pytest.mark.parametrize("args", [["tpcount"], ["tpcount", "not a tracepoint"],
                                  ["tpcount", "-i", "-1", "sched:sched_switch"],
                                  ["tpcount", "--by", "nope", "sched:sched_switch"],
                                  ["tpcount", "-p", "0", "sched:sched_switch"]])
def test_bad_arguments_are_one_line_exit_2(args):
    rc, out, err = run(args)
    assert rc == 2, (out, err)
    one_line(err)


def test_help_shows_examples():
    rc, out, err = run(["tpcount", "-h"])
    assert rc == 0 and "examples:" in out and "tpcount block:block_rq_issue" in out


def test_list_shows_builtin_tools():
    rc, out, err = run(["list"])
    assert rc == 0 and "tpcount" in out


def test_doctor_json_is_a_true_picture():
    rc, out, err = run(["doctor", "--json"])
    assert rc == 0, err
    d = json.loads(out)
    names = {(c["backend"], c["name"]) for c in d["capabilities"]}
    assert (None, "root") in names and (None, "tracefs") in names
    assert any(t["tool"] == "tpcount" for t in d["tools"])
    import os
    root = [c for c in d["capabilities"] if c["name"] == "root"][0]
    assert root["ok"] == (os.geteuid() == 0)


@pytest.mark.parametrize("tool", ["iolatency", "biolatency", "biosnoop", "iosnoop", "bitesize"])
def test_replay_without_count_ends_at_the_end_of_the_file(tool):
    import os
    trace = os.path.join(os.path.dirname(__file__), "data", "block", "iolatency_boundary_4x.trace")
    rc, out, err = run([tool, "--input", trace], timeout=60)
    assert rc == 0, err
    assert out.strip()


def test_not_root_is_one_clear_line():
    rc, out, err = clirun.run_as_nobody(["biolatency", "1", "1"])
    assert rc == 1 and out == ""
    assert one_line(err).startswith("biolatency: must be run as root")


def test_not_root_iolatency_words_it_as_perf_tools():
    rc, out, err = clirun.run_as_nobody(["iolatency", "1", "1"])
    assert rc == 1
    assert err.splitlines() == ["ERROR: accessing tracing. Root user? Kernel has FTRACE?",
                                "    debugfs mounted? (mount -t debugfs debugfs /sys/kernel/debug)"]


@pytest.mark.parametrize("args", [["doctor"], ["list"], ["tpcount", "-h"]])
def test_closed_stdout_pipe_ends_quietly(args):
    """stdout is a pipe whose reader is already gone (`| head` that exited)."""
    import os
    import subprocess
    from clirun import KERNTRACE, env
    r, w = os.pipe()
    os.close(r)
    p = subprocess.Popen(KERNTRACE + args, stdout=w, stderr=subprocess.PIPE, env=env())
    os.close(w)
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and err == ""


@pytest.mark.live
def test_closed_pipe_while_tracing_ends_quietly_and_restores():
    """`tpcount ... | head -3`: the reader goes away while tracing."""
    import subprocess
    from clirun import KERNTRACE, env
    import kernstate
    p = subprocess.Popen(KERNTRACE + ["tpcount", "--backend", "ftrace", "-i", "0.05",
                                      "sched:sched_switch"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    for _ in range(3):
        p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert "Traceback" not in err and "rror" not in err, err
    assert not [s for s in kernstate.kerntrace_state() if str(p.pid) in s]


@pytest.mark.ebpf
@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_ctrl_c_while_starting_leaves_nothing(delay):
    """Ctrl-C at some point of start-up (imports, probing, compiling,
    attaching): a quiet exit, no traceback, nothing left in the kernel (the
    conftest leak check also runs)."""
    import signal
    import time
    import kernstate
    from clirun import start
    p = start(["biolatency", "--backend", "ebpf", "1"])
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode in (0, 130), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert not [s for s in kernstate.kerntrace_state() if str(p.pid) in s]


@pytest.mark.parametrize("script, entry", [("kerntrace", "kerntrace"), ("iolatency", "tool"),
                                           ("iolatency", "as_invoked")])
def test_ctrl_c_while_python_imports_kerntrace_is_quiet(script, entry):
    """A Ctrl-C that lands while the console script is still importing
    kerntrace (made to land there: an import hook signals the process when
    the CLI's modules load) ends it with 130 and prints nothing."""
    import subprocess
    import sys
    from clirun import env
    code = "\n".join([
        "import os, signal, sys",
        "class SignalOnImport(object):",
        "    def find_spec(self, name, path, target=None):",
        "        if name == 'kerntrace.core.pluginhost':",
        "            os.kill(os.getpid(), signal.SIGINT)",
        "        return None",
        "sys.meta_path.insert(0, SignalOnImport())",
        "sys.argv = [%r, '-h']" % script,
        "from kerntrace.core import commands",
        "commands.%s()" % entry,
    ])
    p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, env=env(), timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (130, "", "")


@pytest.mark.parametrize("argv, words", [
    (["-i", "inf"], "invalid interval 'inf'"),
    (["-i", "nan"], "invalid interval 'nan'"),
    (["-d", "0"], "invalid duration '0'"),
])
def test_tpcount_rejects_intervals_that_are_no_number_of_seconds(argv, words):
    from kerntrace.core.pluginhost import PluginHost
    from kerntrace.core.errors import UsageError
    tool = PluginHost(load_third_party=False).tools()["tpcount"]
    with pytest.raises(UsageError, match=re.escape(words)):
        tool.parse_args(argv + ["sched:sched_switch"])
