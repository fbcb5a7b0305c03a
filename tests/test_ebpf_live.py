"""The eBPF backend on the live kernel, through bcc.

Measurements are built with core.model directly and run through
EbpfBackend (check -> open -> with session: wait/collect) on workloads with
known counts: our own loop devices, our own processes.  Every test checks
that nothing is left behind: the BPF programs it loaded are gone from the
kernel, this process holds no BPF program/map/perf-event descriptor it did
not hold before, and no bcc probe definition of ours remains in tracefs
(the conftest fixture also checks kerntrace instances and probes).

When the ftrace backend can run the same measurement, both run at the same
time on the same workload and must agree: exactly for counts; for latency
histograms the same number of I/Os, with distributions that differ by at
most one bucket per I/O (the two backends take their timestamps at
different points of the same tracepoint).
"""

import ctypes
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import workloads
from kerntrace.backends.ebpf import probes as eprobes
from kerntrace.backends.ebpf import maps, sysbpf, tracefs_probes
from kerntrace.backends.ebpf.backend import EbpfBackend, run_plan
from kerntrace.backends.ebpf.maps import HashDrainer
from kerntrace.core.backend import RunOptions, Verdict
from kerntrace.core.buckets import log2_slot
from kerntrace.core.errors import EnableError
from kerntrace.core.host import Host
from kerntrace.core.model import (EVENT_NAME, LATENCY, LOG2, POW2_MS, STR, USTR, Count, Event,
                                  Field, Filter, Histogram, KernelFunction, Measurement, Pair,
                                  Records, SyscallEntry, SyscallExit, Tracepoint, UserFunction)
from kerntrace.core.results import CountSet, HistogramSet

pytestmark = [pytest.mark.live, pytest.mark.ebpf]

CALLER_COMM = "kerntrace_calle"     # "kerntrace_caller" cut to TASK_COMM_LEN - 1


