"""The ftrace backend's lifecycle parts, piece by piece: the perf-tools lock
(on the real file system: O_EXCL/O_NOFOLLOW semantics are the point), the
undo stack that close() runs, what is written back for each saved file,
model filters turned into kernel filter text, loss accounting and the
per-CPU timestamp merge."""

import errno
import os
import random
import subprocess
import sys

import pytest

from kerntrace.backends.ftrace import instance, kfilter, probes
from kerntrace.backends.ftrace.lock import FtraceLock, pid_alive
from kerntrace.backends.ftrace.plan import ResolvedEvent
from kerntrace.backends.ftrace import readers as readers_mod, session
from kerntrace.backends.ftrace.readers import LossCounter, read_round
from kerntrace.backends.ftrace.timeorder import TimeOrder, needs_time_order
from kerntrace.core.errors import KerntraceError, LockHeld
from kerntrace.core.model import (LATENCY, STR, Count, Event, Field, Filter, Histogram,
                                  Measurement, Pair, Records, Tracepoint)
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
    (Filter("dev", "&", 3), "dev & 3"),
    (Filter("err", "&", 1 << 31), None),      # the sign bit of a signed 32-bit field
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


def test_bit_mask_clause_is_dropped_where_the_kernel_rejects_it():
    # `field & mask` since v4.10: older kernels say EINVAL, as for "~"
    ev, r = _resolved()
    cl = kfilter.clauses([Filter("dev", "==", 5), Filter("sector", "&", 0o3)], r)
    assert kfilter.expression(cl) == "dev == 5 && sector & 3"
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


def test_a_loss_seen_by_each_view_in_another_interval_counts_once(tmp_path):
    """The counter shows an overrun when it happens, the page after it
    carries its marker when it is read: often the next interval."""
    p = tmp_path / "stats0"
    p.write_text("overrun: 0\n")
    lc = LossCounter([(0, str(p))])
    p.write_text("overrun: 1000\n")
    assert lc.take() == 1000
    lc.marker(0, 1000)           # the same thousand, read later
    assert lc.take() == 0
    lc.marker(0, 300)            # a marker ahead of the counter this time
    assert lc.take() == 300
    p.write_text("overrun: 1300\n")
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


class _Kernel(object):
    """Per-CPU ring buffers for the merge tests: each CPU's events in
    timestamp order; an event can be read once the clock has passed its
    time stamp (it is committed when it happens)."""

    def __init__(self, events, ncpus):
        self.buffers = {cpu: sorted(e for e in events if e[1] == cpu) for cpu in range(ncpus)}
        self.now = 0

    def read(self, cpu, limit):
        """(events, whether the read stopped at the limit)"""
        buf = self.buffers[cpu]
        n = 0
        while n < len(buf) and n < limit and buf[n][0] <= self.now:
            n += 1
        got, self.buffers[cpu] = buf[:n], buf[n:]
        return got, n == limit

    def oldest_unread(self):
        return min((buf[0][0] for buf in self.buffers.values() if buf), default=None)


def _io_events(rnd, n_ios, ncpus):
    """(ts, cpu, kind, key): issue and completion of each I/O on random CPUs,
    distinct time stamps."""
    stamps = rnd.sample(range(1, 40 * n_ios), 2 * n_ios)
    events = []
    for key in range(n_ios):
        a, b = sorted(stamps[2 * key:2 * key + 2])
        events.append((a, rnd.randrange(ncpus), "issue", key))
        events.append((b, rnd.randrange(ncpus), "done", key))
    return events


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("per_cpu_sinks", [True, False])
def test_time_order_pairs_across_cpus_in_timestamp_order(seed, per_cpu_sinks):
    """Issues and completions on random CPUs, read round by round with the
    CPUs' runs handed to the order interleaved at random (each CPU's own
    events stay in order), some CPUs cut short: every completion reaches
    the handler after its issue, everything in timestamp order, no event
    is released while an older one is unread, and no round releases an
    event past the watermark it started with."""
    rnd = random.Random(seed)
    ncpus = 3
    events = _io_events(rnd, 400, ncpus)
    kernel = _Kernel(events, ncpus)
    released = []
    started = {}
    latencies = {}

    def handler(ts, cpu, values):
        kind, key = values
        released.append(ts)
        if kind == "issue":
            started[key] = ts
        else:
            latencies[key] = ts - started.pop(key)

    order = TimeOrder()
    if per_cpu_sinks:
        sinks = {cpu: order.sink(handler, cpu) for cpu in range(ncpus)}
    else:
        sinks = dict.fromkeys(range(ncpus), order.sink(handler))
    by_rounds = 0
    while len(released) < len(events):
        # the most this round may release: the watermark it starts with,
        # and no further than the last event read from a CPU cut short
        limit = order.watermark
        runs = []
        for cpu in range(ncpus):
            kernel.now += rnd.randint(0, 60)
            got, cut_short = kernel.read(cpu, rnd.choice([2, 5, 50]))
            runs.append(list(got))
            if cut_short:
                order.truncated(cpu)
                limit = got[-1][0] if limit is None else min(limit, got[-1][0])
        read = sum(map(len, runs))
        # hand the runs over interleaved at random, each in its own order
        while any(runs):
            run = rnd.choice([r for r in runs if r])
            ts, cpu, kind, key = run.pop(0)
            sinks[cpu](ts, cpu, (kind, key))
        before = len(released)
        if read:
            by_rounds += order.end_round()
            new = released[before:]
            assert not new or max(new) <= limit
        else:
            order.flush()       # as the session does after a round found nothing
            new = released[before:]
        oldest = kernel.oldest_unread()
        assert not new or oldest is None or max(new) < oldest
    assert released == sorted(e[0] for e in events)
    assert by_rounds > len(events) // 2         # most released as rounds went by
    assert not started
    expected = {}
    for ts, _cpu, kind, key in sorted(events):
        expected[key] = ts - expected[key] if kind == "done" else ts
    assert latencies == expected


