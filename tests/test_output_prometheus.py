"""Prometheus / OpenMetrics exposition: cumulative across intervals, valid
names and escaping, atomic node_exporter textfiles."""

import io
import os
import re

import pytest

from kerntrace.core.errors import KerntraceError, UsageError
from kerntrace.core.model import LINEAR, LOG2, POW2_MS, Schedule
from kerntrace.core.output import prometheus as prom
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.prometheus import PrometheusPrinter, go_float
from kerntrace.core.results import CountSet, Histogram, HistogramSet, Record, Report

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad label syntax at %r" % text[pos:]
        value = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), m.group(2))
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def parse(text):
    """Validate an exposition line by line; return [(name, labels, value)]
    and the metadata {(kind, family): text}."""
    samples, meta = [], {}
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$", line)
            assert m or line == "# EOF", line
            if m:
                meta[(m.group(1), m.group(2))] = m.group(3)
            continue
        m = SAMPLE.match(line)
        assert m, line
        samples.append((m.group(1), parse_labels(m.group(2) or ""), m.group(3)))
    return samples, meta


def ctx(formatters=None, tool="biolatency"):
    return RunContext(tool, "ebpf", Schedule(), formatters=formatters)


def printer(**kw):
    return PrometheusPrinter(io.StringIO(), io.StringIO(), **kw)


def hreport(hists, key_names=("disk",), **kw):
    kw.setdefault("tool", "biolatency")
    return Report(HistogramSet(key_names, hists), **kw)


def expositions(text, openmetrics=False):
    if openmetrics:
        parts = text.split("# EOF\n")
        assert parts[-1] == ""
        return [p + "# EOF\n" for p in parts[:-1]]
    # each exposition starts with the first family's HELP line
    first = text.splitlines()[0]
    return [first + p for p in text.split(first)[1:]]


def values(samples, name, **labels):
    return [(l, v) for n, l, v in samples
            if n == name and all(l.get(k) == x for k, x in labels.items())]


def test_dropped_starts_are_a_cumulative_counter():
    p = printer()
    c = ctx()
    p.start(c)
    p.report(hreport({}, dropped_starts=2), c)
    p.report(hreport({}, dropped_starts=5), c)
    p.finish(c)
    samples, meta = parse(expositions(p.out.getvalue())[-1])
    assert values(samples, "kerntrace_dropped_starts_total")[0][1] == "7"
    assert meta[("TYPE", "kerntrace_dropped_starts_total")] == "counter"


def test_histograms_are_cumulative_across_intervals():
    p = printer()
    c = ctx({"disk": {253: "vda", 8: "sda"}.get})
    p.start(c)
    p.report(hreport({(253,): Histogram(LOG2, "usecs", buckets={1: 2, 2: 1}, total=5)},
                     lost=1), c)
    p.report(hreport({(253,): Histogram(LOG2, "usecs", buckets={1: 1, 4: 4}, total=40),
                      (8,): Histogram(LOG2, "usecs", buckets={3: 1}, total=6)}, lost=2), c)
    p.finish(c)
    first, second = expositions(p.out.getvalue())
    samples, meta = parse(second)
    assert meta[("TYPE", "kerntrace_biolatency_seconds")] == "histogram"
    buckets = values(samples, "kerntrace_biolatency_seconds_bucket", disk="vda")
    # usecs buckets 0-1, 2-3, 4-7, 8-15 hold nanoseconds up to 1999, 3999 ...
    assert [(l["le"], v) for l, v in buckets] == [
        ("1.999e-06", "3"), ("3.999e-06", "4"), ("7.999e-06", "4"), ("1.5999e-05", "8"),
        ("+Inf", "8")]
    assert values(samples, "kerntrace_biolatency_seconds_count", disk="vda")[0][1] == "8"
    assert values(samples, "kerntrace_biolatency_seconds_sum", disk="vda")[0][1] == "4.5e-05"
    assert [(l["le"], v) for l, v in values(samples, "kerntrace_biolatency_seconds_bucket",
                                             disk="sda")] == [
        ("1.999e-06", "0"), ("3.999e-06", "0"), ("7.999e-06", "1"), ("1.5999e-05", "1"),
        ("+Inf", "1")]
    assert values(samples, "kerntrace_lost_events_total")[0][1] == "3"
    assert meta[("TYPE", "kerntrace_lost_events_total")] == "counter"
    # The first exposition held the first interval only.
    s1, _ = parse(first)
    assert values(s1, "kerntrace_biolatency_seconds_count", disk="vda")[0][1] == "3"
    assert not values(s1, "kerntrace_biolatency_seconds_count", disk="sda")


