"""The ftrace backend's bulk pair path (bulkpair.py) against the reference
evaluator (core.semantics) on iolatency's own measurement: pages built by
rawparse.PageBuilder as the kernel lays them out, read in drain laps as the
live session reads them.  The shared scenario table runs it too
(test_scenarios.py, ftrace-bulk); here the streams are long and random, so
that every way through it is taken: split and walked pages (time extends,
an entry size it has not seen), pairs in a batch and across batches,
sectors read twice in a batch, flushes, other disks, losses."""

import random

import pytest

from bulkpages import BulkRun, lost_page, payload
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.bulkpair import bulk_pairs
from kerntrace.backends.ftrace.plan import RawEvent
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core import known_formats
from kerntrace.core.semantics import IntervalEnd, Lost, TraceEvent, evaluate
from kerntrace.plugins.iolatency import IoLatency
from test_scenarios import comparable, ftrace_plan

DEV = (7 << 20) | 3
OTHER = (8 << 20) | 16
FLUSH = (1 << 64) - 1
MS = 1000000


def measurement(*argv):
    tool = IoLatency()
    return tool.measurement(tool.parse_args(list(argv)))


def start(ts, sector, dev=DEV, rwbs="R", cpu=0):
    return TraceEvent("start", ts, cpu=cpu, pid=4000, tid=4011, comm="fio",
                      fields={"dev": dev, "sector": sector, "nr_sector": 8, "bytes": 4096,
                              "rwbs": rwbs})


def done(ts, sector, dev=DEV, rwbs="R", cpu=0):
    return TraceEvent("done", ts, cpu=cpu, pid=0, tid=0, comm="swapper/0",
                      fields={"dev": dev, "sector": sector, "nr_sector": 8, "rwbs": rwbs,
                              "error": 0})