def test_time_order_keeps_releasing_while_a_cpu_stays_busy():
    """A CPU that fills every round (the reader never empties it) must not
    hold everything back until it goes quiet."""
    got = []
    order = TimeOrder()
    sink = order.sink(lambda ts, cpu, values: got.append(ts))
    sink(5, 1, ())
    order.end_round()           # a quiet round sets the watermark
    ts = 10
    for _ in range(5):
        for _ in range(4):
            sink(ts, 0, ())
            ts += 10
        order.truncated(0)
        order.end_round()
    # each round releases what the round before it read
    assert got == [5] + list(range(10, ts - 40, 10))


def test_time_order_ties_keep_the_read_order():
    got = []
    order = TimeOrder()
    sink = order.sink(lambda ts, cpu, values: got.append((ts, cpu, values)))
    sink(10, 1, "a")
    sink(10, 1, "b")            # same CPU, same ts: as the CPU logged them
    sink(10, 0, "c")
    order.flush()
    assert got == [(10, 1, "a"), (10, 1, "b"), (10, 0, "c")]


class _Pages(object):
    """A CPU's pages as RawReader.read_pages() returns them."""

    def __init__(self, cpu, pages):
        self.cpu = cpu
        self.pages = list(pages)
        self.reads = []

    def read_pages(self, limit):
        self.reads.append(limit)
        got, self.pages = self.pages[:limit], self.pages[limit:]
        return got


def test_read_round_merges_lap_by_lap_within_the_page_budget(monkeypatch):
    monkeypatch.setattr(readers_mod, "MAX_PAGES_PER_ROUND", 10)
    # a "page" is one event (ts); CPU 0 has 13 pages, CPU 1 has 2
    readers = [_Pages(0, [10 * i for i in range(1, 14)]), _Pages(1, [15, 25])]
    got = []
    order = TimeOrder()
    sinks = {cpu: order.sink(lambda ts, cpu, v: got.append(ts), cpu) for cpu in (0, 1)}
    calls = []
    real_end, real_flush = order.end_round, order.flush
    monkeypatch.setattr(order, "end_round", lambda: calls.append("end") or real_end())
    monkeypatch.setattr(order, "flush", lambda: calls.append("flush") or real_flush())

    def feed(page, cpu):
        sinks[cpu](page, cpu, ())
    # laps of 4 pages per CPU, at most 10 pages of a CPU per round
    assert read_round(readers, feed, order, lap=4) == 12
    assert readers[0].reads == [4, 4, 2] and readers[1].reads == [4, 4, 2]
    assert calls == ["end", "end", "end"]
    # each lap releases what the lap before it read
    assert got == [10, 15, 20, 25, 30, 40, 50, 60, 70, 80]
    assert read_round(readers, feed, order, lap=4) == 3
    assert read_round(readers, feed, order, lap=4) == 0
    assert calls[-1] == "flush"
    assert got == sorted(got) and len(got) == 15


def test_read_round_without_order_reads_the_whole_budget_at_once():
    readers = [_Pages(0, range(300)), _Pages(1, range(3))]
    fed = []
    assert read_round(readers, lambda page, cpu: fed.append(cpu)) == 256 + 3
    assert readers[0].reads == [256] and readers[1].reads == [256]


def test_lap_size_grows_with_the_cpus():
    assert readers_mod.lap_pages(1) == readers_mod.lap_pages(2) == readers_mod.MIN_LAP_PAGES
    assert readers_mod.lap_pages(16) == 64
    assert readers_mod.lap_pages(4096) == readers_mod.MAX_PAGES_PER_ROUND


