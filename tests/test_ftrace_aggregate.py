"""User-space aggregation: filters, pairing, histograms, counts, records,
and the task lookups behind pid/comm."""


import pytest
from hypothesis import given, settings, strategies as st

from kerntrace.backends.ftrace import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator, RawFeeder
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.replay import resolve_fields
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core.buckets import bucket_index
from kerntrace.core.model import (EVENT_NAME, LATENCY, LINEAR, LOG2, POW2_MS, QUEUED, STR, Count,
                                  Event, Field, Filter, Histogram, Measurement, Pair, Records,
                                  Tracepoint)
from kerntrace.core.results import CountSet, Histogram as HistogramResult, HistogramSet, Record

DEV = 254 << 20
OTHER_DEV = (8 << 20) | 16
MS = 1000000


def plan_for(measurement, era="6.18"):
    events = []
    for ev in measurement.events:
        probe = ev.probes[0]
        fmt = known_formats.event_format(era, probe.category, probe.name)
        fields, missing = resolve_fields(ev, [fmt] if fmt else [])
        assert not missing
        events.append(ResolvedEvent(ev, probe, probe.category, probe.name, fmt, fields))
    return Plan(events)


def issue_event(fields=(), name="issue"):
    return Event(name, Tracepoint("block", "block_rq_issue"),
                 fields=[Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)]
                 + list(fields))


def done_event(name="done"):
    return Event(name, Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("error", "errors"))])


def block_pair(aggregate, filters=(), carry=("comm", "pid", "bytes")):
    return Measurement([issue_event(), done_event()], aggregate,
                       pair=Pair("issue", "done", key=("dev", "sector"), carry=carry),
                       filters=filters)


def agg_for(measurement, tasks=None, **kw):
    return Aggregator(measurement, plan_for(measurement),
                      tasks=tasks if tasks is not None else TaskInfo(proc_root=None), **kw)


def issue(ts, sector, dev=DEV, rwbs="W", nbytes=4096, comm="dd", tid=4011, cpu=0, tgid=None,
          line_comm="dd"):
    return RawEvent("block", "block_rq_issue", ts, tid, cpu, comm=line_comm, tgid=tgid,
                    fields={"dev": dev, "sector": sector, "nr_sector": nbytes // 512,
                            "bytes": nbytes, "rwbs": rwbs, "comm": comm, "cmd": ""})


def done(ts, sector, dev=DEV, rwbs="W", error=0, cpu=0):
    return RawEvent("block", "block_rq_complete", ts, 0, cpu, comm="<idle>",
                    fields={"dev": dev, "sector": sector, "nr_sector": 8, "rwbs": rwbs,
                            "error": error, "cmd": ""})


def latency_hist(scale=POW2_MS, **kw):
    return Histogram(LATENCY, scale=scale, **kw)


def only_hist(report):
    assert type(report.data) is HistogramSet
    assert len(report.data.histograms) <= 1
    return report.data.histograms.get((), HistogramResult(POW2_MS, "ms"))


# ---------------------------------------------------------------------------
# pairing
def test_pairs_survive_collect_boundaries():
    a = agg_for(block_pair(latency_hist()))
    a.feed(issue(1000, 8))
    r1 = a.collect()
    assert only_hist(r1).count == 0 and r1.unmatched == 0 and a.pending == 1
    a.feed(done(1000 + 3 * MS, 8))
    h = only_hist(a.collect())
    assert h.buckets == {2: 1} and h.total == 3 * MS and a.pending == 0


def test_unmatched_ends_are_counted_per_interval():
    a = agg_for(block_pair(latency_hist()))
    a.feed(done(5, 8))
    a.feed(done(6, 16))
    r = a.collect()
    assert r.unmatched == 2 and only_hist(r).count == 0
    assert a.collect().unmatched == 0 and a.totals.unmatched == 2


def test_negative_latency_is_clamped_and_counted():
    a = agg_for(block_pair(latency_hist(LOG2, unit="nsecs")))
    a.feed(issue(5000, 8, cpu=1))
    a.feed(done(4000, 8, cpu=0))            # the other CPU's clock is behind
    h = only_hist(a.collect())
    assert h.buckets == {1: 1} and h.total == 0
    assert a.last.negative_latency == 1


def test_a_reused_key_replaces_the_pending_start():
    a = agg_for(block_pair(Records(fields=(LATENCY, "bytes"))))
    a.feed(issue(1000, 8, nbytes=512))
    a.feed(issue(2000, 8, nbytes=4096))
    a.feed(done(2500, 8))
    a.feed(done(2600, 8))
    r = a.collect()
    assert [rec.fields for rec in r.data] == [{LATENCY: 500, "bytes": 4096}]
    assert r.unmatched == 1 and a.last.replaced_starts == 1


