"""JSON lines: every line parses, bounds and counts round-trip to what the
backends bucketed, odd values never crash the output."""

import io
import json

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from kerntrace.core.buckets import bucket_index
from kerntrace.core.model import LINEAR, LOG2, POW2_MS, Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.jsonlines import JsonLinesPrinter, schema

VALIDATOR = jsonschema.Draft7Validator(schema())
from kerntrace.core.results import CountSet, Histogram, HistogramSet, Record, Report

COMMON = {"schema_version", "tool", "backend", "host", "kernel", "type"}
INTERVAL = {"seq", "interval_start", "interval_end", "lost", "unmatched", "dropped_starts"}


class FlushCountingStream(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1
        io.StringIO.flush(self)


def ctx(formatters=None):
    return RunContext("biolatency", "ftrace", Schedule(), hostname="db1", kernel="6.18.0",
                      formatters=formatters)


def emit(reports, context=None):
    out, err = FlushCountingStream(), io.StringIO()
    printer = JsonLinesPrinter(out, err)
    context = context or ctx()
    printer.start(context)
    for r in reports:
        printer.report(r, context)
    printer.finish(context)
    text = out.getvalue()
    assert text.endswith("\n") or text == ""
    objs = [json.loads(line) for line in text.splitlines()]
    # one object per line, flushed as written, keys sorted
    assert out.flushes >= len(objs)
    for line in text.splitlines():
        assert line == json.dumps(json.loads(line), sort_keys=True)
    for obj in objs:
        VALIDATOR.validate(obj)     # the documented schema holds for every object
    return objs, err.getvalue()


def test_histogram_interval_object():
    data = HistogramSet(("disk",), {
        (253,): Histogram(LOG2, "usecs", buckets={5: 151, 6: 4524, 7: 308}, total=200000),
        (8,): Histogram(LOG2, "usecs", buckets={1: 1}, total=1)})
    report = Report(data, lost=2, unmatched=1, tool="biolatency", backend="ebpf", seq=3,
                    start=1700000000.0, end=1700000001.5)
    (obj,), err = emit([report], ctx({"disk": {253: "vda", 8: "sda"}.get}))
    assert COMMON | INTERVAL | {"key_names", "histograms"} == set(obj)
    assert obj["type"] == "histogram" and obj["tool"] == "biolatency" and obj["backend"] == "ebpf"
    assert obj["host"] == "db1" and obj["kernel"] == "6.18.0" and obj["seq"] == 3
    assert obj["interval_start"] == 1700000000.0 and obj["interval_end"] == 1700000001.5
    assert (obj["lost"], obj["unmatched"]) == (2, 1) and "2 events lost" in err
    assert obj["key_names"] == ["disk"]
    sda, vda = obj["histograms"]
    assert sda["key"] == {"disk": 8} and sda["labels"] == {"disk": "sda"}
    assert vda["unit"] == "usecs" and vda["scale"] == "log2" and vda["step"] == 1
    assert obj["schema_version"] == 1
    assert vda["sum"] == 200000 and vda["count"] == 4983
    assert vda["buckets"][0] == {"low": 0, "high": 1, "count": 0}
    assert vda["buckets"][-1] == {"low": 64, "high": 127, "count": 308}
    assert len(vda["buckets"]) == 7


def test_pow2ms_buckets_in_nanoseconds():
    data = HistogramSet((), {(): Histogram(POW2_MS, "ms", buckets={0: 4, 3: 1}, total=9000000)})
    (obj,), _ = emit([Report(data, tool="iolatency")])
    (h,) = obj["histograms"]
    assert h["key"] == {} and h["unit"] == "nsecs" and h["scale"] == "pow2ms"
    assert h["buckets"] == [{"low": 0, "high": 1000000, "count": 4},
                            {"low": 1000001, "high": 2000000, "count": 0},
                            {"low": 2000001, "high": 4000000, "count": 0},
                            {"low": 4000001, "high": 8000000, "count": 1}]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([LOG2, LINEAR, POW2_MS]),
       st.dictionaries(st.integers(0, 40), st.integers(0, 1 << 63), max_size=10),
       st.integers(1, 5000))
def test_bounds_and_counts_round_trip(scale, counts, step):
    if scale == LOG2:
        counts = {max(i, 1): c for i, c in counts.items()}
    h = Histogram(scale, "usecs", step=step, buckets=counts)
    (obj,), _ = emit([Report(HistogramSet((), {(): h}))])
    buckets = obj["histograms"][0]["buckets"]
    assert obj["histograms"][0]["step"] == (step if scale == LINEAR else 1)
    assert sum(b["count"] for b in buckets) == sum(counts.values())
    for b in buckets:
        # Both inclusive bounds fall in the bucket, the next value does not.
        lo = bucket_index(scale, b["low"], step)
        assert lo == bucket_index(scale, b["high"], step)
        assert bucket_index(scale, b["high"] + 1, step) == lo + 1
        assert b["count"] == counts.get(lo, 0)
    for prev, nxt in zip(buckets, buckets[1:]):
        assert nxt["low"] == prev["high"] + 1