def test_only_pairs_and_records_need_the_cpus_merged():
    issue = Event("issue", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])
    done = Event("done", Tracepoint("block", "block_rq_complete"), fields=[Field("dev")])
    pair = Measurement([issue, done], Histogram(LATENCY), pair=Pair("issue", "done", key=("dev",)))
    records = Measurement([issue], Records(["dev"]))
    counts = Measurement([issue], Count(["dev"]))
    assert needs_time_order(pair) and needs_time_order(records)
    assert not needs_time_order(counts)


def test_a_stop_signal_during_a_read_round_waits_until_the_pages_are_decoded():
    """A page read from trace_pipe_raw is gone from the kernel: Ctrl-C between
    the read and the decode must not lose it.  Here the reader itself raises
    SIGINT right after handing out a page; the page is decoded before the
    signal's handler runs."""
    import os
    import signal
    from kerntrace.backends.ftrace.readers import RawReader
    from kerntrace.backends.ftrace.session import LiveSession

    fed = []

    class SignallingReader(RawReader):
        def read_pages(self, limit):
            if fed:
                return []
            os.kill(os.getpid(), signal.SIGINT)
            return [b"page"]

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted(len(fed))

    session = LiveSession.__new__(LiveSession)
    session.readers = [SignallingReader(0, "/nonexistent", 4096)]
    session.order = None
    session._feed_page = lambda page, cpu: fed.append(page)
    old = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(Interrupted) as e:
            session._drain()
    finally:
        signal.signal(signal.SIGINT, old)
    assert e.value.args == (1,) and fed == [b"page"]


# ---------------------------------------------------------------------------
# Owner locks: whether the run that made an object is alive, on the real
# file system (flock across processes is the point)
_HOLDER = """
import sys
from kerntrace.backends.ftrace.owner import OwnerLock
lock = OwnerLock(sys.argv[1], dirs=(sys.argv[2],))
print("claimed" if lock.claim() else "refused", flush=True)
sys.stdin.readline()
"""


def _holder(name, lock_dir):
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, name, lock_dir],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    return p, p.stdout.readline().strip()


def test_an_owner_lock_tells_a_live_owner_from_a_killed_one(tmp_path):
    from kerntrace.backends.ftrace.owner import HELD, MISSING, OwnerLock
    d = str(tmp_path / "kerntrace")
    name = "kerntrace-403-tpcount0"
    assert OwnerLock(name, dirs=(d,)).take_if_abandoned() == MISSING
    holder, said = _holder(name, d)
    try:
        assert said == "claimed"
        assert OwnerLock(name, dirs=(d,)).take_if_abandoned() == HELD
        assert not OwnerLock(name, dirs=(d,)).claim()      # the name is taken
        assert _holder(name, d)[1] == "refused"
    finally:
        holder.kill()
        holder.wait()
    lock = OwnerLock(name, dirs=(d,))
    assert lock.take_if_abandoned() is True and lock.held
    lock.release()
    assert os.listdir(d) == []


def test_an_owner_lock_left_by_an_object_that_stayed_is_found_again(tmp_path):
    from kerntrace.backends.ftrace.owner import OwnerLock
    d = str(tmp_path / "kerntrace")
    mine = OwnerLock("kerntrace_9_0", dirs=(d,))
    assert mine.claim()
    mine.release(unlink=False)          # the object could not be removed
    again = OwnerLock("kerntrace_9_0", dirs=(d,))
    assert again.take_if_abandoned() is True
    again.release()
    assert not os.path.exists(os.path.join(d, "kerntrace_9_0.lock"))


def test_pid_alive_of_numbers_no_pid_can_be():
    assert not pid_alive(10 ** 30) and not pid_alive(-5)
    from kerntrace.backends.ftrace.lock import parse_pid
    assert parse_pid("12\n") == 12 and parse_pid("9" * 25) is None
    assert parse_pid("") is None and parse_pid("abc") is None and parse_pid("0") is None


def test_renamed_probe_definition():
    line = "p:kerntrace_7/kerntrace_7_0 /lib/libc.so.6:0x10 size=%di:s64\n"
    assert probes.renamed(line, "kerntrace_7", "kerntrace_7_3") == \
        "p:kerntrace_7/kerntrace_7_3 /lib/libc.so.6:0x10 size=%di:s64\n"
    with pytest.raises(probes.ProbeError):
        probes.renamed(line, "kerntrace_7", "bad name")