def test_pending_starts_are_bounded_oldest_dropped():
    a = agg_for(block_pair(latency_hist()), max_pending=2)
    for i in range(3):
        a.feed(issue(1000 + i, 8 * i))
    assert a.pending == 2
    a.feed(done(9000, 0))                   # its start was dropped
    a.feed(done(9000, 8))
    r = a.collect()
    assert r.unmatched == 1 and only_hist(r).count == 1
    assert a.last.dropped_starts == 1


def test_end_filtered_out_still_retires_its_start():
    m = block_pair(latency_hist(), filters=[Filter("error", "==", 0, events=("done",))])
    a = agg_for(m)
    a.feed(issue(1000, 8))
    a.feed(done(2000, 8, error=-5))
    r = a.collect()
    assert only_hist(r).count == 0 and r.unmatched == 0 and a.pending == 0


def test_pair_yields_end_fields_and_carried_start_fields():
    m = block_pair(Records(fields=("ts", "comm", "pid", "dev", "sector", "bytes", "rwbs",
                                   "cpu", LATENCY, EVENT_NAME)))
    a = agg_for(m)
    a.feed(issue(1000, 8, tgid=4000, cpu=1, rwbs="WS"))
    a.feed(done(1000 + 1500, 8, rwbs="WS", cpu=0))
    (rec,) = a.collect().data
    assert type(rec) is Record and rec.ts == 2500
    assert rec.fields == {"ts": 2500, "comm": "dd", "pid": 4000, "dev": DEV, "sector": 8,
                          "bytes": 4096, "rwbs": "WS", "cpu": 0, LATENCY: 1500,
                          EVENT_NAME: "done"}
    assert rec.best_effort == frozenset()


def test_events_outside_the_pair_and_the_plan_are_ignored():
    extra = Event("insert", Tracepoint("block", "block_rq_insert"), fields=[Field("dev")])
    m = Measurement([issue_event(), done_event(), extra], latency_hist(),
                    pair=Pair("issue", "done", key=("dev", "sector")))
    a = agg_for(m)
    a.feed(RawEvent("block", "block_rq_insert", 1, 1, 0, fields={"dev": DEV}))
    a.feed(RawEvent("sched", "sched_switch", 1, 1, 0))
    assert a.counters.ignored == 2 and a.pending == 0


# ---------------------------------------------------------------------------
# pairs with a mark: insert -> issue -> completion
def insert_event():
    return Event("insert", Tracepoint("block", "block_rq_insert"),
                 fields=[Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)])


def queued_pair(aggregate, filters=(), carry=("comm", "pid", "bytes")):
    return Measurement([insert_event(), issue_event(), done_event()], aggregate,
                       pair=Pair("insert", "done", key=("dev", "sector"), carry=carry,
                                 mark="issue"),
                       filters=filters)


def insert(ts, sector, dev=DEV, rwbs="W", nbytes=4096, comm="dd", tid=4011, cpu=0, tgid=None,
           line_comm="dd"):
    return RawEvent("block", "block_rq_insert", ts, tid, cpu, comm=line_comm, tgid=tgid,
                    fields={"dev": dev, "sector": sector, "nr_sector": nbytes // 512,
                            "bytes": nbytes, "rwbs": rwbs, "comm": comm, "cmd": ""})


QUEUE_RECORD = Records(fields=("comm", "pid", "sector", "bytes", QUEUED, LATENCY))


def rows(report):
    return [(r["comm"], r["sector"], r["bytes"], r[QUEUED], r[LATENCY]) for r in report.data]


def test_mark_splits_queue_time_from_latency():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(1000, 8, line_comm="dd", tgid=4000))
    a.feed(issue(1000 + 2 * MS, 8, line_comm="kworker/0:1H", tid=50, tgid=50))
    a.feed(done(1000 + 5 * MS, 8))
    r = a.collect()
    (rec,) = r.data
    # the start's carried fields, not the mark's
    assert (rec["comm"], rec["pid"]) == ("dd", 4000)
    assert (rec[QUEUED], rec[LATENCY]) == (2 * MS, 3 * MS)
    assert r.unmatched == 0 and a.pending == 0


def test_mark_without_a_start_starts_the_pair_with_no_queue_time():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(issue(1000, 16, line_comm="kworker/1:1H", nbytes=8192))
    a.feed(done(1000 + 700, 16))
    assert rows(a.collect()) == [("kworker/1:1H", 16, 8192, 0, 700)]


