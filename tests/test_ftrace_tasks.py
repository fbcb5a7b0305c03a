"""Task names and process ids on the ftrace backend (backends/ftrace/tasks.py):
the kernel's task events, followed in time order, name each event as the
kernel had it at that moment; /proc is read once, at the start; the saved_*
caches answer for the rest; unknown is "<...>" / None, never "None"."""

import os
import types

import pytest

from fake_tracefs import COMMON_FIELDS, _extra_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace import session as session_mod, tasks as tasks_mod
from kerntrace.core import known_formats
from kerntrace.backends.ftrace.tasks import (CLONE_THREAD, TaskInfo, needs_task_identity,
                                             resolve_task_events)
from kerntrace.core.model import (EVENT_NAME, Count, Event, Filter, Measurement, Pair,
                                  Records, Tracepoint)
from kerntrace.core.tracefs import parse_format


# Captured from a Linux 6.18 tracefs (events/<system>/<event>/format).
FORMATS = {
    ("task", "task_newtask"): """name: task_newtask
ID: 205
format:
%s
\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;
\tfield:u64 clone_flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:40;\tsize:2;\tsigned:1;

print fmt: "pid=%%d comm=%%s clone_flags=%%llx oom_score_adj=%%hd", REC->pid, REC->comm, REC->clone_flags, REC->oom_score_adj
""" % COMMON_FIELDS,
    ("task", "task_rename"): """name: task_rename
ID: 204
format:
%s
\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char oldcomm[16];\toffset:12;\tsize:16;\tsigned:0;
\tfield:char newcomm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:short oom_score_adj;\toffset:44;\tsize:2;\tsigned:1;

print fmt: "pid=%%d oldcomm=%%s newcomm=%%s oom_score_adj=%%hd", REC->pid, REC->oldcomm, REC->newcomm, REC->oom_score_adj
""" % COMMON_FIELDS,
    ("sched", "sched_process_exit"): """name: sched_process_exit
ID: 369
format:
%s
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;

print fmt: "comm=%%s pid=%%d prio=%%d group_dead=%%s", REC->comm, REC->pid, REC->prio, REC->group_dead ? "true" : "false"
""" % COMMON_FIELDS,
}
FORMATS[("syscalls", "sys_enter_getppid")] = _extra_formats("6.18")[("syscalls", "sys_enter_getppid")]

# A task_rename without its pid field (the renamed task is then the current one).
RENAME_WITHOUT_PID = """name: task_rename
ID: 204
format:
%s
\tfield:char oldcomm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:char newcomm[16];\toffset:24;\tsize:16;\tsigned:0;
\tfield:short oom_score_adj;\toffset:40;\tsize:2;\tsigned:1;

print fmt: "oldcomm=%%s newcomm=%%s oom_score_adj=%%hd", REC->oldcomm, REC->newcomm, REC->oom_score_adj
""" % COMMON_FIELDS


def fmt(system, event, formats=FORMATS):
    text = formats.get((system, event))
    return parse_format(text, system) if text else None


GETPPID = Event("getppid", Tracepoint("syscalls", "sys_enter_getppid"))


def getppid_plan(measurement, lookup=fmt):
    f = lookup("syscalls", "sys_enter_getppid")
    return Plan([ResolvedEvent(GETPPID, GETPPID.probes[0], "syscalls", "sys_enter_getppid",
                               f, {})],
                task_events=resolve_task_events(lookup))


def by_comm_and_pid():
    return Measurement([GETPPID], Count(keys=("comm", "pid")))


# ---------------------------------------------------------------------------
def test_task_events_detected_from_their_formats():
    found = resolve_task_events(fmt)
    assert [(te.kind, te.system, te.event, te.names) for te in found] == [
        ("newtask", "task", "task_newtask", ("pid", "comm", "clone_flags")),
        ("rename", "task", "task_rename", ("pid", "newcomm")),
        ("exit", "sched", "sched_process_exit", ())]
    # a kernel without them: names from the start and the kernel's caches
    assert resolve_task_events(lambda system, event: None) == []
    # creations without renames (or the reverse) are no use alone
    assert resolve_task_events(
        lambda s, e: fmt(s, e) if e != "task_rename" else None) == []
    no_pid = dict(FORMATS)
    no_pid[("task", "task_rename")] = RENAME_WITHOUT_PID
    rename = resolve_task_events(lambda s, e: fmt(s, e, no_pid))[1]
    assert rename.names == ("newcomm",)


