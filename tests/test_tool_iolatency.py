"""iolatency, the perf-tools drop-in: its command line, usage text, ERROR
lines and exit statuses, its measurement, and its output reproduced from
fed-in events (fake traces replayed with --input), compared with perf-tools'
own awk program where perf-tools is right and shown right where it is not."""

import os
import sys

import pytest

import golden_iolatency

from kerntrace.core import errors
from kerntrace.core.model import LATENCY, POW2_MS, Tracepoint

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

from kerntrace.plugins import iolatency  # noqa: E402
from kerntrace.core.api import UsageShown  # noqa: E402

TOOL = iolatency.IoLatency()

# The perf-tools usage text, as iolatency-compat.md quotes it.
PERF_TOOLS_USAGE = """\
USAGE: iolatency [-hQT] [-d device] [-i iotype] [interval [count]]
                 -d device       # device string (eg, "202,1)
                 -i iotype       # match type (eg, '*R*' for all reads)
                 -Q              # use queue insert as start time
                 -T              # timestamp on output
                 -h              # this usage message
                 interval        # summary interval, seconds (default 1)
                 count           # number of summaries
  eg,
       iolatency                 # summarize latency every second
       iolatency -Q              # include block I/O queue time
       iolatency 5 2             # 2 x 5 second summaries
       iolatency -i '*R*'        # trace reads
       iolatency -d 202,1        # trace device 202,1 only

See the man page and example file for more info.
"""

# iolatency-compat.md's golden examples.
GOLDEN_1 = golden_iolatency.HISTOGRAM_1
GOLDEN_2_QUEUE = golden_iolatency.HISTOGRAM_2
# qd4_*.trace: 120 overlapping reads (see make_traces.py).
QD4 = """\
  >=(ms) .. <(ms)   : I/O      |Distribution                          |
       0 -> 1       : 60       |######################################|
       1 -> 2       : 30       |###################                   |
       2 -> 4       : 30       |###################                   |
"""


# ---------------------------------------------------------------------------
# Command line: perf-tools' getopts forms plus kerntrace's long options
@pytest.mark.parametrize("argv, expect", [
    ([], dict(interval=1.0, count=0, device=None, iotype=None, queue=False, timestamp=False)),
    (["-QT"], dict(queue=True, timestamp=True)),
    (["-Q", "-T"], dict(queue=True, timestamp=True)),
    (["-d202,1"], dict(device="202,1")),
    (["-d", "202,1"], dict(device="202,1")),
    (["-QTd", "202,1"], dict(queue=True, timestamp=True, device="202,1")),
    (["-i*R*"], dict(iotype="*R*")),
    (["-i", "*W*", "5", "2"], dict(iotype="*W*", interval=5.0, count=2)),
    (["0.5"], dict(interval=0.5, interval_text="0.5")),
    (["5", "3"], dict(interval=5.0, count=3, interval_text="5")),
    (["--", "2"], dict(interval=2.0)),
    (["--backend", "ftrace", "--json", "5"], dict(backend="ftrace", json=True, interval=5.0)),
    (["5", "--backend=ebpf", "--explain"], dict(backend="ebpf", explain=True, interval=5.0)),
    (["--input", "t.txt", "--buffer-kb", "8192", "--prometheus", "--print-program"],
     dict(input_file="t.txt", buffer_kb=8192, prometheus=True, print_program=True)),
    (["--prometheus-file", "/run/io.prom", "1"], dict(prometheus_file="/run/io.prom")),
])
def test_command_line_forms(argv, expect):
    args = TOOL.parse_args(argv)
    for name, value in expect.items():
        assert getattr(args, name) == value, (argv, name)


@pytest.mark.parametrize("argv, first", [
    (["-h"], None), (["-Qh"], None),
    # getopts reads an unknown long option as option "-" (perf-tools says so)
    (["--nosuch"], "iolatency: illegal option -- -"),
    # bash's getopts says what was wrong before perf-tools' usage()
    (["-x"], "iolatency: illegal option -- x"),
    (["-d"], "iolatency: option requires an argument -- d"),
    (["-i"], "iolatency: option requires an argument -- i"),
    # so is a negative number (getopts: "illegal option -- 1"), said plainly
    (["-1"], "iolatency: -1: a negative number is not a valid interval, duration or count"),
    (["-Q", "-0.5"], "iolatency: -0.5: a negative number is not a valid interval, duration "
                     "or count"),
])
def test_help_and_unknown_options_print_perf_tools_usage_to_stderr_and_exit_0(argv, first):
    rc, out, err = blocktest.run_tool("iolatency", argv)
    assert rc == 0
    assert out == ""
    assert err == (first + "\n" if first else "") + PERF_TOOLS_USAGE


