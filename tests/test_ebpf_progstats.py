"""How the eBPF backend learns how often the kernel skipped its programs,
and what it says where the kernel cannot tell.  A kernel older than the
recursion_misses counter (v5.12) cannot be booted here: its answer (a
shorter bpf_prog_info) is given to the code that reads it."""

import json
import os
import struct

import pytest

import clirun
from kerntrace.backends.ebpf import probes, progstats, sysbpf

# struct bpf_prog_info up to run_cnt: what a v5.11 kernel fills in.
V5_11_INFO_LEN = 208


def info_with_misses(n):
    return b"\0" * 208 + struct.pack("<Q", n)


def test_misses_read_from_a_full_prog_info():
    assert progstats.misses_from_info(232, info_with_misses(7)) == (7, None)


def test_an_older_kernels_prog_info_cannot_tell():
    n, why = progstats.misses_from_info(V5_11_INFO_LEN, info_with_misses(7))
    assert n is None and "no recursion_misses" in why


@pytest.mark.live
def test_without_the_counter_nothing_is_added_and_doctor_says_why(monkeypatch):
    monkeypatch.setattr(progstats, "prog_info_misses",
                        lambda fd: progstats.misses_from_info(V5_11_INFO_LEN, b"\0" * 216))
    counter = progstats.MissCounter([3, 4])
    assert not counter.available and counter.missed() == 0
    host_probes = probes.HostProbes(None)
    answer = host_probes.skips_counted()
    assert not answer.ok
    assert "cannot tell" in answer.detail and "no recursion_misses" in answer.detail


@pytest.mark.live
@pytest.mark.ebpf
def test_a_real_program_reports_its_counter():
    fd, err = sysbpf._load_tracepoint_prog([sysbpf._MOV_R0_0, sysbpf._EXIT])
    if fd < 0:
        pytest.skip("cannot load a BPF program here: %s" % sysbpf.errname(err))
    try:
        n, why = progstats.prog_info_misses(fd)
        if n is None:
            pytest.skip("this kernel has no recursion_misses: %s" % why)
        assert n == 0      # never attached, never skipped
        counter = progstats.MissCounter([fd])
        assert counter.available and counter.missed() == 0
    finally:
        os.close(fd)


@pytest.mark.live
@pytest.mark.ebpf
def test_doctor_says_whether_skipped_runs_are_counted():
    rc, out, err = clirun.run(["doctor", "--json"])
    assert rc == 0, err
    caps = {(c["backend"], c["name"]): c for c in json.loads(out)["capabilities"]}
    skipped = caps[("ebpf", "skipped_runs")]
    has_field = progstats.probe_recursion_misses()
    if not has_field.ok:
        assert not skipped["ok"] and "cannot tell" in skipped["detail"]
    elif skipped["ok"]:
        assert "counted" in skipped["detail"]
    else:
        assert "cannot tell" in skipped["detail"] or "not tried" in skipped["detail"]


@pytest.mark.live
@pytest.mark.ebpf
def test_check_notes_that_lost_counts_miss_skips_without_the_counter(monkeypatch):
    from kerntrace.backends.ebpf.backend import EbpfBackend
    from kerntrace.core.host import Host
    from kerntrace.core.model import Count, Event, Measurement, Tracepoint
    monkeypatch.setattr(probes, "_by_tracefs", {})
    monkeypatch.setattr(progstats, "prog_info_misses",
                        lambda fd: progstats.misses_from_info(V5_11_INFO_LEN, b"\0" * 216))
    m = Measurement([Event("x", Tracepoint("sched", "sched_process_fork"))], Count())
    v = EbpfBackend().check(m, Host())
    if not v.ok:
        pytest.skip("the eBPF backend cannot run here: %s" % "; ".join(v.reasons))
    assert any("lost counts miss the events the kernel skips" in n
               and "no recursion_misses" in n for n in v.reasons), v.reasons
