"""--input and the text path in bounded time and memory, whatever the file.

The bounds are structural: each check runs under a generous alarm that the
old code overran by orders of magnitude (a 100 KB line took 82 s, the work
growing with the square of the line), or compares peak memory with the
file's size; none is a timing that a loaded machine could flake.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import DEFAULT_MAX_PENDING, Aggregator
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent
from kerntrace.backends.ftrace.printfmt import compile_print_fmt
from kerntrace.backends.ftrace.replay import ReplaySession, replay_plan, resolve_fields
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.backends.ftrace.textlines import MAX_LINE_BYTES, LineSplitter
from kerntrace.backends.ftrace.textparse import TextDecoder, parse_line
from kerntrace.core.model import (LATENCY, POW2_MS, STR, Event, Field, Histogram, Measurement,
                                  Pair, Schedule, Tracepoint)
from timelimit import alarm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERA_FORMATS = {key: known_formats.event_format("6.18", *key)
               for key in known_formats.FORMATS["6.18"]}
ISSUE = ("          dd-4011    [001] ..... %d.%06d: block_rq_issue: "
         "254,0 W 4096 () %d + 8 be,0,4 [dd]\n")
DONE = ("      <idle>-0       [001] ..s1. %d.%06d: block_rq_complete: "
        "254,0 W () %d + 8 be,0,4 [0]\n")


def iolatency(interval=1e6):
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("error", "errors"))])
    return Measurement([issue, done], Histogram(LATENCY, scale=POW2_MS),
                       pair=Pair("issue", "done", key=("dev", "sector"), carry=("comm", "pid")),
                       schedule=Schedule(interval=interval))


def replay_all(measurement, path):
    reports = []
    s = ReplaySession(measurement, replay_plan(measurement), str(path))
    with s:
        while not s.finished:
            reports.append(s.collect())
    return s, reports


# -- the line header -----------------------------------------------------------
@pytest.mark.parametrize("line", [
    " " * (1 << 20) + "-1 [0]",                      # blanks, then a header that never ends
    " " * (1 << 20) + "a-1 [000] ..... 1.5",
    "a-1" * (1 << 18) + " [000]",                    # a comm made of "-digits"
    "a-1 " + " " * (1 << 20) + "[000] .....",
    "x" * (1 << 20) + "-1 [000] ..... 1.5: block_rq_issue: 254,0 W 8 () 8 + 8 be,0,4 [x]",
    "a-1 (" + "-" * (1 << 20) + ") [000] 1.5: ",
])
def test_a_megabyte_line_is_not_a_header_in_bounded_time(line):
    with alarm(10):
        assert parse_line(line) is None
        assert TextDecoder(ERA_FORMATS).decode(line) is None


def test_blanks_before_a_real_header_still_parse():
    line = (" " * 100 + "dd-4011 [001] ..... 5.000001: block_rq_issue: "
            "254,0 W 4096 () 8 + 8 be,0,4 [dd]")
    tl = parse_line(line)
    assert (tl.comm, tl.tid, tl.cpu, tl.ts_ns) == ("dd", 4011, 1, 5000001000)


@pytest.mark.parametrize("digits", [11, 30, 5000])
def test_numbers_longer_than_the_kernel_prints_are_refused_on_every_python(digits):
    """The same verdict whatever sys.int_info's str-digits limit is."""
    n = "9" * digits
    dec = TextDecoder(ERA_FORMATS)
    for line in ("a-%s [000] ..... 1.0: block_rq_issue: 254,0 W 8 () 8 + 8 be,0,4 [a]" % n,
                 "a-1 [%s] ..... 1.0: block_rq_issue: 254,0 W 8 () 8 + 8 be,0,4 [a]" % n,
                 "a-1 (%s) [000] ..... 1.0: block_rq_issue: 254,0 W 8 () 8 + 8 be,0,4 [a]" % n):
        assert parse_line(line) is None and dec.decode(line) is None
    if digits > 20:
        for line in ("a-1 [000] ..... %s.5: block_rq_issue: 254,0 W 8 () 8 + 8 be,0,4 [a]" % n,
                     "a-1 [000] ..... 1.5: block_rq_issue: 254,0 W 8 () %s + 8 be,0,4 [a]" % n,
                     "a-1 [000] ..... 1.5: block_rq_issue: %s,0 W 8 () 8 + 8 be,0,4 [a]" % n):
            assert dec.decode(line) is None
        lost = parse_line("CPU:1 [LOST %s EVENTS]" % n)
        assert (lost.cpu, lost.count) == (None, None)


