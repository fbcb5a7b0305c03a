"""Prometheus naming conventions: what is measured (not which tool), base
units, a tool label, the series limit, and /metrics over HTTP."""

import io
import urllib.request

from kerntrace.core.metrics import Metric
from kerntrace.core.model import LOG2, POW2_MS, Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.prometheus import (OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
                                              PrometheusPrinter)
from kerntrace.core.output.promserver import MetricsServer
from kerntrace.core.tool import listen_address
from kerntrace.core.pluginhost import PluginHost
from kerntrace.core.results import CountSet, Histogram, HistogramSet, Report

from test_output_prometheus import parse, values


def tools():
    return PluginHost(load_third_party=False).tools()


def run_printer(tool, reports, **kw):
    t = tools()[tool]
    p = PrometheusPrinter(io.StringIO(), io.StringIO(), metric=t.metric, **kw)
    c = RunContext(tool, "ebpf", Schedule(), formatters={"dev": lambda d: "sd%d" % d})
    for r in reports:
        r.tool = tool
        p.report(r, c)
    return p


def test_block_latency_has_one_name_whichever_tool_measured_it():
    bio = run_printer("biolatency", [Report(HistogramSet(("dev",), {
        (1,): Histogram(LOG2, "usecs", buckets={10: 2}, total=1500)}))])
    io_ = run_printer("iolatency", [Report(HistogramSet((), {
        (): Histogram(POW2_MS, "ms", buckets={1: 2}, total=3000000)}))])
    s_bio, meta_bio = parse(bio.exposition())
    s_io, meta_io = parse(io_.exposition())
    name = "kerntrace_block_io_latency_seconds"
    assert values(s_bio, name + "_count") == [({"tool": "biolatency", "device": "sd1"}, "2")]
    assert values(s_io, name + "_count") == [({"tool": "iolatency"}, "2")]
    # one HELP for the family whichever tool wrote it (node_exporter merges files)
    assert meta_bio[("HELP", name)] == meta_io[("HELP", name)]
    assert values(s_io, name + "_sum")[0][1] == "0.003"


def test_counters_end_in_total_and_say_what_they_count():
    p = run_printer("syscount", [Report(CountSet(("id",), {(39,): 4}))])
    samples, meta = parse(p.exposition())
    assert meta[("TYPE", "kerntrace_syscalls_total")] == "counter"
    assert values(samples, "kerntrace_syscalls_total")[0][0]["syscall"] == "39"
    for (kind, family), text in meta.items():
        if kind == "TYPE" and text == "counter":
            assert family.endswith("_total"), family


def test_every_builtin_tool_declares_a_metric_with_valid_names():
    for name, tool in tools().items():
        if name == "argdist":
            # its values are whatever the user's expression is
            assert tool.metric is None
            continue
        assert isinstance(tool.metric, Metric), name


def test_series_beyond_the_limit_fold_into_other_and_are_counted():
    reports = [Report(CountSet(("comm",), {("p%d" % i,): 1 for i in range(5)})),
               Report(CountSet(("comm",), {("p1",): 1, ("p9",): 2}))]
    p = run_printer("tpcount", reports, max_series=3)
    samples, _ = parse(p.exposition())
    got = {l["comm"]: int(v) for l, v in values(samples, "kerntrace_tracepoint_hits_total")}
    assert got == {"p0": 1, "p1": 2, "p2": 1, "other": 4}
    assert values(samples, "kerntrace_folded_series_total")[0][1] == "3"
    assert values(samples, "kerntrace_folded_events_total")[0][1] == "4"


def test_rewrite_puts_a_removed_textfile_back(tmp_path):
    path = tmp_path / "kt.prom"
    p = run_printer("tpcount", [Report(CountSet(("event",), {("x",): 1}))],
                    textfile=str(path))
    text = path.read_text()
    path.unlink()
    p.rewrite()
    assert path.read_text() == text


def test_listen_address_forms():
    assert listen_address("9435") == ("", 9435)
    assert listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert listen_address("[::1]:80") == ("::1", 80)


def test_metrics_endpoint_negotiates_the_format():
    p = run_printer("tpcount", [Report(CountSet(("event",), {("x",): 1}))])
    server = MetricsServer(p, ("127.0.0.1", 0))
    # printer.keep_both is set by the server; publish again with it
    p.rewrite()
    server.start()
    try:
        url = "http://127.0.0.1:%d/metrics" % server.port
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
            body = r.read().decode()
        assert 'kerntrace_tracepoint_hits_total{tool="tpcount",tracepoint="x"} 1' in body
        req = urllib.request.Request(url, headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
            assert r.read().decode().endswith("# EOF\n")
    finally:
        server.stop()


def test_docs_list_every_metric_the_code_declares():
    from kerntrace.core.metricsdoc import markdown_table
    import os
    doc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "docs", "metrics.md")
    with open(doc) as f:
        text = f.read()
    assert markdown_table(tools()) in text, (
        "docs/metrics.md is out of date: regenerate its table with "
        "python -m kerntrace.core.metricsdoc")