def io_stream(seed, n, sectors=64, intervals=4, losses=True):
    """n I/Os, a few in flight at a time, on 3 CPUs; time ordered, ties
    none (the reference takes the stream's order, the backend the clock)."""
    rnd = random.Random(seed)
    items = []
    ts = 10 ** 12
    for k in range(n):
        ts += rnd.choice((200, 1000, 5000, 40000, 3 * MS) if k % 97 else (200 << 20,))
        kind = rnd.random()
        dev = OTHER if kind < 0.05 else DEV
        end = ts + rnd.choice((101, 901, 30001, 2 * MS + 1, 9 * MS + 1))
        sector = rnd.randrange(sectors) * 8
        if kind > 0.97:
            # a flush: its issue shows some sector, its completion none
            items.append((ts, start(ts, sector, dev, "FF", rnd.randrange(3))))
            items.append((end, done(end, FLUSH, dev, "FF", rnd.randrange(3))))
        elif kind > 0.9:
            items.append((ts, done(ts, sector, dev, cpu=rnd.randrange(3))))   # never started
        else:
            items.append((ts, start(ts, sector, dev, cpu=rnd.randrange(3))))
            if kind > 0.1:      # (else it never ends)
                items.append((end, done(end, sector, dev, cpu=rnd.randrange(3))))
        if k and k % (n // intervals) == 0:
            items.append((ts + 7, IntervalEnd()))
        if losses and k % 501 == 250:
            items.append((ts + 3, Lost(rnd.choice((1, 7, None)))))
    items.sort(key=lambda i: i[0])
    return [item for _ts, item in items]


def cmd_now_and_then(ev):
    # a request with a command string: a larger entry than the format's
    # empty-string size, which the split learns from the walk
    return {"cmd": "WRITE_SAME"} if ev.ts % 13 == 0 else None


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("per_page,lap", [(3, 1), (40, 2), (200, 8)])
@pytest.mark.parametrize("per_event", [True, False], ids=["per-event", "mixed"])
def test_random_io_as_the_reference_counts_it(seed, per_page, lap, per_event):
    m = measurement("-d", "7,3")
    stream = io_stream(seed, 3000)
    run = BulkRun(m, ftrace_plan(m), per_page=per_page, lap=lap, extra=cmd_now_and_then,
                  per_event=per_event)
    got = [comparable(r) for r in run.run(stream)]
    assert got == [comparable(r) for r in evaluate(m, stream)]
    bp = run.pairer
    # every way through was taken (pages of one entry size: as they are)
    assert bp.split_pages and bp.walked_pages
    assert bp.fixed_pages or not per_event
    assert bp.bulk_events and bp.handler_events


def test_one_page_many_laps_and_all_at_once_agree():
    m = measurement()
    stream = io_stream(7, 2000, sectors=4096, losses=False)
    want = [comparable(r) for r in evaluate(m, stream)]
    for per_page, lap, per_event in ((1, 1, True), (500, 64, True), (500, 64, False)):
        run = BulkRun(m, ftrace_plan(m), per_page=per_page, lap=lap, per_event=per_event)
        assert [comparable(r) for r in run.run(stream)] == want
        # (sectors rarely repeat: most events are paired in bulk)
        assert run.pairer.bulk_events > 3 * run.pairer.handler_events


def test_a_full_pending_table_drops_the_oldest_starts_as_the_handlers_do():
    m = measurement("-d", "7,3")
    plan = ftrace_plan(m)
    stream = io_stream(5, 600, sectors=4096, losses=False)
    handlers = Aggregator(m, plan, tasks=TaskInfo(proc_root=None), max_pending=4)
    by_name = dict((r.logical.name, r) for r in plan.events)
    want = []
    for item in stream:
        if isinstance(item, IntervalEnd):
            want.append(comparable(handlers.collect()))
            continue
        r = by_name[item.name]
        fields = dict((r.fields[n], v) for n, v in item.fields.items() if n in r.fields)
        handlers.feed(RawEvent(r.system, r.event, item.ts, item.tid, item.cpu, fields=fields))
    want.append(comparable(handlers.collect()))
    run = BulkRun(m, plan, per_page=5, lap=2, max_pending=4)
    got = [comparable(r) for r in run.run(stream)]
    assert got == want
    assert sum(w[3] for w in want) > 0          # starts were dropped


def test_a_page_s_loss_is_returned_with_its_count():
    m = measurement()
    plan = ftrace_plan(m)
    run = BulkRun(m, plan)
    r = run.by_name["start"]
    assert run.pairer.feed_page(lost_page(r, start(10 ** 9, 8), 12), 0) == 12
    assert run.pairer.feed_page(lost_page(r, start(10 ** 9 + 5, 16), None), 0) is None
    run.pairer.flush()
    assert run.aggregator.pending == 2


def test_the_payload_helper_lays_out_the_format():
    m = measurement()
    r = ftrace_plan(m).events[0]
    data = payload(r, start(1, 4096))
    assert int.from_bytes(data[16:24], "little") == 4096     # sector at its offset (6.18)


@pytest.mark.parametrize("argv,why", [
    (("-i", "*R*"), "filters decided per event"),
    (("-d", "7,3", "-i", "R"), "filters decided per event"),
])
def test_what_stays_event_by_event_says_why(argv, why):
    m = measurement(*argv)
    assert why in bulk_pairs(m, ftrace_plan(m))


def test_an_entry_header_with_other_type_values_stays_event_by_event():
    """The bulk split reads the type values it assumes (data max 28,
    padding 29): a kernel whose header_event says otherwise is paired by
    the per-event walk, which reads them from the file."""
    m = measurement()
    he = known_formats.HEADER_EVENT["6.18"]
    plan = ftrace_plan(m)
    assert bulk_pairs(m, plan.replace(header_event=he)) is None
    other = plan.replace(header_event=he.replace("type == 29", "type == 28"))
    assert "other type values" in bulk_pairs(m, other)


@pytest.mark.parametrize("argv", [(), ("-d", "7,3"), ("-Q",), ("-Q", "-d", "7,3")])
def test_iolatency_pairs_in_bulk(argv):
    m = measurement(*argv)
    assert bulk_pairs(m, ftrace_plan(m)) is None