def test_the_largest_numbers_the_kernel_prints_still_decode():
    u64 = str(2 ** 64 - 1)
    line = ("a-2147483647 [4095] ..... %s.999999999: block_rq_issue: "
            "254,0 W 8 () %s + 8 be,0,4 [a]" % (u64, u64))
    r = TextDecoder(ERA_FORMATS).decode(line)
    assert r.tid == 2147483647 and r.cpu == 4095 and r.fields["sector"] == 2 ** 64 - 1


# -- lines longer than the kernel prints ---------------------------------------------
def test_overlong_lines_are_counted_and_skipped_whatever_the_chunking():
    data = b"a\n" + b"x" * 50 + b"\nbb\n" + b"y" * 11 + b"\n" + b"z" * 10 + b"\ncc"
    for chunk in (1, 3, 7, 64, len(data)):
        s = LineSplitter(max_line=10)
        lines = []
        for i in range(0, len(data), chunk):
            lines += s.feed(data[i:i + chunk])
        lines += s.finish()
        assert lines == [b"a", b"bb", b"z" * 10, b"cc"], chunk
        assert s.overlong == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: b.replace(b"x", b"\n")),
       st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_the_splitter_keeps_every_line_the_kernel_could_print(data, cuts):
    """Whatever the chunking: the lines of at most max_line bytes, in order;
    the longer ones counted."""
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    s = LineSplitter(max_line=16)
    got, i, k = [], 0, 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        got += s.feed(data[i:i + n])
        i += n
        k += 1
    got += s.finish()
    assert got == [line for line in lines if len(line) <= 16]
    assert s.overlong == sum(len(line) > 16 for line in lines)


def test_the_kernel_bound_is_at_least_a_page_of_every_architecture():
    # the largest PAGE_SIZE Linux supports (hexagon, powerpc 44x)
    assert MAX_LINE_BYTES >= 256 * 1024