# ---------------------------------------------------------------------------
# What this process holds in the kernel.
def bpf_fds():
    """{(fd, what)} of this process's BPF programs, maps, links and perf
    events (the perf events hold tracepoint/uprobe attachments)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            what = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if what.startswith("anon_inode:bpf") or what == "anon_inode:[perf_event]":
            out.add((int(fd), what))
    return out


def prog_ids(fds):
    ids = set()
    for fd, what in fds:
        if what != "anon_inode:bpf-prog":
            continue
        try:
            with open("/proc/self/fdinfo/%d" % fd) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except (IOError, OSError):
            pass
    return ids


def our_bcc_probe_events():
    t = Host(mount_tracefs=False).tracefs_path()
    return [e for e in tracefs_probes.bcc_events(t) if e[3] == os.getpid()]


class Run(object):
    """check -> open -> start a measurement on the eBPF backend; on exit,
    assert that everything it loaded is gone."""

    def __init__(self, measurement, options=None, output=None, atomic_fetch=None):
        self.backend = EbpfBackend()
        options = options or RunOptions(tool="test")
        self.verdict = self.backend.check(measurement, Host(), options)
        assert self.verdict.ok, self.verdict.reasons
        forced = {}
        if output is not None:      # records through "perf" even where ringbuf exists
            forced["output"] = output
        if atomic_fetch is not None:    # the code older kernels get, run on this one
            forced["atomic_fetch"] = atomic_fetch
        if forced:                  # a plan made for those choices (plans are immutable)
            plan = self.verdict.plan
            self.verdict = Verdict(self.verdict.backend, True, self.verdict.reasons,
                                   run_plan(measurement, plan.probes.replace(**forced),
                                            options, plan.tracefs_path))
        self.session = self.backend.open(measurement, self.verdict, options)
        self.reports = []

    def __enter__(self):
        self.before = bpf_fds()
        self.session.__enter__()
        mine = bpf_fds() - self.before
        self.progs = prog_ids(mine)
        assert self.progs, "no BPF program loaded"
        return self

    def __exit__(self, *exc):
        self.session.__exit__(*exc)
        assert_released(self.before, self.progs)
        return False

    def collect(self):
        r = self.session.collect()
        self.reports.append(r)
        return r

    def collect_until(self, done, timeout=15.0, step=0.1):
        """Collect every `step` s until done(reports) or timeout, then once
        more after a pause (so an "exactly N" sees any extra)."""
        end = time.time() + timeout
        while time.time() < end and not done(self.reports):
            self.session.wait(step)
            self.collect()
        self.session.wait(0.3)
        self.collect()
        return self.reports


def assert_released(before, progs):
    assert bpf_fds() == before, "BPF descriptors left open: %s" % (bpf_fds() - before)
    # The kernel frees programs once the last reference (fd, perf event) goes.
    assert workloads.wait_for(lambda: not any(sysbpf.prog_exists(p) for p in progs), 5), \
        "BPF programs still loaded: %s" % [p for p in progs if sysbpf.prog_exists(p)]
    assert our_bcc_probe_events() == []


def total(reports):
    n = 0
    for r in reports:
        d = r.data
        if isinstance(d, HistogramSet):
            n += sum(h.count for h in d.histograms.values())
        elif isinstance(d, CountSet):
            n += sum(d.counts.values())
        else:
            n += len(d)
    return n


def merged_counts(reports):
    out = {}
    for r in reports:
        for k, v in r.data.counts.items():
            out[k] = out.get(k, 0) + v
    return out


def merged_buckets(reports):
    out = {}
    for r in reports:
        for h in r.data.histograms.values():
            for i, c in h.buckets.items():
                out[i] = out.get(i, 0) + c
    return out


def records(reports):
    return [rec for r in reports for rec in r.data]


def unmatched(reports):
    return sum(r.unmatched for r in reports)


def lost(reports):
    return sum(r.lost for r in reports)


def block_pair(aggregate, dev, filters=()):
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR)])
    return Measurement([issue, done], aggregate,
                       pair=Pair("issue", "done", key=("dev", "sector"),
                                 carry=("comm", "pid", "bytes")),
                       filters=[Filter("dev", "==", dev)] + list(filters))


def devt(major, minor):
    return (major << 20) | minor


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [LOG2, POW2_MS])
def test_block_latency_histogram_counts_exactly_our_writes(scale):
    n = 40
    with workloads.loop_device() as (path, major, minor):
        m = block_pair(Histogram(LATENCY, scale=scale, unit="usecs"), devt(major, minor))
        with Run(m) as run:
            run.session.wait(0.1)
            workloads.direct_writes(path, n)
            reports = run.collect_until(lambda rs: total(rs) >= n)
    assert total(reports) == n
    assert unmatched(reports) == 0 and lost(reports) == 0
    for r in reports:
        assert r.data.key_names == ()
        for key, h in r.data.histograms.items():
            assert key == () and h.scale == scale and h.count == sum(h.buckets.values())
            assert h.total >= 0


def test_keyed_count_of_syscalls_per_process(caller_exe):
    n = 300
    c = workloads.Caller(caller_exe, n)
    m = Measurement([Event("getppid", SyscallEntry("getppid"))],
                    Count(keys=("comm", "pid", EVENT_NAME)), filters=[Filter("pid", "==", c.pid)])
    with Run(m) as run:
        assert c.release() == 0
        reports = run.collect_until(lambda rs: total(rs) >= n)
    assert merged_counts(reports) == {(CALLER_COMM, c.pid, "getppid"): n}


def test_keyed_count_of_block_issues_per_device():
    with workloads.loop_device() as (p1, ma1, mi1), workloads.loop_device() as (p2, ma2, mi2):
        d1, d2 = devt(ma1, mi1), devt(ma2, mi2)
        issue = Event("issue", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])
        m = Measurement([issue], Count(keys=("dev",)),
                        filters=[Filter("dev", ">=", min(d1, d2)), Filter("dev", "<=", max(d1, d2))])
        with Run(m) as run:
            run.session.wait(0.1)
            workloads.direct_writes(p1, 12)
            workloads.direct_writes(p2, 7)
            reports = run.collect_until(lambda rs: total(rs) >= 19)
    counts = merged_counts(reports)
    # Other processes' loop devices may sit between ours: only ours are asserted.
    assert counts.get((d1,)) == 12 and counts.get((d2,)) == 7


OPENER = textwrap.dedent("""
    import os, sys
    path, n = sys.argv[1], int(sys.argv[2])
    print(os.getpid(), flush=True)
    sys.stdin.readline()
    for _ in range(n):
        os.close(os.open(path, os.O_RDONLY))