def test_which_measurements_need_task_identity():
    assert needs_task_identity(Measurement([GETPPID], Count(keys=("comm",))))
    assert needs_task_identity(Measurement([GETPPID], Count(), filters=[Filter("pid", "==", 5)]))
    assert not needs_task_identity(Measurement([GETPPID], Count(keys=(EVENT_NAME,))))
    assert not needs_task_identity(Measurement([GETPPID], Count(keys=("tid",))))
    start = Event("a", Tracepoint("syscalls", "sys_enter_getppid"))
    end = Event("b", Tracepoint("syscalls", "sys_exit_getppid"))
    assert needs_task_identity(Measurement([start, end], Records(fields=("tid",)),
                                           pair=Pair("a", "b", key=("tid",), carry=("comm",))))
    # bitesize: block_rq_issue carries the current task's name itself
    issue = Event("issue", Tracepoint("block", "block_rq_issue"))
    issue_fmt = known_formats.event_format("6.18", "block", "block_rq_issue")
    resolved = [ResolvedEvent(issue, issue.probes[0], "block", "block_rq_issue", issue_fmt, {})]
    assert not needs_task_identity(Measurement([issue], Count(keys=("comm",))), resolved)
    assert needs_task_identity(Measurement([issue], Count(keys=("comm", "pid"))), resolved)
    call = getppid_plan(by_comm_and_pid()).events
    assert needs_task_identity(Measurement([GETPPID], Count(keys=("comm",))), call)


# ---------------------------------------------------------------------------
# What the kernel's records say, in time order
def followed():
    t = TaskInfo(proc_root=None)
    t.track(resolve_task_events(fmt))
    return t


def test_renames_forks_threads_and_execs():
    t = followed()
    t.learn(50, tgid=50, comm="ktA")                  # from the start
    assert t.follows_events and (t.comm(50), t.tgid(50)) == ("ktA", 50)
    t.renamed(50, "ktB")                              # prctl(PR_SET_NAME)
    assert t.comm(50) == "ktB"
    t.created(50, 60, "ktB", 0x01200011)              # fork: a new process
    assert (t.comm(60), t.tgid(60)) == ("ktB", 60)
    t.renamed(60, "child")                            # its exec
    t.created(60, 61, "child", 0x003d0f00 | CLONE_THREAD)   # a thread of it
    assert (t.comm(61), t.tgid(61)) == ("child", 60)
    assert (t.comm(50), t.tgid(50)) == ("ktB", 50)


def test_an_exited_task_is_forgotten_an_interval_later():
    t = followed()
    t.created(1, 70, "short", 0)
    t.exited(70)
    t.end_interval()                 # its last events may still be in this one
    assert t.comm(70) == "short" and t.tgid(70) == 70
    t.end_interval()
    assert t.comm(70) == "<...>" and t.tgid(70) is None
    # a thread id reused by a new task before the old one is forgotten
    t.created(1, 71, "old", 0)
    t.exited(71)
    t.created(1, 71, "new", 0)
    t.end_interval()
    t.end_interval()
    assert t.comm(71) == "new"
    # a thread's exec: its leader exits, the thread takes the leader's id
    t.created(1, 80, "leader", 0)
    t.created(80, 81, "leader", CLONE_THREAD)
    t.exited(80)
    t.renamed(80, "execd")
    t.end_interval()
    t.end_interval()
    assert (t.comm(80), t.tgid(80)) == ("execd", 80)


def test_unknown_is_what_the_kernel_prints_never_none():
    t = TaskInfo(proc_root=None)
    assert t.comm(12345) == "<...>" and t.tgid(12345) is None
    assert t.comm(0) == "<idle>" and t.tgid(0) == 0
    assert t.comm(12345, "from-a-line") == "from-a-line"


