"""The ftrace backend's lifecycle parts, piece by piece: the perf-tools lock
(on the real file system: O_EXCL/O_NOFOLLOW semantics are the point), the
undo stack that close() runs, what is written back for each saved file,
model filters turned into kernel filter text, loss accounting and the
per-CPU timestamp merge."""

import errno
import os
import subprocess
import sys

import pytest

from kerntrace.backends.ftrace import instance, kfilter, probes, stale
from kerntrace.backends.ftrace.lock import FtraceLock, pid_alive
from kerntrace.backends.ftrace.plan import ResolvedEvent
from kerntrace.backends.ftrace.session import LossCounter, TimeOrder
from kerntrace.core.errors import KerntraceError, LockHeld
from kerntrace.core.model import STR, Count, Event, Field, Filter, Measurement, Tracepoint
from kerntrace.core.tracefs import parse_format


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------
# The perf-tools lock, on the real file system
@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / ".ftrace-lock")


def test_lock_created_with_our_pid_and_removed(lock_path):
    with FtraceLock(lock_path) as lock:
        assert open(lock_path).read() == "%d\n" % os.getpid()
        assert lock.held
    assert not os.path.exists(lock_path)


def test_lock_held_by_live_process(lock_path):
    holder = os.getppid()
    with open(lock_path, "w") as f:
        f.write("%d\n" % holder)
    with pytest.raises(LockHeld) as exc:
        FtraceLock(lock_path).acquire()
    assert exc.value.pid == holder and exc.value.path == lock_path
    assert str(exc.value) == "ftrace may be in use by PID %d %s" % (holder, lock_path)
    assert open(lock_path).read() == "%d\n" % holder


def test_stale_lock_taken_over_and_reported(lock_path, capsys):
    gone = dead_pid()
    with open(lock_path, "w") as f:
        f.write("%d\n" % gone)
    lock = FtraceLock(lock_path, stderr=sys.stderr)
    lock.acquire()
    assert open(lock_path).read() == "%d\n" % os.getpid()
    assert capsys.readouterr().err == \
        "kerntrace: took over stale lock %s (PID %d is not running)\n" % (lock_path, gone)
    lock.release()
    assert not os.path.exists(lock_path)


def test_symlink_lock_is_refused_and_its_target_untouched(tmp_path, lock_path):
    target = tmp_path / "precious"
    target.write_text("do not touch\n")
    os.symlink(str(target), lock_path)
    with pytest.raises(KerntraceError, match="refusing lock .*: it is a symbolic link"):
        FtraceLock(lock_path).acquire()
    assert target.read_text() == "do not touch\n"
    assert os.path.islink(lock_path)


def test_dangling_symlink_is_not_followed_to_create_a_file(tmp_path, lock_path):
    target = tmp_path / "created-through-link"
    os.symlink(str(target), lock_path)
    with pytest.raises(KerntraceError, match="symbolic link"):
        FtraceLock(lock_path).acquire()
    assert not target.exists()


def test_lock_that_is_not_a_regular_file(lock_path):
    os.mkfifo(lock_path)
    with pytest.raises(KerntraceError, match="not a regular file"):
        FtraceLock(lock_path).acquire()


def test_release_leaves_someone_elses_lock(lock_path):
    lock = FtraceLock(lock_path)
    lock.acquire()
    with open(lock_path, "w") as f:      # taken over meanwhile (we looked dead)
        f.write("1\n")
    lock.release()
    assert open(lock_path).read() == "1\n"


def test_stale_takeover_never_removes_a_fresh_lock(lock_path, monkeypatch):
    """Two runs judge the same lock stale; the second must not remove the
    fresh lock the first one created in between."""
    gone = dead_pid()
    with open(lock_path, "w") as f:
        f.write("%d\n" % gone)
    first = FtraceLock(lock_path, pid=os.getpid())
    second = FtraceLock(lock_path, pid=os.getppid(),
                        is_alive=lambda pid: pid not in (gone,) and pid_alive(pid))
    real_read = second._read
    state = {"n": 0}

    def read_then_race(path=None):
        result = real_read(path)
        if state["n"] == 0:
            state["n"] += 1
            first.acquire()             # the first run wins the race here
        return result
    monkeypatch.setattr(second, "_read", read_then_race)
    with pytest.raises(LockHeld) as exc:
        second.acquire()
    assert exc.value.pid == os.getpid()
    assert open(lock_path).read() == "%d\n" % os.getpid()
    first.release()


def test_pid_alive():
    assert pid_alive(os.getpid()) and pid_alive(1)
    assert not pid_alive(dead_pid()) and not pid_alive(0)