""")


def test_event_stream_of_opens_by_one_process():
    n = 25
    d = tempfile.mkdtemp(prefix="kerntrace-test-")
    path = os.path.join(d, "kerntrace-open-%d.txt" % os.getpid())
    open(path, "w").close()
    try:
        child = subprocess.Popen([sys.executable, "-c", OPENER, path, str(n)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pid = int(child.stdout.readline())
        enter = Event("enter", SyscallEntry("openat"), fields=[Field("filename", USTR)])
        exit_ = Event("exit", SyscallExit("openat"), fields=[Field("ret")])
        m = Measurement([enter, exit_], Records(fields=("pid", "comm", "filename", "ret", LATENCY)),
                        pair=Pair("enter", "exit", key=("tid",), carry=("filename",)),
                        filters=[Filter("pid", "==", pid),
                                 Filter("filename", "glob", "*kerntrace-open-%d*" % os.getpid(),
                                        type=USTR)])
        with Run(m) as run:
            child.stdin.write(b"go\n")
            child.stdin.flush()
            assert child.wait() == 0
            reports = run.collect_until(lambda rs: total(rs) >= n)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    recs = records(reports)
    assert len(recs) == n
    assert all(r["pid"] == pid and r["filename"] == path and r["ret"] >= 0 and r[LATENCY] > 0
               for r in recs), recs[:3]
    assert [r.ts for r in recs] == sorted(r.ts for r in recs)
    # opens of other files by the same process were filtered at the start,
    # so their returns are neither reported nor "unmatched"
    assert unmatched(reports) == 0


def uprobe_pair(exe, aggregate, pid):
    entry = Event("entry", UserFunction(exe, "kerntrace_work"),
                  fields=[Field("usec", sources=("arg0",))])
    ret = Event("ret", UserFunction(exe, "kerntrace_work", ret=True),
                fields=[Field("rv", sources=("retval",))])
    return Measurement([entry, ret], aggregate,
                       pair=Pair("entry", "ret", key=("tid",), carry=("usec",)),
                       filters=[Filter("pid", "==", pid)])


def test_uprobe_latency_records(caller_exe):
    n, usec = 20, 2000
    c = workloads.Caller(caller_exe, n, usec)
    m = uprobe_pair(caller_exe, Records(fields=("usec", "rv", "pid", LATENCY)), c.pid)
    with Run(m) as run:
        assert c.release() == 0
        reports = run.collect_until(lambda rs: total(rs) >= n)
    recs = records(reports)
    assert len(recs) == n
    assert all(r["usec"] == usec and r["rv"] == usec and r["pid"] == c.pid for r in recs)
    assert all(r[LATENCY] >= usec * 1000 for r in recs), [r[LATENCY] for r in recs]


def _ringbuf_sizes():
    """Sizes of this process's BPF ring buffer maps (map_type 27)."""
    sizes = []
    for fd, what in bpf_fds():
        if what != "anon_inode:bpf-map":
            continue
        with open("/proc/self/fdinfo/%d" % fd) as f:
            info = dict(l.split(":", 1) for l in f if ":" in l)
        if int(info["map_type"]) == 27:
            sizes.append(int(info["max_entries"]))
    return sizes


