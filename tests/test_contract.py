"""Contract: every backend that can run here returns exactly the core result
types (core/results.py) for every aggregate kind, with the same shapes, so the
output layer never needs to know which backend ran.  Runs for real on the
live kernel: a loop device of our own, N direct writes."""

import pytest

from kerntrace.core.host import Host
from kerntrace.core.model import (EVENT_NAME, LATENCY, STR, Count, Event, Field, Filter,
                                  Histogram, Measurement, Pair, Records, Tracepoint)
from kerntrace.core.pluginhost import PluginHost
from kerntrace.core.backend import RunOptions
from kerntrace.core.results import CountSet, Histogram as HistogramResult, HistogramSet, Record, Report

import kernstate
import workloads

N = 16
OPTIONS = RunOptions(tool="contract")


def block_measurement(aggregate, dev):
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("error", "errors"))])
    return Measurement([issue, done], aggregate,
                       pair=Pair("issue", "done", key=("dev", "sector"), carry=("comm", "pid", "bytes")),
                       filters=[Filter("dev", "==", dev)])


AGGREGATES = {
    "histogram": lambda: Histogram(LATENCY, unit="usecs", keys=("rwbs",)),
    "count": lambda: Count(keys=("comm", EVENT_NAME)),
    "records": lambda: Records(fields=("ts", "comm", "pid", "dev", "sector", "bytes", "rwbs", LATENCY)),
}


def backend_verdicts(measurement):
    """[(backend, its check() verdict)] for every built-in backend."""
    host = Host()
    return [(b, b.check(measurement, host, OPTIONS))
            for b in PluginHost(load_third_party=False).backends()]


def run_one(backend, verdict, measurement, dev_path):
    session = backend.open(measurement, verdict, OPTIONS)
    with session:
        session.wait(0.2)
        workloads.direct_writes(dev_path, N)
        reports = []
        for _ in range(20):
            session.wait(0.1)
            reports.append(session.collect())
            if sum(_n(r) for r in reports) >= N:
                break
    return reports


def _n(report):
    d = report.data
    if isinstance(d, HistogramSet):
        return sum(h.count for h in d.histograms.values())
    if isinstance(d, CountSet):
        return sum(d.counts.values())
    return len(d)


@pytest.mark.live
@pytest.mark.parametrize("kind", sorted(AGGREGATES))
def test_every_backend_returns_the_core_types(kind):
    with workloads.loop_device() as (path, major, minor):
        m = block_measurement(AGGREGATES[kind](), (major << 20) | minor)
        verdicts = backend_verdicts(m)
        runnable = [(b, v) for b, v in verdicts if v.ok]
        # On a live host ftrace always can; eBPF unless bcc or usable headers are missing.
        for b, v in verdicts:
            if not v.ok:
                assert b.name == "ebpf" and (kernstate.ebpf_skip_reason() or any(
                    "headers" in r for r in v.reasons)), (b.name, v.reasons)
        fields = m.output_fields()
        for backend, verdict in runnable:
            reports = run_one(backend, verdict, m, path)
            assert all(type(r) is Report for r in reports)
            assert all(isinstance(r.lost, int) and isinstance(r.unmatched, int) for r in reports)
            assert sum(_n(r) for r in reports) == N, backend.name
            for r in reports:
                d = r.data
                if kind == "histogram":
                    assert type(d) is HistogramSet and d.key_names == ("rwbs",)
                    for key, h in d.histograms.items():
                        assert type(h) is HistogramResult and isinstance(key, tuple) and len(key) == 1
                        assert isinstance(key[0], str) and key[0].startswith("W")
                        assert all(isinstance(i, int) and isinstance(c, int) for i, c in h.buckets.items())
                elif kind == "count":
                    assert type(d) is CountSet and d.key_names == ("comm", "event")
                    for key, c in d.counts.items():
                        assert key[1] == "done" and isinstance(key[0], str) and type(c) is int
                else:
                    assert type(d) is list
                    for rec in d:
                        assert type(rec) is Record
                        for f in m.aggregate.fields:
                            want = str if fields[f] == STR else int
                            assert isinstance(rec[f], want), (backend.name, f, rec[f])
                        assert rec["bytes"] == 4096 and rec["comm"] == "dd" and rec[LATENCY] > 0