def test_buckets_ascending_monotonic_and_inf_equals_count():
    p = printer()
    c = ctx()
    hists = {(i,): Histogram(LOG2, "usecs", buckets={j: (i * j) % 7 for j in range(1, 40)})
             for i in range(3)}
    p.report(hreport(hists), c)
    samples, _ = parse(p.out.getvalue())
    for i in range(3):
        rows = values(samples, "kerntrace_biolatency_seconds_bucket", disk=str(i))
        les = [float(l["le"]) for l, _ in rows]
        counts = [int(v) for _, v in rows]
        assert les == sorted(les) and les[-1] == float("inf")
        assert counts == sorted(counts)
        assert counts[-1] == int(values(samples, "kerntrace_biolatency_seconds_count",
                                        disk=str(i))[0][1])


def test_pow2ms_rows_are_exact_seconds():
    p = printer()
    p.report(Report(HistogramSet((), {(): Histogram(POW2_MS, "ms", buckets={0: 1, 2: 3},
                                                    total=7000000)}), tool="iolatency"), ctx())
    samples, _ = parse(p.out.getvalue())
    assert [(l["le"], v) for l, v in values(samples, "kerntrace_iolatency_seconds_bucket")] == [
        ("0.001", "1"), ("0.002", "1"), ("0.004", "4"), ("+Inf", "4")]
    assert values(samples, "kerntrace_iolatency_seconds_sum")[0][1] == "0.007"


def test_label_values_escaped_and_names_sanitized():
    p = printer(prefix="my-site")
    weird = 'a"b\\c\nd \u00e9'
    data = HistogramSet(("1st-key", "le"), {(1, 2): Histogram(LINEAR, "k.bytes", step=10,
                                                               buckets={0: 1})})
    p.report(Report(data, tool="bio.lat-ency"), ctx({"1st-key": lambda v: weird}))
    text = p.out.getvalue()
    assert 'le="9"' in text
    samples, meta = parse(text)
    name = "my_site_bio_lat_ency_k_bytes_bucket"
    (labels, value), _inf = values(samples, name)
    assert labels == {"tool": "bio.lat-ency", "_1st_key": weird, "key_le": "2",
                      "le": "9"} and value == "1"
    assert '_1st_key="a\\"b\\\\c\\nd \u00e9"' in text


def test_counts_are_counters_accumulated_per_key():
    p = printer()
    c = ctx(tool="tpcount")
    p.report(Report(CountSet(("event",), {("issue",): 3}), tool="tpcount"), c)
    p.report(Report(CountSet(("event",), {("done",): 2, ("issue",): 1}), tool="tpcount"), c)
    samples, meta = parse(expositions(p.out.getvalue())[-1])
    assert meta[("TYPE", "kerntrace_tpcount_events_total")] == "counter"
    got = {l["event"]: v for l, v in values(samples, "kerntrace_tpcount_events_total")}
    assert got == {"issue": "4", "done": "2"}


def test_openmetrics_mode():
    p = printer(openmetrics=True)
    c = ctx(tool="tpcount")
    p.report(Report(CountSet(("event",), {("issue",): 3}), tool="tpcount"), c)
    p.report(hreport({(): Histogram(LOG2, "usecs", buckets={1: 1, 21: 1})}, key_names=(),
                     tool="tpcount"), c)
    text = p.out.getvalue()
    assert text.endswith("# EOF\n")
    parts = expositions(text, openmetrics=True)
    assert len(parts) == 2
    lines = parts[1].splitlines()
    assert "# TYPE kerntrace_tpcount_events counter" in lines
    assert "kerntrace_tpcount_events_total{tool=\"tpcount\",event=\"issue\"} 3" in lines
    assert "# TYPE kerntrace_lost_events counter" in lines
    assert '# UNIT kerntrace_tpcount_seconds seconds' in lines
    assert 'kerntrace_tpcount_seconds_bucket{tool="tpcount",le="1.999e-06"} 1' in lines
    assert 'kerntrace_tpcount_seconds_bucket{tool="tpcount",le="1.048575999"} 1' in lines
    assert 'kerntrace_tpcount_seconds_bucket{tool="tpcount",le="2.097151999"} 2' in lines
    # TYPE comes before HELP for every family
    for i, line in enumerate(lines):
        if line.startswith("# HELP"):
            assert lines[i - 1].startswith("# TYPE %s " % line.split()[2])