def _perf_buffer_pages():
    """Data pages of each perf buffer this process has mapped (the mapping
    is one metadata page and the data pages)."""
    pages = []
    with open("/proc/self/maps") as f:
        for line in f:
            if "[perf_event]" in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                pages.append((hi - lo) // mmap.PAGESIZE - 1)
    return pages


@pytest.mark.parametrize("output", ["ringbuf", "perf"])
def test_buffer_kb_sizes_the_record_buffer(caller_exe, output):
    n, kb = 30, 24                  # 24 KB per CPU: 6 pages, rounded up to 8
    ncpus = os.cpu_count()
    c = workloads.Caller(caller_exe, n, 10)
    m = uprobe_pair(caller_exe, Records(fields=("usec", LATENCY)), c.pid)
    with Run(m, RunOptions(tool="test", buffer_kb=kb), output=output) as run:
        if output == "ringbuf":
            want = 1 << ((kb * 1024 * ncpus // mmap.PAGESIZE) - 1).bit_length()
            assert _ringbuf_sizes() == [want * mmap.PAGESIZE]
        else:
            assert _perf_buffer_pages() == [8] * ncpus
        assert c.release() == 0
        reports = run.collect_until(lambda rs: total(rs) >= n)
    assert len(records(reports)) == n and lost(reports) == 0


def test_uprobe_latency_histogram(caller_exe):
    n, usec = 15, 3000
    c = workloads.Caller(caller_exe, n, usec)
    m = uprobe_pair(caller_exe, Histogram(LATENCY, unit="usecs"), c.pid)
    with Run(m) as run:
        assert c.release() == 0
        reports = run.collect_until(lambda rs: total(rs) >= n)
    buckets = merged_buckets(reports)
    assert sum(buckets.values()) == n
    assert min(buckets) >= log2_slot(usec)      # every call slept at least usec


def test_in_flight_starts_survive_interval_boundaries(caller_exe):
    n, usec = 3, 300000
    c = workloads.Caller(caller_exe, n, usec)
    m = uprobe_pair(caller_exe, Records(fields=(LATENCY,)), c.pid)
    with Run(m) as run:
        c.p.stdin.write(b"go\n")
        c.p.stdin.flush()
        # collect every 50 ms: each call spans several intervals
        reports = run.collect_until(lambda rs: total(rs) >= n, step=0.05)
        assert c.p.wait() == 0
    assert total(reports) == n and unmatched(reports) == 0
    assert all(r[LATENCY] >= usec * 1000 for r in records(reports))


# ---------------------------------------------------------------------------
# Filters keep exactly the expected events.
def test_pid_filter_keeps_one_process(caller_exe):
    a, b = workloads.Caller(caller_exe, 200), workloads.Caller(caller_exe, 300)
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count(keys=("pid",)),
                    filters=[Filter("pid", "==", b.pid)])
    with Run(m) as run:
        assert a.release() == 0 and b.release() == 0
        reports = run.collect_until(lambda rs: total(rs) >= 300)
    assert merged_counts(reports) == {(b.pid,): 300}


def test_comm_filter(caller_exe):
    c = workloads.Caller(caller_exe, 150)
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count(keys=("pid",)),
                    filters=[Filter("comm", "==", CALLER_COMM)])
    with Run(m) as run:
        assert c.release() == 0
        for _ in range(50):     # this process's calls: another comm
            os.getppid()
        reports = run.collect_until(lambda rs: merged_counts(rs).get((c.pid,), 0) >= 150)
    assert merged_counts(reports).get((c.pid,)) == 150
    assert (os.getpid(),) not in merged_counts(reports)


def test_device_filter_keeps_one_device():
    with workloads.loop_device() as (p1, ma1, mi1), workloads.loop_device() as (p2, ma2, mi2):
        m = block_pair(Count(keys=("dev",)), devt(ma2, mi2))
        with Run(m) as run:
            run.session.wait(0.1)
            workloads.direct_writes(p1, 10)
            workloads.direct_writes(p2, 6)
            workloads.direct_writes(p1, 10, seek=20)
            reports = run.collect_until(lambda rs: total(rs) >= 6)
    assert merged_counts(reports) == {(devt(ma2, mi2),): 6}
    assert unmatched(reports) == 0


def test_rwbs_glob_keeps_reads_only():
    with workloads.loop_device() as (path, major, minor):
        m = block_pair(Count(keys=("rwbs",)), devt(major, minor),
                       filters=[Filter("rwbs", "glob", "*R*")])
        with Run(m) as run:
            run.session.wait(0.1)
            workloads.direct_writes(path, 9)
            workloads.direct_reads(path, 5)
            workloads.direct_writes(path, 4, seek=50)
            reports = run.collect_until(lambda rs: total(rs) >= 5)
    counts = merged_counts(reports)
    assert sum(counts.values()) == 5 and all("R" in k[0] for k in counts), counts
    # the rejected writes were not mistaken for unmatched completions
    assert unmatched(reports) == 0


# ---------------------------------------------------------------------------
# Answers, partial starts, idempotent close.
def test_check_answers_without_raising():
    host = Host()
    be = EbpfBackend()
    v = be.check(Measurement([Event("x", Tracepoint("block", "no_such_tp_kt"))], Count()), host)
    assert not v.ok and any("no tracepoint block:no_such_tp_kt" in r for r in v.reasons)
    v = be.check(Measurement([Event("k", KernelFunction("vfs_read"))], Count()), host)
    if eprobes.for_host(host).attach("kprobe").ok:
        assert v.ok
    else:
        assert not v.ok and v.reasons and all("\n" not in r for r in v.reasons)


def test_capabilities_report_every_probe_type():
    caps = {c.name: c for c in EbpfBackend().capabilities(Host())}
    for name in ("bcc", "privileges", "bpf_syscall", "kernel_headers", "tracepoint",
                 "raw_tracepoint", "kprobe", "uprobe", "ring_buffer", "lockdown"):
        assert name in caps and caps[name].detail and "\n" not in caps[name].detail
    assert caps["bcc"].ok and caps["tracepoint"].ok
    hdr = eprobes.for_host(Host()).headers()
    if hdr.matches is False:
        assert "tracepoint/uprobe args only" in caps["kernel_headers"].detail


def test_failed_attach_leaves_nothing(caller_exe, tmp_path):
    exe = str(tmp_path / "doomed_caller")
    shutil.copy(caller_exe, exe)
    m = Measurement([Event("getppid", SyscallEntry("getppid")),
                     Event("work", UserFunction(exe, "kerntrace_work"))], Count(keys=(EVENT_NAME,)))
    be = EbpfBackend()
    v = be.check(m, Host(), RunOptions(tool="test"))
    assert v.ok, v.reasons
    session = be.open(m, v, RunOptions(tool="test"))
    os.unlink(exe)              # the binary disappears between check and start
    before = bpf_fds()
    with pytest.raises(EnableError) as e:
        with session:
            pass
    assert "work" in str(e.value) and "\n" not in str(e.value)
    assert_released(before, set())
    session.close()             # idempotent
    assert bpf_fds() == before


def test_close_is_idempotent_and_program_text_is_what_runs(caller_exe):
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count())
    be = EbpfBackend()
    v = be.check(m, Host(), RunOptions(tool="test"))
    s = be.open(m, v, RunOptions(tool="test"))
    text = s.program_text()
    assert "int kt_ev0_getppid(struct tracepoint__syscalls__sys_enter_getppid *args)" in text
    before = bpf_fds()
    with s:
        assert bpf_fds() - before, "nothing was loaded"
    s.close()
    s.close()
    assert bpf_fds() == before
    assert s.collect().data.counts == {}