def test_a_perf_tools_lock_held_by_a_run_in_another_pid_namespace_is_not_taken(tmp_path):
    """The lock holds the PID the run has in its own namespace: dead here.
    The run's top-level owner lock says it is alive."""
    from kerntrace.backends.ftrace import owner
    d = str(tmp_path / "kerntrace")
    path = str(tmp_path / ".ftrace-lock")
    elsewhere = dead_pid()
    holder, said = _holder("toplevel-%d" % elsewhere, d)
    with open(path, "w") as f:
        f.write("%d\n" % elsewhere)

    def top_level_users():
        return owner.live_pids("toplevel-", dirs=(d,))
    try:
        assert said == "claimed"
        with pytest.raises(LockHeld) as exc:
            FtraceLock(path, held_elsewhere=top_level_users).acquire()
        assert exc.value.pid == elsewhere
    finally:
        holder.kill()
        holder.wait()
    lock = FtraceLock(path, held_elsewhere=top_level_users)
    lock.acquire()          # its run is gone now: a stale lock
    lock.release()
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# A flood: the buffer refills as fast as it is read
class _EndlessReader(readers_mod.RawReader):
    """Always has another page (the kernel writes faster than we read)."""

    def __init__(self, cpu):
        readers_mod.RawReader.__init__(self, cpu, "/nonexistent", 4096)
        self.pages = 0

    def read_pages(self, limit):
        self.pages += limit
        return [b"page"] * limit


class _Records(object):
    """Stands in for the aggregator: each page makes `per_page` records."""

    def __init__(self, per_page):
        self.per_page, self.records, self.lost = per_page, 0, 0

    @property
    def records_waiting(self):
        return self.records

    def feed_lost(self, n):
        self.lost += n

    def collect(self):
        from kerntrace.core.results import Report
        return Report(["r"] * self.records, lost=self.lost)


class _Unread(object):
    def __init__(self, unread):
        self._unread = unread

    def take(self):
        return 0

    def unread(self):
        return self._unread


def flooded_session(monkeypatch, per_page, stopping, unread=777):
    s = session.LiveSession.__new__(session.LiveSession)
    s.readers = [_EndlessReader(0), _EndlessReader(1)]
    s.order, s.tasks, s.stopping = None, None, stopping
    s.aggregator = _Records(per_page)
    s.losses = _Unread(unread)
    s.said = []
    s._say = s.said.append

    def feed(page, cpu):
        s.aggregator.records += per_page
    s._feed_page = feed
    clock = [0.0]

    def now():       # each look at the clock: 10 ms later
        clock[0] += 0.01
        return clock[0]
    monkeypatch.setattr(session, "_now", now)
    return s


def test_collect_under_a_flood_stops_draining_after_its_time_bound(monkeypatch):
    s = flooded_session(monkeypatch, per_page=0, stopping=False)
    report = s.collect()
    rounds = s.readers[0].pages // readers_mod.MAX_PAGES_PER_ROUND
    # about DRAIN_BOUND_S of (fake) 10 ms rounds, not 64 rounds of pages
    assert 1 <= rounds <= session.DRAIN_BOUND_S / 0.01 + 2
    assert report.lost == 0 and not s.said    # no stop: the rest is read next interval


def test_collect_of_records_under_a_flood_stops_at_one_batch(monkeypatch):
    s = flooded_session(monkeypatch, per_page=100, stopping=False)
    report = s.collect()
    per_round = 2 * readers_mod.MAX_PAGES_PER_ROUND * 100
    assert session.RECORD_BATCH <= len(report.data) < session.RECORD_BATCH + per_round


def test_after_a_stop_what_the_buffer_still_holds_is_counted_lost(monkeypatch):
    s = flooded_session(monkeypatch, per_page=0, stopping=True, unread=777)
    report = s.collect()
    assert report.lost == 777
    assert s.said == ["777 events not read before the stop (counted as lost)"]


def test_stop_recording_turns_the_instance_off_and_keeps_its_events(tmp_path):
    (tmp_path / "tracing_on").write_text("1")
    s = session.LiveSession.__new__(session.LiveSession)
    s.started, s.buffer_path, s.unrestored, s.stopping = True, str(tmp_path), [], False
    s.stop_recording()
    assert (tmp_path / "tracing_on").read_text().strip() == "0" and s.stopping


def test_stop_recording_turns_off_every_instance_of_the_run(tmp_path):
    from kerntrace.backends.ftrace.configure import Configured
    paths = [tmp_path / "a", tmp_path / "b"]
    for p in paths:
        p.mkdir()
        (p / "tracing_on").write_text("1")
    s = session.LiveSession.__new__(session.LiveSession)
    s.started, s.buffer_path, s.unrestored, s.stopping = True, str(paths[0]), [], False
    s.configured = Configured()
    s.configured.buffers = [(str(p), []) for p in paths]
    s.stop_recording()
    assert [(p / "tracing_on").read_text().strip() for p in paths] == ["0", "0"]
