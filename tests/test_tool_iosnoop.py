"""iosnoop (perf-tools command line and columns): golden output from fed-in
events, its getopts forms, usage text and errors."""

import os
import sys

import pytest

from kerntrace.core.model import LATENCY, Tracepoint

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

from kerntrace.plugins import iosnoop  # noqa: E402

TOOL = iosnoop.IoSnoop()
MIXED = "block_mixed_618tgid.trace"

HEADER = "COMM         PID    TYPE DEV      BLOCK        BYTES     LATms"
# Every I/O of block_mixed_618tgid.trace in completion order, with -s -t.
GOLDEN_TIMES = """\
STARTs          ENDs            COMM         PID    TYPE DEV      BLOCK        BYTES     LATms
12000.000100    12000.000400    my app       700    R    254,0    800          4096       0.30
12000.010100    12000.010400    my app       700    R    254,0    808          4096       0.30
12000.020100    12000.020400    my app       700    R    254,0    816          4096       0.30
12000.030100    12000.030400    my app       700    R    254,0    824          4096       0.30
12000.040100    12000.040400    my app       700    R    254,0    832          4096       0.30
12000.050100    12000.050400    my app       700    R    254,0    840          4096       0.30
12000.060100    12000.060400    my app       700    R    254,0    848          4096       0.30
12000.070100    12000.070400    my app       700    R    254,0    856          4096       0.30
12000.080100    12000.080400    my app       700    R    254,0    864          4096       0.30
12000.090100    12000.090400    my app       700    R    254,0    872          4096       0.30
12000.200100    12000.203100    jbd2/vda1-8  81     WS   254,0    90000        8192       3.00
12000.210100    12000.213100    jbd2/vda1-8  81     WS   254,0    90016        8192       3.00
12000.220100    12000.223100    jbd2/vda1-8  81     WS   254,0    90032        8192       3.00
12000.230100    12000.233100    jbd2/vda1-8  81     WS   254,0    90048        8192       3.00
12000.240100    12000.243100    jbd2/vda1-8  81     WS   254,0    90064        8192       3.00
12000.400100    12000.401600    dd           900    R    254,16   0            65536      1.50
12000.410100    12000.411600    dd           900    R    254,16   64           65536      1.50
12000.420100    12000.421600    dd           900    R    254,16   128          65536      1.50
12000.430100    12000.431600    dd           900    R    254,16   192          65536      1.50
12000.440100    12000.441600    dd           900    R    254,16   256          65536      1.50
12000.450100    12000.451600    dd           900    R    254,16   320          65536      1.50
12000.460100    12000.461600    dd           900    R    254,16   384          65536      1.50
12000.600100    12000.600800    jbd2/vda1-8  81     FF   254,0    -            0          0.70
"""

USAGE_FIRST = "USAGE: iosnoop [-hQst] [-d device] [-i iotype] [-p PID] [-n name]"


@pytest.fixture
def disks(monkeypatch, tmp_path):
    return blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0), "vdb": (254, 16)})


def replay(argv):
    # A duration ends the run once the file is read.
    return blocktest.run_tool("iosnoop", ["--input", blocktest.trace(MIXED)] + argv + ["1"])


def test_golden_with_start_and_end_times(disks):
    rc, out, err = replay(["-ts"])
    assert rc == 0, err
    assert out == ("Tracing block I/O for 1 seconds...\n" + GOLDEN_TIMES
                   + "\nEnding tracing...\n")


def test_default_columns(disks):
    rc, out, err = replay([])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["Tracing block I/O for 1 seconds...", HEADER,
                         "my app       700    R    254,0    800          4096       0.30"]
    assert len(lines) == 2 + 23 + 2


@pytest.mark.parametrize("argv, comms, banner", [
    (["-p", "900"], {"dd"}, "Tracing block I/O issued by PID 900 for 1 seconds..."),
    (["-n", "app"], {"my"},
     'Tracing block I/O issued by process name "app" for 1 seconds...'),
    (["-d", "254,16"], {"dd"}, "Tracing block I/O for 1 seconds..."),
    (["-i", "*W*"], {"jbd2/vda1-8"}, "Tracing block I/O for 1 seconds..."),
])
def test_filters(disks, argv, comms, banner):
    rc, out, err = replay(argv)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == banner and lines[1] == HEADER
    rows = lines[2:-2]
    assert rows and {r.split()[0] for r in rows} == comms