# ---------------------------------------------------------------------------
# A stop signal (Ctrl-C) landing while bcc builds, attaches or tears down.
class _SignalledBPF(object):
    """The distro's bcc module, except that its BPF sends this thread a
    SIGINT just before `where` ("__init__", "attach_uprobe", "cleanup")
    runs: without deferral the Stop would be raised inside bcc, between an
    fd being opened or closed and bcc recording it."""

    def __init__(self, bcc_module, where):
        import signal
        import threading

        def poke():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        class BPF(bcc_module.BPF):
            pass

        real = getattr(bcc_module.BPF, where)

        def signalled(self, *a, **kw):
            poke()
            return real(self, *a, **kw)

        setattr(BPF, where, signalled)
        self.BPF = BPF


@pytest.mark.parametrize("where", ["__init__", "attach_uprobe", "cleanup"])
def test_stop_signal_during_bcc_calls_leaves_nothing(caller_exe, where, capfd):
    from kerntrace.core.stopsignals import SignalsAsStop, Stop
    c = workloads.Caller(caller_exe, 1, 10)
    m = uprobe_pair(caller_exe, Histogram(LATENCY, unit="usecs"), c.pid)
    be = EbpfBackend()
    v = be.check(m, Host(), RunOptions(tool="test"))
    s = be.open(m, v, RunOptions(tool="test"))
    s.bcc = _SignalledBPF(s.bcc, where)
    before = bpf_fds()
    stopped = []
    with SignalsAsStop():
        try:
            try:
                s.__enter__()
                assert bpf_fds() - before, "nothing was loaded"
            finally:
                s.close()
        except Stop as e:
            stopped.append(e.signum)
    assert c.release() == 0
    assert stopped, "the signal was lost"
    assert_released(before, set())
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Bad file descriptor" not in err, err