def test_the_kernels_caches_answer_for_the_rest_and_no_miss_sticks(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tasks_mod, "_now", lambda: now[0])
    cmdlines = tmp_path / "saved_cmdlines"
    cmdlines.write_text("17 bash\n18 kworker/0:1\ngarbage\n")
    tgids = tmp_path / "saved_tgids"
    tgids.write_text("17 17\n18 2\nx y\n")
    t = TaskInfo(proc_root=None, saved_cmdlines=str(cmdlines), saved_tgids=str(tgids))
    assert t.comm(18) == "kworker/0:1" and t.tgid(18) == 2 and t.comm(17) == "bash"
    assert t.comm(19) == "<...>" and t.tgid(19) is None
    cmdlines.write_text("19 dd\n")
    tgids.write_text("19 19\n")
    now[0] += 0.5                    # re-read at most once a second
    assert t.comm(19) == "<...>"
    now[0] += 1.0
    assert t.comm(19) == "dd" and t.tgid(19) == 19


def test_without_task_events_the_kernels_caches_beat_the_snapshot(tmp_path):
    # a thread id reused since the start: saved_cmdlines knows the new task
    cmdlines = tmp_path / "saved_cmdlines"
    cmdlines.write_text("40 newer\n")
    t = TaskInfo(proc_root=None, saved_cmdlines=str(cmdlines))
    t.learn(40, comm="at-start", tgid=40)
    t.learn(41, comm="idle-one", tgid=40)
    assert (t.comm(40), t.comm(41), t.tgid(41)) == ("newer", "idle-one", 40)
    f = followed()
    f._cmdlines = t._cmdlines
    f.learn(40, comm="at-start", tgid=40)
    assert f.comm(40) == "at-start"           # the events would have told of a reuse


def test_the_table_is_bounded_and_forgets_exited_tasks_first():
    t = followed()
    t.learn(1, tgid=1, comm="init")
    for tid in range(100, 108):
        t.created(1, tid, "w", 0)
        t.exited(tid)
    t2 = TaskInfo(proc_root=None, max_entries=8)
    t2.track(resolve_task_events(fmt))
    t2.learn(1, tgid=1, comm="init")
    for tid in range(100, 107):
        t2.created(1, tid, "w", 0)
        t2.exited(tid)
    t2.created(1, 200, "new", 0)                   # full: the exited go first
    assert len(t2) == 2 and t2.comm(1) == "init" and t2.comm(200) == "new"
    for tid in range(300, 320):
        t2.learn(tid, comm="x")
    assert len(t2) <= 8


# ---------------------------------------------------------------------------
# The tasks that exist at the start
def fake_proc(root, tasks):
    for tgid, tid, comm in tasks:
        d = root / str(tgid) / "task" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "comm").write_text(comm + "\n")
    (root / "self").mkdir(exist_ok=True)


def test_snapshot_of_proc_names_as_events_carry_them(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, [(100, 100, "server"), (100, 101, "server worker"),
                     (7, 7, "kworker/u8:2+flush-7:0"), (8, 8, "kworker/0:1H-kblockd"),
                     (9, 9, "kworker/R-kblockd"), (10, 10, "irq/122-nvme0q1-with-a-long-name")])
    (proc / "11").mkdir()                                 # exited meanwhile: no task/
    t = TaskInfo(proc_root=str(proc))
    assert t.snapshot() == 6
    assert [(t.comm(tid), t.tgid(tid)) for tid in (100, 101, 7, 8, 9, 10)] == [
        ("server", 100), ("server worker", 100), ("kworker/u8:2", 7), ("kworker/0:1H", 8),
        ("kworker/R-kbloc", 9), ("irq/122-nvme0q1", 10)]
    assert t.comm(11) == "<...>"


def test_no_snapshot_from_another_pid_namespace(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, [(1, 1, "container-init")])
    os.makedirs(str(proc / "self" / "ns"))
    os.symlink("pid:[4026532999]", str(proc / "self" / "ns" / "pid"))
    t = TaskInfo(proc_root=str(proc))
    assert t.snapshot() == 0 and t.comm(1) == "<...>"


def test_snapshot_of_this_process():
    t = TaskInfo()
    assert t.snapshot() > 0
    with open("/proc/self/comm") as f:
        assert t.comm(os.getpid()) == f.read().strip()[:15]
    assert t.tgid(os.getpid()) == os.getpid()


