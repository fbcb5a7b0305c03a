"""Histogram output as bcc and perf-tools users read it: the golden examples
of output-formats.md and iolatency-compat.md byte for byte, and the real
formatters (bcc's Python module, perf-tools' iolatency awk) as oracles."""

import io
import os
import re
import subprocess
import sys
import time
import warnings

import pytest

import golden_iolatency
from hypothesis import given, settings
from hypothesis import strategies as st

from kerntrace.core.buckets import NS_PER_MS
from kerntrace.core.model import LINEAR, LOG2, POW2_MS, Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.histograms import (BccHistogramPrinter, PerfToolsHistogramPrinter,
                                              bucket_rows, format_histogram, format_linear,
                                              format_log2, format_pow2ms)
from kerntrace.core.results import Histogram, HistogramSet, Report

IOLATENCY_PERF = "/usr/sbin/iolatency-perf"


def hist(scale, counts, unit="usecs", step=1, total=0):
    """A histogram from {bucket index: count}, as a backend would return it."""
    return Histogram(scale, unit, step=step, buckets=counts, total=total)


def ctx(formatters=None):
    return RunContext("biolatency", "ftrace", Schedule(), hostname="h", kernel="6.18",
                      formatters=formatters)


def run_printer(printer, reports, finish=True, context=None):
    context = context or ctx()
    printer.start(context)
    for r in reports:
        printer.report(r, context)
    if finish:
        printer.finish(context)
    return printer.out.getvalue(), printer.err.getvalue()


def streams():
    return io.StringIO(), io.StringIO()


# ---------------------------------------------------------------------------
# bcc log2 / linear
BCC_EXAMPLE = """\
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 151      |*                                       |
        32 -> 63         : 4524     |****************************************|
        64 -> 127        : 308      |**                                      |
"""


def test_bcc_log2_example_byte_for_byte():
    h = hist(LOG2, {5: 151, 6: 4524, 7: 308})
    assert "\n".join(format_log2(h, "usecs")) + "\n" == BCC_EXAMPLE
    assert format_histogram(h) == format_log2(h, "usecs")


def test_bcc_log2_wide_variant_past_slot_32():
    h = hist(LOG2, {1: 3, 34: 1}, unit="nsecs")
    assert format_log2(h) == [
        "               nsecs                         : count     distribution",
        "                   0 -> 1                    : 3        |********************|",
    ] + ["%20d -> %-20d : 0        |                    |" % (1 << (i - 1), (1 << i) - 1)
         for i in range(2, 34)] + [
        "          8589934592 -> 17179869183          : 1        |******              |",
    ]


def test_bcc_slot_32_still_narrow():
    lines = format_log2(hist(LOG2, {32: 1}))
    assert lines[0] == "     usecs               : count     distribution"
    assert lines[-1] == "2147483648 -> 4294967295 : 1        |****************************************|"


def test_bcc_small_count_next_to_big_max_prints_no_star():
    lines = format_log2(hist(LOG2, {1: 4381, 2: 1, 3: 109, 4: 110}))
    assert lines[2].endswith("|                                        |")   # 40*1/4381 -> 0
    assert lines[3].endswith("|" + " " * 40 + "|")                         # 40*109/4381 = 0.995
    assert lines[4].endswith("|*" + " " * 39 + "|")                        # 40*110/4381 = 1.004


def test_empty_bcc_histograms_print_nothing():
    assert format_log2(hist(LOG2, {})) == []
    assert format_log2(hist(LOG2, {3: 0, 9: 0})) == []
    assert format_linear(hist(LINEAR, {0: 0})) == []


def test_bcc_linear_rows_start_at_zero_labelled_with_low_bound():
    h = hist(LINEAR, {1: 3, 3: 10}, unit="kbytes", step=10)
    assert format_linear(h) == [
        "     kbytes        : count     distribution",
        "        0          : 0        |                                        |",
        "        10         : 3        |************                            |",
        "        20         : 0        |                                        |",
        "        30         : 10       |****************************************|",
    ]


def _bcc_table():
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # bcc's own invalid escape sequences
            from bcc import table
    except Exception as e:   # not installed, or libbcc missing
        pytest.skip("bcc's Python module is not usable here: %s" % e)
    finally:
        sys.path.remove("/usr/lib/python3/dist-packages")
    return table