def test_long_help_adds_the_kerntrace_options():
    rc, out, err = blocktest.run_tool("iolatency", ["--help"])
    assert rc == 0 and out == ""
    assert err.startswith(PERF_TOOLS_USAGE)
    for opt in ("--backend", "--json", "--prometheus", "--explain", "--input", "--buffer-kb",
                "--print-program"):
        assert opt in err


@pytest.mark.parametrize("argv, words", [
    (["-d", "nosuchdisk"], "no such disk 'nosuchdisk'"),
    (["-d", "999,999"], "no such disk 999,999"),
    (["-d", "5000,1"], "invalid device '5000,1'"),
    (["-d", "202,x"], "invalid device '202,x'"),
    (["-d", "/dev/../etc/passwd"], "invalid disk name"),
    (["-i", "R?"], "invalid -i pattern 'R?'"),
    (["-i", "*R*W*"], "invalid -i pattern '*R*W*'"),
    (["-i", "R\"; echo"], "invalid -i pattern"),
    (["-i", ""], "-i needs a pattern"),
    (["0"], "invalid interval '0'"),
    (["abc"], "invalid interval 'abc'"),
    (["1", "-2"], "invalid count '-2'"),
    (["1", "2", "3"], "too many arguments"),
])
def test_bad_input_is_one_clear_line_and_exit_1(argv, words, monkeypatch, tmp_path):
    blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0)})
    rc, out, err = blocktest.run_tool("iolatency", argv)
    assert rc == 1, err
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("iolatency: ") and words in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, words", [
    (["--backend", "dtrace"], "--backend must be auto or an installed backend's name"),
    (["--backend", "e;bpf"], "--backend must be auto or an installed backend's name"),
    (["--backend", "nosuch"], "--backend must be auto or an installed backend's name"),
    (["--buffer-kb", "-5"], "--buffer-kb must be a positive"),
    (["--buffer-kb"], "option --buffer-kb needs a value"),
    (["--json=yes"], "--json"),
    (["--prometheus-file", "/nonexistent-dir/x.prom"], "no directory /nonexistent-dir"),
    (["--openmetrics", "--prometheus-file", "x.prom"], "reads Prometheus text only"),
    (["--prometheus-listen", "host:99999"], "--prometheus-listen must be"),
    (["--prometheus-max-series", "0"], "--prometheus-max-series must be"),
])
def test_bad_kerntrace_option_exits_2_as_on_every_tool(argv, words):
    """perf-tools has no --backend, --buffer-kb ...: a bad value of one of
    kerntrace's own options exits 2 on iolatency as on every other tool."""
    rc, out, err = blocktest.run_tool("iolatency", argv)
    assert (rc, out) == (2, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("iolatency: ") and words in err, err


# ---------------------------------------------------------------------------
# perf-tools' ERROR lines
@pytest.mark.parametrize("exc, lines", [
    (errors.TracingUnavailable("no tracefs"),
     ["ERROR: accessing tracing. Root user? Kernel has FTRACE?",
      "    debugfs mounted? (mount -t debugfs debugfs /sys/kernel/debug)"]),
    (errors.LockHeld("held", pid=4321, path="/var/tmp/.ftrace-lock"),
     ["ERROR: ftrace may be in use by PID 4321 /var/tmp/.ftrace-lock"]),
    (errors.FilterError("EINVAL"), ["ERROR: setting -d or -t filter. Exiting."]),
    (errors.EnableError("EBUSY"), ["ERROR: enabling block I/O tracepoints. Exiting."]),
])
def test_errors_are_worded_as_perf_tools_and_exit_1(exc, lines):
    assert TOOL.format_error(exc) == lines
    assert TOOL.exit_status_for(exc) == 1


def test_other_errors_keep_the_default_line_and_exit_1():
    exc = errors.Unsupported("no backend")
    assert TOOL.format_error(exc) is None
    assert TOOL.exit_status_for(exc) == 1
    assert TOOL.exit_status_for(UsageShown("usage")) == 0


# ---------------------------------------------------------------------------
# The measurement
def test_measurement_default_pairs_issue_with_completion(monkeypatch, tmp_path):
    m = TOOL.measurement(TOOL.parse_args(["5", "2"]))
    assert [e.name for e in m.events] == ["start", "done"]
    assert m.event("start").probes == (Tracepoint("block", "block_rq_issue"),)
    assert m.event("done").probes == (Tracepoint("block", "block_rq_complete"),)
    assert (m.pair.start, m.pair.end, m.pair.key) == ("start", "done", ("dev", "sector"))
    assert m.aggregate.kind == "histogram"
    assert (m.aggregate.value, m.aggregate.scale, m.aggregate.keys) == (LATENCY, POW2_MS, ())
    assert (m.schedule.interval, m.schedule.count) == (5.0, 2)
    assert m.filters == ()


def test_measurement_queue_device_and_type_filters(monkeypatch, tmp_path):
    blocktest.fake_disks(monkeypatch, tmp_path, {"xvda1": (202, 1)})
    m = TOOL.measurement(TOOL.parse_args(["-Q", "-d", "202,1", "-i", "*R*"]))
    assert m.event("start").probes == (Tracepoint("block", "block_rq_insert"),)
    by_field = {f.field: f for f in m.filters}
    assert by_field["dev"].op == "==" and by_field["dev"].value == (202 << 20) + 1
    assert by_field["rwbs"].op == "glob" and by_field["rwbs"].value == "*R*"
    # perf-tools filters start and completion alike
    for f in m.filters:
        assert f.events == ("start", "done")


def test_device_by_name_is_accepted_too(monkeypatch, tmp_path):
    blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0)})
    m = TOOL.measurement(TOOL.parse_args(["-d", "vda"]))
    assert m.filters[0].value == 254 << 20


