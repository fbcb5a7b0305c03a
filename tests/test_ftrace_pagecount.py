"""Plain counts per trace_pipe_raw page (backends/ftrace/pagecount.py): the
same counts and losses as decoding every event, on pages of every shape the
kernel writes (runs of one size, several event types, time extends,
padding, discarded events, missed-events flags), and the plan's route."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.backend import with_count_route
from kerntrace.backends.ftrace.pagecount import PageCounter, counts_from_pages, page_counter
from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core.tracefs import parse_format
from kerntrace.core.model import (EVENT_NAME, LATENCY, LOG2, STR, Count, Event, Field, Filter,
                                  Histogram, Measurement, Pair, Tracepoint)

HP = known_formats.HEADER_PAGE["6.18"]
HE = known_formats.HEADER_EVENT["6.18"]
COMMON = ("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n")
# Linux 6.18's events/raw_syscalls/*/format (not among the stored eras)
SYS_EXIT = parse_format(
    "name: sys_exit\nID: 442\nformat:\n" + COMMON
    + "\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\n"
    'print fmt: "NR %ld = %ld", REC->id, REC->ret\n', "raw_syscalls")
SYS_ENTER = parse_format(
    "name: sys_enter\nID: 443\nformat:\n" + COMMON
    + "\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n\n"
    'print fmt: "NR %ld (%lx, ...)", REC->id\n', "raw_syscalls")
EXEC = known_formats.event_format("6.18", "sched", "sched_process_exec")
ISSUE = known_formats.event_format("6.18", "block", "block_rq_issue")
FORMATS = {f.id: f for f in (SYS_EXIT, SYS_ENTER, EXEC, ISSUE)}


def exit_event(name="exit"):
    return Event(name, Tracepoint("raw_syscalls", "sys_exit"), fields=[Field("id"), Field("ret")])


def enter_event(name="enter"):
    return Event(name, Tracepoint("raw_syscalls", "sys_enter"), fields=[Field("id")])


def plan_for(m, formats=(SYS_EXIT, SYS_ENTER), **kw):
    by_name = {(f.system, f.name): f for f in formats}
    resolved = []
    for ev in m.events:
        tp = ev.probes[0]
        fmt = by_name[(tp.category, tp.name)]
        resolved.append(ResolvedEvent(ev, tp, fmt.system, fmt.name, fmt,
                                      {f.name: f.name for f in ev.fields}))
    return with_count_route(m, Plan(resolved, header_page=HP, header_event=HE, **kw))


def tasks():
    t = TaskInfo(proc_root=None)
    t.tgid = lambda tid: tid // 10          # thread 41 is in process 4
    return t


def both(m, pages, cpu=1, header_event=HE):
    """(counts, lost per page) decoded event by event, and per page."""
    plan = plan_for(m)
    out = []
    for per_page in (False, True):
        dec = RawDecoder(HP, header_event, FORMATS)
        agg = Aggregator(m, plan, tasks=tasks())
        losses = []
        if per_page:
            pc, why = page_counter(m, plan, dec, agg)
            assert why is None
            for data in pages:
                losses.append(pc.count_page(data, cpu))
        else:
            binding = dec.compile_sinks(agg.raw_sinks(dec.formats_by_id))
            for data in pages:
                losses.append(dec.decode_page_into(data, cpu, binding)[1])
        out.append((dict(agg.collect().data.counts), losses, dec.unknown, dec.malformed))
    return out[0], out[1], pc


def exit_payload(pid, nr, ret=0):
    return encode_payload(SYS_EXIT, pid, {"id": nr, "ret": ret})


def enter_payload(pid, nr):
    return encode_payload(SYS_ENTER, pid, {"id": nr, "args": b"\0" * 48})


def pages_of(payloads, gap=300, lost=0):
    pages, pb, ts = [], None, 10 ** 12
    for p in payloads:
        ts += gap
        if pb is None or not pb.add(p, ts):
            if pb is not None:
                pages.append(pb.page())
            pb = PageBuilder(HP)
            pb.add(p, ts)
    pages.append(pb.page(lost=lost))
    return pages


SYSCOUNT = Measurement([exit_event()], Count(keys=("id",)), filters=[Filter("tid", "!=", 77)])


def test_a_run_of_one_event_is_counted_from_columns_and_agrees():
    payloads = [exit_payload(41 + (i % 3) * 10, [39, 0, 1, -1][i % 4], -(i % 2))
                for i in range(1000)]
    payloads += [exit_payload(77, 39)] * 50          # the tracer's own: filtered out
    want, got, pc = both(SYSCOUNT, pages_of(payloads))
    assert got == want
    counts = want[0]
    assert counts[(39,)] == 250 and counts[(-1,)] == 250 and sum(counts.values()) == 1000
    assert pc.uniform_pages == 8 and pc.walked_pages == 0


def test_an_entry_header_with_other_type_values_is_walked():
    """The page-at-once count reads type values it assumes (data max 28,
    padding 29); a header_event saying otherwise gets the walk, which
    reads them from the file."""
    other = HE.replace("data max type_len  == 28", "data max type_len  == 27")
    assert other != HE
    payloads = [exit_payload(41, 39)] * 1000
    want, got, pc = both(SYSCOUNT, pages_of(payloads), header_event=other)
    assert got == want and want[0] == {(39,): 1000}
    assert pc.uniform_pages == 0 and pc.walked_pages == len(pages_of(payloads))


def test_single_tracepoint_by_name_counts_runs_by_length():
    m = Measurement([exit_event("sys_exit")], Count(keys=(EVENT_NAME,)))
    want, got, pc = both(m, pages_of([exit_payload(41, 1)] * 5000))
    assert got == want and want[0] == {("sys_exit",): 5000}
    assert pc.uniform_pages == len(pages_of([exit_payload(41, 1)] * 5000))


def test_time_extends_other_sizes_unknown_types_and_losses_take_the_walk():
    pb = PageBuilder(HP)
    pb.add(exit_payload(41, 3), 10 ** 12)
    pb.add(enter_payload(41, 3), 10 ** 12 + 5)           # another size (not counted)
    pb.add(exit_payload(41, 3), 10 ** 12 + (1 << 28))    # needs a time extend
    pb.add(encode_payload(EXEC, 41, {"filename": "/bin/true", "pid": 41, "old_pid": 41}),
           10 ** 12 + (1 << 28) + 9)
    pb.add(exit_payload(52, 4), 10 ** 12 + (1 << 28) + 20)
    pb.add_raw(pb.word(29, 7, 12) + b"\0" * 8)            # a discarded event, then more
    pb.add(exit_payload(52, 4), 10 ** 12 + (1 << 28) + 40)
    page = pb.page(lost=17)
    want, got, pc = both(SYSCOUNT, [page])
    assert got == want
    assert want[0] == {(3,): 2, (4,): 2} and want[1] == [17]
    assert pc.walked_pages == 1 and pc.uniform_pages == 0


def test_a_loss_without_a_count_and_an_empty_page():
    pages = pages_of([exit_payload(41, 1)] * 10, lost=None)
    empty = PageBuilder(HP, start_ts=5).page(lost=3)
    want, got, _pc = both(SYSCOUNT, pages + [empty])
    assert got == want and want[1] == [None, 3]


def test_two_events_of_one_size_share_the_columns():
    m = Measurement([exit_event(), Event("other", Tracepoint("raw_syscalls", "sys_enter"),
                                         fields=[Field("id")])],
                    Count(keys=(EVENT_NAME, "id")))
    # sys_enter is larger: force the two sizes into separate runs
    payloads = [exit_payload(41, 5)] * 300 + [enter_payload(41, 6)] * 300
    want, got, _pc = both(m, pages_of(payloads))
    assert got == want and want[0] == {("exit", 5): 300, ("other", 6): 300}


def test_process_keys_fold_each_row_through_the_handler():
    m = Measurement([exit_event()], Count(keys=("pid",)),
                    filters=[Filter("ret", "<", 0)])
    payloads = [exit_payload(41 + i % 20, 2, -(i % 2)) for i in range(2000)]
    want, got, _pc = both(m, pages_of(payloads))
    assert got == want
    assert sum(want[0].values()) == 1000 and set(want[0]) == {(4,), (5,), (6,)}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["exit", "enter", "exec", "pad", "gap"]),
                          st.integers(0, 3), st.sampled_from([0, 39, -1, 1 << 40, -(1 << 40)])),
                max_size=400),
       st.sampled_from([0, 5, None]))
def test_any_page_counts_as_decoding_every_event(entries, lost):
    """Whatever mix of entries a page holds, the count per page equals the
    count event by event, and the losses are the same."""
    m = Measurement([exit_event(), enter_event()], Count(keys=(EVENT_NAME, "id")),
                    filters=[Filter("tid", "!=", 43)])
    pages, pb, ts = [], PageBuilder(HP, start_ts=10 ** 12), 10 ** 12
    for kind, pid, nr in entries:
        ts += 100
        if kind == "gap":
            ts += 1 << 28                   # a time extend before the next entry
            continue
        if kind == "pad":
            pb.add_raw(pb.word(29, 3, 8) + b"\0" * 4)
            continue
        payload = (exit_payload(40 + pid, nr) if kind == "exit" else
                   enter_payload(40 + pid, nr) if kind == "enter" else
                   encode_payload(EXEC, 40 + pid, {"filename": "/x", "pid": 1, "old_pid": 1}))
        if not pb.add(payload, ts):
            pages.append(pb.page())
            pb = PageBuilder(HP)
            pb.add(payload, ts)
    pages.append(pb.page(lost=lost))
    want, got, _pc = both(m, pages)
    assert got == want


def test_route_is_per_page_only_where_nothing_is_lost_by_it():
    assert plan_for(SYSCOUNT).count_route == "pages"
    assert counts_from_pages(SYSCOUNT, plan_for(SYSCOUNT)) is None
    text = plan_for(SYSCOUNT).replace(read_path="text")
    assert counts_from_pages(SYSCOUNT, text) == "text trace_pipe"
    paired = Measurement([enter_event(), exit_event()], Histogram(LATENCY, scale=LOG2),
                         pair=Pair("enter", "exit", key=("tid",)))
    assert plan_for(paired).count_route is None
    by_ts = Measurement([exit_event()], Count(keys=("id",)), filters=[Filter("ts", ">", 5)])
    assert plan_for(by_ts).count_route is None
    assert plan_for(by_ts).count_note.endswith("; keyed or filtered on time stamps")
    by_string = Measurement([Event("issue", Tracepoint("block", "block_rq_issue"),
                                   fields=[Field("rwbs", STR)])], Count(keys=("rwbs",)))
    p = plan_for(by_string, formats=(ISSUE,))
    assert p.count_route is None and p.count_note.endswith("is not a whole number")
    followed = plan_for(SYSCOUNT).replace(task_events=("task:task_rename",))
    assert counts_from_pages(SYSCOUNT, followed).startswith("task names")


def test_describe_says_which_route_runs():
    p = plan_for(SYSCOUNT).replace(tracefs_root="/t", instance_name="i", buffer_kb=1024,
                                   buffer_source="x")
    assert "counts per page: event types and key fields only, no event decoded (not by hist " \
        "triggers: no instance of our own)" in p.describe()
    m = Measurement([exit_event()], Count(keys=("id",)), filters=[Filter("ts", ">", 5)])
    p = plan_for(m).replace(tracefs_root="/t", instance_name="i", buffer_kb=1024,
                            buffer_source="x")
    assert any(line.startswith("counts event by event (")
               and line.endswith("; keyed or filtered on time stamps)") for line in p.describe())


def test_handler_weight_counts_n_events():
    plan = plan_for(SYSCOUNT)
    agg = Aggregator(SYSCOUNT, plan, tasks=tasks())
    (names, handler), = agg.raw_sinks({SYS_EXIT.id: SYS_EXIT}).values()
    handler(0, 0, (41, 7), None, None, 1000)
    handler(0, 0, (77, 7), None, None, 5)          # the filtered thread
    assert dict(agg.collect().data.counts) == {(7,): 1000}


def test_a_big_endian_kernels_pages_are_walked():
    dec = RawDecoder(HP, HE, FORMATS, byteorder="big")
    agg = Aggregator(SYSCOUNT, plan_for(SYSCOUNT), tasks=tasks())
    pc = PageCounter(dec, agg.raw_sinks(dec.formats_by_id),
                     {SYS_EXIT.id: agg.sources["exit"]})
    pb = PageBuilder(HP, byteorder="big")
    for i in range(10):
        pb.add(encode_payload(SYS_EXIT, 41, {"id": 3, "ret": 0}, byteorder="big"), 100 + i)
    assert pc.count_page(pb.page(), 0) == 0
    assert dict(agg.collect().data.counts) == {(3,): 10}
    assert pc.walked_pages == 1
