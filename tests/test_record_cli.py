"""`kerntrace record` refuses what it cannot do in one line on stderr,
with the usage status for a bad command line, and creates no file."""

import os

import pytest

import clirun
import kernstate

from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
from kerntrace.backends.ftrace.record import recording_plan
from kerntrace.core.errors import Unsupported
from kerntrace.core.model import Event, KernelFunction, Tracepoint, UserFunction


@pytest.mark.parametrize("argv, status, words", [
    ([], 2, "the following arguments are required: tool"),
    (["nosuchtool"], 2, "unknown tool 'nosuchtool'"),
    (["-d", "soon", "iolatency"], 2, "not a number of seconds: 'soon'"),
    (["-d", "0", "iolatency"], 2, "must be between 0 and a year"),
    (["--buffer-kb", "0", "iolatency"], 2, "--buffer-kb must be"),
    (["iolatency", "--input", "x.rec"], 2, "--input replays a recording instead"),
])
def test_bad_command_line(tmp_path, argv, status, words):
    rc, out, err = clirun.run(["record"] + argv, cwd=str(tmp_path))
    assert (rc, out) == (status, "")
    assert err.count("\n") == 1 and words in err and err.startswith("kerntrace: "), err
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.live
def test_unwritable_output_is_one_line_and_leaves_nothing(tmp_path):
    why = kernstate.live_skip_reason()
    if why:
        pytest.skip(why)
    before = kernstate.snapshot()
    target = str(tmp_path / "no" / "such" / "dir.rec")
    rc, out, err = clirun.run(["record", "-o", target, "-d", "1", "iolatency"])
    assert (rc, out) == (1, "")
    assert err == "kerntrace: cannot write %s: No such file or directory\n" % target
    assert kernstate.leaks(before) == []


def test_without_root_it_says_why_in_one_line(tmp_path):
    rc, out, err = clirun.run_as_nobody(["record", "-o", "/tmp/x.rec", "-d", "1", "iolatency"])
    assert (rc, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("kerntrace: cannot record here: ") \
        and "root" in err, err


def test_events_of_the_function_tracer_are_refused_probe_events_recorded():
    probe = KernelFunction("vfs_read")
    ev = ResolvedEvent(Event("call", probe), probe, "ftrace", "function")
    with pytest.raises(Unsupported, match="event call: this host provides it as k:vfs_read "
                                          "through the function tracer; a recording holds "
                                          "tracepoints and probe events only"):
        recording_plan(Plan([ev]))
    probe = UserFunction("/usr/lib/libfake.so.1", "fake_fn")
    ev = ResolvedEvent(Event("call", probe), probe, "kerntrace_1", "kerntrace_1_0",
                       probe_def="p:kerntrace_1/kerntrace_1_0 /usr/lib/libfake.so.1:0x10")
    assert list(recording_plan(Plan([ev])).events) == [ev]
    tp = Tracepoint("block", "block_rq_issue")
    plan = recording_plan(Plan([ResolvedEvent(Event("issue", tp), tp, "block",
                                              "block_rq_issue")], task_events=[]))
    assert plan.read_path == "text" and plan.task_events is None


@pytest.mark.parametrize("argv, status, first", [
    (["biolatency", "--bogus"], 2, "biolatency: unrecognized arguments: --bogus"),
    (["iolatency", "-d", "nosuchdisk"], 1, "iolatency: no such disk 'nosuchdisk'"),
    (["iolatency", "-h"], 0, "USAGE: iolatency "),       # perf-tools' usage, as iolatency -h
])
def test_the_tools_own_command_line_errors_in_its_words(tmp_path, argv, status, first):
    rc, out, err = clirun.run(["record"] + argv, cwd=str(tmp_path))
    assert (rc, out) == (status, "")
    assert err.startswith(first), err
    assert os.listdir(str(tmp_path)) == []