def test_banner_says_ctrl_c_only_without_a_count():
    assert _banner([]) == "Tracing block I/O. Output every 1 seconds. Ctrl-C to end."
    assert _banner(["5", "3"]) == "Tracing block I/O. Output every 5 seconds."
    assert _banner(["0.5"]) == "Tracing block I/O. Output every 0.5 seconds. Ctrl-C to end."


def _banner(argv):
    import io
    out = io.StringIO()
    TOOL.printer(TOOL.parse_args(argv), out, io.StringIO()).start(None)
    return out.getvalue().rstrip("\n")


# ---------------------------------------------------------------------------
# Golden output from fed-in events (replay of saved traces)
def replay(argv, trace_name):
    return blocktest.run_tool("iolatency", ["--input", blocktest.trace(trace_name)] + argv)


def test_golden_example_1_from_a_4x_trace():
    rc, out, err = replay(["1", "1"], "iolatency_golden1_4x.trace")
    assert rc == 0, err
    assert out == ("Tracing block I/O. Output every 1 seconds.\n\n" + GOLDEN_1
                   + "\nEnding tracing...\n")


def test_golden_example_2_with_queue_time():
    rc, out, err = replay(["-Q", "1", "1"], "iolatency_golden2_queue_4x.trace")
    assert rc == 0, err
    assert out == ("Tracing block I/O. Output every 1 seconds.\n\n" + GOLDEN_2_QUEUE
                   + "\nEnding tracing...\n")


def test_without_queue_time_the_same_io_is_no_slower():
    rc, out, err = replay(["1", "1"], "iolatency_golden2_queue_4x.trace")
    assert rc == 0, err
    rows = _rows(out)
    assert sum(rows.values()) == 2683
    # Each request was issued 30 us after its insert: no I/O moves up a row.
    queued = _rows("\n" + GOLDEN_2_QUEUE)
    for top in range(7):
        assert (sum(c for r, c in rows.items() if r <= top)
                >= sum(c for r, c in queued.items() if r <= top))


def test_timestamps_print_a_time_line_with_a_colon():
    rc, out, err = replay(["-T", "1", "1"], "iolatency_golden1_4x.trace")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1] == ""
    import re
    assert re.match(r"^\d\d:\d\d:\d\d:$", lines[2]), lines[2]
    assert "\n".join(lines[3:9]) + "\n" == GOLDEN_1


@pytest.mark.parametrize("trace_name", ["qd4_4x.trace", "qd4_618.trace"])
def test_overlapping_io_is_paired_by_device_and_sector_in_every_era(trace_name):
    rc, out, err = replay(["1", "1"], trace_name)
    assert rc == 0, err
    assert blocktest.histogram_blocks(out) == [QD4.splitlines()]