def test_start_without_a_mark_measures_from_the_start():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(1000, 24))
    a.feed(done(1900, 24))
    assert rows(a.collect()) == [("dd", 24, 4096, 0, 900)]


def test_queued_pairs_survive_interval_boundaries():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(1000, 8))
    r1 = a.collect()
    assert r1.data == [] and a.pending == 1
    a.feed(issue(4000, 8, line_comm="other"))
    a.feed(issue(5000, 32))                  # starts its own pair
    r2 = a.collect()
    assert r2.data == [] and a.pending == 2
    a.feed(done(10000, 8))
    a.feed(done(10500, 32))
    a.feed(done(11000, 40))                  # never started
    r3 = a.collect()
    assert rows(r3) == [("dd", 8, 4096, 3000, 6000), ("dd", 32, 4096, 0, 5500)]
    assert r3.unmatched == 1 and a.pending == 0


def test_a_later_mark_replaces_an_earlier_one():
    # a request issued, requeued and issued again: latency from the last issue
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(1000, 8))
    a.feed(issue(2000, 8))
    a.feed(issue(5000, 8))
    a.feed(done(6000, 8))
    assert rows(a.collect()) == [("dd", 8, 4096, 4000, 1000)]


def test_a_new_start_forgets_the_old_mark():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(1000, 8))
    a.feed(issue(2000, 8))
    a.feed(insert(3000, 8, nbytes=512))      # the key reused before the completion
    a.feed(done(3500, 8))
    assert rows(a.collect()) == [("dd", 8, 512, 0, 500)]
    assert a.last.replaced_starts == 1


def test_queue_time_clock_skew_is_clamped_and_counted():
    a = agg_for(queued_pair(QUEUE_RECORD))
    a.feed(insert(5000, 8, cpu=1))
    a.feed(issue(4000, 8, cpu=0))            # the other CPU's clock is behind
    a.feed(done(4500, 8))
    assert rows(a.collect()) == [("dd", 8, 4096, 0, 500)]
    assert a.last.negative_latency == 1


def test_mark_filters_apply_to_the_mark():
    # a key filter drops the other device's marks; a filter on the mark's
    # own field ends the pair (its end is then dropped: not unmatched)
    m = queued_pair(QUEUE_RECORD, filters=[Filter("dev", "==", DEV),
                                           Filter("rwbs", "!=", "WM", events=("issue",))])
    a = agg_for(m)
    a.feed(issue(10, 8, dev=OTHER_DEV))
    a.feed(done(20, 8, dev=OTHER_DEV))
    a.feed(insert(100, 16))
    a.feed(issue(150, 16, rwbs="WM"))
    a.feed(done(300, 16))
    a.feed(insert(400, 24))
    a.feed(issue(450, 24))
    a.feed(done(600, 24))
    r = a.collect()
    assert rows(r) == [("dd", 24, 4096, 50, 150)]
    assert r.unmatched == 0 and a.pending == 0


def test_queued_histogram_and_bounded_pending():
    a = agg_for(queued_pair(Histogram(QUEUED, scale=LOG2, unit="nsecs")), max_pending=2)
    a.feed(issue(10, 0))
    a.feed(issue(11, 8))
    a.feed(issue(12, 16))                    # the oldest is dropped
    assert a.pending == 2 and a.counters.dropped_starts == 1
    a.feed(insert(100, 24))
    a.feed(insert(101, 32))
    a.feed(issue(200, 32))
    a.feed(done(300, 32))
    h = only_hist(a.collect())
    assert h.buckets == {7: 1} and h.total == 99


def known_tasks(**names):
    """A TaskInfo that knows (from its start) the name of each tid given
    as t<tid>=name, and follows no task events."""
    tasks = TaskInfo(proc_root=None)
    for key, comm in names.items():
        tasks.learn(int(key[1:]), comm=comm)
    return tasks


