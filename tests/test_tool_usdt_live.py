"""funccount on USDT probes live, on a C program with sys/sdt.h probes
(tests/usdtworkload.py): a probe used at two places counts both, a probe
with a semaphore is counted because the tracer raised the semaphore (the
program reports how often its guarded branch ran), both backends and
bpftrace's usdt: probes at the same time agree exactly, -p counts one
process only, and no probe definition is left behind."""

import os
import re

import pytest

import clirun
import usdtworkload
from test_tool_func_live import BPFTRACE, backends, bpftrace, bpftrace_map, our_probes

pytestmark = pytest.mark.live

TICKS, GUARDED = 30, 7


@pytest.fixture(scope="module")
def usdtwork(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("tracing needs root")
    exe, why = usdtworkload.build(tmp_path_factory.mktemp("usdtwork"))
    if exe is None:
        pytest.skip("cannot build the USDT workload: %s" % why)
    return exe


def counts(out):
    return dict((m.group(1), int(m.group(2)))
                for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M))


def run_with(exe, runs, workloads_args):
    """Start every tool, run the workloads one after another, stop the
    tools; (their outputs, the workloads)."""
    with clirun.running(runs) as started:
        ws = [usdtworkload.UsdtWorkload(exe, *a) for a in workloads_args]
        for w in ws:
            assert w.release() == 0
        return [r.stop() for r in started], ws


def test_usdt_counts_every_site_and_raises_semaphores_on_both_backends_and_bpftrace(usdtwork):
    spec = "u:%s:*" % usdtwork
    runs = [(["funccount", "--backend", b, spec], "Tracing 2 functions", False)
            for b in backends()]
    if BPFTRACE:
        runs.append(bpftrace("usdt:%s:kt:* { @[probe] = count(); }" % usdtwork))
    outs, (w,) = run_with(usdtwork, runs, [(TICKS, GUARDED)])
    assert w.guarded_fired == GUARDED
    want = {"tick": 2 * TICKS, "guarded": GUARDED}
    ours = outs[:len(backends())]
    for out in ours:
        assert counts(out) == want, out
    assert len(set(ours)) == 1, ours
    if BPFTRACE:
        ref = bpftrace_map(outs[-1])
        assert dict((k.rsplit(":", 1)[1], n) for k, n in ref.items()) == want, outs[-1]
    assert our_probes(usdtwork) == []
    if not BPFTRACE or len(ours) < 2:
        pytest.skip("compared without %s" % ("bpftrace" if not BPFTRACE else "eBPF"))


@pytest.mark.parametrize("backend", ["ftrace", "ebpf"])
def test_each_backend_alone_raises_the_semaphore_and_counts_one_pid(usdtwork, backend):
    from kernstate import ebpf_skip_reason
    if backend == "ebpf" and ebpf_skip_reason():
        pytest.skip(ebpf_skip_reason())
    with usdtworkload.UsdtWorkload(usdtwork, TICKS, GUARDED) as first, clirun.running(
            [(["funccount", "--backend", backend, "-p", str(first.pid),
               "u:%s:kt:gu*" % usdtwork], "Tracing 1 functions", False)]) as (started,):
        other = usdtworkload.UsdtWorkload(usdtwork, TICKS, GUARDED + 5)
        assert other.release() == 0 and first.release() == 0
        out = started.stop()
    # both processes ran the guarded branch (the semaphore is raised in every
    # process mapping the binary); only the -p process is counted
    assert (first.guarded_fired, other.guarded_fired) == (GUARDED, GUARDED + 5)
    assert counts(out) == {"guarded": GUARDED}, out
    assert our_probes(usdtwork) == []


def test_without_a_tracer_the_semaphore_stays_down(usdtwork):
    w = usdtworkload.UsdtWorkload(usdtwork, TICKS, GUARDED)
    assert w.release() == 0
    assert w.guarded_fired == 0


def test_a_recording_of_usdt_probes_replays_every_site(usdtwork, tmp_path):
    rec = tmp_path / "usdt.rec"
    spec = "u:%s:*" % usdtwork
    w = usdtworkload.UsdtWorkload(usdtwork, TICKS, GUARDED)
    clirun.record_around(rec, ["funccount", "-p", str(w.pid), spec], w.release)
    assert w.guarded_fired == GUARDED          # the recording raised the semaphore
    rc, out, err = clirun.run(["funccount", "--input", str(rec), spec])
    assert rc == 0, err
    assert counts(out) == {"tick": 2 * TICKS, "guarded": GUARDED}, out
    assert our_probes(usdtwork) == []