# ---------------------------------------------------------------------------
# Undo stack
def test_undo_runs_last_first_and_reports_failures():
    done = []
    u = instance.UndoStack()
    u.push("a", lambda: done.append("a"))
    u.push("b", lambda: (_ for _ in ()).throw(OSError(errno.EBUSY, "busy")))
    u.push("c", lambda: done.append("c"))
    errors = u.run()
    assert done == ["c", "a"] and [w for w, _e in errors] == ["b"]
    assert u.run() == [] and len(u) == 0


def test_undo_interrupted_by_a_signal_is_retried():
    class Stop(BaseException):
        pass
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise Stop()
    u = instance.UndoStack()
    u.push("first", lambda: calls.append("first"))
    u.push("flaky", flaky)
    with pytest.raises(Stop):
        u.run()
    assert len(u) == 2
    assert u.run() == [] and calls == [1, 1, "first"]


# ---------------------------------------------------------------------------
# What is written back for a saved file
@pytest.mark.parametrize("path,text,value", [
    ("/t/tracing_on", "0\n", "0"),
    ("/t/events/block/block_rq_issue/enable", "1\n", "1"),
    ("/t/events/block/enable", "0*\n", "0"),
    ("/t/options/record-tgid", "0\n", "0"),
    ("/t/trace_clock", "local [global] counter\n", "global"),
    ("/t/buffer_size_kb", "1410\n", "1410"),
    ("/t/buffer_size_kb", "7 (expanded: 1408)\n", "1408"),
    ("/t/buffer_size_kb", "X\n", None),
    ("/t/events/block/block_rq_issue/filter", "none\n", "0"),
    ("/t/events/block/block_rq_issue/filter", "dev == 5\n", "dev == 5"),
    ("/t/events/block/block_rq_issue/filter", "bad ~\n    ^\nparse_error: x\n", "0"),
    ("/t/current_tracer", "nop\n", "nop"),
    ("/t/set_ftrace_filter", "#### all functions enabled ####\n", ""),
    ("/t/set_event_pid", "12\n13\n", "12\n13"),
])
def test_restore_value(path, text, value):
    assert instance.restore_value(path, text) == value


def test_instance_names_carry_the_pid():
    name = instance.instance_name("IO-latency!", pid=4242)
    assert name.startswith("kerntrace-4242-iolatency")
    assert instance.instance_owner(name) == 4242
    assert instance.instance_owner("kerntrace-x-y") is None
    assert instance.instance_owner("someone-else") is None


def test_probe_names_carry_the_pid():
    group, event = probes.next_name(pid=77)
    assert group == "kerntrace_77" and event.startswith("kerntrace_77_")
    assert probes.owner_pid(group) == 77 and probes.owner_pid("kerntrace_x") is None
    assert probes.parse_definition("p:kerntrace_77/kerntrace_77_0 /lib/libc.so.6:0x10 a=%di") \
        == ("p", "kerntrace_77", "kerntrace_77_0")
    assert probes.parse_definition("r10:grp/ev do_sys_open") == ("r", "grp", "ev")
    assert probes.removal_line(group, event) == "-:%s/%s\n" % (group, event)


def test_unsafe_probe_definitions_refused():
    with pytest.raises(probes.ProbeError):
        probes.uprobe_definition("g", "e", "/tmp/a b", 0x10, False, [])
    with pytest.raises(probes.ProbeError):
        probes.kprobe_definition("g", "e", "vfs_read\n-:other/x", False, [])


# ---------------------------------------------------------------------------
# Kernel filter text
_FMT = parse_format("""name: block_rq_issue
ID: 1
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int error;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char rwbs[10];\toffset:28;\tsize:10;\tsigned:0;

print fmt: ""
""", "block")


def _resolved(*fields):
    ev = Event("issue", Tracepoint("block", "block_rq_issue"),
               fields=[Field("dev"), Field("sector"), Field("err", sources=("error",)),
                       Field("rwbs", STR)])
    return ev, ResolvedEvent(ev, ev.probes[0], "block", "block_rq_issue", _FMT,
                             {"dev": "dev", "sector": "sector", "err": "error", "rwbs": "rwbs"})


