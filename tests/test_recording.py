"""The recording file (core/recording.py): what record writes reads back;
replay decodes a recording with the formats it carries; a hostile or
damaged file is one error line, in bounded time, never a traceback."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from kerntrace.backends.ftrace.replay import ReplaySession, replay_plan
from kerntrace.core import known_formats
from kerntrace.core.errors import KerntraceError, Unsupported
from kerntrace.core.model import Count, Event, Field, Measurement, Tracepoint
from kerntrace.core.recording import (MAX_FIELD_LINE_BYTES, MAX_FORMATS, MAX_HEADER_BYTES,
                                      MAX_LINE_BYTES, MAX_META, RecordingError, header_text,
                                      open_saved_trace, recorded_args)
from timelimit import alarm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "tests", "data", "traces")

# sched_process_fork as Linux 6.18 prints it: an event no stored era has.
FORK_FORMAT = """\
name: sched_process_fork
ID: 316
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;

print fmt: "comm=%s pid=%d child_comm=%s child_pid=%d", __get_str(parent_comm), REC->parent_pid, __get_str(child_comm), REC->child_pid
"""
FORK_LINE = ("          python-%d    [001] ..... %d.%06d: sched_process_fork: "
             "comm=python pid=%d child_comm=python child_pid=%d\n")
META = {"kerntrace": "0.1.0", "release": "6.18.0-test", "hostname": "db7", "clock": "mono",
        "tool": "forkcount", "args": ["-p", "4011"], "started": "2026-12-04T22:00:00Z"}


def fork_trace(pids, forks_each):
    lines = ["# tracer: nop\n"]
    t = 0
    for pid in pids:
        for i in range(forks_each):
            t += 1
            lines.append(FORK_LINE % (pid, 100 + t // 1000, t % 1000 * 1000, pid, 9000 + t))
    return "".join(lines)


def forkcount():
    fork = Event("fork", Tracepoint("sched", "sched_process_fork"), fields=[Field("parent_pid")])
    return Measurement([fork], Count(keys=("parent_pid",)))


def write(path, header, trace=""):
    with open(str(path), "wb") as f:
        f.write(header.encode() if isinstance(header, str) else header)
        f.write(trace.encode())
    return str(path)


def replay(measurement, saved):
    s = ReplaySession(measurement, replay_plan(measurement, saved), saved)
    reports = []
    with s:
        while not s.finished:
            reports.append(s.collect())
    return s, reports


def counts(reports):
    out = {}
    for r in reports:
        for key, n in r.data.counts.items():
            out[key] = out.get(key, 0) + n
    return out


# -- round trip --------------------------------------------------------------
def test_what_record_writes_reads_back(tmp_path):
    hp, he = known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"]
    issue = known_formats.FORMATS["6.18"][("block", "block_rq_issue")]
    header = header_text(dict(META, hostname="db7\nevil 1"), [
        ("sched", "sched_process_fork", FORK_FORMAT), ("block", "block_rq_issue", issue)],
        hp, he)
    path = write(tmp_path / "r.rec", header, "# tracer: nop\nline\n")
    saved = open_saved_trace(path)
    assert saved.recorded
    assert saved.format_texts == {("sched", "sched_process_fork"): FORK_FORMAT,
                                  ("block", "block_rq_issue"): issue}
    assert saved.header_page == hp and saved.header_event == he
    assert saved.meta["hostname"] == "db7 evil 1"        # a value never breaks a line
    assert recorded_args(saved) == ["-p", "4011"]
    assert saved.formats[("sched", "sched_process_fork")].field("parent_pid") is not None
    with saved.open_trace() as f:
        assert f.read() == b"# tracer: nop\nline\n"
    assert saved.describe() == "recording %s (forkcount on db7 evil 1, 6.18.0-test)" % path


def test_metadata_never_puts_a_control_character_on_the_terminal(tmp_path):
    header = "kerntrace-recording 1\nhostname db\x1b]0;owned\x07\u202e7\ntrace\n"
    saved = open_saved_trace(write(tmp_path / "esc.rec", header))
    assert saved.meta["hostname"] == "db?]0;owned??7"


def test_a_plain_trace_file_is_plain_text(tmp_path):
    path = write(tmp_path / "t.txt", "# tracer: nop\n")
    saved = open_saved_trace(path)
    assert not saved.recorded and saved.formats == {} and saved.trace_offset == 0


def test_a_recording_decodes_an_event_no_stored_era_has(tmp_path):
    m = forkcount()
    trace = fork_trace([4011, 4012], 7)
    with pytest.raises(Unsupported, match="no known format for sched:sched_process_fork"):
        replay_plan(m, open_saved_trace(write(tmp_path / "plain.txt", trace)))
    saved = open_saved_trace(write(tmp_path / "f.rec", header_text(
        META, [("sched", "sched_process_fork", FORK_FORMAT)]), trace))
    s, reports = replay(m, saved)
    assert counts(reports) == {(4011,): 7, (4012,): 7}
    assert s.undecodable == 0


def test_a_recording_replays_as_its_plain_text_does(tmp_path):
    """The stored era's formats and the carried ones decode the same file
    to the same histogram."""
    from test_ftrace_input_bounds import iolatency
    with open(os.path.join(TRACES, "replay-block-6.18.txt")) as f:
        trace = f.read()
    plain = open_saved_trace(write(tmp_path / "plain.txt", trace))
    issue, done = (known_formats.FORMATS["6.18"][("block", e)]
                   for e in ("block_rq_issue", "block_rq_complete"))
    rec = open_saved_trace(write(tmp_path / "r.rec", header_text(
        META, [("block", "block_rq_issue", issue), ("block", "block_rq_complete", done)]), trace))
    m = iolatency()
    _, from_plain = replay(m, plain)
    _, from_rec = replay(m, rec)
    assert [r.data for r in from_rec] == [r.data for r in from_plain]
    assert any(r.data.histograms for r in from_rec)


# -- hostile or damaged files ------------------------------------------------
GOOD = header_text(META, [("sched", "sched_process_fork", FORK_FORMAT)])


@pytest.mark.parametrize("header, words", [
    ("kerntrace-recording 2\ntrace\n", "version 2; this kerntrace reads version 1"),
    ("kerntrace-recording\ntrace\n", "not a kerntrace recording header"),
    ("kerntrace-recording 1\ntool x\n", "ends inside the header"),
    ("kerntrace-recording 1\ntool x", "ends inside the header"),
    ("kerntrace-recording 1\nformat sched fork\ntrace\n", "expected `format <system>"),
    ("kerntrace-recording 1\nformat sched ../x 1\nname: x\ntrace\n", "expected `format"),
    ("kerntrace-recording 1\nformat sched f 99999\ntrace\n", "bad line count '99999'"),
    ("kerntrace-recording 1\nformat sched f -1\ntrace\n", "bad line count '-1'"),
    ("kerntrace-recording 1\nformat sched f 3\nname: f\n", "ends inside the header"),
    ("kerntrace-recording 1\nformat sched f 1\nID: 7\ntrace\n",
     "line 2: format of sched:f: not an event format file"),
    ("kerntrace-recording 1\nformat sched f 2\nname: f\nID: x\ntrace\n",
     "format of sched:f: invalid literal"),
    ("kerntrace-recording 1\nformat sched f 1\nname: g\ntrace\n", "names event 'g'"),
    ("kerntrace-recording 1\nformat sched f 1\nname: f\nformat sched f 1\nname: f\ntrace\n",
     "line 4: a second format of sched:f"),
    ("kerntrace-recording 1\nheader_page\ntrace\n", "expected `header_page <lines>`"),
    ("kerntrace-recording 1\nTool x\ntrace\n", "unexpected header line 'Tool'"),
    ("kerntrace-recording 1\ntool " + "x" * 5000 + "\ntrace\n", "longer than 4096"),
    ("kerntrace-recording 1\ntool " + "x" * (MAX_LINE_BYTES + 10) + "\ntrace\n",
     "line 2: line longer than"),
    ("kerntrace-recording 1\nformat sched f 2\nname: f\n\tfield:" + "a " * MAX_FIELD_LINE_BYTES
     + "x;\toffset:0;\tsize:4;\ntrace\n", "field line longer than"),
    (b"kerntrace-recording 1\ntool \xff\xfe\ntrace\n", "not UTF-8 text"),
])
def test_a_bad_header_is_one_line_naming_file_and_line(tmp_path, header, words):
    path = write(tmp_path / "bad.rec", header)
    with pytest.raises(RecordingError) as e:
        open_saved_trace(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(path + ": line ")
    assert words in msg, msg


def test_header_counts_and_size_are_bounded(tmp_path):
    many = "".join("format s e%d 1\nname: e%d\n" % (i, i) for i in range(MAX_FORMATS + 1))
    path = write(tmp_path / "many.rec", "kerntrace-recording 1\n" + many + "trace\n")
    with pytest.raises(RecordingError, match="more than %d format sections" % MAX_FORMATS):
        open_saved_trace(path)
    lines = ("k%d v\n" % i for i in range(MAX_META + 1))
    path = write(tmp_path / "meta.rec", "kerntrace-recording 1\n" + "".join(lines) + "trace\n")
    with pytest.raises(RecordingError, match="more than %d metadata lines" % MAX_META):
        open_saved_trace(path)
    body = ("format s big 4000\nname: big\n" + ("x" * 4000 + "\n") * 3999) * 2
    path = write(tmp_path / "big.rec", "kerntrace-recording 1\n" + body + "trace\n")
    with alarm(20), pytest.raises(RecordingError, match="header larger than %d bytes"
                                  % MAX_HEADER_BYTES):
        open_saved_trace(path)


def test_what_is_not_a_regular_file_is_refused(tmp_path):
    for path in (str(tmp_path), "/dev/zero", str(tmp_path / "missing")):
        with pytest.raises(KerntraceError, match="cannot read"):
            open_saved_trace(path)


def test_a_hostile_carried_print_fmt_decodes_in_bounded_time(tmp_path):
    """The print fmt comes from the file too: a long, odd one compiles and
    matches the trace lines in bounded time (nothing decodes)."""
    fmt = FORK_FORMAT.replace(
        'print fmt: "comm=%s',
        'print fmt: "' + "%s%d(" * 5000 + '" ' + ", ((((" * 2000 + 'comm=%s')
    trace = "".join(FORK_LINE % (4011, 1, i, 4011, i) for i in range(200))
    saved = open_saved_trace(write(tmp_path / "h.rec", header_text(
        META, [("sched", "sched_process_fork", fmt)]), trace))
    with alarm(30):
        s, reports = replay(forkcount(), saved)
    assert counts(reports) == {}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_header_bytes_are_read_or_refused_in_one_line(tmp_path_factory, data):
    path = str(tmp_path_factory.mktemp("fuzz") / "f.rec")
    write(path, GOOD.encode()[:60] + data, "")
    try:
        open_saved_trace(path)
    except RecordingError as e:
        assert "\n" not in str(e)


def test_input_with_a_bad_recording_is_one_line_and_status_1(tmp_path):
    path = write(tmp_path / "bad.rec", "kerntrace-recording 1\nformat sched f 9\n")
    p = subprocess.run([sys.executable, "-m", "kerntrace.core", "iolatency", "--input", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=dict(os.environ, KERNTRACE_DISABLE_PLUGINS="1"), timeout=120)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == ("iolatency: %s: line 3: the file ends inside the header "
                        "(no `trace` line)\n" % path), p.stderr


def test_a_recording_replays_the_alternative_it_recorded(tmp_path):
    """An event with several tracepoint alternatives is read from the one
    the recording holds, even when a stored era has another; an event the
    recording does not hold is refused, saying what it holds."""
    either = Event("e", Tracepoint("block", "block_rq_issue"),
                   Tracepoint("sched", "sched_process_fork"))
    saved = open_saved_trace(write(tmp_path / "f.rec", header_text(
        META, [("sched", "sched_process_fork", FORK_FORMAT)]), fork_trace([4011], 3)))
    plan = replay_plan(Measurement([either], Count()), saved)
    assert [(e.system, e.event) for e in plan.events] == [("sched", "sched_process_fork")]
    _, reports = replay(Measurement([either], Count()), saved)
    assert counts(reports) == {(): 3}
    issue_only = Measurement([Event("i", Tracepoint("block", "block_rq_issue"))], Count())
    with pytest.raises(Unsupported, match=r"event i cannot be replayed from a saved trace: "
                                          r"the recording has no block:block_rq_issue \(it "
                                          r"recorded sched:sched_process_fork\)"):
        replay_plan(issue_only, saved)


def test_print_program_says_where_each_events_format_comes_from(tmp_path):
    trace = fork_trace([4011], 1)
    rec = open_saved_trace(write(tmp_path / "f.rec", header_text(
        META, [("sched", "sched_process_fork", FORK_FORMAT)]), trace))
    m = forkcount()
    text = ReplaySession(m, replay_plan(m, rec), rec).program_text()
    assert text.splitlines()[1].endswith("format carried by the recording")
    from test_ftrace_input_bounds import iolatency
    plain = open_saved_trace(os.path.join(TRACES, "replay-block-6.18.txt"))
    m = iolatency()
    text = ReplaySession(m, replay_plan(m, plain), plain).program_text()
    assert text.splitlines()[1].endswith("format of a stored kernel era that decodes its "
                                         "first line")


# -- probe events (uprobes, kprobes, USDT probes) ------------------------------
UPROBE_FORMAT = """\
name: kerntrace_9_0
ID: 2326
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;