def test_mark_starting_a_pair_marks_a_looked_up_comm_best_effort():
    start = Event("enter", Tracepoint("syscalls", "sys_enter_openat"), fields=[Field("dfd")])
    mark = Event("mid", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])
    end = Event("exit", Tracepoint("syscalls", "sys_exit_openat"), fields=[Field("ret")])
    m = Measurement([start, mark, end], Records(fields=("comm", QUEUED, LATENCY)),
                    pair=Pair("enter", "exit", key=("tid",), carry=("comm",), mark="mid"))
    a = Aggregator(m, plan_for(m), tasks=known_tasks(t77="from-start"))
    # sys_enter_openat has no comm field: what TaskInfo knows; block_rq_issue has one
    a.feed(RawEvent("syscalls", "sys_enter_openat", 10, 77, 0, fields={"dfd": 3}))
    a.feed(RawEvent("block", "block_rq_issue", 12, 77, 0, fields={"dev": 1, "comm": "x"}))
    a.feed(RawEvent("syscalls", "sys_exit_openat", 15, 77, 0, fields={"ret": 4}))
    a.feed(RawEvent("block", "block_rq_issue", 20, 77, 0, fields={"dev": 1, "comm": "own"}))
    a.feed(RawEvent("syscalls", "sys_exit_openat", 29, 77, 0, fields={"ret": 5}))
    recs = a.collect().data
    assert [(r["comm"], r[QUEUED], r[LATENCY], r.best_effort) for r in recs] == [
        ("from-start", 2, 3, {"comm"}), ("own", 0, 9, frozenset())]


def test_a_start_its_filters_reject_silences_its_end():
    # iosnoop -p: the pid filter is on the start only.  Another process's
    # I/O is neither reported nor "unmatched"; an end whose start was never
    # seen still is.
    m = queued_pair(QUEUE_RECORD, filters=[Filter("pid", "==", 77, events=("insert",))])
    a = agg_for(m, max_pending=3)
    a.feed(insert(100, 8, tgid=77))
    a.feed(insert(110, 16, tgid=78))
    a.feed(done(200, 8))
    a.feed(done(210, 16))
    a.feed(done(220, 24))                       # started before tracing
    r = a.collect()
    assert [row[1] for row in rows(r)] == [8]
    assert r.unmatched == 1 and a.pending == 0
    # rejected starts whose end never comes are bounded like any start
    for sector in range(100, 110):
        a.feed(insert(300 + sector, sector, tgid=78))
    assert a.pending == 3 and a.collect() and a.last.dropped_starts == 7


# ---------------------------------------------------------------------------
# Shared keys: every flush of a device has sector 2^64-1.
FLUSH = (1 << 64) - 1
FLUSH_RECORD = Records(fields=("sector", LATENCY))


def flush_pair(filters=(), mark=False):
    events = [insert_event(), issue_event(), done_event()] if mark else \
        [issue_event(), done_event()]
    return Measurement(events, FLUSH_RECORD, filters=list(filters),
                       pair=Pair("insert" if mark else "issue", "done", key=("dev", "sector"),
                                 mark="issue" if mark else None, shared={"sector": FLUSH}))


def latencies(report):
    return [(r["sector"], r[LATENCY]) for r in report.data]


def test_one_flush_at_a_time_is_measured():
    a = agg_for(flush_pair())
    a.feed(issue(100, FLUSH, nbytes=0))
    a.feed(done(150, FLUSH))
    a.feed(issue(200, FLUSH, nbytes=0))
    a.feed(done(260, FLUSH))
    r = a.collect()
    assert latencies(r) == [(FLUSH, 50), (FLUSH, 60)] and r.unmatched == 0


@pytest.mark.parametrize("n", [2, 3])
def test_overlapping_flushes_are_never_paired(n):
    # Whose completion is whose cannot be told: none is timed, each end is
    # unmatched, and nothing stays pending.  Other I/O is unaffected.
    a = agg_for(flush_pair())
    for i in range(n):
        a.feed(issue(100 + i, FLUSH, nbytes=0))
    a.feed(issue(105, 8))
    a.feed(done(110, 8))
    for i in range(n):
        a.feed(done(200 + i, FLUSH))
    r = a.collect()
    assert latencies(r) == [(8, 5)] and r.unmatched == n and a.pending == 0
    a.feed(issue(300, FLUSH, nbytes=0))              # alone again: measured
    a.feed(done(340, FLUSH))
    assert latencies(a.collect()) == [(FLUSH, 40)]


def test_overlapping_flushes_with_queue_marks():
    a = agg_for(flush_pair(mark=True))
    a.feed(insert(100, FLUSH, nbytes=0))
    a.feed(insert(101, FLUSH, nbytes=0))
    a.feed(issue(110, FLUSH, nbytes=0))              # whose issue? neither's
    a.feed(issue(111, FLUSH, nbytes=0))
    a.feed(done(200, FLUSH))
    a.feed(done(201, FLUSH))
    r = a.collect()
    assert latencies(r) == [] and r.unmatched == 2 and a.pending == 0


