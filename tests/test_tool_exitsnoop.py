"""exitsnoop: the rows it joins from the kernel's events (exit, exit code,
signals, fork), a recording of known children replayed on any host, its
output formats and its bad input."""

import json
import os
import sys

import pytest

from kerntrace.core.model import EVENT_NAME
from kerntrace.core.results import Record
from kerntrace.plugins import exitsnoop, processes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "proc")
TRUTH = os.path.join(DATA, "exitsnoop-6.18.json")
RECORDING = os.path.join(DATA, "exitsnoop-6.18.rec")


class NoTable(object):
    parent, started = {}, {}

    def forget(self, tid):
        pass


def ev(ts, name, pid, tid, value, subject=None, comm="app"):
    return Record(ts, {EVENT_NAME: name, "comm": comm, "pid": pid, "tid": tid, "value": value,
                       "subject": value if subject is None else subject})


def combine(records, **kw):
    return exitsnoop.ExitCombiner(table=kw.pop("table", NoTable()), **kw)(records)


def texts(rows):
    return [(r["pid"], r["tid"], exitsnoop.exit_text(r)) for r in rows]


def test_exit_group_code_wins_over_the_sigkill_it_sends_other_threads():
    rows = combine([ev(1, "exit_group", 10, 11, 0x103),      # exit_group(259): code 3
                    ev(2, "deliver", 10, 10, 9),              # the leader gets SIGKILL
                    ev(3, "exit", 10, 11, 11), ev(4, "exit", 10, 10, 10)])
    assert texts(rows) == [(10, 10, "code 3")]


def test_a_fatal_signal_is_the_one_sent_not_the_sigkill_delivered():
    # kernel/signal.c complete_signal(): SIGTERM to a process with the
    # default handler reaches each thread as SIGKILL
    rows = combine([ev(1, "generate", 99, 99, 15, subject=20),
                    ev(2, "deliver", 20, 20, 9), ev(3, "exit", 20, 20, 20),
                    ev(4, "deliver", 30, 30, 11), ev(5, "exit", 30, 30, 30),
                    ev(6, "deliver", 40, 40, 9), ev(7, "exit", 40, 40, 40)])
    assert texts(rows) == [(20, 20, "signal 15 (TERM)"), (30, 30, "signal 11 (SEGV)"),
                           (40, 40, "signal 9 (KILL)")]


def test_signals_that_do_not_end_a_process_are_not_its_end():
    rows = combine([ev(1, "deliver", 20, 20, 17), ev(2, "generate", 1, 1, 18, subject=20),
                    ev(3, "exit_group", 20, 20, 0), ev(4, "exit", 20, 20, 20),
                    ev(5, "exit", 21, 21, 21)])
    assert texts(rows) == [(20, 20, "0"), (21, 21, "?")]


def test_an_unknown_process_id_is_taken_as_the_thread_id():
    """Kernels without task events (or a task gone from /proc) leave the
    process id unknown (None): the exit is still shown, its thread taken
    as its process (best-effort), with the code its exit_group() gave."""
    rows = combine([ev(1, "fork", None, 100, 4242, subject=4242),
                    ev(2, "exit_group", None, 4242, 3), ev(3, "exit", None, 4242, 4242),
                    ev(4, "generate", None, 100, 9, subject=5000),
                    ev(5, "deliver", None, 5000, 9), ev(6, "exit", None, 5000, 5000)])
    assert texts(rows) == [(4242, 4242, "code 3"), (5000, 5000, "signal 9 (KILL)")]
    assert [(r["ppid"], "pid" in r.best_effort) for r in rows] == [(100, True), (None, True)]


def test_threads_only_per_thread_and_failed_only():
    recs = [ev(1, "thread_exit", 50, 51, 4), ev(2, "exit", 50, 51, 51),
            ev(3, "exit_group", 50, 50, 0), ev(4, "exit", 50, 50, 50),
            ev(5, "exit_group", 60, 60, 1), ev(6, "exit", 60, 60, 60)]
    assert texts(combine(recs)) == [(50, 50, "0"), (60, 60, "code 1")]
    assert texts(combine(recs, per_thread=True)) == [(50, 51, "code 4"), (50, 50, "0"),
                                                     (60, 60, "code 1")]
    assert texts(combine(recs, failed=True)) == [(60, 60, "code 1")]
    assert texts(combine(recs, pid=60)) == [(60, 60, "code 1")]


