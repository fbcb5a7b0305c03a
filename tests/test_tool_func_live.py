"""funccount, funclatency and funcslower live, on a C program with known
functions (tests/funcworkload.py): both backends at once, and bcc's own
tool on the same process at the same time, must give the exact counts the
program's command line implies; recursive calls pair innermost first;
funcslower prints exactly the slow calls.  Every run leaves no probe
definition behind, also after SIGKILL (the next start removes it)."""

import os
import re
import shutil
import time

import pytest

import clirun
import funcworkload
from kerntrace.core import symbols

pytestmark = pytest.mark.live

THREADS, CALLS = 3, 40
SLOW, SLOW_USEC = 3, 200000         # funcslower's threshold: 100 ms
DEPTH, DEPTH_USEC = 5, 20000


@pytest.fixture(scope="module")
def funcwork(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("tracing needs root")
    exe = funcworkload.build(tmp_path_factory.mktemp("funcwork"))
    if exe is None:
        pytest.skip("no C compiler to build the function workload")
    return exe


def backends():
    from kernstate import ebpf_skip_reason
    # eBPF first: it compiles for a few seconds before tracing starts
    return ([] if ebpf_skip_reason() else ["ebpf"]) + ["ftrace"]


def workload(exe):
    return funcworkload.FuncWorkload(exe, threads=THREADS, calls=CALLS, slow=SLOW,
                                     slow_usec=SLOW_USEC, depth=DEPTH, depth_usec=DEPTH_USEC)


def our_probes(exe):
    """Probe definitions on the workload's binary (ours or bcc's)."""
    root = symbols.tracing_root()
    out = []
    for f in ("uprobe_events", "kprobe_events"):
        try:
            with open(os.path.join(root, f)) as fh:
                out += [l.strip() for l in fh if exe in l]
        except (IOError, OSError):
            pass
    return out


def run_all(exe, runs, errors=None):
    """Start every tool, run the workload, stop them; their outputs (and
    in `errors`, a list, what they printed on stderr)."""
    with clirun.running(runs) as started:
        w = workload(exe)
        assert w.release() == 0
        time.sleep(0.5)             # let the last returns reach the readers
        outs = [r.stop() for r in started]
        if errors is not None:
            errors += [r.err for r in started]
        return outs


# bcc's own funccount/funclatency, with the distro's libbcc, fail to attach
# a uprobe where another tracer has one at the same address ("Failed to
# attach BPF to uprobe": the ref_ctr_offset bug, iovisor/bcc#5236, that
# backends/ebpf/bccfixes.py works around for kerntrace), so the reference
# run at the same time as both backends is bpftrace's.
BPFTRACE = shutil.which("bpftrace")


def bpftrace(program):
    # BEGIN runs once every probe is attached ("Attaching N probes..."
    # comes before): the workload may start at "kerntrace-ready".
    return ([BPFTRACE, "-e", 'BEGIN { printf("kerntrace-ready\\n"); } ' + program],
            "kerntrace-ready", True)


def bpftrace_map(out):
    """{key: value} of bpftrace's printed maps (@name: value, @[key]: value)."""
    return dict((m.group(2) if m.group(2) is not None else m.group(1), int(m.group(3)))
                for m in re.finditer(r"^@(\w*)(?:\[(.*)\])?: (\d+)$", out, re.M))


def counts(out):
    return dict((m.group(1), int(m.group(2)))
                for m in re.finditer(r"^(kt_\w+)\s+(\d+)$", out, re.M))


def histogram(out):
    rows = {}
    for m in re.finditer(r"^\s*(\d+) -> (\d+)\s*: (\d+)\s", out, re.M):
        if int(m.group(3)):
            rows[(int(m.group(1)), int(m.group(2)))] = int(m.group(3))
    return rows


def average_line(out):
    m = re.search(r"^avg = (\d+) usecs, total: (\d+) usecs, count: (\d+)$", out, re.M)
    assert m, out
    return tuple(int(x) for x in m.groups())


def test_funccount_exact_on_both_backends_and_bpftrace(funcwork):
    spec = funcwork + ":kt_*"
    runs = [(["funccount", "--backend", b, spec], "Tracing 3 functions", False)
            for b in backends()]
    if BPFTRACE:
        runs.append(bpftrace("uprobe:%s { @[probe] = count(); }" % spec))
    outs = run_all(funcwork, runs)
    want = {"kt_leaf": THREADS * CALLS + SLOW, "kt_recurse": DEPTH, "kt_vanish": 1}
    ours = outs[:len(backends())]
    for out in ours:
        assert counts(out) == want, out
    assert len(set(ours)) == 1, ours          # the same table, byte for byte
    if BPFTRACE:
        ref = bpftrace_map(outs[-1])
        assert dict((k.rsplit(":", 1)[1], n) for k, n in ref.items()) == want, outs[-1]
    assert our_probes(funcwork) == []
    if not BPFTRACE or len(ours) < 2:
        pytest.skip("compared without %s" % ("bpftrace" if not BPFTRACE else "eBPF"))


def test_funclatency_recursion_pairs_innermost_first(funcwork):
    spec = funcwork + ":kt_recurse"
    runs = [(["funclatency", "-u", "--backend", b, spec], "Tracing 1 functions", False)
            for b in backends()]
    outs = run_all(funcwork, runs)
    # level d sleeps d times DEPTH_USEC (itself and every call below it)
    floor = sum(d * DEPTH_USEC for d in range(1, DEPTH + 1))
    for out in outs:
        avg, total, count = average_line(out)
        assert count == DEPTH, out                   # not 1 measured + 4 unmatched
        assert floor <= total < floor + DEPTH * 1000000, out
        # one call per level, in the log2 bucket of its sleep (level d: d x
        # DEPTH_USEC, far from a bucket's bounds: 20, 40, 60, 80, 100 ms)
        want = {}
        for d in range(1, DEPTH + 1):
            low = 1 << ((d * DEPTH_USEC).bit_length() - 1)
            want[(low, 2 * low - 1)] = want.get((low, 2 * low - 1), 0) + 1
        assert histogram(out) == want, out
    assert our_probes(funcwork) == []


def test_funclatency_counts_every_call_on_both_backends_and_bpftrace(funcwork):
    spec = funcwork + ":kt_leaf"
    runs = [(["funclatency", "-u", "--backend", b, spec], "Tracing 1 functions", False)
            for b in backends()]
    if BPFTRACE:
        runs.append(bpftrace("uprobe:%s { @s[tid] = nsecs; } "
                             "uretprobe:%s /@s[tid]/ { @calls = count(); "
                             "@slow = sum((nsecs - @s[tid]) >= %d ? 1 : 0); delete(@s[tid]); }"
                             % (spec, spec, SLOW_USEC * 1000)))
    outs = run_all(funcwork, runs)
    for out in outs[:len(backends())]:
        avg, total, count = average_line(out)
        assert count == THREADS * CALLS + SLOW, out
        # each slow call sleeps 200 ms: 131072 -> 262143 us or above
        slow = sum(n for (low, high), n in histogram(out).items() if low >= 131072)
        assert slow >= SLOW, out
        assert total >= SLOW * SLOW_USEC
    if BPFTRACE:
        ref = bpftrace_map(outs[-1])
        assert ref["calls"] == THREADS * CALLS + SLOW and ref["slow"] == SLOW, outs[-1]
    assert our_probes(funcwork) == []


def sections(out):
    """{function: text of its -F section} of funclatency -F output."""
    parts = re.split(r"^Function = (\w+)$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def recursion_buckets():
    """One call per recursion level, in the log2 bucket of its sleep (level
    d: d x DEPTH_USEC, far from a bucket's bounds)."""
    want = {}
    for d in range(1, DEPTH + 1):
        low = 1 << ((d * DEPTH_USEC).bit_length() - 1)
        want[(low, 2 * low - 1)] = want.get((low, 2 * low - 1), 0) + 1
    return want


def test_funclatency_of_several_functions_per_function_and_combined(funcwork):
    """A pattern naming three functions: -F prints a histogram per function,
    without -F one for all, on both backends, with bpftrace counting the
    returns per function at the same time.  kt_vanish never returns (its
    thread exits inside): no histogram, one dropped start."""
    spec = funcwork + ":kt_*"
    bs = backends()
    runs = [(["funclatency", "-u", "-F", "--backend", b, spec], "Tracing 3 functions", False)
            for b in bs]
    runs += [(["funclatency", "-u", "--backend", bs[-1], spec], "Tracing 3 functions", False)]
    if BPFTRACE:
        runs.append(bpftrace("uretprobe:%s { @[probe] = count(); }" % spec))
    errors = []
    outs = run_all(funcwork, runs, errors)
    leaf = THREADS * CALLS + SLOW
    for out, err in zip(outs[:len(bs)], errors):
        per = sections(out)
        assert sorted(per) == ["kt_leaf", "kt_recurse"], out
        assert average_line(per["kt_leaf"])[2] == leaf, out
        slow = sum(n for (low, high), n in histogram(per["kt_leaf"]).items() if low >= 131072)
        assert slow == SLOW, out
        assert average_line(per["kt_recurse"])[2] == DEPTH, out
        assert histogram(per["kt_recurse"]) == recursion_buckets(), out
        assert "WARNING: 1 starts dropped in this interval" in err, err
    combined = outs[len(bs)]
    assert "Function =" not in combined
    assert average_line(combined)[2] == leaf + DEPTH, combined
    rows = histogram(combined)
    for bucket, n in recursion_buckets().items():
        assert rows.get(bucket, 0) >= n, combined
    if BPFTRACE:
        ref = dict((k.rsplit(":", 1)[1], n) for k, n in bpftrace_map(outs[-1]).items())
        assert ref == {"kt_leaf": leaf, "kt_recurse": DEPTH}, outs[-1]
    assert our_probes(funcwork) == []


def test_funccount_top_prints_the_most_called_only(funcwork):
    """perf-tools' -t TOP on both backends."""
    runs = [(["funccount", "-t", "2", "--backend", b, funcwork + ":kt_*"],
             "Tracing 3 functions", False) for b in backends()]
    for out in run_all(funcwork, runs):
        assert counts(out) == {"kt_leaf": THREADS * CALLS + SLOW, "kt_recurse": DEPTH}, out
    assert our_probes(funcwork) == []


def test_funcslower_perf_tools_form_one_thread_by_tid(funcwork):
    """`funcslower -L TID funcstring latency_us`: the main thread's calls
    only (its slow ones), not the caller threads' fast ones, with a 0 us
    threshold that would print all of them."""
    for b in backends():
        with workload(funcwork) as w, clirun.running([(
                ["funcslower", "-H", "-P", "-L", str(w.pid), "--backend", b,
                 funcwork + ":kt_leaf", "0"],
                "Tracing function calls slower than 0 us", False)]) as (run,):
            assert w.release() == 0
            time.sleep(0.5)
            out = run.stop()
        rows = [l.split() for l in out.splitlines()[1:]]
        assert len(rows) == SLOW, out
        assert all(int(r[1]) == w.pid and r[3] == "%x" % SLOW_USEC for r in rows), out
    assert our_probes(funcwork) == []


def test_funcslower_prints_exactly_the_slow_calls(funcwork):
    runs = [(["funcslower", "-m", "100", "-a", "1", "--backend", b, funcwork + ":kt_leaf"],
             "Tracing function calls slower than 100 ms", False) for b in backends()]
    outs = run_all(funcwork, runs)
    for out in outs:
        rows = [l.split() for l in out.splitlines()[1:]]
        assert len(rows) == SLOW, out
        for comm, pid, lat, rval, func, arg in rows:
            assert comm == "kerntrace_funcw" [:14] and func == "kt_leaf"
            assert rval == "%x" % SLOW_USEC and arg == "0x%x" % SLOW_USEC
            assert float(lat) >= SLOW_USEC / 1000.0
    assert our_probes(funcwork) == []


def test_funcslower_recursion_innermost_first_with_arguments(funcwork):
    runs = [(["funcslower", "-m", "1", "-a", "1", "--backend", b, funcwork + ":kt_recurse"],
             "Tracing function calls slower than 1 ms", False) for b in backends()]
    for out in run_all(funcwork, runs):
        rows = [l.split() for l in out.splitlines()[1:]]
        # returns come innermost first: depth 1, 2, ... each with its own
        # argument and return value, each slower than the one inside it
        assert [r[5] for r in rows] == ["0x%x" % d for d in range(1, DEPTH + 1)], out
        assert [r[3] for r in rows] == ["%x" % d for d in range(1, DEPTH + 1)], out
        lats = [float(r[2]) for r in rows]
        assert lats == sorted(lats) and lats[0] >= DEPTH_USEC / 1000.0
        assert all(lat >= d * DEPTH_USEC / 1000.0 for d, lat in zip(range(1, DEPTH + 1), lats))


def test_sigkill_leaves_probes_the_next_start_removes(funcwork):
    p = clirun.start(["funccount", "--backend", "ftrace", funcwork + ":kt_leaf"])
    clirun.wait_for_stderr_line(p, "Tracing 1 functions")
    left = our_probes(funcwork)
    assert left and all(("kerntrace_%d" % p.pid) in l for l in left), left
    p.kill()
    p.wait()
    assert our_probes(funcwork) == left          # SIGKILL: nothing could clean up
    rc, out, err = clirun.run(["funccount", "--backend", "ftrace", "-d", "0.5",
                               funcwork + ":kt_leaf"])
    assert rc == 0, err
    assert our_probes(funcwork) == []            # the next start removed them


def test_json_and_prometheus_carry_the_same_counts(funcwork):
    spec = funcwork + ":kt_*"
    bs = backends()
    # one backend prints JSON lines, the other (or the same) Prometheus text
    runs = [(["funccount", "--json", "--backend", bs[0], spec], "Tracing with funccount", False),
            (["funclatency", "-u", "--prometheus", "--backend", bs[-1],
              funcwork + ":kt_recurse"], "Tracing with funclatency", False)]
    js, prom = run_all(funcwork, runs)
    import json
    objs = [json.loads(line) for line in js.splitlines()]
    assert [o["type"] for o in objs] == ["counts"]
    got = dict((c["labels"]["event"], c["count"]) for c in objs[0]["counts"])
    assert got == {"kt_leaf": THREADS * CALLS + SLOW, "kt_recurse": DEPTH, "kt_vanish": 1}
    series = r'kerntrace_function_latency_seconds_%s\{tool="funclatency"\}'
    assert re.search(r"^%s %d$" % (series % "count", DEPTH), prom, re.M), prom
    total = float(re.search(r"^%s (\S+)$" % (series % "sum"), prom, re.M).group(1))
    assert round(total * 1e6) >= sum(d * DEPTH_USEC for d in range(1, DEPTH + 1))
    assert our_probes(funcwork) == []


def test_replay_of_a_tracepoint_recording_counts_what_happened(caller_exe, tmp_path):
    """--input replays a `kerntrace record` recording of tracepoints."""
    import workloads
    n = 300
    rec = tmp_path / "getppid.rec"
    c = workloads.Caller(caller_exe, n)
    argv = ["funccount", "-p", str(c.pid), "t:syscalls:sys_enter_getpp*"]
    clirun.record_around(rec, argv, c.release)
    rc, out, err = clirun.run(argv[:1] + ["--input", str(rec)] + argv[1:])
    assert rc == 0, err
    assert re.findall(r"^syscalls:sys_enter_getppid\s+(\d+)$", out, re.M) == [str(n)], out


def test_replay_of_a_uprobe_recording_measures_what_happened(funcwork, tmp_path):
    """A recording of a run on uprobes holds its probe events and what each
    probes: funclatency -F and funccount replay it with the live counts."""
    rec = tmp_path / "funcwork.rec"
    spec = funcwork + ":kt_*"
    w = workload(funcwork)
    clirun.record_around(rec, ["funclatency", "-F", "-u", spec], w.release)
    assert our_probes(funcwork) == []
    rc, out, err = clirun.run(["funclatency", "-F", "-u", "--input", str(rec), spec])
    assert rc == 0, err
    per = sections(out)
    assert average_line(per["kt_leaf"])[2] == THREADS * CALLS + SLOW, out
    assert histogram(per["kt_recurse"]) == recursion_buckets(), out
    assert "WARNING: 1 starts dropped in this interval" in err, err
    rc, out, err = clirun.run(["funccount", "--input", str(rec), spec])
    assert rc == 0, err
    assert counts(out) == {"kt_leaf": THREADS * CALLS + SLOW, "kt_recurse": DEPTH,
                           "kt_vanish": 1}, out
    # a function the recording did not probe: one line, status 1
    rc, out, err = clirun.run(["funccount", "--input", str(rec), "c:getppid"])
    assert rc == 1 and "the recording did not probe it" in err and err.count("\n") == 1, err


def test_a_call_its_thread_exits_inside_is_given_up_and_counted(funcwork):
    """kt_vanish() calls pthread_exit(): its entry never returns.  The
    thread's exit gives it up, reported as a dropped start; nothing of it
    stays in the start table."""
    runs = [(["funclatency", "-u", "--backend", b, funcwork + ":kt_vanish"],
             "Tracing 1 functions", False) for b in backends()]
    errors = []
    outs = run_all(funcwork, runs, errors)
    for out, err in zip(outs, errors):
        assert "count:" not in out or "count: 0" in out, out
        assert "WARNING: 1 starts dropped in this interval" in err, err
    assert our_probes(funcwork) == []