def test_a_rejected_flush_still_makes_the_key_shared():
    # iosnoop -p: another process's flush (rejected) and ours overlap; the
    # first completion could be either.
    a = agg_for(flush_pair(filters=[Filter("pid", "==", 77, events=("issue",))]))
    a.feed(issue(100, FLUSH, nbytes=0, tgid=78))
    a.feed(issue(101, FLUSH, nbytes=0, tgid=77))
    a.feed(done(150, FLUSH))
    a.feed(done(160, FLUSH))
    r = a.collect()
    assert latencies(r) == [] and r.unmatched == 2 and a.pending == 0


def test_lost_events_release_a_shared_key():
    # A lost completion would keep the key shared for ever.
    a = agg_for(flush_pair())
    a.feed(issue(100, FLUSH, nbytes=0))
    a.feed(issue(101, FLUSH, nbytes=0))
    a.feed_lost(5)
    assert a.pending == 0
    a.feed(issue(300, FLUSH, nbytes=0))
    a.feed(done(330, FLUSH))
    assert latencies(a.collect()) == [(FLUSH, 30)]


def test_kernel_filters_of_a_start_are_those_its_end_shares():
    from kerntrace.backends.ftrace.kfilter import kernel_side_filters
    dev = Filter("dev", "==", DEV)
    pid = Filter("pid", "==", 77, events=("insert",))
    rwbs = Filter("rwbs", "!=", "WM", events=("issue",))
    m = queued_pair(QUEUE_RECORD, filters=[dev, pid, rwbs])
    assert kernel_side_filters(m, m.event("insert")) == [dev]
    assert kernel_side_filters(m, m.event("issue")) == [dev]
    assert kernel_side_filters(m, m.event("done")) == [dev]


def test_mark_handler_only_touches_pending_entries_when_a_start_is_there():
    src = agg_for(queued_pair(QUEUE_RECORD)).sources["issue"]
    found = src.index("if s is not None and s is not _REJECTED:")
    # nothing carried is read before the pending start is looked up
    assert "x_bytes" not in src[:found] and "x_pid" not in src[:found]


# ---------------------------------------------------------------------------
# filters, evaluated in user space whatever the kernel did
@pytest.mark.parametrize("op, value, passing", [
    ("==", 4096, [4096]), ("!=", 4096, [512, 65536]), ("<", 4096, [512]),
    ("<=", 4096, [512, 4096]), (">", 4096, [65536]), (">=", 4096, [4096, 65536]),
])
def test_integer_filter_ops(op, value, passing):
    m = Measurement([issue_event()], Count(keys=("bytes",)), filters=[Filter("bytes", op, value)])
    a = agg_for(m)
    for i, b in enumerate((512, 4096, 65536)):
        a.feed(issue(i, i, nbytes=b))
    assert sorted(k[0] for k in a.collect().data.counts) == passing


@pytest.mark.parametrize("op, value, passing", [
    ("==", "WS", ["WS"]), ("!=", "WS", ["FWS", "R", "RA", "W"]),
    ("glob", "*R*", ["R", "RA"]), ("glob", "W*", ["W", "WS"]), ("glob", "*S", ["FWS", "WS"]),
    ("glob", "RA", ["RA"]), ("glob", "*", ["FWS", "R", "RA", "W", "WS"]),
])
def test_string_filter_ops(op, value, passing):
    m = Measurement([issue_event()], Count(keys=("rwbs",)), filters=[Filter("rwbs", op, value)])
    a = agg_for(m)
    for i, rwbs in enumerate(("W", "WS", "R", "RA", "FWS")):
        a.feed(issue(i, i, rwbs=rwbs))
    assert sorted(k[0] for k in a.collect().data.counts) == passing


def test_device_filter_applies_to_both_ends():
    a = agg_for(block_pair(latency_hist(), filters=[Filter("dev", "==", DEV)]))
    a.feed(issue(0, 8, dev=OTHER_DEV))
    a.feed(done(MS, 8, dev=OTHER_DEV))
    a.feed(issue(0, 8))
    a.feed(done(MS, 8))
    r = a.collect()
    assert only_hist(r).count == 1 and r.unmatched == 0 and a.pending == 0


def test_context_field_filters_pid_comm_tid_cpu():
    tasks = TaskInfo(proc_root=None)
    tasks.learn(4011, tgid=4000)
    for flt, want in [(Filter("pid", "==", 4000), 2), (Filter("tid", "==", 4011), 2),
                      (Filter("cpu", ">=", 1), 1), (Filter("comm", "glob", "d*"), 2),
                      (Filter("comm", "==", "cat"), 1)]:
        m = Measurement([issue_event()], Count(), filters=[flt])
        a = agg_for(m, tasks=tasks)
        a.feed(issue(0, 0, tid=4011, cpu=0))                  # pid from TaskInfo: 4000
        a.feed(issue(1, 1, tid=4011, cpu=1, tgid=4000))       # pid from record-tgid
        a.feed(issue(2, 2, tid=77, cpu=0, line_comm="cat"))   # unknown to TaskInfo
        assert a.collect().data.counts.get((), 0) == want, flt