# ---------------------------------------------------------------------------
# End to end: records of several CPUs, read one CPU after the other
def page(records, start_ts=None):
    hp = known_formats.HEADER_PAGE["6.18"]
    pb = PageBuilder(hp)
    for (system, event), ts, pid, fields in records:
        assert pb.add(encode_payload(fmt(system, event), pid, fields), ts)
    return pb.page()


NEWTASK, RENAME, EXIT = ("task", "task_newtask"), ("task", "task_rename"), \
    ("sched", "sched_process_exit")
CALL = ("syscalls", "sys_enter_getppid")


def test_raw_path_names_each_event_as_it_was_whichever_cpu_logged_it():
    m = by_comm_and_pid()
    plan = getppid_plan(m)
    t = TaskInfo(proc_root=None)
    t.track(plan.task_events)
    t.learn(50, tgid=50, comm="ktA")
    rename = {"pid": 50, "oldcomm": "ktA", "newcomm": "ktB", "oom_score_adj": 0}
    cpu0 = page([(RENAME, 100, 50, rename),
                 (NEWTASK, 200, 50, {"pid": 60, "comm": "ktB", "clone_flags": 0x1200011,
                                     "oom_score_adj": 0}),
                 (CALL, 230, 60, {"__syscall_nr": 110}),
                 (EXIT, 260, 61, {"comm": "child", "pid": 61, "prio": 120, "group_dead": 0})])
    cpu1 = page([(CALL, 50, 50, {"__syscall_nr": 110}),
                 (CALL, 150, 50, {"__syscall_nr": 110}),
                 (CALL, 160, 50, {"__syscall_nr": 110}),
                 (CALL, 210, 60, {"__syscall_nr": 110}),
                 (RENAME, 220, 60, {"pid": 60, "oldcomm": "ktB", "newcomm": "child",
                                    "oom_score_adj": 0}),
                 (NEWTASK, 240, 60, {"pid": 61, "comm": "child", "oom_score_adj": 0,
                                     "clone_flags": 0x3d0f00 | CLONE_THREAD}),
                 (CALL, 250, 61, {"__syscall_nr": 110})])
    formats = [ev.format for ev in plan.events] + [te.format for te in plan.task_events]
    decoder = RawDecoder(known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"],
                         {f.id: f for f in formats})
    agg = Aggregator(m, plan, tasks=t)
    sinks = session_mod.merge_sinks(agg.raw_sinks(decoder.formats_by_id),
                                    t.raw_sinks(decoder.formats_by_id))
    order = session_mod.TimeOrder()
    bindings = order.bindings(decoder, sinks, [0, 1])
    decoder.decode_page_into(cpu1, 1, bindings[1])       # CPU 1 read first
    decoder.decode_page_into(cpu0, 0, bindings[0])
    order.end_round()
    order.flush()
    assert agg.collect().data.counts == {("ktA", 50): 1, ("ktB", 50): 2, ("ktB", 60): 1,
                                         ("child", 60): 2}


def test_a_measured_task_event_is_counted_and_followed():
    rename_ev = Event("task_rename", Tracepoint("task", "task_rename"))
    m = Measurement([rename_ev], Count(keys=("comm",)))
    plan = Plan([ResolvedEvent(rename_ev, rename_ev.probes[0], "task", "task_rename",
                               fmt("task", "task_rename"), {})],
                task_events=resolve_task_events(fmt))
    t = TaskInfo(proc_root=None)
    t.track(plan.task_events)
    t.learn(50, tgid=50, comm="a")
    formats = [plan.events[0].format] + [te.format for te in plan.task_events]
    decoder = RawDecoder(known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"],
                         {f.id: f for f in formats})
    agg = Aggregator(m, plan, tasks=t)
    sinks = session_mod.merge_sinks(agg.raw_sinks(decoder.formats_by_id),
                                    t.raw_sinks(decoder.formats_by_id))
    binding = decoder.compile_sinks(sinks)
    decoder.decode_page_into(page([
        (RENAME, 10, 50, {"pid": 50, "oldcomm": "a", "newcomm": "b", "oom_score_adj": 0}),
        (RENAME, 20, 50, {"pid": 50, "oldcomm": "b", "newcomm": "c", "oom_score_adj": 0})]),
        0, binding)
    # counted under the name the task had when it was renamed, as eBPF sees it
    assert agg.collect().data.counts == {("a",): 1, ("b",): 1} and t.comm(50) == "c"