@pytest.mark.parametrize("flt,text", [
    (Filter("dev", "==", (254 << 20) | 3), "dev == 266338307"),
    (Filter("sector", ">=", 2 ** 40), "sector >= 1099511627776"),
    (Filter("err", "<", -4), "error < -4"),
    (Filter("rwbs", "==", "WS"), 'rwbs == "WS"'),
    (Filter("rwbs", "!=", "R"), 'rwbs != "R"'),
    (Filter("rwbs", "glob", "*R*"), 'rwbs ~ "*R*"'),
    (Filter("tid", "==", 4321), "common_pid == 4321"),
    # Values that do not fit the field: the kernel would truncate the
    # constant (dev is 32 bits), so they stay in user space.
    (Filter("dev", "==", 2 ** 32 + 5), None),
    (Filter("dev", "==", -1), None),
    (Filter("err", "==", 2 ** 31), None),
    # Context fields the kernel cannot evaluate exactly.
    (Filter("pid", "==", 10), None),
    (Filter("comm", "==", "dd"), None),
    (Filter("cpu", "==", 1), None),
])
def test_filter_clauses(flt, text):
    ev, r = _resolved()
    got = kfilter.clauses([flt], r)
    assert [c.text for c in got] == ([text] if text else [])


def test_filter_expression_and_glob_fallback():
    ev, r = _resolved()
    cl = kfilter.clauses([Filter("dev", "==", 5), Filter("rwbs", "glob", "R*")], r)
    assert kfilter.expression(cl) == 'dev == 5 && rwbs ~ "R*"'
    assert kfilter.expression(kfilter.without_globs(cl)) == "dev == 5"


def test_event_filter_applies_only_matching_filters():
    ev, r = _resolved()
    other = Event("done", Tracepoint("block", "block_rq_complete"), fields=[Field("dev")])
    m = Measurement([ev, other], Count(), filters=[
        Filter("dev", "==", 5), Filter("rwbs", "glob", "*W*"),
        Filter("dev", "!=", 7, events=["done"])])
    assert kfilter.event_filter(m, r) == 'dev == 5 && rwbs ~ "*W*"'


def test_string_constants_are_revalidated():
    ev, r = _resolved()
    f = Filter("rwbs", "==", "W")
    f.value = 'W" || common_pid > 0 || rwbs == "'   # bypassing the model's check
    assert kfilter.clauses([f], r) == []


def test_pid_for_set_event_pid():
    ev, r = _resolved()
    m = Measurement([ev], Count(), filters=[Filter("pid", "==", 99)])
    assert kfilter.pid_for_set_event_pid(m) == 99
    m = Measurement([ev], Count(), filters=[Filter("pid", "!=", 99)])
    assert kfilter.pid_for_set_event_pid(m) is None


# ---------------------------------------------------------------------------
# Losses: stats counters and markers count the same events
def test_loss_counter_takes_the_larger_view_per_cpu(tmp_path):
    paths = {}
    for cpu in (0, 1):
        p = tmp_path / ("stats%d" % cpu)
        p.write_text("entries: 0\noverrun: 10\ncommit overrun: 0\ndropped events: 0\n")
        paths[cpu] = str(p)
    lc = LossCounter(paths.items())
    assert lc.take() == 0
    (tmp_path / "stats0").write_text("overrun: 15\ncommit overrun: 1\ndropped events: 2\n")
    lc.marker(0, 5)         # the raw pages reported 5 of those 8
    lc.marker(1, None)      # "[LOST EVENTS]" without a count: at least one
    assert lc.take() == 8 + 1
    assert lc.take() == 0


# ---------------------------------------------------------------------------
# Timestamp merge of per-CPU buffers
def test_time_order_releases_in_timestamp_order_after_a_round():
    got = []
    order = TimeOrder()
    sink = order.sink(lambda ts, cpu, values: got.append((ts, cpu)))
    # Round 1: CPU 0 is read first and already has the completion (ts 20);
    # CPU 1's issue (ts 10) was committed before it but read after it.
    sink(20, 0, ())
    sink(10, 1, ())
    assert order.end_round() == 0 and got == []
    # Round 2 proves nothing older is missing: both are released, in order.
    sink(30, 1, ())
    order.end_round()
    assert got == [(10, 1), (20, 0)]
    order.flush()
    assert got == [(10, 1), (20, 0), (30, 1)]


def test_time_order_waits_for_a_cpu_read_only_partly():
    got = []
    order = TimeOrder()
    sink = order.sink(lambda ts, cpu, values: got.append(ts))
    sink(100, 0, ())
    order.end_round()
    sink(50, 1, ())
    sink(60, 1, ())
    order.truncated(1)          # CPU 1 has more, all newer than 60
    sink(110, 0, ())
    order.end_round()
    assert got == [50, 60]
    sink(70, 1, ())
    order.end_round()
    assert got == [50, 60, 70, 100]
