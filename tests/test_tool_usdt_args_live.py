"""argdist on USDT probe arguments live: a C program fires kt:args(int
small, long big, 5) N times with known values (tests/usdtworkload.py),
built at -O0 (arguments in stack memory) and -O2 (in registers); argdist
on both backends and bpftrace's usdt: probe at the same time count
exactly the values it passed, and leave no probe definition behind."""

import os
import re

import pytest

import clirun
import usdtworkload
from test_tool_func_live import BPFTRACE, backends, bpftrace, bpftrace_map, histogram
from test_tool_func_live import our_probes

pytestmark = pytest.mark.live

N = 120         # a multiple of 6: every (small, big) pair N/6 times


@pytest.fixture(scope="module", params=[0, 2], ids=["O0-memory", "O2-registers"])
def argsprog(request, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("tracing needs root")
    exe, why = usdtworkload.build_args(tmp_path_factory.mktemp("usdtargs"), request.param)
    if exe is None:
        pytest.skip("cannot build the USDT arguments program: %s" % why)
    return os.path.realpath(exe)


def argdist_counts(out):
    """{(arg1, arg2, arg3): count} of argdist -C rows."""
    return dict((tuple(int(v) for v in re.findall(r"arg\d+ = (-?\d+)", m.group(2))),
                 int(m.group(1)))
                for m in re.finditer(r"^\t(\d+)\s+(arg1 = .*)$", out, re.M))


def run_around(exe, runs):
    """Start the program (its pid filters every tool), then the tools, let
    it fire N times, stop the tools; their outputs."""
    with usdtworkload.ArgsWorkload(exe, N) as w, clirun.running(runs(w.pid)) as started:
        assert w.release() == 0
        return [r.stop() for r in started]


def test_argdist_counts_the_arguments_the_program_passed(argsprog):
    spec = "u:%s:kt:args():int,long,int:arg1,arg2,arg3" % argsprog
    bes = backends()

    def runs(pid):
        out = [(["argdist", "--backend", b, "-i", "3600", "-p", str(pid), "-C", spec],
                "Tracing", False) for b in bes]
        if BPFTRACE:
            out.append(bpftrace("usdt:%s:kt:args /pid == %d/ { @[arg0, arg1, arg2] = count(); }"
                                % (argsprog, pid)))
        return out
    outs = run_around(argsprog, runs)
    want = usdtworkload.expected_args(N)
    for b, out in zip(bes, outs):
        assert argdist_counts(out) == want, (b, out)
    if BPFTRACE:
        ref = dict((tuple(int(v) for v in k.split(", ")), n)
                   for k, n in bpftrace_map(outs[-1]).items())
        assert ref == want, outs[-1]
    assert our_probes(argsprog) == []
    if not BPFTRACE or len(bes) < 2:
        pytest.skip("compared without %s" % ("bpftrace" if not BPFTRACE else "eBPF"))


def test_argdist_histogram_of_a_long_argument(argsprog):
    spec = "u:%s:args():u64:arg2" % argsprog
    bes = backends()
    outs = run_around(argsprog, lambda pid: [
        (["argdist", "--backend", b, "-i", "3600", "-p", str(pid), "-H", spec], "Tracing",
         False) for b in bes])
    # big is 2^33 and 2^34, N/2 times each: its upper 32 bits were read
    want = {(1 << 33, (1 << 34) - 1): N // 2, (1 << 34, (1 << 35) - 1): N // 2}
    for b, out in zip(bes, outs):
        assert histogram(out) == want, (b, out)
    assert our_probes(argsprog) == []


def test_a_recording_of_usdt_arguments_replays_the_same_counts(argsprog, tmp_path):
    rec = tmp_path / "usdtargs.rec"
    spec = "u:%s:kt:args():int,long,int:arg1,arg2,arg3" % argsprog
    with usdtworkload.ArgsWorkload(argsprog, N) as w:
        clirun.record_around(rec, ["argdist", "-p", str(w.pid), "-C", spec], w.release)
    rc, out, err = clirun.run(["argdist", "--input", str(rec), "-i", "3600", "-C", spec])
    assert rc == 0, err
    assert argdist_counts(out) == usdtworkload.expected_args(N), out
    assert our_probes(argsprog) == []


def test_every_site_of_a_probe_reads_its_own_operands(tmp_path):
    # kt:tick(long i) is used at two places (tests/usdtworkload.py): each
    # site's note says where i is there; every i is counted twice
    if os.geteuid() != 0:
        pytest.skip("tracing needs root")
    exe, why = usdtworkload.build(tmp_path)
    if exe is None:
        pytest.skip("cannot build the USDT workload: %s" % why)
    exe = os.path.realpath(exe)
    ticks = 12
    with usdtworkload.UsdtWorkload(exe, ticks, 0) as w, clirun.running(
            [(["argdist", "--backend", b, "-i", "3600", "-p", str(w.pid),
               "-C", "u:%s:kt:tick():long:arg1" % exe], "Tracing", False)
             for b in backends()]) as started:
        assert w.release() == 0
        outs = [r.stop() for r in started]
    for out in outs:
        got = dict((int(m.group(2)), int(m.group(1)))
                   for m in re.finditer(r"^\t(\d+)\s+arg1 = (-?\d+)$", out, re.M))
        assert got == dict((i, 2) for i in range(ticks)), out
    assert our_probes(exe) == []
