"""execsnoop: the rows it joins from the kernel's events (exec, its
return, fork), the /proc facts it adds (best-effort), a recording of known
children replayed on any host, its output formats and its bad input."""

import json
import os
import sys

import pytest

from kerntrace.core.model import EVENT_NAME
from kerntrace.core.results import Record
from kerntrace.plugins import execsnoop, processes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "proc")
TRUTH = os.path.join(DATA, "execsnoop-6.18.json")
RECORDING = os.path.join(DATA, "execsnoop-6.18.rec")


def ev(ts, name, pid, value, subject=None, comm="sh"):
    return Record(ts, {EVENT_NAME: name, "comm": comm, "pid": pid, "tid": pid, "value": value,
                       "subject": value if subject is None else subject})


@pytest.fixture
def proc(tmp_path):
    """A fake /proc with process 200 (uid 1000, parent 1) running
    `sh -c "echo a b" x`."""
    d = tmp_path / "200"
    d.mkdir()
    (d / "cmdline").write_bytes(b"sh\0-c\0echo a\nb\0x\0")
    (d / "stat").write_text("200 (sh) S 1 200 200 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0\n")
    (d / "status").write_text("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n")
    return str(tmp_path)


def combine(records, proc, **kw):
    return execsnoop.ExecCombiner(proc=proc, **kw)(records)


def test_a_row_per_successful_exec_with_proc_args_best_effort(proc):
    rows = combine([ev(1, "fork", 150, 200), ev(3, "ret", 200, 0),
                    ev(4, "ret", 201, 0, comm="gone")], proc)
    assert [(r["comm"], r["pid"], r["ppid"], r["ret"], r["args"], r["uid"]) for r in rows] == \
        [("sh", 200, 150, 0, "sh -c echo a\nb x", 1000), ("gone", 201, None, 0, None, None)]
    assert rows[0].best_effort == frozenset(("args", "uid"))
    assert execsnoop.args_text(rows[0]) == "sh -c echo a\\nb x"
    assert execsnoop.args_text(rows[1]) == "?"


def test_parent_from_proc_when_no_fork_was_seen(proc):
    rows = combine([ev(3, "ret", 200, 0)], proc)
    assert rows[0]["ppid"] == 1 and "ppid" in rows[0].best_effort


def test_an_unknown_process_id_is_the_thread_of_a_successful_exec(proc):
    """Kernels without task events (or a task gone from /proc) leave the
    process id unknown (None); a successful exec makes its caller the
    process's leader, so its thread id is the process id.  A failed one
    says nothing: no id, no /proc lookup."""
    r = ev(3, "ret", None, 0)
    r.fields["tid"] = 200
    f = ev(4, "ret", None, -2)
    f.fields["tid"] = 201
    rows = combine([r, f], proc, failed=True)
    assert [(x["pid"], x["ppid"], x["uid"], x["args"]) for x in rows] == [
        (200, 1, 1000, "sh -c echo a\nb x"), (None, None, None, None)]
    # a fork by a thread of an unknown process: that thread is the parent
    fork = ev(1, "fork", None, 300)
    fork.fields["tid"] = 150
    r = ev(3, "ret", None, 0)
    r.fields["tid"] = 300
    rows = combine([fork, r], None)
    assert [(x["pid"], x["ppid"]) for x in rows] == [(300, 150)]
    assert "ppid" in rows[0].best_effort


def test_failed_execs_only_with_x_and_never_with_proc_args(proc):
    recs = [ev(1, "ret", 200, -2), ev(2, "ret", 200, -13)]
    assert combine(recs, proc) == []
    rows = combine(recs, proc, failed=True)
    assert [(r["ret"], r["args"]) for r in rows] == [(-2, None), (-13, None)]


def test_name_line_and_max_args(proc):
    recs = [ev(1, "ret", 200, 0)]
    assert combine(recs, proc, name="^s") and not combine(recs, proc, name="bash")
    assert combine(recs, proc, line="echo a") and not combine(recs, proc, line="zzz")
    assert combine(recs, proc, max_args=2)[0]["args"] == "sh -c ..."


def test_columns():
    row = Record(0, {"comm": "sh", "pid": 200, "ppid": None, "ret": -2, "args": None,
                     "uid": None})
    printer = execsnoop.execsnoop_columns(uid=True)
    assert [c.header for c in printer] == ["UID", "PCOMM", "PID", "PPID", "RET", "ARGS"]
    from kerntrace.core.output.table import EventTablePrinter
    p = EventTablePrinter(None, None, execsnoop.execsnoop_columns())
    assert p.header() == "PCOMM            PID     PPID    RET ARGS"
    assert p.row(row, None) == "sh               200     ?        -2 ?"


def replay(argv):
    return blocktest.run_tool("execsnoop", ["--input", RECORDING] + argv)


def truth():
    with open(TRUTH) as f:
        t = json.load(f)
    return t["parent"], {int(p): s for p, s in t["children"].items()}


def rows_of(out):
    rows = {}
    for line in out.splitlines()[1:]:
        pid, ppid, ret = line[17:].split()[:3]
        rows.setdefault(int(pid), []).append((line[:16].strip(), ppid, int(ret)))
    return rows


def test_replay_of_known_children():
    parent, children = truth()
    rc, out, err = replay(["-x"])
    assert rc == 0, err
    assert out.splitlines()[0] == "PCOMM            PID     PPID    RET ARGS"
    rows = rows_of(out)
    for pid, spec in children.items():
        comm = "sh" if spec["exec_ret"] == 0 else rows[pid][0][0]
        assert rows[pid] == [(comm, str(parent), spec["exec_ret"])], rows.get(pid)
    rc, out, err = replay([])
    rows = rows_of(out)
    assert set(rows) & set(children) == set(p for p, s in children.items()
                                            if s["exec_ret"] == 0)


def test_replay_json_has_no_arguments_a_trace_never_held():
    parent, children = truth()
    rc, out, err = replay(["--json"])
    assert rc == 0, err
    recs = [json.loads(line)["fields"] for line in out.splitlines()]
    mine = [r for r in recs if r["pid"] in children]
    assert len(mine) == len([s for s in children.values() if s["exec_ret"] == 0])
    assert all(r["args"] is None and r["ret"] == 0 and set(r) == set(execsnoop.ROW_FIELDS)
               for r in mine)


@pytest.mark.parametrize("argv, words", [
    (["-n", "a("], "invalid name"),
    (["-l", "[x"], "invalid line"),
    (["--max-args", "-3"], "invalid count"),
    (["--max-args", "x"], "invalid count"),
])
def test_bad_input_one_line(argv, words):
    rc, out, err = blocktest.run_tool("execsnoop", argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_explain_and_doctor_say_what_is_best_effort():
    rc, out, err = replay(["--explain"])
    assert rc == 0 and "kerntrace: execsnoop: best-effort: ARGS" in err, err
    from kerntrace.core.doctor import gather
    from kerntrace.core.host import Host
    from kerntrace.core.pluginhost import PluginHost
    report, _ = gather(PluginHost(load_third_party=False), Host())
    tools = {t["tool"]: t for t in report["tools"]}
    assert any("/proc/PID/cmdline" in n for n in tools["execsnoop"]["best_effort"])
    assert any("/proc/PID/stat" in n for n in tools["exitsnoop"]["best_effort"])
    assert tools["biosnoop"]["best_effort"] == []