# ---------------------------------------------------------------------------
# The same workload through both backends at once.
def _ftrace_backend():
    from kerntrace.core.pluginhost import PluginHost
    for b in PluginHost(load_third_party=False).backends():
        if b.name == "ftrace":
            return b
    return None


def _both(measurement):
    ft = _ftrace_backend()
    if ft is None:
        pytest.skip("the ftrace backend is not installed")
    v = ft.check(measurement, Host(), RunOptions(tool="test"))
    assert v.ok, v.reasons      # a live host: ftrace can always run these
    return ft, v


def _collect_both(run, fsession, done, timeout=20.0):
    freports = []
    end = time.time() + timeout
    while time.time() < end and not (done(run.reports) and done(freports)):
        run.session.wait(0.1)
        fsession.wait(0.1)
        run.collect()
        freports.append(fsession.collect())
    for _ in range(3):
        run.session.wait(0.1)
        fsession.wait(0.1)
    run.collect()
    freports.append(fsession.collect())
    return run.reports, freports


def test_both_backends_count_the_same_syscalls(caller_exe):
    n = 400
    c = workloads.Caller(caller_exe, n)
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count(keys=("pid", EVENT_NAME)),
                    filters=[Filter("pid", "==", c.pid)])
    ft, fv = _both(m)
    with Run(m) as run:
        with ft.open(m, fv, RunOptions(tool="test")) as fs:
            fs.wait(0.2)
            assert c.release() == 0
            ereports, freports = _collect_both(run, fs, lambda rs: total(rs) >= n)
    assert merged_counts(ereports) == merged_counts(freports) == {(c.pid, "getppid"): n}


def within_one_bucket(a, b):
    """Whether the multisets of bucket indexes a and b ({index: count})
    can be matched one to one with every pair at most one bucket apart:
    with sorted values that holds iff each cumulative count of one is
    bounded by the other's shifted by one bucket."""
    top = max(list(a) + list(b) + [0]) + 2
    ca = cb = 0
    cum_a, cum_b = [], []
    for i in range(top):
        ca += a.get(i, 0)
        cb += b.get(i, 0)
        cum_a.append(ca)
        cum_b.append(cb)
    for i in range(top - 1):
        if cum_a[i] > cum_b[i + 1] or cum_b[i] > cum_a[i + 1]:
            return False
    return ca == cb


def test_within_one_bucket_helper():
    assert within_one_bucket({3: 2, 4: 1}, {4: 3})
    assert not within_one_bucket({3: 2}, {5: 2})
    assert not within_one_bucket({3: 2}, {3: 1})


@pytest.mark.parametrize("scale", [LOG2, POW2_MS])
def test_both_backends_see_the_same_block_latencies(scale):
    n = 64
    with workloads.loop_device() as (path, major, minor):
        m = block_pair(Histogram(LATENCY, scale=scale, unit="usecs"), devt(major, minor))
        ft, fv = _both(m)
        with Run(m) as run:
            with ft.open(m, fv, RunOptions(tool="test")) as fs:
                fs.wait(0.2)
                workloads.direct_writes(path, n)
                ereports, freports = _collect_both(run, fs, lambda rs: total(rs) >= n)
    assert total(ereports) == total(freports) == n
    eb, fb = merged_buckets(ereports), merged_buckets(freports)
    assert within_one_bucket(eb, fb), (eb, fb)


UNPRIVILEGED_CHECK = textwrap.dedent("""
    import json, os
    from kerntrace.backends.ebpf import bccfind
    from kerntrace.backends.ebpf.backend import EbpfBackend
    from kerntrace.core.host import Host
    from kerntrace.core.model import Count, Event, Measurement, SyscallEntry
    bccfind.import_bcc()
    host = Host(mount_tracefs=False)
    host.tracefs_path()
    m = Measurement([Event("g", SyscallEntry("getppid"))], Count())
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)          # nobody: no root, no capabilities
    v = EbpfBackend().check(m, host)
    caps = dict((c.name, [c.ok, c.detail]) for c in EbpfBackend().capabilities(host))
    print(json.dumps({"ok": v.ok, "reasons": v.reasons, "caps": caps}))
""")