def test_go_float_renders_like_go():
    assert [go_float(v) for v in (0, 1, 3, 999999, 1000000, 1048575, 0.5, 1e-05, 2 ** 64 - 1)] == [
        "0", "1", "3", "999999", "1e+06", "1.048575e+06", "0.5", "1e-05",
        "1.8446744073709552e+19"]


def test_event_tools_count_events_and_write_at_most_once_a_second(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(prom.time, "monotonic", lambda: clock[0])
    p = printer()
    c = ctx(tool="opensnoop")
    p.report(Report([Record(1, {}), Record(2, {})], tool="opensnoop"), c)
    clock[0] += 0.1
    p.report(Report([Record(3, {})], tool="opensnoop"), c)
    assert len(expositions(p.out.getvalue())) == 1
    p.finish(c)
    last = expositions(p.out.getvalue())[-1]
    assert 'kerntrace_opensnoop_events_total{tool="opensnoop"} 3' in last.splitlines()


def test_textfile_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "kerntrace.prom"
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        # the new content is complete before it replaces the target
        with open(src) as f:
            renames.append((os.path.dirname(src), os.path.basename(src), dst, f.read()))
        real_rename(src, dst)

    monkeypatch.setattr(prom.os, "rename", spy)
    p = printer(textfile=str(path))
    c = ctx()
    p.report(hreport({(): Histogram(LOG2, "usecs", buckets={1: 1})}, key_names=()), c)
    p.report(hreport({(): Histogram(LOG2, "usecs", buckets={2: 1})}, key_names=()), c)
    assert p.out.getvalue() == ""
    assert [os.listdir(str(tmp_path))] == [["kerntrace.prom"]]
    assert len(renames) == 2
    src_dir, src_name, dst, content = renames[-1]
    assert src_dir == str(tmp_path) and src_name.startswith(".kerntrace.prom.kerntrace-%d-"
                                                              % os.getpid())
    assert dst == str(path) and content == path.read_text()
    samples, _ = parse(path.read_text())
    assert values(samples, "kerntrace_biolatency_seconds_count")[0][1] == "2"
    assert os.stat(str(path)).st_mode & 0o777 == 0o644


def test_textfile_failure_is_one_error_and_leaves_no_temp(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prom.os, "rename", broken)
    p = printer(textfile=str(tmp_path / "x.prom"))
    with pytest.raises(KerntraceError) as e:
        p.report(hreport({(): Histogram(LOG2, "usecs", buckets={1: 1})}, key_names=()), ctx())
    assert "x.prom" in str(e.value) and "No space" in str(e.value)
    assert os.listdir(str(tmp_path)) == []


def test_textfile_in_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        printer(textfile=str(tmp_path / "nope" / "x.prom"))


def test_real_prometheus_parsers_accept_the_output():
    parser = pytest.importorskip("prometheus_client.parser")
    om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")
    reports = [hreport({(8,): Histogram(LOG2, "usecs", buckets={1: 2, 5: 1}, total=20)}, lost=1),
               hreport({(8,): Histogram(LOG2, "usecs", buckets={3: 2}, total=9)})]
    for openmetrics in (False, True):
        p = printer(openmetrics=openmetrics)
        c = ctx({"disk": lambda d: 'sd"a'})
        for r in reports:
            p.report(r, c)
        last = expositions(p.out.getvalue(), openmetrics)[-1]
        parse_fn = (om_parser.text_string_to_metric_families if openmetrics
                    else parser.text_string_to_metric_families)
        families = {f.name: f for f in parse_fn(last)}
        hist = families["kerntrace_biolatency_seconds"]
        assert hist.type == "histogram"
        count = [s for s in hist.samples if s.name.endswith("_count")][0]
        assert count.value == 5 and count.labels == {"tool": "biolatency", "disk": 'sd"a'}
        lost = families["kerntrace_lost_events"]
        assert lost.type == "counter" and lost.samples[0].value == 1