# ---------------------------------------------------------------------------
# histograms: exactly core.buckets
@pytest.mark.parametrize("scale, kw", [(LOG2, {"unit": "nsecs"}), (LINEAR, {"step": 250000}),
                                       (POW2_MS, {})])
def test_histogram_buckets_match_core_buckets(scale, kw):
    spec = latency_hist(scale, **kw)
    a = agg_for(block_pair(spec))
    lats = [0, 1, 2, 3, 999999, MS, MS + 1, 2 * MS, 2 * MS + 1, 4 * MS, 7 * MS + 3, 2 ** 40]
    for i, lat in enumerate(lats):
        a.feed(issue(10, i * 8))
        a.feed(done(10 + lat, i * 8))
    h = only_hist(a.collect())
    want = HistogramResult(scale, spec.unit, spec.step)
    for lat in lats:
        v = lat // spec.divisor        # LINEAR here is in usecs: divisor 1000
        want.add(bucket_index(scale, v, spec.step), v)
    assert h == want and h.count == len(lats)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.integers(-5, 5 * MS), st.integers(-(1 << 63), 1 << 64),
                 st.sampled_from([MS - 1, MS, MS + 1, 2 * MS, 2 * MS + 1, 1 << 40])),
       st.integers(1, 10 ** 6))
def test_inlined_bucket_arithmetic_is_core_buckets(value, step):
    from kerntrace.backends.ftrace.aggregate import _BUCKET_EXPR
    from kerntrace.core.buckets import NS_PER_MS
    for scale, expr in _BUCKET_EXPR.items():
        got = eval(expr % {"v": "x"}, {"x": value, "_step": step, "_NS_PER_MS": NS_PER_MS})
        assert got == bucket_index(scale, value, step), (scale, value, step)


def test_pow2ms_edges_one_and_two_milliseconds():
    a = agg_for(block_pair(latency_hist()))
    for i, lat in enumerate([MS, 2 * MS, MS + 1000, 0, 500 * 1000]):
        a.feed(issue(0, i))
        a.feed(done(lat, i))
    h = only_hist(a.collect())
    # exactly 1.000 ms is in 0 -> 1, exactly 2.000 ms in 1 -> 2 (perf-tools' rows)
    assert h.buckets == {0: 3, 1: 2}


def test_histogram_of_a_field_with_divisor_and_keys():
    m = Measurement([issue_event()], Histogram("bytes", scale=LOG2, unit="kbytes", divisor=1024,
                                               keys=("rwbs",)))
    a = agg_for(m)
    for i, (rwbs, b) in enumerate([("W", 4096), ("W", 4096), ("R", 65536), ("R", 512)]):
        a.feed(issue(i, i, rwbs=rwbs, nbytes=b))
    d = a.collect().data
    assert d.key_names == ("rwbs",)
    assert d.histograms[("W",)].buckets == {3: 2} and d.histograms[("W",)].total == 8
    assert d.histograms[("R",)].buckets == {7: 1, 1: 1} and d.histograms[("R",)].total == 64
    assert d.histograms[("W",)].unit == "kbytes"


def test_latency_histogram_keyed_by_carried_comm():
    a = agg_for(block_pair(latency_hist(LOG2, unit="usecs", keys=("comm",))))
    a.feed(issue(0, 8, comm="dd", line_comm=None))
    a.feed(issue(0, 16, comm="cat", line_comm=None))
    a.feed(done(3000, 8))
    a.feed(done(9000, 16))
    d = a.collect().data
    assert d.histograms[("dd",)].buckets == {2: 1} and d.histograms[("dd",)].total == 3
    assert d.histograms[("cat",)].buckets == {4: 1}


# ---------------------------------------------------------------------------
# counts and records
def test_count_per_logical_event_and_per_comm():
    m = Measurement([issue_event(name="issue"), done_event(name="done")],
                    Count(keys=(EVENT_NAME, "comm")))
    a = agg_for(m)
    a.feed(issue(0, 8))
    a.feed(issue(1, 16))
    a.feed(done(2, 8))
    r = a.collect()
    assert type(r.data) is CountSet and r.data.key_names == (EVENT_NAME, "comm")
    assert r.data.counts == {("issue", "dd"): 2, ("done", "<idle>"): 1}
    assert a.collect().data.counts == {}


