"""opensnoop on the ftrace raw path, end to end on pages: the uprobe's path
hits and sys_exit_openat returns of two CPUs, built with PageBuilder,
decoded, put in time order, paired and printed as the live session does
(its fast paths: inline __data_loc strings, task entries read inline,
records made without copies, rows escaped and padded as one line), must
give what the reference evaluator (core.semantics) gives for the same
events, and the rows their columns' own cells."""

import argparse
import io
import types

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.session import merge_sinks
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.backends.ftrace.timeorder import TimeOrder
from kerntrace.core.model import UserFunction
from kerntrace.core.results import Report
from kerntrace.core.semantics import TraceEvent, evaluate
from kerntrace.core.tracefs import parse_format
from kerntrace.plugins import opensnoop

HEADER_PAGE = known_formats.HEADER_PAGE["6.18"]
HEADER_EVENT = known_formats.HEADER_EVENT["6.18"]
EXIT_FMT = known_formats.event_format("6.18", "syscalls", "sys_exit_openat")
# what this kernel's uprobe_events makes of "p:grp/ev LIB:OFF path=+0(%di):ustring"
ENTER_FMT = parse_format(
    "name: kt_open\nID: 3001\nformat:\n"
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
    "\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:__data_loc char[] path;\toffset:16;\tsize:4;\tsigned:1;\n\n"
    'print fmt: "(%lx) path=\\"%s\\"", REC->__probe_ip, __get_str(path)\n', "kt_grp")

WANT = "/tmp/kt-want"
# tid -> (comm, pid): what the task events told (threads 21, 22 of 20)
TASKS = {20: ("opener", 20), 21: ("opener", 20), 22: ("thr", 20), 30: ("other", 30)}


def measurement(argv):
    tool = opensnoop.OpenSnoop()
    p = argparse.ArgumentParser()
    tool.add_arguments(p)
    args = p.parse_args(argv)
    return tool, args, tool.measurement(args)


def plan_for(m):
    enter = m.event(opensnoop.ENTER)
    exit_ = m.event(opensnoop.EXIT)
    return Plan([
        ResolvedEvent(enter, UserFunction("c", "open", sources={"path": "arg0"}), "kt_grp",
                      "kt_open", ENTER_FMT, {"path": "path"}),
        ResolvedEvent(exit_, exit_.probes[0].probes[0], "syscalls", "sys_exit_openat", EXIT_FMT,
                      {"ret": "ret"})])


def opens():
    """(ts, cpu, tid, path or None for an exit, ret): a thread that moves
    CPU between its open's start and return; other paths (rejected
    starts, their returns dropped); a return without a start; a long
    path; a path with a control character; the same paths again."""
    ev = []
    ts = 1000
    for i in range(60):
        tid = (21, 22, 30)[i % 3]
        path = (WANT, "/etc/other", WANT + "x" * 300, WANT + "\x1b", WANT)[i % 5]
        start_cpu = i % 2
        end_cpu = start_cpu if i % 4 else 1 - start_cpu
        ev.append((ts, start_cpu, tid, path, None))
        ev.append((ts + 7, end_cpu, tid, None, (3 + i) if i % 6 else -2))
        ts += 20
    ev.append((ts, 0, 21, None, 4))        # no start: unmatched
    return ev


def pages_of(events):
    """Each CPU's events as pages (several, so merging spans page reads)."""
    out = {}
    for cpu in (0, 1):
        pages = []
        pb = PageBuilder(HEADER_PAGE)
        for n, (ts, c, tid, path, ret) in enumerate(e for e in events if e[1] == cpu):
            payload = (encode_payload(ENTER_FMT, tid, {"__probe_ip": 0x7f0011a0, "path": path})
                       if path is not None else
                       encode_payload(EXIT_FMT, tid, {"__syscall_nr": 257, "ret": ret}))
            if n and n % 7 == 0 or not pb.add(payload, ts):
                pages.append(pb.page())
                pb = PageBuilder(HEADER_PAGE)
                assert pb.add(payload, ts)
        pages.append(pb.page())
        out[cpu] = pages
    return out


def reference(m, events):
    stream = []
    for ts, cpu, tid, path, ret in events:
        comm, pid = TASKS[tid]
        if path is not None:
            stream.append(TraceEvent(opensnoop.ENTER, ts, cpu=cpu, pid=pid, tid=tid, comm=comm,
                                     fields={"path": path}))
        else:
            stream.append(TraceEvent(opensnoop.EXIT, ts, cpu=cpu, pid=pid, tid=tid, comm=comm,
                                     fields={"ret": ret}))
    (report,) = evaluate(m, stream)
    return report


def through_pages(m, events):
    tasks = TaskInfo(proc_root=None)
    tasks.follows_events = True      # as with the task events enabled
    for tid, (comm, pid) in TASKS.items():
        tasks.learn(tid, tgid=pid, comm=comm)
    plan = plan_for(m)
    decoder = RawDecoder(HEADER_PAGE, HEADER_EVENT,
                         {ENTER_FMT.id: ENTER_FMT, EXIT_FMT.id: EXIT_FMT})
    agg = Aggregator(m, plan, tasks=tasks)
    binding = decoder.compile_sinks(merge_sinks(agg.raw_sinks(decoder.formats_by_id), {}))
    order = TimeOrder()
    pages = pages_of(events)
    # CPU 1 first, a page per CPU per lap, as read_round() laps go
    for lap in range(max(len(p) for p in pages.values())):
        for cpu in (1, 0):
            if lap < len(pages[cpu]):
                decoder.decode_page_into(pages[cpu][lap], cpu, binding, order.holder(cpu))
            if lap < len(pages[cpu]) - 1:
                order.truncated(cpu)        # more to read there
        order.end_round()
    order.flush()
    assert decoder.malformed == 0 and decoder.unknown == 0
    return agg.collect()


@pytest.mark.parametrize("argv", [[WANT + "*"], [], ["-x"], ["-n", "thr"]])
def test_pages_pair_as_the_reference_evaluator_does(argv):
    tool, args, m = measurement(argv)
    events = opens()
    got = through_pages(m, events)
    want = reference(m, events)
    assert [(r.ts, r.fields) for r in got.data] == [(r.ts, r.fields) for r in want.data]
    assert got.unmatched == want.unmatched
    assert got.data and not any(r.best_effort for r in got.data)
    if argv == [WANT + "*"]:
        # the moved threads' opens are there, the other paths' are not
        assert {r["path"] for r in got.data} == {WANT, WANT + "x" * 300, WANT + "\x1b"}
        assert len(got.data) == 48 and got.unmatched == 1


def test_rows_printed_from_pages_are_the_columns_own_cells():
    tool, args, m = measurement([WANT + "*"])
    report = through_pages(m, opens())
    out = io.StringIO()
    printer = tool.printer(args, out, io.StringIO())
    ctx = types.SimpleNamespace(formatters={})
    printer.report(Report(report.data), ctx)
    cells = [printer._line([c.cell(r, ctx) for c in printer.columns]) for r in report.data]
    assert out.getvalue().splitlines() == cells
    assert any("?" in line and "\x1b" not in line for line in cells)
    assert cells[0].split()[:4] == ["20", "opener", "-1", "2"]
