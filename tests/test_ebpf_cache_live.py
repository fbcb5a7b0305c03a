"""Live: a second run of an unchanged eBPF program loads its compiled
object from the cache (objcache.py, loadobj.py) without bcc, and counts
exactly what the compiled run counts; a damaged entry is compiled again."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.live, pytest.mark.ebpf]

CALLS = 2000

# One run in a process of its own (so whether bcc was imported is its own):
# count this process's getppid() calls on the eBPF backend.
RUN = textwrap.dedent("""
    import json, os, sys
    from kerntrace.backends.ebpf.backend import EbpfBackend
    from kerntrace.core.backend import RunOptions
    from kerntrace.core.host import Host
    from kerntrace.core.model import Count, Event, Measurement, SyscallEntry
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count(keys=("pid",)))
    be = EbpfBackend()
    v = be.check(m, Host(), RunOptions(tool="cachetest"))
    if not v.ok:
        print(json.dumps({"reasons": v.reasons}))
        sys.exit(0)
    with be.open(m, v, RunOptions(tool="cachetest")) as s:
        for _ in range(%d):
            os.getppid()
        counts = s.collect().data.counts
    print(json.dumps({"count": counts.get((os.getpid(),), 0), "explain": v.describe(),
                      "bcc_imported": "bcc" in sys.modules}))
""" % CALLS)


def run_once(cache_dir):
    env = dict(os.environ, KERNTRACE_BPF_CACHE=cache_dir)
    r = subprocess.run([sys.executable, "-c", RUN], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120, env=env)
    assert r.returncode == 0 and not r.stderr, r.stderr
    out = json.loads(r.stdout)
    if "reasons" in out:
        pytest.skip("the eBPF backend cannot count getppid() here: %s"
                    % "; ".join(out["reasons"]))
    return out


def test_second_run_loads_the_cached_object_and_counts_the_same(tmp_path):
    cache = str(tmp_path / "cache")
    first = run_once(cache)
    assert first["count"] == CALLS, first
    assert first["bcc_imported"]
    assert any("compiled by bcc at start, then kept in " + cache in l
               for l in first["explain"]), first["explain"]
    entries = os.listdir(cache)
    assert len(entries) == 1 and entries[0].endswith(".json")

    second = run_once(cache)
    assert second["count"] == CALLS, second
    assert not second["bcc_imported"], "a cached program needs no bcc"
    assert any("loaded compiled from the cache in " + cache in l
               for l in second["explain"]), second["explain"]
    assert os.listdir(cache) == entries


def test_a_corrupt_entry_is_compiled_again_and_replaced(tmp_path):
    cache = str(tmp_path / "cache")
    assert run_once(cache)["count"] == CALLS
    (entry,) = os.listdir(cache)
    with open(os.path.join(cache, entry), "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data[:len(data) // 3])
        f.truncate()
    again = run_once(cache)
    assert again["count"] == CALLS and again["bcc_imported"], again
    assert any("compiled by bcc at start" in l for l in again["explain"]), again["explain"]
    hit = run_once(cache)
    assert hit["count"] == CALLS and not hit["bcc_imported"], hit


def test_a_cached_latency_histogram_counts_every_write_and_releases_all(tmp_path,
                                                                        monkeypatch):
    import workloads
    from test_ebpf_live import Run, block_pair, devt, total, unmatched

    from kerntrace.backends.ebpf import loadobj
    from kerntrace.core.model import LATENCY, POW2_MS, Histogram
    monkeypatch.setenv("KERNTRACE_BPF_CACHE", str(tmp_path / "cache"))
    n = 40
    loaded = []
    with workloads.loop_device() as (path, major, minor):
        m = block_pair(Histogram(LATENCY, scale=POW2_MS, unit="usecs"), devt(major, minor))
        for _ in range(2):
            # (Run asserts on exit that every BPF fd and program is gone.)
            with Run(m) as run:
                loaded.append(isinstance(run.session._bpf, loadobj.LoadedObject))
                run.session.wait(0.1)
                workloads.direct_writes(path, n)
                reports = run.collect_until(lambda rs: total(rs) >= n)
            assert total(reports) == n and unmatched(reports) == 0, reports
    assert loaded == [False, True], "compiled, then loaded from the cache"