def test_records_stream_and_reset():
    m = Measurement([issue_event()], Records(fields=("ts", "tid", "sector", "comm")))
    a = agg_for(m)
    a.feed(issue(10, 8))
    a.feed(issue(20, 16))
    r = a.collect()
    assert [(rec.ts, rec["sector"]) for rec in r.data] == [(10, 8), (20, 16)]
    assert a.collect().data == []


def test_comm_sources_line_then_own_field_then_taskinfo():
    tasks = known_tasks(t900="from-start")
    m = Measurement([issue_event(), done_event()], Records(fields=("comm",)))
    a = agg_for(m, tasks=tasks)
    a.feed(issue(1, 8, comm="payload", line_comm="line"))
    a.feed(issue(2, 8, comm="payload", line_comm=None))        # raw path: no line comm
    a.feed(RawEvent("block", "block_rq_complete", 3, 900, 0, comm=None,
                    fields={"dev": DEV, "sector": 8, "rwbs": "W", "error": 0}))
    recs = a.collect().data
    assert [rec["comm"] for rec in recs] == ["line", "payload", "from-start"]
    # only the name looked up after the fact is best effort
    assert [rec.best_effort for rec in recs] == [frozenset(), frozenset(), {"comm"}]


def test_a_declared_field_reading_comm_is_not_the_task_name():
    # sched_wakeup's "comm" is the wakee's name, not the current task's
    wakeup = Event("wakeup", Tracepoint("sched", "sched_wakeup"),
                   fields=[Field("wakee", STR, sources=("comm",))])
    m = Measurement([wakeup], Records(fields=("comm", "wakee")))
    f = known_formats.event_format("6.18", "block", "block_rq_issue")   # has a comm field
    plan = Plan([ResolvedEvent(wakeup, wakeup.probes[0], "sched", "sched_wakeup", f,
                               {"wakee": "comm"})])
    a = Aggregator(m, plan, tasks=known_tasks(t5="waker"))
    a.feed(RawEvent("sched", "sched_wakeup", 1, 5, 0, fields={"comm": "sleeper"}))
    (rec,) = a.collect().data
    assert rec.fields == {"comm": "waker", "wakee": "sleeper"}


SCHED_WAKEUP = """name: sched_wakeup
ID: 320
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:int target_cpu;\toffset:32;\tsize:4;\tsigned:1;

print fmt: "comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, REC->prio, REC->target_cpu
"""


def test_an_undeclared_comm_beside_a_pid_is_not_the_task_name():
    # counting sched_wakeup by comm counts wakers (the current task, as eBPF
    # does), not the wakees the event's comm/pid describe
    from kerntrace.core.tracefs import parse_format
    wakeup = Event("wakeup", Tracepoint("sched", "sched_wakeup"))
    m = Measurement([wakeup], Count(keys=("comm",)))
    plan = Plan([ResolvedEvent(wakeup, wakeup.probes[0], "sched", "sched_wakeup",
                               parse_format(SCHED_WAKEUP, "sched"), {})])
    a = Aggregator(m, plan, tasks=known_tasks(t5="waker"))
    a.feed(RawEvent("sched", "sched_wakeup", 1, 5, 0, fields={"comm": "sleeper", "pid": 9}))
    assert a.collect().data.counts == {("waker",): 1}


def test_carried_comm_looked_up_after_the_fact_is_best_effort():
    start = Event("enter", Tracepoint("syscalls", "sys_enter_openat"), fields=[Field("dfd")])
    end = Event("exit", Tracepoint("syscalls", "sys_exit_openat"), fields=[Field("ret")])
    m = Measurement([start, end], Records(fields=("comm", "ret", LATENCY)),
                    pair=Pair("enter", "exit", key=("tid",), carry=("comm",)))
    a = Aggregator(m, plan_for(m), tasks=known_tasks(t31="kworker"))
    a.feed(RawEvent("syscalls", "sys_enter_openat", 10, 31, 0, fields={"dfd": 3}))
    a.feed(RawEvent("syscalls", "sys_exit_openat", 15, 31, 0, fields={"ret": -2}))
    a.feed(RawEvent("syscalls", "sys_enter_openat", 20, 31, 0, comm="sh", fields={"dfd": 3}))
    a.feed(RawEvent("syscalls", "sys_exit_openat", 29, 31, 0, comm="sh", fields={"ret": 4}))
    recs = a.collect().data
    assert [(r["comm"], r["ret"], r[LATENCY], r.best_effort) for r in recs] == [
        ("kworker", -2, 5, {"comm"}), ("sh", 4, 9, frozenset())]


