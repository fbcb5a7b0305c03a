"""The measurement model validates what tools declare and what users type."""

import pytest

from kerntrace.core.errors import InvalidSpec, UsageError
from kerntrace.core.model import (EVENT_NAME, INT, LATENCY, POW2_MS, STR, Count, Event,
                                  Field, Filter, Histogram, Measurement, Pair, Records,
                                  Schedule, SyscallEntry, Tracepoint, UserFunction)


def block_events():
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("error", "errors"))])
    return issue, done


def test_latency_measurement_fields():
    issue, done = block_events()
    m = Measurement([issue, done], Histogram(LATENCY, scale=POW2_MS),
                    pair=Pair("issue", "done", key=("dev", "sector"), carry=("comm",)))
    out = m.output_fields()
    assert out[LATENCY] == INT and out["error"] == INT and out["comm"] == STR
    assert m.aggregate.unit == "ms" and m.aggregate.divisor == 1


def test_pair_key_must_exist_on_both_events():
    issue, _ = block_events()
    other = Event("other", Tracepoint("sched", "sched_switch"))
    with pytest.raises(InvalidSpec):
        Measurement([issue, other], Count(), pair=Pair("issue", "other", key=("sector",)))


def test_aggregate_unknown_field_rejected():
    issue, _ = block_events()
    with pytest.raises(InvalidSpec):
        Measurement([issue], Records(fields=("nosuch",)))
    with pytest.raises(InvalidSpec):
        Measurement([issue], Histogram("rwbs"))  # not an integer


def test_event_pseudo_field_and_context_fields():
    a = Event("a", SyscallEntry("openat"))
    b = Event("b", Tracepoint("sched", "sched_process_exec"))
    m = Measurement([a, b], Count(keys=(EVENT_NAME, "comm")))
    assert m.aggregate.keys == ("event", "comm")


@pytest.mark.parametrize("hostile", ["1; }", 'a"b', "x\ny", "é", "a\\b", "$(id)", "*a*b*",
                                     "a' || 1", "%s%s", "x" * 65])
def test_hostile_string_filter_values_rejected(hostile):
    with pytest.raises(UsageError):
        Filter("rwbs", "glob", hostile)


@pytest.mark.parametrize("hostile", [1 << 64, -(1 << 63) - 1, "5", 1.5, True, None])
def test_hostile_integer_filter_values_rejected(hostile):
    with pytest.raises(UsageError):
        Filter("dev", "==", hostile, type=INT)


def test_glob_filter_semantics():
    assert Filter("rwbs", "glob", "*R*").matches("RA")
    assert not Filter("rwbs", "glob", "*R*").matches("WS")
    assert Filter("rwbs", "glob", "W*").matches("WS")
    assert not Filter("rwbs", "glob", "W*").matches("FWS")
    assert Filter("rwbs", "glob", "*S").matches("WS")
    assert Filter("rwbs", "glob", "R").matches("R") and not Filter("rwbs", "glob", "R").matches("RA")


def test_filter_type_must_match_event_field():
    issue, done = block_events()
    with pytest.raises(InvalidSpec):
        Measurement([issue, done], Count(), filters=[Filter("rwbs", "==", 5, type=INT)])


def test_filter_applies_to_named_events_only():
    issue, done = block_events()
    f = Filter("pid", "==", 42, events=("issue",))
    m = Measurement([issue, done], Count(), filters=[f])
    assert m.filters_for(issue) == [f] and m.filters_for(done) == []


@pytest.mark.parametrize("bad", ["a b", "1x", "", "x" * 80, "a-b"])
def test_identifiers_validated(bad):
    with pytest.raises(InvalidSpec):
        Tracepoint("block", bad)


def test_user_function_library_validated():
    UserFunction("c", "malloc")
    UserFunction("/usr/lib/x86_64-linux-gnu/libc.so.6", "malloc", ret=True)
    for bad in ("../etc/passwd", "lib c", "a\nb", ""):
        with pytest.raises(InvalidSpec):
            UserFunction(bad, "malloc")


def test_schedule_validated():
    with pytest.raises(UsageError):
        Schedule(interval=-1)
    with pytest.raises(UsageError):
        Schedule(interval=1, count=-2)
    assert Schedule(interval=0.5, count=3).interval == 0.5