def test_age_and_parent_from_the_fork_else_from_proc_best_effort():
    table = NoTable()
    table.parent, table.started = {80: 7}, {80: 1000000000}
    rows = combine([ev(2000000000, "fork", 70, 70, 71),
                    ev(4500000000, "exit_group", 71, 71, 0),
                    ev(4500000000, "exit", 71, 71, 71),
                    ev(5000000000, "exit", 80, 80, 80)], table=table)
    assert [(r["pid"], r["ppid"], r["age"], sorted(r.best_effort)) for r in rows] == \
        [(71, 70, 2.5, []), (80, 7, 4.0, ["age", "ppid"])]


def test_a_reused_pid_forgets_what_the_old_process_left():
    rows = combine([ev(1, "generate", 1, 1, 15, subject=90), ev(2, "fork", 5, 5, 90),
                    ev(3, "exit_group", 90, 90, 0), ev(4, "exit", 90, 90, 90)])
    assert texts(rows) == [(90, 90, "0")] and rows[0]["ppid"] == 5


def test_records_arrive_out_of_order_within_a_report():
    rows = combine([ev(2, "exit", 10, 10, 10), ev(1, "exit_group", 10, 10, 2)])
    assert texts(rows) == [(10, 10, "code 2")]


def test_process_table_reads_proc_stat(tmp_path):
    d = tmp_path / "123"
    d.mkdir()
    # a comm with a space and a parenthesis
    (d / "stat").write_text("123 (a b) c) S 45 123 123 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 "
                            "250 0 0\n")
    t = processes.ProcessTable(proc=str(tmp_path))
    assert t.parent == {123: 45}
    assert abs(t.started[123] + processes.boot_offset_ns()
               - 250 * 1000000000 // processes.CLOCK_TICKS) < 10 ** 8


def replay(argv):
    return blocktest.run_tool("exitsnoop", ["--input", RECORDING] + argv)


def truth():
    with open(TRUTH) as f:
        t = json.load(f)
    return t["parent"], {int(p): s for p, s in t["children"].items()}


def expected(status):
    if status & 0x7F:
        return "signal %d (%s)" % (status & 0x7F, processes.signal_name(status & 0x7F))
    return "0" if status == 0 else "code %d" % (status >> 8)


def test_replay_of_known_children_shows_each_exit_as_waitpid_saw_it():
    parent, children = truth()
    rc, out, err = replay([])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "PCOMM            PID     PPID    TID     AGE(s)  EXIT_CODE"
    rows = {}
    for line in lines[1:]:
        comm, pid, ppid, tid, age, code = line[:16].strip(), *line[17:].split(None, 4)
        rows[int(pid)] = (comm, ppid, int(tid), age, code.strip())
    for pid, spec in children.items():
        comm, ppid, tid, age, code = rows[pid]
        assert (ppid, tid, code) == (str(parent), pid, expected(spec["status"])), rows[pid]
        assert float(age) >= (1.4 if spec["exec_ret"] == 0 else 0)
    # the parent existed before the recording: no /proc of it on replay
    assert rows[parent][1] == "?" and rows[parent][3] == "?"


def test_replay_json_and_prometheus():
    parent, children = truth()
    rc, out, err = replay(["--json"])
    assert rc == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    mine = {r["fields"]["pid"]: r["fields"] for r in recs if r["fields"]["pid"] in children}
    assert set(mine) == set(children)
    for pid, f in mine.items():
        status = children[pid]["status"]
        assert (f["signal"], f["exit_code"]) == ((status & 0x7F, None) if status & 0x7F
                                                 else (None, status >> 8))
        assert set(f) == set(exitsnoop.ROW_FIELDS)
    rc, out, err = replay(["--prometheus"])
    assert rc == 0 and "kerntrace_process_exits_total" in out, err


def test_replay_pid_and_failed_filters():
    parent, children = truth()
    rc, out, err = replay(["-x"])
    shown = set(int(line[17:].split()[0]) for line in out.splitlines()[1:])
    assert shown & set(children) == set(p for p, s in children.items() if s["status"]), out
    rc, out, err = replay(["-p", str(parent)])
    assert [int(line[17:].split()[0]) for line in out.splitlines()[1:]] == [parent], out


@pytest.mark.parametrize("argv, words", [
    (["-p", "0"], "invalid PID"),
    (["-p", "12x"], "invalid PID"),
    (["-p", str(4 * 1024 * 1024 - 1)], "no process with PID"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_one_line(argv, words):
    rc, out, err = blocktest.run_tool("exitsnoop", argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and words in err, err