def test_text_path_names_from_the_events_not_from_the_printed_line():
    """trace_pipe prints the name saved_cmdlines holds when the line is
    formatted: after a rename, earlier lines show the new name too."""
    m = by_comm_and_pid()
    plan = getppid_plan(m).replace(read_path="text", tracefs_root="/nonexistent")
    s = session_mod.LiveSession(m, plan, types.SimpleNamespace())
    s.tasks = TaskInfo(proc_root=None)
    s.tasks.track(plan.task_events)
    s.tasks.learn(50, tgid=50, comm="ktA")
    s._build_pipeline()
    for line in [
            "             ktB-50      [001] .....   100.000050: sys_getppid()",
            "             ktB-50      [000] .....   100.000100: task_rename: pid=50 oldcomm=ktA "
            "newcomm=ktB oom_score_adj=0",
            "             ktB-50      [001] .....   100.000150: sys_getppid()",
            "             ktB-50      [000] .....   100.000200: task_newtask: pid=60 comm=ktB "
            "clone_flags=1200011 oom_score_adj=0",
            "           <...>-60      [001] .....   100.000210: sys_getppid()",
            "           <...>-77      [001] .....   100.000220: sys_getppid()"]:
        s._feed_line(line)
    report = s.collect()
    assert report.data.counts == {("ktA", 50): 1, ("ktB", 50): 1, ("ktB", 60): 1,
                                  ("<...>", None): 1}


def test_records_named_by_events_are_not_best_effort():
    start = Event("a", Tracepoint("syscalls", "sys_enter_getppid"))
    m = Measurement([start], Records(fields=("comm",)))
    plan = Plan([ResolvedEvent(start, start.probes[0], "syscalls", "sys_enter_getppid",
                               fmt("syscalls", "sys_enter_getppid"), {})])
    followed_tasks, known = followed(), TaskInfo(proc_root=None)
    for t in (followed_tasks, known):
        t.learn(5, comm="x")
    got = []
    for t in (followed_tasks, known):
        a = Aggregator(m, plan, tasks=t)
        a.feed(RawEvent("syscalls", "sys_enter_getppid", 1, 5, 0, fields={"__syscall_nr": 1}))
        (rec,) = a.collect().data
        got.append((rec["comm"], rec.best_effort))
    assert got == [("x", frozenset()), ("x", frozenset(["comm"]))]


@pytest.mark.parametrize("tid", [None, "x", -1])
def test_bad_task_records_do_not_raise(tid):
    t = followed()
    assert t.feed(RawEvent("task", "task_rename", 1, 5, 0, fields={"pid": tid})) is True
    assert t.feed(RawEvent("task", "task_newtask", 1, 5, 0,
                           fields={"pid": 6, "comm": "x", "clone_flags": tid})) is True
    assert t.feed(RawEvent("block", "block_rq_issue", 1, 5, 0, fields={})) is False


def _status(proc, tid, uids):
    d = proc / str(tid)
    d.mkdir(exist_ok=True)
    (d / "status").write_text("Name:\tx\nUid:\t%s\nGid:\t0\t0\t0\t0\n" % uids)


def test_uid_is_the_real_uid_from_proc_and_a_miss_is_never_kept(tmp_path):
    t = TaskInfo(proc_root=str(tmp_path))
    assert t.uid(42) is None                      # no such task (yet)
    _status(tmp_path, 42, "1000\t0\t0\t0")        # real 1000, effective 0 (setuid)
    assert t.uid(42) == 1000
    _status(tmp_path, 42, "65534\t65534\t65534\t65534")
    assert t.uid(42) == 1000                      # kept for the interval
    t.end_interval()
    assert t.uid(42) == 65534
    t.exited(42)
    (tmp_path / "42" / "status").unlink()
    assert t.uid(42) is None


def test_no_uid_without_proc():
    # a replayed trace's tasks are not this host's
    assert TaskInfo(proc_root=None).uid(1) is None