def _bcc_print(fn, vals, label):
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        fn(vals, label, False)
    finally:
        sys.stdout = saved
    return out.getvalue()


# Counts below 2^40: bcc computes its bars in floating point, exact there.
slot_counts = st.dictionaries(st.integers(1, 64), st.integers(0, 1 << 40), max_size=12)


@settings(max_examples=150, deadline=None)
@given(slot_counts)
def test_log2_matches_bcc_print_log2_hist(counts):
    table = _bcc_table()
    vals = [0] * 65
    for i, c in counts.items():
        vals[i] = c
    ours = format_log2(hist(LOG2, counts))
    assert "".join(l + "\n" for l in ours) == _bcc_print(table._print_log2_hist, vals, "usecs")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.integers(0, 300), st.integers(0, 1 << 40), max_size=12))
def test_linear_matches_bcc_print_linear_hist(counts):
    table = _bcc_table()
    vals = [0] * 301
    for i, c in counts.items():
        vals[i] = c
    ours = format_linear(hist(LINEAR, counts, unit="kbytes"))
    assert "".join(l + "\n" for l in ours) == _bcc_print(table._print_linear_hist, vals, "kbytes")


# ---------------------------------------------------------------------------
# perf-tools iolatency
GOLDEN_1 = golden_iolatency.BANNER_1 + "\n" + golden_iolatency.HISTOGRAM_1
GOLDEN_2 = golden_iolatency.HISTOGRAM_2


def iolat_report(counts, **kw):
    return Report(HistogramSet((), {(): Histogram(POW2_MS, "ms", buckets=counts)}), **kw)


def test_perf_tools_golden_example_1_with_banner():
    printer = PerfToolsHistogramPrinter(*streams(),
                                        banner="Tracing block I/O. Output every 1 seconds. "
                                               "Ctrl-C to end.")
    out, err = run_printer(printer, [iolat_report({0: 4381, 1: 9, 2: 5, 4: 1})], finish=False)
    assert out == GOLDEN_1
    assert err == ""


def test_perf_tools_golden_example_2():
    counts = {0: 1913, 1: 438, 2: 100, 3: 145, 4: 43, 5: 43, 6: 1}
    assert "\n".join(format_pow2ms(Histogram(POW2_MS, "ms", buckets=counts))) + "\n" == GOLDEN_2


def test_perf_tools_count_run_ends_with_ending_line():
    printer = PerfToolsHistogramPrinter(*streams(), banner="Tracing block I/O. Output every 5 seconds.")
    out, _ = run_printer(printer, [iolat_report({0: 2}), iolat_report({1: 1})])
    assert out.startswith("Tracing block I/O. Output every 5 seconds.\n\n  >=(ms)")
    assert out.count("  >=(ms) .. <(ms)") == 2
    assert out.endswith("|\n\nEnding tracing...\n")


def test_perf_tools_interval_without_io():
    printer = PerfToolsHistogramPrinter(*streams(), banner="b")
    out, _ = run_printer(printer, [Report(HistogramSet((), {}))], finish=False)
    assert out == ("b\n\n"
                   "  >=(ms) .. <(ms)   : I/O      |Distribution                          |\n"
                   "       0 -> 1       : 0        |                                      |\n")
    assert format_pow2ms(Histogram(POW2_MS, "ms")) == out.splitlines()[2:]


def test_perf_tools_one_io_next_to_4381_still_shows():
    lines = format_pow2ms(Histogram(POW2_MS, "ms", buckets={0: 4381, 3: 1}))
    assert lines[4] == "       4 -> 8       : 1        |#                                     |"


def test_perf_tools_timestamp_line_has_trailing_colon():
    when = 1700000000.0
    printer = PerfToolsHistogramPrinter(*streams(), banner="b", timestamps=True)
    out, _ = run_printer(printer, [iolat_report({0: 1}, end=when)], finish=False)
    assert out.splitlines()[2] == time.strftime("%H:%M:%S:", time.localtime(when))
    assert re.match(r"^\d\d:\d\d:\d\d:$", out.splitlines()[2])