# ---------------------------------------------------------------------------
# losses, incomplete events, generated code
def test_lost_events_reported_and_reset():
    a = agg_for(block_pair(latency_hist()))
    a.feed_lost(5)
    a.feed_lost(None)
    a.feed_lost(0)
    r = a.collect()
    assert r.lost == 6 and a.last.lost_uncounted == 1
    assert a.collect().lost == 0


def test_event_missing_a_needed_field_is_counted_not_fatal():
    a = agg_for(block_pair(latency_hist()))
    a.feed(RawEvent("block", "block_rq_issue", 1, 1, 0, fields={"dev": DEV}))
    assert a.counters.incomplete == 1 and a.pending == 0


def test_generated_code_holds_no_values():
    m = block_pair(Count(keys=("comm",)), filters=[Filter("dev", "==", 123456789),
                                                   Filter("rwbs", "glob", "*Zq*")])
    a = agg_for(m)
    src = "".join(a.sources.values())
    assert "123456789" not in src and "Zq" not in src


# ---------------------------------------------------------------------------
# the raw path gives the same reports as RawEvents
def test_raw_feeder_matches_feeding_raw_events():
    hp, he = known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"]
    fi = known_formats.event_format("6.18", "block", "block_rq_issue")
    fd = known_formats.event_format("6.18", "block", "block_rq_complete")
    m = block_pair(latency_hist(LOG2, unit="usecs", keys=("comm", "rwbs")),
                   filters=[Filter("dev", "==", DEV)])
    tasks = TaskInfo(proc_root=None)
    tasks.learn(4011, tgid=4000)
    events = []
    for i in range(300):
        dev = OTHER_DEV if i % 7 == 0 else DEV
        rwbs = "WS" if i % 3 else "R"
        events.append(issue(1000 + i * 100, i * 8, dev=dev, rwbs=rwbs,
                            comm="dd" if i % 2 else "cat", line_comm=None))
        events.append(done(1000 + i * 100 + 37 * i, i * 8, dev=dev, rwbs=rwbs))
    events.sort(key=lambda e: e.ts)          # a page holds entries in time order
    pages = []
    pb = PageBuilder(hp)
    for e in events:
        payload = encode_payload(fi if e.event == "block_rq_issue" else fd, e.tid, e.fields)
        if not pb.add(payload, e.ts):
            pages.append(pb.page())
            pb = PageBuilder(hp)
            pb.add(payload, e.ts)
    pages.append(pb.page())
    by_events = Aggregator(m, plan_for(m), tasks=tasks)
    for e in events:
        e.comm = None
        by_events.feed(e)
    by_pages = Aggregator(m, plan_for(m), tasks=tasks)
    feeder = RawFeeder(RawDecoder(hp, he, {fi.id: fi, fd.id: fd}), by_pages)
    assert sum(feeder.feed_page(p, 0) for p in pages) == 600
    want = by_events.collect().data
    got = by_pages.collect().data
    assert got == want and sum(h.count for h in got.histograms.values()) == 300 - 43


@pytest.mark.parametrize("queue", [False, True])
def test_block_tools_derive_sizes_and_flush_keys(queue):
    """biosnoop's own measurement: a request recorded with 0 bytes (every
    file system request up to v4.10) gets nr_sector * 512; a flush whose
    start shows sector 0 (newer kernels) pairs with its all-ones
    completion; a real I/O at sector 0 stays a sector-0 I/O."""
    from kerntrace.plugins import biosnoop
    tool = biosnoop.BioSnoop()
    m = tool.measurement(tool.parse_args(["-Q"] if queue else []))
    a = agg_for(m)
    flush = (1 << 64) - 1
    start = "block_rq_insert" if queue else "block_rq_issue"

    def begin(ts, sector, rwbs, nbytes, nr, comm):
        return RawEvent("block", start, ts, 4011, 0, comm=comm,
                        fields={"dev": DEV, "sector": sector, "nr_sector": nr, "bytes": nbytes,
                                "rwbs": rwbs, "comm": comm, "cmd": ""})

    for ev in (begin(1000, 2048, "W", 0, 8, "dd"), done(3000, 2048),
               begin(4000, 0, "FF", 0, 0, "jbd2"), begin(4100, 0, "R", 4096, 8, "dd"),
               done(4500, 0, rwbs="R"), done(4900, flush, rwbs="FF")):
        a.feed(ev)
    r = a.collect()
    got = [(x["comm"], x["sector"], x["bytes"], x[LATENCY]) for x in r.data]
    assert got == [("dd", 2048, 4096, 2000), ("dd", 0, 4096, 400), ("jbd2", flush, 0, 900)]
    assert a.last.unmatched == 0 and a.pending == 0