def test_without_privileges_check_says_why():
    r = subprocess.run([sys.executable, "-c", UNPRIVILEGED_CHECK], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert not out["ok"] and any("CAP_BPF" in why for why in out["reasons"])
    assert out["caps"]["privileges"][0] is False
    assert out["caps"]["bpf_syscall"] == [False, "bpf(BPF_PROG_LOAD): EPERM (needs root, or "
                                                 "CAP_BPF and CAP_PERFMON)"]
    assert out["caps"]["kernel_headers"][1].startswith("not tried")


# ---------------------------------------------------------------------------
# Read-and-clear of a real BPF hash map, with both methods.
def _hash_map(key_size, value_size, entries):
    fd, err = sysbpf.bpf(sysbpf.BPF_MAP_CREATE, struct.pack("<IIIII", 1, key_size, value_size,
                                                              entries, 0))
    assert fd >= 0, err
    return fd


def _update(fd, key, value):
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value, len(value))
    res, err, _ = maps._call(2, "<IIQQQ", fd, 0, ctypes.addressof(kb), ctypes.addressof(vb), 0)
    assert res == 0, err


@pytest.mark.parametrize("batch", [True, False])
def test_map_drain_reads_everything_and_leaves_the_map_empty(batch):
    fd = _hash_map(12, 16, 4096)
    try:
        want = {}
        for i in range(1500):
            k = i.to_bytes(8, "little") + b"abcd"
            v = (i * 3).to_bytes(8, "little") + i.to_bytes(8, "little")
            _update(fd, k, v)
            want[k] = v
        d = HashDrainer(fd, 12, 16, chunk=64)
        if not batch:
            d.batch = False          # the fallback older kernels use
        got = dict(d.drain())
        assert got == want
        assert d.drain() == []       # cleared
        if batch:
            assert d.method == "lookup-and-delete batch"
    finally:
        os.close(fd)


def test_raw_tracepoint_probe_answers_by_attaching():
    before = bpf_fds()
    assert sysbpf.probe_raw_tracepoint("sched_process_fork").ok
    # syscalls:* events are trace events made from raw_syscalls, not tracepoints
    no = sysbpf.probe_raw_tracepoint("sys_enter_openat")
    assert not no.ok and "ENOENT" in no.detail
    assert not sysbpf.probe_raw_tracepoint("kerntrace_no_such_tp").ok
    assert bpf_fds() == before


@pytest.mark.parametrize("atomic_fetch", [True, False])
def test_overlapping_requests_with_a_shared_key_are_never_mispaired(caller_exe, atomic_fetch):
    """Two processes call kerntrace_work(20 ms) in step; the pair key is the
    argument (the same for every call, like a flush's sector) and declared
    shared.  On both backends: a call is timed only when it was alone, no
    timed call is shorter than its sleep (a mis-pairing would be), and the
    overlapped ones are unmatched, so timed + unmatched = all calls.  (The
    ftrace uprobe is enabled while eBPF's sits on the same address: that
    needs bccfixes' ref_ctr_offset 0.)"""
    n, usec = 8, 20000
    entry = Event("entry", UserFunction(caller_exe, "kerntrace_work"),
                  fields=[Field("v", sources=("arg0",))])
    ret = Event("ret", UserFunction(caller_exe, "kerntrace_work", ret=True),
                fields=[Field("v", sources=("retval",))])
    m = Measurement([entry, ret], Records(fields=("v", "pid", "ts", LATENCY)),
                    pair=Pair("entry", "ret", key=("v",), shared={"v": usec}))
    ft, fv = _both(m)
    callers = [workloads.Caller(caller_exe, n, usec) for _ in range(2)]
    with Run(m, atomic_fetch=atomic_fetch) as run:
        with ft.open(m, fv, RunOptions(tool="test")) as fs:
            fs.wait(0.2)
            for c in callers:
                c.p.stdin.write(b"go\n")
                c.p.stdin.flush()
            assert all(c.p.wait() == 0 for c in callers)
            done = lambda rs: len(records(rs)) + unmatched(rs) >= 2 * n
            ereports, freports = _collect_both(run, fs, done)
    for backend, reports in (("ebpf", ereports), ("ftrace", freports)):
        timed = records(reports)
        assert len(timed) + unmatched(reports) == 2 * n, backend
        assert all(r[LATENCY] >= usec * 1000 for r in timed), (backend, [
            (r["pid"], r.ts, r[LATENCY]) for r in timed])
        assert unmatched(reports) >= 2, "the calls never overlapped"