def test_perf_tools_lost_events_warn_on_stderr_only():
    printer = PerfToolsHistogramPrinter(*streams(), banner="b")
    out, err = run_printer(printer, [iolat_report({0: 1}, lost=7)], finish=False)
    assert err.startswith("WARNING: 7 events lost")
    assert "WARNING" not in out


def test_perf_tools_printer_sums_keys():
    data = HistogramSet(("dev",), {(1,): Histogram(POW2_MS, "ms", buckets={0: 2}),
                                   (2,): Histogram(POW2_MS, "ms", buckets={0: 1, 1: 3})})
    printer = PerfToolsHistogramPrinter(*streams(), banner=None)
    out, _ = run_printer(printer, [Report(data)], finish=False)
    assert "       0 -> 1       : 3        |" in out
    assert "       1 -> 2       : 3        |" in out


def _iolatency_awk():
    """The awk program of perf-tools' iolatency (the part that reads the
    trace and prints the histograms), taken from the installed script."""
    if not os.path.exists(IOLATENCY_PERF) or not os.path.exists("/usr/bin/mawk"):
        pytest.skip("perf-tools' iolatency (perf-tools-unstable) or mawk is not installed")
    text = open(IOLATENCY_PERF).read()
    m = re.search(r"\$awk -v o=\$offset [^']*'(.*?)'\s*$", text, re.S | re.M)
    if not m:
        pytest.skip("cannot find the awk program in %s" % IOLATENCY_PERF)
    return m.group(1)


def _perf_tools_output(rows):
    """What the real iolatency awk prints for one interval with rows[i] I/Os
    in row i: synthetic trace lines in the 5.x+ format (irq-flags column),
    latencies 0.5 ms in row 0 and 1.5 * 2^(i-1) ms in row i, away from any
    boundary so float arithmetic cannot move them."""
    lines, t, sector = [], 100.0, 0
    for row, n in enumerate(rows):
        lat = 0.0005 if row == 0 else 0.0015 * (1 << (row - 1))
        for _ in range(n):
            sector += 8
            lines.append("dd-1234 [000] ..... %.6f: block_rq_issue: 7,0 W 4096 () %d + 8 [dd]"
                         % (t, sector))
            lines.append("<idle>-0 [000] d.h.. %.6f: block_rq_complete: 7,0 W () %d + 8 [0]"
                         % (t + lat, sector))
            t += 1
    lines.append("tick")
    p = subprocess.run(["mawk", "-v", "o=1", "-v", "opt_timestamp=0", "-v", "b_start=block_rq_issue",
                        _iolatency_awk()], input="\n".join(lines) + "\n",
                       stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return p.stdout


def test_perf_tools_awk_oracle_golden_counts():
    out = _perf_tools_output([1913, 438, 100, 145, 43, 43, 1])
    assert out == "\n" + GOLDEN_2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12))
def test_pow2ms_matches_perf_tools_awk(rows):
    counts = {i: n for i, n in enumerate(rows) if n}
    ours = "\n" + "\n".join(format_pow2ms(Histogram(POW2_MS, "ms", buckets=counts))) + "\n"
    assert ours == _perf_tools_output(rows[:max(counts) + 1] if counts else [])


# ---------------------------------------------------------------------------
# BccHistogramPrinter
def test_bcc_printer_interval_banner_and_timestamp():
    when = 1700000000.0
    printer = BccHistogramPrinter(*streams(), banner="Tracing block device I/O... Hit Ctrl-C to end.",
                                  timestamps=True)
    h = hist(LOG2, {5: 151, 6: 4524, 7: 308})
    out, err = run_printer(printer, [Report(HistogramSet((), {(): h}), end=when)])
    assert err == "Tracing block device I/O... Hit Ctrl-C to end.\n"
    assert out == "\n" + time.strftime("%H:%M:%S", time.localtime(when)) + "\n" + BCC_EXAMPLE