def test_counts_object():
    data = CountSet(("event",), {("block_rq_issue",): 5, ("block_rq_complete",): 0})
    (obj,), _ = emit([Report(data, tool="tpcount", backend="ftrace")])
    assert obj["type"] == "counts" and COMMON | INTERVAL | {"key_names", "counts",
                                                            "seconds"} == set(obj)
    # No wall-clock bounds: the interval's length, and so the rate, is unknown.
    assert obj["seconds"] is None
    assert obj["counts"] == [{"key": {"event": "block_rq_issue"},
                              "labels": {"event": "block_rq_issue"}, "count": 5,
                              "rate": None}]


def test_counts_carry_the_rate_over_the_real_interval():
    # 2.5 s really elapsed (not the 1 s the schedule asked for): 10 events
    # are 4 per second.
    data = CountSet(("event",), {("vfs_read",): 10})
    (obj,), _ = emit([Report(data, start=100.0, end=102.5, tool="vfsstat")])
    assert obj["seconds"] == 2.5
    assert obj["counts"][0]["count"] == 10 and obj["counts"][0]["rate"] == 4.0


def test_replayed_counts_are_divided_by_the_schedule_interval():
    data = CountSet(("event",), {("vfs_read",): 10})
    replay = RunContext("vfsstat", "ftrace", Schedule(interval=5), replay=True)
    (obj,), _ = emit([Report(data, start=100.0, end=100.01, tool="vfsstat")], replay)
    assert obj["seconds"] == 5.0 and obj["counts"][0]["rate"] == 2.0


def test_events_then_lost_object_with_odd_values():
    records = [Record(123, {"comm": b"\xff\xfeoops", "path": "/tmp/caf\u00e9 \u2603",
                            "dev": 8, "ratio": float("nan"), "big": 1 << 70},
                      best_effort=("path",)),
               Record(124, {"comm": "dd", "path": None, "dev": 8, "ratio": 0.5, "big": 0})]
    objs, err = emit([Report(records, lost=4, seq=1, start=1.0, end=2.0, tool="opensnoop")],
                     ctx({"dev": lambda d: "sda"}))
    first, second, lost = objs
    assert first["type"] == "event" and set(first) == COMMON | {"ts", "fields", "labels",
                                                                "best_effort"}
    assert first["ts"] == 123 and first["best_effort"] == ["path"]
    assert first["fields"]["comm"] == "\ufffd\ufffdoops"
    assert first["fields"]["path"] == "/tmp/caf\u00e9 \u2603"
    assert first["fields"]["ratio"] == "nan" and first["fields"]["big"] == 1 << 70
    assert first["labels"] == {"dev": "sda"}
    assert second["fields"]["path"] is None and second["best_effort"] == []
    assert lost["type"] == "lost" and lost["lost"] == 4 and lost["seq"] == 1
    assert lost["interval_start"] == 1.0 and lost["tool"] == "opensnoop"
    assert "4 events lost" in err


def test_dropped_starts_make_a_lost_object_and_a_warning():
    objs, err = emit([Report([], dropped_starts=3, seq=2, tool="biosnoop")])
    (obj,) = objs
    assert obj["type"] == "lost" and (obj["lost"], obj["dropped_starts"]) == (0, 3)
    assert "3 starts dropped" in err


def test_output_is_ascii_whatever_the_values():
    out = io.StringIO()
    JsonLinesPrinter(out, io.StringIO()).report(
        Report([Record(1, {"comm": "\u00e9\u2603"})]), ctx())
    out.getvalue().encode("ascii")
    assert r"\u00e9\u2603" in out.getvalue()     # escaped, not lost


def test_no_lost_object_without_loss_and_empty_interval_prints_nothing():
    objs, err = emit([Report([], lost=0)])
    assert objs == [] and "events lost" not in err and "WARNING" not in err


def test_json_mode_says_tracing_is_live_on_stderr_only():
    import io
    from kerntrace.core.output.base import RunContext
    from kerntrace.core.output.jsonlines import JsonLinesPrinter
    from kerntrace.core.model import Schedule
    out, err = io.StringIO(), io.StringIO()
    JsonLinesPrinter(out, err).start(RunContext("biolatency", "ftrace", Schedule()))
    assert out.getvalue() == ""
    assert err.getvalue() == "Tracing with biolatency on the ftrace backend. Ctrl-C to end.\n"


def test_schema_is_a_valid_draft7_schema_and_refuses_what_it_should():
    jsonschema.Draft7Validator.check_schema(schema())
    data = CountSet(("event",), {("vfs_read",): 10})
    (obj,), _ = emit([Report(data, tool="vfsstat")])
    for broken in (dict(obj, schema_version=2), dict(obj, extra=1),
                   dict(obj, counts=[{"key": {}, "labels": {}, "count": -1, "rate": None}]),
                   {k: v for k, v in obj.items() if k != "host"}):
        assert not VALIDATOR.is_valid(broken), broken
