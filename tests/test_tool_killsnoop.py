"""killsnoop without a kernel: its command line, measurement, bad input and
bcc's column layout."""

import io
import os
import signal

import pytest

from clirun import run
from kerntrace.core.model import Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.table import EventTablePrinter
from kerntrace.core.results import Record, Report
from kerntrace.plugins.killsnoop import KillSnoop, killsnoop_columns, target_text


def measure(argv):
    tool = KillSnoop()
    return tool.measurement(tool.parse_args(argv))


def describe(alternative):
    return [p.describe() for p in alternative.probes]


def test_kill_tkill_and_tgkill_in_one_run_paired_per_thread():
    m = measure([])
    enter, exit_ = m.events
    assert len(enter.probes) == 1 and len(exit_.probes) == 1
    assert describe(enter.probes[0]) == ["t:syscalls:sys_enter_kill",
                                         "t:syscalls:sys_enter_tkill",
                                         "t:syscalls:sys_enter_tgkill"]
    assert describe(exit_.probes[0]) == ["t:syscalls:sys_exit_kill", "t:syscalls:sys_exit_tkill",
                                         "t:syscalls:sys_exit_tgkill"]
    # the target: kill()'s and tkill()'s "pid" argument, tgkill()'s "tgid"
    tpid = enter.field("tpid")
    assert [p.sources_for(tpid) for p in enter.probes[0].probes] == [("pid",), ("pid",),
                                                                     ("tgid",)]
    assert m.pair.key == ("tid",)
    assert set(m.pair.carry) == {"comm", "pid", "tpid", "sig"}
    assert m.aggregate.fields == ("pid", "comm", "sig", "tpid", "ret")
    assert m.filters == ()


@pytest.mark.parametrize("argv, calls", [
    (["--syscall", "kill"], ["kill"]),
    (["--syscall", "tgkill"], ["tgkill"]),
    (["--syscall", "tgkill", "--syscall", "tkill"], ["tkill", "tgkill"]),
    (["--syscall", "kill", "--syscall", "kill"], ["kill"]),
])
def test_syscall_narrows_the_calls(argv, calls):
    m = measure(argv)
    assert describe(m.events[0].probes[0]) == ["t:syscalls:sys_enter_%s" % c for c in calls]
    assert describe(m.events[1].probes[0]) == ["t:syscalls:sys_exit_%s" % c for c in calls]


def test_banner_names_the_calls():
    tool = KillSnoop()
    err = io.StringIO()
    for argv, text in (([], "kill(), tkill(), tgkill()"), (["--syscall", "tkill"], "tkill()")):
        p = tool.printer(tool.parse_args(argv), io.StringIO(), err)
        assert p.banner == "Tracing %s signals... Ctrl-C to end." % text


def test_filters():
    m = measure(["-x", "-p", str(os.getpid()), "-T", "42", "-s", "SIGKILL", "-n", "ba.sh"])
    assert [(f.field, f.op, f.value, f.events) for f in m.filters] == [
        ("pid", "==", os.getpid(), None), ("tpid", "==", 42, ("enter",)),
        ("sig", "==", 9, ("enter",)), ("comm", "glob", "*ba.sh*", ("enter",)),
        ("ret", "<", 0, ("exit",))]


@pytest.mark.parametrize("text, number", [("9", 9), ("0", 0), ("KILL", 9), ("SIGTERM", 15),
                                          ("usr1", signal.SIGUSR1), ("64", 64)])
def test_signal_names_and_numbers(text, number):
    assert KillSnoop().parse_args(["-s", text]).signal == number


@pytest.mark.parametrize("argv, words", [
    (["-s", "SIGNOPE"], "invalid signal 'SIGNOPE'"),
    (["-s", "65"], "invalid signal '65'"),
    (["-s", "-1"], "invalid signal '-1'"),
    (["-s", "SIG_IGN"], "invalid signal"),
    (["-s", "TERM:traceoff"], "invalid signal"),
    (["-s", "!9"], "invalid signal"),
    (["-s", "9\n"], "invalid signal"),
    (["-s=-:syscalls/sys_exit_kill"], "invalid signal"),
    (["-T", "-1"], "invalid PID '-1'"),
    (["-T", "1:traceoff"], "invalid PID"),
    (["-p", "abc"], "invalid PID"),
    (["-d", "0"], "invalid duration"),
    (["-n", "bash:traceoff"], "invalid process name"),
    (["-n", "!bash"], "invalid process name"),
    (["-n", "ba\nsh"], "invalid process name"),
    (["-n=-:syscalls/sys_exit_kill"], "invalid process name"),
    (["-n", "a" * 16], "invalid process name"),
    (["--syscall", "rt_sigqueueinfo"], "invalid choice"),
    (["--syscall", "kill:traceoff"], "invalid choice"),
])
def test_bad_input_is_one_line(argv, words):
    rc, out, err = run(["killsnoop"] + argv)
    assert rc == 2 and out == "", (rc, out, err)
    assert len(err.splitlines()) == 1 and words in err, err


def test_a_pid_nobody_has():
    pid = 4194303
    if os.path.exists("/proc/%d" % pid):
        pytest.skip("PID %d exists here" % pid)
    rc, out, err = run(["killsnoop", "-p", str(pid)])
    assert rc == 2 and out == "" and err == "killsnoop: no process with PID %d\n" % pid


def test_target_shown_signed():
    assert target_text(4294967295) == "-1"
    assert target_text(4294954440) == "-12856"
    assert target_text(181) == "181"


def test_columns_are_bccs():
    out = io.StringIO()
    p = EventTablePrinter(out, io.StringIO(), killsnoop_columns(8))
    ctx = RunContext("killsnoop", "ftrace", Schedule(), formatters={"tpid": target_text})
    p.start(ctx)
    p.report(Report([Record(1, {"pid": 181, "comm": "bash", "sig": 15, "tpid": 4294967295,
                                "ret": -3})]), ctx)
    header, row = out.getvalue().splitlines()
    assert header == "%-9s %-*s %-16s %-4s %-*s %s" % ("TIME", 8, "PID", "COMM", "SIG", 8,
                                                       "TPID", "RESULT")
    assert row[10:] == "%-*d %-16s %-4d %-*d %d" % (8, 181, "bash", 15, 8, -1, -3)
