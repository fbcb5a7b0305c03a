"""The command line contract: exit statuses, one-line errors, list, doctor."""

import json

import pytest

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