def test_record_tgid_names_with_spaces_flush_and_unmatched_completion(monkeypatch, tmp_path):
    """block_mixed_618tgid.trace: 10 x 300us + 1 flush of 700us on 254,0,
    5 x 3ms writes on 254,0, 7 x 1.5ms reads on 254,16, and a completion
    without a start (not counted)."""
    blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0), "vdb": (254, 16)})
    rc, out, err = replay(["1", "1"], "block_mixed_618tgid.trace")
    assert rc == 0, err
    assert _rows(out) == {0: 11, 1: 7, 2: 5}
    rc, out, err = replay(["-d", "254,16", "1", "1"], "block_mixed_618tgid.trace")
    assert _rows(out) == {0: 0, 1: 7}
    rc, out, err = replay(["-i", "*W*", "1", "1"], "block_mixed_618tgid.trace")
    assert _rows(out) == {0: 0, 1: 0, 2: 5}
    rc, out, err = replay(["-i", "R", "1", "1"], "block_mixed_618tgid.trace")
    assert _rows(out) == {0: 10, 1: 7}


def test_io_in_flight_at_an_interval_boundary_counts_when_it_completes():
    """iolatency_boundary_4x.trace: 3 seconds, a 0.5 ms read in each, and a
    1.5 ms read issued 200 us before the end of the first second."""
    rc, out, err = replay(["1", "3"], "iolatency_boundary_4x.trace")
    assert rc == 0, err
    blocks = [_rows("\n".join(b)) for b in blocktest.histogram_blocks(out)]
    assert len(blocks) == 3
    # Nothing is dropped, whatever the interval split (perf-tools drops the
    # read in flight at its first tick).
    assert {r: sum(b.get(r, 0) for b in blocks) for r in (0, 1)} == {0: 3, 1: 1}
    assert blocks == [{0: 1}, {0: 1, 1: 1}, {0: 1}]


def _rows(text):
    """{row index: count} of the last histogram in text."""
    blocks = blocktest.histogram_blocks(text)
    assert blocks, text
    return {i: int(line.split(":")[1].split("|")[0]) for i, line in enumerate(blocks[-1][1:])}


# ---------------------------------------------------------------------------
# Side by side with perf-tools' own awk program (Debian's iolatency-perf)
@pytest.fixture(scope="module")
def perf_tools_awk():
    program = blocktest.perf_tools_awk_program()
    if program is None:
        pytest.skip("perf-tools' iolatency (%s, Debian perf-tools-unstable) is not installed"
                    % blocktest.PERF_TOOLS_IOLATENCY)
    if blocktest.awk_binary() is None:
        pytest.skip("no awk")
    return program


@pytest.mark.parametrize("trace_name, argv, b_start", [
    ("iolatency_golden1_4x.trace", [], "block_rq_issue"),
    ("iolatency_golden2_queue_4x.trace", ["-Q"], "block_rq_insert"),
    ("iolatency_golden2_queue_4x.trace", [], "block_rq_issue"),
    ("qd4_4x.trace", [], "block_rq_issue"),
])
def test_same_histogram_as_perf_tools_on_pre_6_11_traces(perf_tools_awk, tmp_path, trace_name,
                                                         argv, b_start):
    theirs, _ = blocktest.run_perf_tools_awk(perf_tools_awk, blocktest.trace(trace_name),
                                             b_start, tmp_path)
    rc, ours, err = replay(argv + ["1", "1"], trace_name)
    assert rc == 0, err
    assert blocktest.histogram_blocks(ours) == blocktest.histogram_blocks(theirs)
    assert len(blocktest.histogram_blocks(ours)) == 1


def test_on_6_11_traces_perf_tools_mis_pairs_and_we_do_not(perf_tools_awk, tmp_path):
    """With the I/O-priority token perf-tools reads "+" as the sector: every
    start lands on one key, so overlapping I/O is mis-paired and dropped."""
    theirs, _ = blocktest.run_perf_tools_awk(perf_tools_awk, blocktest.trace("qd4_618.trace"),
                                             "block_rq_issue", tmp_path)
    rc, ours, err = replay(["1", "1"], "qd4_618.trace")
    assert rc == 0, err
    assert blocktest.histogram_blocks(ours) == [QD4.splitlines()]
    their_rows = _rows(theirs)
    assert sum(their_rows.values()) < 120
    assert blocktest.histogram_blocks(theirs) != blocktest.histogram_blocks(ours)


def test_man_page_renders():
    text = blocktest.check_man_page("iolatency")
    if text is not None:
        assert "iolatency" in text and "EXAMPLES" in text