@pytest.mark.parametrize("argv, expect", [
    ([], dict(duration=None, queue=False, start_times=False, end_times=False)),
    (["-Qp", "91"], dict(queue=True, pid=91)),
    (["-ts", "5"], dict(start_times=True, end_times=True, duration=5.0)),
    (["-d202,1", "-i", "*R*"], dict(device="202,1", iotype="*R*")),
    (["-n", "postgres", "--backend", "ftrace"], dict(name="postgres", backend="ftrace")),
])
def test_command_line_forms(argv, expect):
    args = TOOL.parse_args(argv)
    for name, value in expect.items():
        assert getattr(args, name) == value, (argv, name)


def test_measurement_filters_process_on_the_start_only(disks):
    m = TOOL.measurement(TOOL.parse_args(["-Q", "-p", "91", "-d", "vda", "2"]))
    assert m.event("start").probes == (Tracepoint("block", "block_rq_insert"),)
    assert m.pair.carry == ("comm", "pid", "bytes")
    assert LATENCY in m.aggregate.fields
    filters = {(f.field, f.events) for f in m.filters}
    assert filters == {("pid", ("start",)), ("dev", ("start", "done"))}
    assert m.schedule.duration == 2.0
    m = TOOL.measurement(TOOL.parse_args(["-n", "tar"]))
    assert [(f.field, f.op, f.value) for f in m.filters] == [("comm", "glob", "*tar*")]


def test_banners():
    assert TOOL.banner(TOOL.parse_args([])) == "Tracing block I/O. Ctrl-C to end."
    assert (TOOL.banner(TOOL.parse_args(["-p", "91"]))
            == "Tracing block I/O issued by PID 91. Ctrl-C to end.")
    assert TOOL.banner(TOOL.parse_args(["1"])) == "Tracing block I/O for 1 seconds..."
    # Lines stream with a duration too: nothing may promise perf-tools' buffering.
    assert "buffer" not in iosnoop.USAGE


@pytest.mark.parametrize("argv, first", [
    (["-h"], None), (["-z"], "iosnoop: illegal option -- z"),
    (["--bogus"], "iosnoop: illegal option -- -"),
    (["-p"], "iosnoop: option requires an argument -- p"),
    (["-5"], "iosnoop: -5: a negative number is not a valid interval, duration or count"),
])
def test_usage_on_stderr_exit_0(argv, first):
    rc, out, err = blocktest.run_tool("iosnoop", argv)
    assert rc == 0 and out == ""
    if first:
        line, err = err.split("\n", 1)
        assert line == first
    assert err.startswith(USAGE_FIRST) and "  eg," in err
    assert err.endswith("See the man page and example file for more info.\n")


@pytest.mark.parametrize("argv, words", [
    (["-p", "1", "-n", "x"], "ERROR: use either -p or -n."),
    (["-p", "abc"], "invalid PID 'abc'"),
    (["-p", "\u00b2"], "invalid PID '\u00b2'"),       # a digit to str.isdigit(), not to int()
    (["-p", "1\n"], "invalid PID '1\\n'"),
    (["-p", "99999999999999999999"], "invalid PID"),
    (["-p", "0"], "invalid PID '0'"),
    (["-n", "a|b"], "comm"),
    (["-d", "nosuchdisk"], "no such disk 'nosuchdisk'"),
    (["-i", "R?"], "invalid -i pattern"),
    (["1", "2"], "too many arguments"),
])
def test_bad_input_one_line_exit_1(disks, argv, words):
    rc, out, err = blocktest.run_tool("iosnoop", argv)
    assert rc == 1, err
    assert out == "" and len(err.splitlines()) == 1 and words in err, err


def test_man_page_renders():
    text = blocktest.check_man_page("iosnoop")
    if text is not None:
        assert "iosnoop" in text and "EXAMPLES" in text