print fmt: "(%lx)", REC->__probe_ip
"""
UPROBE_LINE = "         kt_work-%d    [001] ..... %d.%06d: kerntrace_9_0: (0x401136)\n"


def leafcount():
    from kerntrace.core.model import EVENT_NAME, UserFunction
    ev = Event("kt_leaf", UserFunction("/opt/kt/bin/kt_work", "kt_leaf"))
    return Measurement([ev], Count(keys=(EVENT_NAME,)))


def test_a_recording_says_which_of_its_events_each_probe_is(tmp_path):
    from kerntrace.core.recording import probe_meta
    trace = "# tracer: nop\n" + "".join(UPROBE_LINE % (4011, 100, i) for i in range(9))
    m = leafcount()
    meta = dict(META, **probe_meta([("kerntrace_9", "kerntrace_9_0",
                                     "u:/opt/kt/bin/kt_work:kt_leaf")]))
    saved = open_saved_trace(write(tmp_path / "u.rec", header_text(
        meta, [("kerntrace_9", "kerntrace_9_0", UPROBE_FORMAT)]), trace))
    assert saved.probes == {"u:/opt/kt/bin/kt_work:kt_leaf": ("kerntrace_9", "kerntrace_9_0")}
    s, reports = replay(m, saved)
    assert counts(reports) == {("kt_leaf",): 9} and s.undecodable == 0
    # without the probe lines, or as plain text, nothing says what it probed
    bare = open_saved_trace(write(tmp_path / "bare.rec", header_text(
        META, [("kerntrace_9", "kerntrace_9_0", UPROBE_FORMAT)]), trace))
    with pytest.raises(Unsupported, match="the recording did not probe it"):
        replay_plan(m, bare)
    with pytest.raises(Unsupported, match="a plain trace file does not say"):
        replay_plan(m, open_saved_trace(write(tmp_path / "plain.txt", trace)))


def test_probe_lines_are_checked_both_ways(tmp_path):
    from kerntrace.core.recording import probe_meta
    with pytest.raises(KerntraceError, match="cannot record probe"):
        probe_meta([("kerntrace_9", "kerntrace_9_0", "u:/opt/a b:f")])
    # a malformed probe line in a file is ignored, not trusted
    header = header_text(dict(META, probe_0="kerntrace_9 x; u:/bin/x:f",
                              probe_1="kerntrace_9 kerntrace_9_1 u:/bin/x:g"), [])
    saved = open_saved_trace(write(tmp_path / "m.rec", header))
    assert saved.probes == {"u:/bin/x:g": ("kerntrace_9", "kerntrace_9_1")}
