"""tpoint without a real kernel: its command line, measurement and output
on a fake tracefs (tests/fake_tracefs.py), and bad input refused with one
line before anything is written to tracefs."""

import importlib
import io

import pytest

from fake_tracefs import FakeTracefs
from kerntrace.core import cli
from kerntrace.core.api import INT, STR, Record, RunContext, UsageError
from kerntrace.core.model import Schedule
from kerntrace.plugins.tpoint import TPoint, TracepointPrinter
from kerntrace.core.tracepoints import tracepoint_fields

DEV = (8 << 20) | 0

# Every module a run may import, imported before any fake file system:
# pyfakefs patches the os module of modules present when it starts.
import test_ftrace_era_tools  # noqa: E402,F401  (imports the backends' modules)
for _name in ("kerntrace.core.expr", "kerntrace.core.tracepoints",
              "kerntrace.plugins.tpoint", "kerntrace.plugins.argdist"):
    importlib.import_module(_name)


@pytest.fixture
def host(fs, monkeypatch):
    monkeypatch.setenv("KERNTRACE_DISABLE_PLUGINS", "1")
    fs.create_dir("/var/tmp")
    return FakeTracefs(fs, "6.11").install(monkeypatch)


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.run_tool("tpoint", argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_every_payload_field_the_model_carries_is_declared(host):
    tool = TPoint()
    args = tool.parse_args(["block:block_rq_issue", "dev == %d && nr_sector > 8" % DEV])
    m = tool.measurement(args)
    (ev,) = m.events
    declared = [(f.name, f.type, f.sources) for f in ev.fields]
    assert declared == [("dev", INT, ("dev",)), ("sector", INT, ("sector",)),
                        ("nr_sector", INT, ("nr_sector",)), ("bytes", INT, ("bytes",)),
                        ("ioprio", INT, ("ioprio",)), ("rwbs", STR, ("rwbs",)),
                        # the payload's comm is not the context field comm
                        ("comm_", STR, ("comm",)), ("cmd", STR, ("cmd",))]
    assert m.aggregate.fields[:3] == ("comm", "tid", "cpu")
    assert [(f.field, f.op, f.value) for f in m.filters] == [("dev", "==", DEV),
                                                            ("nr_sector", ">", 8)]


def test_pid_tid_and_common_pid(host):
    tool = TPoint()
    m = tool.measurement(tool.parse_args([
        "-p", "181", "-L", "182", "sched:sched_process_exec",
        "common_pid != 0 && pid == 7 && filename ~ \"/usr/*\""]))
    # In a filter, as in tracefs, a name is the payload's field first (the
    # exec'd task's pid, declared as pid_); common_pid is the thread id.
    assert [(f.field, f.op, f.value) for f in m.filters] == [
        ("pid", "==", 181), ("tid", "==", 182), ("tid", "!=", 0), ("pid_", "==", 7),
        ("filename", "glob", "/usr/*")]


def test_duration_schedule(host):
    tool = TPoint()
    m = tool.measurement(tool.parse_args(["-d", "2.5", "sched:sched_process_exec"]))
    assert m.schedule.duration == 2.5


def test_list_with_a_glob_and_view_trace_nothing(host):
    rc, out, err = run(["-l", "block:block_rq_*"])
    assert rc == 0, err
    names = out.split()
    assert "block:block_rq_issue" in names and "block:block_rq_complete" in names
    assert all(n.startswith("block:block_rq_") for n in names)
    rc, out, _ = run(["-l"])
    assert rc == 0 and "sched:sched_process_exec" in out.split()
    assert not any(n.startswith("ftrace:") for n in out.split())
    rc, out, err = run(["-v", "block:block_rq_issue"])
    assert rc == 0 and out.startswith("name: block_rq_issue\n") and "print fmt:" in out
    assert host.writes == []


def test_line_is_trace_pipe_style():
    class Fields(object):
        name = "block_rq_issue"
        by_source = {"dev": "dev", "rwbs": "rwbs", "comm": "comm_", "ptr": "ptr"}
        pointers = {"ptr"}
    out = io.StringIO()
    p = TracepointPrinter(out, io.StringIO(), "Tracing block:block_rq_issue. Ctrl-C to end.",
                          Fields(), headers=True)
    ctx = RunContext("tpoint", "ftrace", Schedule())
    p.start(ctx)
    from kerntrace.core.api import Report
    p.report(Report([Record(12345678901234, {"comm": "dd", "tid": 4011, "cpu": 1, "dev": DEV,
                                             "rwbs": "WS", "comm_": "dd", "ptr": 255})],
                    start=0, end=1), ctx)
    p.finish(ctx)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Tracing block:block_rq_issue. Ctrl-C to end."
    assert lines[1].startswith("#") and lines[2].startswith("#")
    assert lines[3] == ("              dd-4011    [001] 12345.678901: block_rq_issue: "
                        "dev=8388608 rwbs=WS comm=dd ptr=0xff")
    assert lines[-1] == "Ending tracing..."


@pytest.mark.parametrize("argv, message", [
    (["nope:nope"], "^ERROR: tracepoint nope:nope not found. Exiting$"),
    (["block:block_rq_issue", "nope == 1"], "unknown field 'nope'"),
    (["block:block_rq_issue", "dev == 1 || dev == 2"], "'||' is not supported"),
    (["block:block_rq_issue", "dev == 1:traceoff"], "':' is not supported"),
    (["block:block_rq_issue", "dev == 1\n-:kprobes/x"], "not supported"),
    (["block:block_rq_issue", "!dev"], "negation"),
    (["block:block_rq_issue", "rwbs == 1"], "quote the value"),
    (["block:block_rq_issue", "dev == \"x\""], "integer field"),
    (["block:block_rq_issue", "comm == \"a'b\""], "not supported|invalid value"),
    (["block:block_rq_issue", "dev == 1", "extra"], "too many arguments"),
    (["-d", "1", "-v", "block:block_rq_issue"], "use either -d or -v"),
    (["-d", "x", "block:block_rq_issue"], "invalid duration"),
    (["-p", "0", "block:block_rq_issue"], "invalid PID"),
    (["block:x:y"], "invalid tracepoint"),
    (["../block:block_rq_issue"], "invalid tracepoint"),
    (["ftrace:function"], "not a tracepoint"),
    ([], "missing tracepoint"),
])
def test_bad_input_one_line_nothing_written(host, argv, message):
    import re
    rc, out, err = run(argv)
    assert rc == 1, (out, err)
    assert len(err.splitlines()) == 1 and re.search(message, err.splitlines()[0]), err
    assert out == "" and host.writes == []


def test_usage_is_perf_tools(host):
    rc, out, err = run(["-h"])
    assert rc == 0 and err.startswith("USAGE: tpoint") and "eg," in err


def test_fields_of_a_format_the_model_cannot_carry(host):
    tf = tracepoint_fields("block", "block_rq_issue")
    assert tf.skipped == [] and tf.by_source["comm"] == "comm_"
    with pytest.raises(UsageError, match="not found"):
        tracepoint_fields("block", "nope")


# ---------------------------------------------------------------------------
# -s: kernel stacks (eBPF: a stack map; ftrace: tests/test_ftrace_kstacks.py)
def test_stacks_are_a_records_field_the_ebpf_program_takes():
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen
    from kerntrace.core.model import KSTACK, Event, Measurement, Records, Tracepoint
    m = Measurement([Event("e", Tracepoint("block", "block_rq_issue"))],
                    Records(("comm", "tid", KSTACK)))
    prog = codegen.generate(m, make_plan(m))
    assert "BPF_STACK_TRACE(kt_kstacks, 16384);" in prog.text
    assert ".get_stackid(args, 0);" in prog.text
    assert [a.kind for a in prog.attachments] == ["tracepoint"]      # not raw: args is ctx


def test_stacks_only_in_records():
    from kerntrace.core.errors import InvalidSpec
    from kerntrace.core.model import EVENT_NAME, KSTACK, Count, Event, Measurement, Tracepoint
    with pytest.raises(InvalidSpec, match="unknown field 'kstack'"):
        Measurement([Event("e", Tracepoint("sched", "sched_process_fork"))],
                    Count(keys=(EVENT_NAME, KSTACK)))


def test_stack_lines_follow_the_event_as_ftrace_prints_them():
    import io
    from kerntrace.core.results import Record
    from kerntrace.plugins.tpoint import TracepointPrinter
    from kerntrace.core.model import KSTACK

    class Fields(object):
        name = "sys_enter_getppid"
        by_source = {"__syscall_nr": "__syscall_nr"}
        pointers = set()
    out = io.StringIO()
    p = TracepointPrinter(out, io.StringIO(), "Tracing", Fields(), stacks=True)
    rec = Record(12345678000, {"comm": "sh", "tid": 7, "cpu": 1, "__syscall_nr": 110,
                               KSTACK: ("do_syscall_64", "entry_SYSCALL_64_after_hwframe")})
    lost = Record(12345679000, {"comm": "sh", "tid": 7, "cpu": 1, "__syscall_nr": 110,
                                KSTACK: ()})
    assert p.line(rec).splitlines() == [
        "              sh-7       [001] 12.345678: sys_enter_getppid: __syscall_nr=110",
        "              sh-7       [001] 12.345678: <stack trace>",
        " => do_syscall_64", " => entry_SYSCALL_64_after_hwframe"]
    assert p.line(lost).splitlines()[-1] == " => [stack not taken]"
