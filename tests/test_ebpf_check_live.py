"""Live: the eBPF backend's check() compiles nothing (bcc's compile is most
of a start's time and memory; the run compiles its program once, at
start) and plans tracepoint and uprobe events all the same."""

import pytest

import workloads
from test_ebpf_live import block_pair, devt, uprobe_pair

from kerntrace.backends.ebpf import bccfind, probes
from kerntrace.backends.ebpf.backend import EbpfBackend
from kerntrace.core.backend import RunOptions
from kerntrace.core.host import Host
from kerntrace.core.model import LATENCY, LOG2, Count, Histogram

pytestmark = [pytest.mark.live, pytest.mark.ebpf]


@pytest.fixture
def compiles(monkeypatch):
    """The texts bcc is asked to compile, with fresh host probes (nothing
    this process probed before counts)."""
    monkeypatch.setattr(probes, "_by_tracefs", {})
    monkeypatch.setenv("KERNTRACE_BPF_CACHE", "off")
    bcc = bccfind.import_bcc()
    texts = []
    real = bcc.BPF

    class Spy(real):
        def __init__(self, *args, **kwargs):
            texts.append(kwargs.get("text"))
            real.__init__(self, *args, **kwargs)
    monkeypatch.setattr(bcc, "BPF", Spy)
    return texts


def test_checking_a_block_latency_histogram_compiles_nothing(compiles):
    with workloads.loop_device() as (path, major, minor):
        m = block_pair(Histogram(LATENCY, scale=LOG2, unit="usecs"), devt(major, minor))
        v = EbpfBackend().check(m, Host(), RunOptions(tool="test"))
        assert v.ok, v.reasons
        assert compiles == []
        # The run compiles its program, once.
        with EbpfBackend().open(m, v, RunOptions(tool="test")):
            pass
    assert compiles == [v.plan.program.text.encode()]


def test_checking_uprobes_compiles_nothing(compiles, caller_exe):
    m = uprobe_pair(caller_exe, Count(), 1)
    v = EbpfBackend().check(m, Host(), RunOptions(tool="test"))
    assert v.ok, v.reasons
    assert compiles == []
