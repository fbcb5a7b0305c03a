"""Replaying saved `trace` files end to end: plan, format choice, aggregate."""

import os

import pytest

from kerntrace.backends.ftrace.replay import ReplaySession, replay_plan
from kerntrace.core.errors import KerntraceError, Unsupported
from kerntrace.core.model import (EVENT_NAME, LATENCY, POW2_MS, STR, Count, Event, Field, Filter,
                                  Histogram, Measurement, Pair, Records, Schedule, Tracepoint,
                                  UserFunction)
from kerntrace.core.results import CountSet, HistogramSet
from kerntrace.plugins import blockdev

TRACES = os.path.join(os.path.dirname(__file__), "data", "traces")
DEV_254_0 = 254 << 20
DEV_7_0 = 7 << 20


def trace(name):
    return os.path.join(TRACES, name)


def iolatency(dev=None, start="block_rq_issue", error_sources=("error", "errors"),
              aggregate=None, carry=("comm", "pid")):
    """The measurement iolatency makes: issue (or insert) -> complete by
    (dev, sector), power-of-two millisecond rows; one interval longer than
    any test trace, so one collect() sees the whole file."""
    # a flush's start keyed as its completion (sector 0 there since 5.10)
    sector = Field("sector", override=(blockdev.FLUSH_RWBS, blockdev.FLUSH_SECTOR))
    issue = Event("issue", Tracepoint("block", start),
                  fields=[Field("dev"), sector, Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=error_sources)])
    return Measurement([issue, done], aggregate or Histogram(LATENCY, scale=POW2_MS),
                       pair=Pair("issue", "done", key=("dev", "sector"), carry=carry),
                       filters=[Filter("dev", "==", dev)] if dev is not None else [],
                       schedule=Schedule(interval=1e6))


def replay(measurement, name):
    s = ReplaySession(measurement, replay_plan(measurement), trace(name))
    with s:
        return s, s.collect()


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["replay-block-6.18.txt", "replay-block-3.16.txt"])
def test_block_trace_gives_the_expected_histogram(name):
    s, r = replay(iolatency(dev=DEV_254_0), name)
    assert type(r.data) is HistogramSet
    (h,) = r.data.histograms.values()
    # 0.1 (flush), 0.5, 1.000 ms | 1.001, 2.000 | 2.001, 3.5 | 9.0 ms
    assert h.buckets == {0: 3, 1: 2, 2: 2, 4: 1} and h.count == 8
    assert h.total == (100 + 500 + 1000 + 1001 + 2000 + 2001 + 3500 + 9000) * 1000
    assert r.unmatched == 1 and r.lost == 5
    assert s.aggregator.pending == 1 and s.undecodable == 0


def test_without_a_device_filter_the_other_disk_counts_too():
    _s, r = replay(iolatency(), "replay-block-6.18.txt")
    (h,) = r.data.histograms.values()
    assert h.buckets == {0: 4, 1: 2, 2: 2, 4: 1}


def test_the_format_chosen_per_event_follows_the_file():
    s, _r = replay(iolatency(), "replay-block-6.18.txt")
    issue_fmt = s.formats[("block", "block_rq_issue")]
    assert issue_fmt.field("ioprio") is not None
    s, _r = replay(iolatency(), "replay-block-3.16.txt")
    assert s.formats[("block", "block_rq_issue")].field("ioprio") is None


def test_old_field_name_errors_is_read_from_an_old_format():
    m = iolatency(error_sources=("errors",),
                  aggregate=Records(fields=("sector", "error", LATENCY)))
    s, r = replay(m, "era-3.16.txt")
    assert s.formats[("block", "block_rq_complete")].field("errors") is not None
    assert [(rec["sector"], rec["error"], rec[LATENCY]) for rec in r.data] == [
        (12862464, 0, 2100000), (2048, 0, 4000000), (18446744073709551615, 0, 300000)]
    assert r.lost == 3


def test_records_keep_names_with_spaces_and_no_invented_pids():
    m = iolatency(dev=DEV_254_0, aggregate=Records(fields=("comm", "pid", "rwbs", LATENCY)))
    _s, r = replay(m, "replay-block-6.18.txt")
    by_comm = {rec["comm"]: rec for rec in r.data}
    assert by_comm["my-app 2-x-12"][LATENCY] == 3500000
    assert by_comm["Web Content"]["rwbs"] == "R"
    # no record-tgid column and no /proc of the traced host: pid unknown
    assert all(rec["pid"] is None for rec in r.data)


