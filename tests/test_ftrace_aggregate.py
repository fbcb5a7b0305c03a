"""The ftrace backend's user-space aggregation, beyond the shared scenario
table (tests/scenarios.py, which checks its pairing, filters and
aggregates against the model): its bounded table of pending starts, the
task lookups behind pid/comm, incomplete events, the generated handlers
and the raw path."""


from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.replay import resolve_fields
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core.model import (LATENCY, LOG2, POW2_MS, QUEUED, STR, Count,
                                  Event, Field, Filter, Histogram, Measurement, Pair, Records,
                                  Tracepoint)
from kerntrace.core.results import Histogram as HistogramResult, HistogramSet

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
# filters: which run in the kernel, and in user space whatever the kernel did
def test_kernel_filters_of_a_pair_are_its_pair_filters():
    # only a filter decided by the key and applying to the start and the
    # mark may drop a pair event in the kernel (core.semantics.early_filters):
    # a start the others reject must reach user space to silence its end,
    # an end they reject must still retire its start
    from kerntrace.backends.ftrace.kfilter import event_filter, kernel_side_filters
    dev = Filter("dev", "==", DEV)
    pid = Filter("pid", "==", 77, events=("insert",))
    rwbs = Filter("rwbs", "!=", "WM", events=("insert", "done"))
    error = Filter("error", "==", 0, events=("done",))
    sector = Filter("sector", ">", 8, events=("insert",))     # not on the mark
    m = queued_pair(QUEUE_RECORD, filters=[dev, pid, rwbs, error, sector])
    for name in ("insert", "issue", "done"):
        assert kernel_side_filters(m, m.event(name)) == [dev], name
    plan = plan_for(m)
    assert [event_filter(m, ev) for ev in plan.events] == ["dev == %d" % DEV] * 3


def test_set_event_pid_only_for_a_pid_filter_every_event_applies_early():
    from kerntrace.backends.ftrace.kfilter import pid_for_set_event_pid
    pid = Filter("pid", "==", 77)
    # a block request's end runs in another task: its start must reach
    # user space whatever its pid, to silence its end
    assert pid_for_set_event_pid(block_pair(Records(fields=(LATENCY,)), filters=[pid])) is None
    start = Event("enter", Tracepoint("syscalls", "sys_enter_openat"), fields=[Field("dfd")])
    end = Event("exit", Tracepoint("syscalls", "sys_exit_openat"), fields=[Field("ret")])
    by_thread = Measurement([start, end], Records(fields=(LATENCY,)), filters=[pid],
                            pair=Pair("enter", "exit", key=("tid",)))
    assert pid_for_set_event_pid(by_thread) == 77
    assert pid_for_set_event_pid(Measurement([start], Count(), filters=[pid])) == 77


def test_mark_handler_only_touches_pending_entries_when_a_start_is_there():
    src = agg_for(queued_pair(QUEUE_RECORD)).sources["issue"]
    found = src.index("if s is not None and s is not _REJECTED:")
    # nothing carried is read before the pending start is looked up
    assert "x_bytes" not in src[:found] and "x_pid" not in src[:found]


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
# counts and records
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
def test_raw_sinks_match_feeding_raw_events():
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
    decoder = RawDecoder(hp, he, {fi.id: fi, fd.id: fd})
    binding = decoder.compile_sinks(by_pages.raw_sinks(decoder.formats_by_id))
    assert sum(decoder.decode_page_into(p, 0, binding)[0] for p in pages) == 600
    want = by_events.collect().data
    got = by_pages.collect().data
    assert got == want and sum(h.count for h in got.histograms.values()) == 300 - 43