def test_replay_of_a_gigabyte_without_newline_stays_in_bounded_memory(tmp_path):
    """A 1 GB sparse file holds one "line": the replay reads it in chunks,
    counts it undecodable and peaks far below its size (the old reader
    held the whole line, 2.1 GB)."""
    path = tmp_path / "no-newline.trace"
    with open(str(path), "wb") as f:
        f.write((ISSUE % (1, 0, 8)).encode())
        f.truncate(1 << 30)
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry
    # the forking test runner's over the exec
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from test_ftrace_input_bounds import iolatency, replay_all
        s, reports = replay_all(iolatency(), sys.argv[1])
        peak = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        print(s.undecodable, sum(r.unmatched for r in reports), s.aggregator.pending, peak)
    """ % os.path.join(ROOT, "tests"))
    out = subprocess.run([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True, timeout=600).stdout
    undecodable, unmatched, pending, maxrss_kb = map(int, out.split())
    assert (undecodable, unmatched, pending) == (1, 0, 1)
    assert maxrss_kb < 200 * 1024


# -- pending starts ------------------------------------------------------------------
def plan_for(measurement):
    events = []
    for ev in measurement.events:
        probe = ev.probes[0]
        fmt = ERA_FORMATS[(probe.category, probe.name)]
        fields, _missing = resolve_fields(ev, [fmt])
        events.append(ResolvedEvent(ev, probe, probe.category, probe.name, fmt, fields))
    return Plan(events)


def test_dropping_the_oldest_start_is_constant_work():
    """2M starts that never complete at the default cap of 1M: a million
    drops of the oldest, each constant work (the old dict scan took 197 s;
    now about 2 s).  In a subprocess, so its memory goes when it ends."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from test_ftrace_input_bounds import starts_never_ending
        agg = starts_never_ending(2000000)
        print(agg.pending, agg.collect().dropped_starts)
    """ % os.path.join(ROOT, "tests"))
    out = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True, timeout=90).stdout
    assert out.split() == [str(DEFAULT_MAX_PENDING), str(2000000 - DEFAULT_MAX_PENDING)]


def starts_never_ending(n, max_pending=DEFAULT_MAX_PENDING):
    """An aggregator fed n block_rq_issue starts (through the handler the
    raw path calls) and no completion."""
    m = iolatency()
    agg = Aggregator(m, plan_for(m), tasks=TaskInfo(proc_root=None), max_pending=max_pending)
    names, handler = agg.handler_for("block", "block_rq_issue")
    fields = {"dev": 254 << 20, "nr_sector": 8, "bytes": 4096, "rwbs": "W", "comm": "dd"}
    for i in range(n):
        fields["sector"] = i * 8
        handler(i, 0, (4011,) + tuple(fields[f] for f in names), "dd")
    return agg


def test_the_oldest_starts_are_the_ones_dropped_and_reported():
    agg = starts_never_ending(1000, max_pending=100)
    assert agg.pending == 100
    report = agg.collect()
    assert report.dropped_starts == 900 and agg.last.dropped_starts == 900
    for ts, sector in ((5000, 8 * 899), (5001, 8 * 900)):
        agg.feed(RawEvent("block", "block_rq_complete", ts, 0, 0,
                          fields={"dev": 254 << 20, "sector": sector, "nr_sector": 8,
                                  "rwbs": "W", "error": 0}))
    report = agg.collect()
    # 899 was dropped: its end is unmatched; 900 was kept and is measured
    assert report.unmatched == 1 and sum(h.count for h in report.data.histograms.values()) == 1
    assert report.dropped_starts == 0


# -- replay intervals --------------------------------------------------------------
def test_a_huge_jump_in_trace_time_prints_only_intervals_with_events(tmp_path):
    """Four lines, 10^12 s apart: three intervals, not 10^12 empty ones
    (the old replay printed 167 MB of empty intervals in 10 s)."""
    path = tmp_path / "jump.trace"
    path.write_text(ISSUE % (1, 0, 8) + DONE % (1, 500, 8)
                    + ISSUE % (10 ** 12, 0, 16) + DONE % (10 ** 12 + 5, 0, 16))
    with alarm(10):
        _s, reports = replay_all(iolatency(interval=1.0), path)
    counts = [sum(h.count for h in r.data.histograms.values()) for r in reports]
    # the pair at 1 s; the start alone at 10^12 s; its end 5 s later
    assert counts == [1, 0, 1]


# -- payloads --------------------------------------------------------------------
@pytest.mark.parametrize("era", sorted(known_formats.FORMATS))
def test_a_payload_of_repeated_separators_decodes_in_bounded_time(era):
    """Three %s strings in block_rq_issue: the old lazy groups tried every
    split, work growing with the cube of the payload (0.14 s at 3 KB)."""
    d = compile_print_fmt(known_formats.event_format(era, "block", "block_rq_issue"))
    for unit in ("R 1 () 1 + 1 [", "R 1 () 1 + 1 be,0,4 [", " 1 (", ") 1 + 1 ", ",0,"):
        payload = "254,0 " + unit * (MAX_LINE_BYTES // len(unit))
        with alarm(10):
            assert d.decode(payload) is None
            # a closing "]" makes it a valid payload: the comm takes the rest
            got = d.decode(payload + "x]")
            assert got is None or got["comm"].endswith("x")


def test_strings_holding_their_separators_still_decode():
    issue = compile_print_fmt(ERA_FORMATS[("block", "block_rq_issue")])
    assert issue.decode("254,0 W 4096 () 8 + 8 be,0,4 [a] b [c]")["comm"] == "a] b [c"
    exec_ = compile_print_fmt(ERA_FORMATS[("sched", "sched_process_exec")])
    got = exec_.decode("filename=/opt/My App/bin pid=5 old_pid=5  ")
    assert got == {"filename": "/opt/My App/bin", "pid": 5, "old_pid": 5}


def test_the_live_text_reader_skips_overlong_lines(tmp_path):
    """trace_pipe is read through the same splitter: a line longer than the
    kernel prints never accumulates, the lines around it come through."""
    from kerntrace.backends.ftrace.readers import TextReader
    path = tmp_path / "trace_pipe"
    path.write_bytes(b"first\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nsecond\nthird")
    r = TextReader(str(path))
    r.open()
    try:
        lines = r.read_lines(100)
    finally:
        r.close()
    assert lines == ["first", "second"] and r.splitter.overlong == 1


def test_the_command_line_says_how_many_lines_it_could_not_decode(tmp_path):
    """One line on stderr at the end; the output still parses."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import clirun
    path = tmp_path / "damaged.trace"
    path.write_bytes((ISSUE % (1, 0, 8)).encode() + b"x" * (MAX_LINE_BYTES + 1) + b"\n"
                     + (DONE % (1, 500, 8)).encode()
                     + b"  dd-1 [001] ..... 1.000600: block_rq_issue: not a payload\n")
    rc, out, err = clirun.run(["biolatency", "--input", str(path), "--json", "1"])
    assert rc == 0, err
    assert "kerntrace: warning: 2 lines of %s could not be decoded" % path in err
    assert "Traceback" not in err
    import json
    objs = [json.loads(line) for line in out.splitlines()]
    # the pair around the overlong line is still measured
    assert sum(h["count"] for o in objs for h in o["histograms"]) == 1