def test_real_capture_counts_exactly():
    m = iolatency(dev=DEV_7_0, aggregate=Count(keys=("rwbs", "comm")))
    _s, r = replay(m, "era-6.18-loop.txt")
    assert type(r.data) is CountSet
    assert r.data.counts == {("WS", "dd"): 8, ("RS", "dd"): 4}
    assert r.unmatched == 0


def test_record_tgid_gives_pids():
    m = iolatency(dev=DEV_7_0, aggregate=Records(fields=("pid", "comm", "sector")))
    _s, r = replay(m, "era-6.18-record-tgid.txt")
    assert len(r.data) == 12
    assert {rec["comm"] for rec in r.data} == {"dd"}
    assert all(isinstance(rec["pid"], int) and rec["pid"] > 0 for rec in r.data)


def test_counting_events_without_fields_needs_no_known_format(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(
        "# tracer: nop\n"
        "          <idle>-0     [000] d..2. 1.000001: sched_switch: prev_comm=swapper/0 ==> x\n"
        "            bash-5     [001] d..2. 1.000002: sched_switch: prev_comm=bash ==> y\n"
        "            bash-5     [001] ..... 1.000003: sched_process_exec: filename=/x pid=5 old_pid=5\n")
    m = Measurement([Event("sched_switch", Tracepoint("sched", "sched_switch")),
                     Event("sched_process_exec", Tracepoint("sched", "sched_process_exec"))],
                    Count(keys=(EVENT_NAME,)))
    s = ReplaySession(m, replay_plan(m), str(p))
    s.wait(0)
    assert s.collect().data.counts == {("sched_switch",): 2, ("sched_process_exec",): 1}


# ---------------------------------------------------------------------------
def test_replay_plan_resolves_fields_in_source_order():
    plan = replay_plan(iolatency())
    done = [e for e in plan.events if e.name == "done"][0]
    assert done.fields["error"] == "error" and done.format is None
    plan = replay_plan(iolatency(error_sources=("errors", "error")))
    done = [e for e in plan.events if e.name == "done"][0]
    assert done.fields["error"] == "errors"
    assert plan.read_path == "text"


def test_replay_plan_refuses_what_a_trace_cannot_hold():
    up = Measurement([Event("malloc", UserFunction("c", "malloc"))], Count())
    with pytest.raises(Unsupported, match="malloc"):
        replay_plan(up)
    odd = Measurement([Event("x", Tracepoint("block", "block_rq_issue"),
                             fields=[Field("nosuch")])], Count())
    with pytest.raises(Unsupported, match="nosuch"):
        replay_plan(odd)


def test_session_protocol():
    m = iolatency()
    s = ReplaySession(m, replay_plan(m), trace("replay-block-6.18.txt"))
    assert "replay-block-6.18.txt" in s.program_text()
    assert s.replay and not s.finished
    with s:
        s.wait(0.5)                  # replay runs on trace time: nothing to wait for
        first = s.collect()
        assert s.finished and s.exhausted
        second = s.collect()         # nothing more to read
    assert sum(h.count for h in first.data.histograms.values()) == 9
    assert not second.data.histograms and second.unmatched == 0


def test_intervals_follow_trace_time():
    """Three one-second intervals of trace time, aligned to whole seconds."""
    m = iolatency()
    m.schedule = Schedule(interval=1.0)
    s = ReplaySession(m, replay_plan(m), os.path.join(os.path.dirname(__file__), "data", "block",
                                                      "iolatency_boundary_4x.trace"))
    counts = []
    with s:
        while not s.finished:
            r = s.collect()
            counts.append(sum(h.count for h in r.data.histograms.values()))
    # the read in flight across the first boundary counts when it completes
    assert counts == [1, 2, 1]


def test_unreadable_file_is_one_clear_error(tmp_path):
    m = iolatency()
    s = ReplaySession(m, replay_plan(m), str(tmp_path / "missing.txt"))
    with pytest.raises(KerntraceError, match="cannot read"):
        s.collect()
