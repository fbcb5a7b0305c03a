"""syscount without a kernel: its command line, measurement, bad input and
bcc's table layout."""

import io
import os

import pytest

from clirun import run
from kerntrace.core.model import LATENCY, Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.results import CountSet, Histogram, HistogramSet, Report
from kerntrace.core.syscalls import syscall_table
from kerntrace.plugins.syscount import Syscount, SyscountPrinter

HOST_TABLE = syscall_table()
needs_table = pytest.mark.skipif(len(HOST_TABLE) == 0,
                                 reason="no syscall table for this architecture")


def measure(argv):
    tool = Syscount()
    return tool.measurement(tool.parse_args(argv))


def filters(m):
    return [(f.field, f.op, f.value, f.events) for f in m.filters]


def test_counts_every_return_per_syscall_number():
    m = measure([])
    assert [e.probes[0].describe() for e in m.events] == ["t:raw_syscalls:sys_exit"]
    assert m.aggregate.kind == "count" and m.aggregate.keys == ("id",)
    # the tracer's own calls are left out (on ftrace they would feed back)
    assert filters(m) == [("tid", "!=", os.getpid(), None)]
    assert m.schedule.interval > 3600 * 24 * 365   # one report, at the end


@needs_table
def test_filters_from_the_command_line():
    m = measure(["-p", str(os.getpid()), "-e", "ENOENT", "--syscall", "openat", "-i", "2",
                 "-d", "10"])
    assert filters(m)[1:] == [("pid", "==", os.getpid(), None),
                              ("id", "==", HOST_TABLE.number("openat"), None),
                              ("ret", "==", -2, ("exit",))]
    assert m.schedule.interval == 2 and m.schedule.duration == 10
    m = measure(["-x", "-t", str(os.getpid()), "-P"])
    assert filters(m)[1:] == [("tid", "==", os.getpid(), None), ("ret", "<", 0, ("exit",))]
    assert m.aggregate.keys == ("pid", "comm")


def test_duration_alone_is_the_interval_too():
    m = measure(["-d", "5"])
    assert m.schedule.interval == 5 and m.schedule.duration == 5


def test_latency_pairs_entry_and_return_per_thread():
    m = measure(["-L", "-P"])
    assert [e.probes[0].describe() for e in m.events] == ["t:raw_syscalls:sys_enter",
                                                          "t:raw_syscalls:sys_exit"]
    assert m.pair.key == ("tid",)
    agg = m.aggregate
    assert (agg.kind, agg.value, agg.divisor, agg.keys) == ("histogram", LATENCY, 1,
                                                            ("pid", "comm"))


def test_errno_by_number_or_name():
    tool = Syscount()
    assert tool.parse_args(["-e", "-13"]).errno == 13
    assert tool.parse_args(["-e", "EACCES"]).errno == 13


@pytest.mark.parametrize("argv, words", [
    (["--syscall", "getppidd"], "unknown system call 'getppidd'"),
    (["--syscall", "getppid:traceoff"], "invalid system call name"),
    (["--syscall", "!getppid"], "invalid system call name"),
    (["--syscall", "getppid\nsys_exit"], "invalid system call name"),
    (["--syscall=-:raw_syscalls/sys_exit"], "invalid system call name"),
    (["-e", "ENOSUCH"], "invalid errno 'ENOSUCH'"),
    (["-e", "0"], "invalid errno '0'"),
    (["-e", "ENOENT:traceoff"], "invalid errno"),
    (["-e", "EPERM\n"], "invalid errno"),
    (["-T", "0"], "invalid top '0'"),
    (["-i", "-1"], "invalid interval"),
    (["-p", "0"], "invalid PID"),
    (["-p", "1:traceoff"], "invalid PID"),
    (["-x", "-e", "EPERM"], "not allowed with argument"),
])
def test_bad_input_is_one_line(argv, words):
    if "unknown system call" in words and len(HOST_TABLE) == 0:
        pytest.skip("no syscall table for this architecture")
    rc, out, err = run(["syscount"] + argv)
    assert rc == 2 and out == "", (rc, out, err)
    assert len(err.splitlines()) == 1 and words in err, err
    assert "Traceback" not in err


def test_a_pid_nobody_has():
    pid = 4194303                      # PID_MAX_LIMIT - 1: never reached by default
    if os.path.exists("/proc/%d" % pid):
        pytest.skip("PID %d exists here" % pid)
    rc, out, err = run(["syscount", "-p", str(pid)])
    assert rc == 2 and out == "" and err == "syscount: no process with PID %d\n" % pid


@needs_table
def test_list_prints_this_architectures_names():
    rc, out, err = run(["syscount", "-l"])
    assert rc == 0 and err == ""
    names = out.split()
    assert names == sorted(names) and set(names) == set(HOST_TABLE.names())


# ---------------------------------------------------------------------------
# Output: bcc syscount's layout.

def render(printer, data):
    out = io.StringIO()
    printer.out = out
    ctx = RunContext("syscount", "ftrace", Schedule())
    printer.report(Report(data, end=0.0), ctx)
    return out.getvalue()


def test_count_table_top_n_largest_first():
    p = SyscountPrinter(None, io.StringIO(), top=2)
    data = CountSet(("id",), {(0,): 5, (1,): 9, (3,): 1, (-1,): 99})
    t = syscall_table("x86_64")
    p.table = t
    lines = render(p, data).splitlines()
    assert lines[0].startswith("[") and lines[0].endswith("]")
    assert lines[1:] == ["SYSCALL                   COUNT",
                         "%-22s %8d" % ("write", 9), "%-22s %8d" % ("read", 5), ""]


def test_latency_table_sorted_by_total_time():
    p = SyscountPrinter(None, io.StringIO(), latency=True)
    p.table = syscall_table("aarch64")
    fast, slow = Histogram("log2", "nsecs"), Histogram("log2", "nsecs")
    fast.add(10, 1500, n=1000)          # 1000 calls, 1.5 ms in all
    slow.add(20, 2000000, n=3)          # 3 calls, 6 ms
    data = HistogramSet(("id",), {(63,): fast, (101,): slow})
    lines = render(p, data).splitlines()
    assert lines[1:] == ["%-22s %8s %16s" % ("SYSCALL", "COUNT", "TIME (us)"),
                         "%-22s %8d %16.3f" % ("nanosleep", 3, 6000.0),
                         "%-22s %8d %16.3f" % ("read", 1000, 1500.0), ""]


def test_per_process_rows_and_milliseconds():
    p = SyscountPrinter(None, io.StringIO(), latency=True, milliseconds=True, process=True)
    h = Histogram("log2", "nsecs")
    h.add(10, 2500000, n=2)
    lines = render(p, HistogramSet(("pid", "comm"), {(181, "mysqld"): h})).splitlines()
    assert lines[1] == "%-22s %8s %16s" % ("PID    COMM", "COUNT", "TIME (ms)")
    assert lines[2] == "%-22s %8d %16.6f" % ("181    mysqld         ", 2, 5.0)


def test_unknown_numbers_are_shown_as_such():
    p = SyscountPrinter(None, io.StringIO())
    p.table = syscall_table("x86_64")
    assert "[unknown: 999]" in render(p, CountSet(("id",), {(999,): 1}))


def test_formatter_names_syscalls_in_json_and_prometheus():
    tool = Syscount()
    fmt = tool.formatters(tool.parse_args([]))["id"]
    assert fmt(0) == HOST_TABLE.name(0)