def test_bcc_printer_sections_use_formatters_and_sort():
    data = HistogramSet(("disk",), {
        (253,): hist(LOG2, {2: 1}),
        (8,): hist(LOG2, {1: 2}),
        (9,): hist(LOG2, {}),          # nothing this interval: no section
    })
    names = {8: "sda", 253: "vda"}
    printer = BccHistogramPrinter(*streams())
    out, _ = run_printer(printer, [Report(data)], context=ctx({"disk": names.get}))
    assert out == ("\n"
                   "\ndisk = sda\n"
                   "     usecs               : count     distribution\n"
                   "         0 -> 1          : 2        |****************************************|\n"
                   "\ndisk = vda\n"
                   "     usecs               : count     distribution\n"
                   "         0 -> 1          : 0        |                                        |\n"
                   "         2 -> 3          : 1        |****************************************|\n")


def test_bcc_printer_section_callable_gives_whole_line():
    data = HistogramSet(("flags",), {(1,): hist(LOG2, {1: 1})})
    printer = BccHistogramPrinter(*streams(), section=lambda key: "flags = Read-%d" % key[0])
    out, _ = run_printer(printer, [Report(data)])
    assert "\n\nflags = Read-1\n     usecs" in out


def test_bcc_printer_average_line_like_biolatency_e():
    h = hist(LOG2, {5: 2, 6: 1}, total=100)
    printer = BccHistogramPrinter(*streams(), average=True)
    out, _ = run_printer(printer, [Report(HistogramSet((), {(): h}))])
    assert out.endswith("|\n\navg = 33 usecs, total: 100 usecs, count: 3\n\n")
    # nothing counted: no average line (bcc skips a zero count)
    printer = BccHistogramPrinter(*streams(), average=True)
    out, _ = run_printer(printer, [Report(HistogramSet((), {(): hist(LOG2, {})}))])
    assert out == "\n"


def test_bcc_printer_lost_events_on_stderr():
    printer = BccHistogramPrinter(*streams())
    out, err = run_printer(printer, [Report(HistogramSet((), {(): hist(LOG2, {1: 1})}), lost=3)])
    assert "3 events lost" in err and "lost" not in out


def test_printers_refuse_other_result_types():
    from kerntrace.core.results import CountSet
    with pytest.raises(TypeError):
        BccHistogramPrinter(*streams()).report(Report(CountSet()), ctx())


# ---------------------------------------------------------------------------
# Properties
any_counts = st.dictionaries(st.integers(-3, 70), st.integers(0, 1 << 64), max_size=20)
BAR = re.compile(r"\|([*# ]*)\|$")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([LOG2, LINEAR, POW2_MS]), any_counts, st.integers(1, 1000))
def test_format_never_crashes_and_bars_fit(scale, counts, step):
    h = Histogram(scale, "usecs", step=step, buckets=counts)
    lines = format_histogram(h, "usecs")
    width = {LOG2: 20 if max([i for i, c in counts.items() if c] or [0]) > 32 else 40,
             LINEAR: 40, POW2_MS: 38}[scale]
    for line in lines[1:]:
        bar = BAR.search(line).group(1)
        assert len(bar) == width
        filled = bar.rstrip(" ")
        assert " " not in filled
    total_rows = sum(n for _lo, _hi, n in bucket_rows(h))
    assert total_rows == sum(counts.values())
    if any(counts.values()):
        top_bar = max(len(BAR.search(l).group(1).rstrip()) for l in lines[1:])
        assert top_bar == width
    elif scale != POW2_MS:
        assert lines == []


def test_bucket_rows_pow2ms_in_nanoseconds():
    rows = bucket_rows(Histogram(POW2_MS, "ms", buckets={0: 1, 2: 5}))
    assert rows == [(0, NS_PER_MS, 1), (NS_PER_MS + 1, 2 * NS_PER_MS, 0),
                    (2 * NS_PER_MS + 1, 4 * NS_PER_MS, 5)]


def test_bcc_printer_section_shows_control_characters_as_question_marks():
    """A per-process histogram keyed by a task name the task chose itself:
    no newline or terminal escape of it reaches the terminal."""
    data = HistogramSet(("comm",), {("a\nb\x1b[2Jc",): hist(LOG2, {1: 1})})
    printer = BccHistogramPrinter(*streams())
    out, _ = run_printer(printer, [Report(data)])
    assert "\ncomm = a?b?[2Jc\n     usecs" in out and "\x1b" not in out
