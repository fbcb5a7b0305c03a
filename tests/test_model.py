"""The measurement model validates what tools declare and what users type."""

import pytest

from kerntrace.core.errors import InvalidSpec, UsageError
from kerntrace.core.model import (EVENT_NAME, INT, LATENCY, POW2_MS, QUEUED, STR, USTR, Count,
                                  Event, Field, Filter, Histogram, Measurement, Pair, Records,
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


def insert_event(fields=None):
    return Event("insert", Tracepoint("block", "block_rq_insert"),
                 fields=fields if fields is not None else [Field("dev"), Field("sector"),
                                                           Field("rwbs", STR)])


def queued_pair(**kw):
    return Pair("insert", "done", key=("dev", "sector"), carry=("comm", "rwbs"), mark="issue",
                **kw)


def test_pair_with_a_mark_yields_queued_time():
    issue, done = block_events()
    m = Measurement([insert_event(), issue, done], Records(("comm", LATENCY, QUEUED)),
                    pair=queued_pair())
    assert m.pair.mark == "issue"
    out = m.output_fields()
    assert out[QUEUED] == INT and out[LATENCY] == INT and out["rwbs"] == STR
    h = Measurement([insert_event(), issue, done], Histogram(QUEUED, unit="usecs"),
                    pair=queued_pair()).aggregate
    assert h.value == QUEUED and h.divisor == 1000      # nanoseconds, like LATENCY


def test_queued_time_only_with_a_mark():
    issue, done = block_events()
    m = Measurement([issue, done], Records((LATENCY,)),
                    pair=Pair("issue", "done", key=("dev", "sector")))
    assert m.pair.mark is None and QUEUED not in m.output_fields()
    with pytest.raises(InvalidSpec, match="unknown field 'queued'"):
        Measurement([issue, done], Records((LATENCY, QUEUED)),
                    pair=Pair("issue", "done", key=("dev", "sector")))


def test_mark_event_must_exist():
    issue, done = block_events()
    with pytest.raises(InvalidSpec, match="no event named 'issue'"):
        Measurement([insert_event(), done], Records((LATENCY,)), pair=queued_pair())


def test_mark_needs_the_key_fields():
    _issue, done = block_events()
    no_sector = Event("issue", Tracepoint("block", "block_rq_issue"),
                      fields=[Field("dev"), Field("rwbs", STR)])
    with pytest.raises(InvalidSpec, match="key 'sector' missing on mark issue"):
        Measurement([insert_event(), no_sector, done], Records((LATENCY,)), pair=queued_pair())


def test_mark_needs_the_carried_fields_it_may_start_with():
    _issue, done = block_events()
    no_rwbs = Event("issue", Tracepoint("block", "block_rq_issue"),
                    fields=[Field("dev"), Field("sector")])
    with pytest.raises(InvalidSpec, match="carried field 'rwbs' missing on mark issue"):
        Measurement([insert_event(), no_rwbs, done], Records((LATENCY,)), pair=queued_pair())
    int_rwbs = Event("issue", Tracepoint("block", "block_rq_issue"),
                     fields=[Field("dev"), Field("sector"), Field("rwbs")])
    with pytest.raises(InvalidSpec, match="carried field 'rwbs'"):
        Measurement([insert_event(), int_rwbs, done], Records((LATENCY,)), pair=queued_pair())


@pytest.mark.parametrize("mark", ["insert", "done", "a b"])
def test_mark_is_a_third_event_name(mark):
    with pytest.raises(InvalidSpec):
        Pair("insert", "done", key=("dev",), mark=mark)


def test_queued_is_implicit():
    with pytest.raises(InvalidSpec, match="implicit"):
        Field(QUEUED)


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


def test_bit_mask_filter_semantics():
    f = Filter("flags", "&", 0o1 | 0o2)          # O_WRONLY | O_RDWR
    assert f.matches(0o1) and f.matches(0o2) and f.matches(0o101)
    assert not f.matches(0) and not f.matches(0o100)
    assert Filter("flags", "&", 1 << 63).matches(-1)


@pytest.mark.parametrize("mask", [0, -1, 1 << 64, "3", True])
def test_bit_mask_must_be_a_non_zero_64_bit_value(mask):
    with pytest.raises(UsageError):
        Filter("flags", "&", mask, type=INT)


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


def test_field_if_zero_and_override_are_validated():
    from kerntrace.core.model import Field, Filter, Event, Tracepoint, STR
    tp = Tracepoint("block", "block_rq_issue")
    flush = (Filter("rwbs", "glob", "FF*", type=STR),)
    ok = Event("s", tp, fields=[Field("nr_sector"), Field("rwbs", STR),
                                Field("bytes", if_zero=("nr_sector", 512)),
                                Field("sector", override=(flush, (1 << 64) - 1))])
    assert ok.field("bytes").depends_on() == ["nr_sector"]
    assert ok.field("sector").depends_on() == ["rwbs"]
    bad = [
        lambda: Field("rwbs", STR, if_zero=("nr_sector", 512)),      # not an integer
        lambda: Field("bytes", if_zero=("nr_sector", 0)),            # factor < 1
        lambda: Field("bytes", if_zero=("nr sector", 512)),          # not an identifier
        lambda: Field("sector", override=((), 0)),                   # no filters
        lambda: Field("sector", override=(flush, 1 << 64)),          # out of range
        lambda: Event("s", tp, fields=[Field("bytes", if_zero=("nr_sector", 512))]),
        lambda: Event("s", tp, fields=[Field("rwbs", STR),
                                       Field("nr_sector", if_zero=("bytes", 1)),
                                       Field("bytes", if_zero=("nr_sector", 512))]),
        lambda: Event("s", tp, fields=[Field("sector", override=(flush, 0))]),
    ]
    for make in bad:
        with pytest.raises((InvalidSpec, UsageError)):
            make()


def test_ftrace_tracer_records_are_not_tracepoints():
    """events/ftrace/function and its siblings describe the ftrace tracers'
    records; a plugin declaring one as a tracepoint is broken."""
    from kerntrace.core.errors import InvalidSpec
    from kerntrace.core.model import Tracepoint
    with pytest.raises(InvalidSpec, match="ftrace:function"):
        Tracepoint("ftrace", "function")


@pytest.mark.parametrize("kw", [dict(type=INT, element=0), dict(type=STR, element=1),
                                dict(type=USTR, element=-1), dict(type=USTR, element=64),
                                dict(type=USTR, element=True), dict(type=USTR, element="1")])
def test_element_is_an_index_on_a_user_string(kw):
    with pytest.raises(InvalidSpec):
        Field("a0", sources=("argv",), **kw)


def test_records_of_a_field_only_some_events_declare_name_the_event():
    from kerntrace.core.model import SyscallExit
    ret = Event("ret", SyscallExit("execve"), fields=[Field("value", sources=("ret",))])
    args = Event("args", SyscallEntry("execve"),
                 fields=[Field("a0", USTR, sources=("argv",), element=0)])
    m = Measurement([ret, args], Records((EVENT_NAME, "pid", "value", "a0")))
    assert m.output_fields()["a0"] == USTR and m.output_fields()["value"] == INT
    with pytest.raises(InvalidSpec):
        Measurement([ret, args], Records(("pid", "value", "a0")))
    # counts and histograms still key on what every event has
    with pytest.raises(InvalidSpec):
        Measurement([ret, args], Count(keys=("a0",)))
