"""Event and count tables in bcc's column conventions (output-formats.md)."""

import io
import re
import time

import pytest

from kerntrace.core.model import Schedule
from kerntrace.core.output.base import RunContext
from kerntrace.core.output.table import (Column, CountTablePrinter, EventTablePrinter,
                                         seconds_since_first)
from kerntrace.core.results import CountSet, HistogramSet, Record, Report


def ctx(formatters=None):
    return RunContext("tool", "ebpf", Schedule(), formatters=formatters)


def run(printer, reports, context=None):
    context = context or ctx()
    printer.start(context)
    for r in reports:
        printer.report(r, context)
    printer.finish(context)
    return printer.out.getvalue(), printer.err.getvalue()


def streams():
    return io.StringIO(), io.StringIO()


# ---------------------------------------------------------------------------
# Event tables
def biosnoop_columns():
    return [
        Column("TIME(s)", seconds_since_first(), 11, fmt=lambda v: "%.6f" % v),
        Column("COMM", "comm", 14, truncate=True),
        Column("PID", "pid", 7),
        Column("DISK", "dev", 9),
        Column("T", "rwbs", 1),
        Column("SECTOR", "sector", 10),
        Column("BYTES", "bytes", 7),
        # bcc 0.26 prints "%-7s" BYTES then "%7s" LAT(ms) with no space between
        Column("LAT(ms)", "latency", 7, align=">", fmt=lambda ns: "%.2f" % (ns / 1e6), sep=""),
    ]


def test_biosnoop_header_and_rows_match_bcc_printf():
    records = [Record(5000000000, dict(comm="kworker/u4:2-events_unbound", pid=123, dev=253,
                                       rwbs="W", sector=2048, bytes=4096, latency=1234567)),
               Record(5001500000, dict(comm="dd", pid=9, dev=8, rwbs="R", sector=8,
                                       bytes=512, latency=80000))]
    names = {253: "vda", 8: "sda"}
    printer = EventTablePrinter(*streams(), biosnoop_columns(),
                                banner="Tracing block I/O... Hit Ctrl-C to end.")
    out, err = run(printer, [Report(records)], ctx({"dev": names.get}))
    assert err == "Tracing block I/O... Hit Ctrl-C to end.\n"
    # bcc 0.26 tools/biosnoop.py's printf formats
    header = "%-11s %-14s %-7s %-9s %-1s %-10s %-7s%7s" % (
        "TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES", "LAT(ms)")
    assert header == "TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  LAT(ms)"
    row = "%-11.6f %-14.14s %-7s %-9s %-1s %-10s %-7s%7.2f"
    assert out.splitlines() == [
        header,
        row % (0.0, "kworker/u4:2-events_unbound", 123, "vda", "W", 2048, 4096, 1.234567),
        row % (0.0015, "dd", 9, "sda", "R", 8, 512, 0.08),
    ]


def test_opensnoop_layout_last_column_unpadded_and_undecodable_bytes():
    cols = [Column("PID", "pid", 6), Column("COMM", "comm", 16), Column("FD", "fd", 4, align=">"),
            Column("ERR", "err", 3, align=">"), Column("PATH", "path", 0)]
    printer = EventTablePrinter(*streams(), cols)
    rec = Record(1, dict(pid=42, comm=b"caf\xc3\xa9", fd=-1, err=2, path=b"/tmp/\xff\xfebad"))
    out, _ = run(printer, [Report([rec])])
    lines = out.splitlines()
    assert lines[0] == "PID    COMM               FD ERR PATH"
    assert lines[1] == "%-6d %-16s %4d %3d %s" % (42, "caf\u00e9", -1, 2, "/tmp/\ufffd\ufffdbad")


def test_cells_use_formatter_fmt_and_callable_fields():
    cols = [Column("DEV", "dev", 5), Column("RAW", lambda r, c: r["dev"] * 2, 5),
            Column("HEX", "dev", 6, fmt=hex), Column("MISSING", "nope", 7),
            Column("F", "fl", 4, align=">")]
    printer = EventTablePrinter(*streams(), cols)
    out, _ = run(printer, [Report([Record(0, dict(dev=8, fl=2.75))])],
                 ctx({"dev": lambda d: "sd%s" % "abc"[d // 8 - 1]}))
    assert out.splitlines()[1] == "sda   16    0x8    -          2"


def test_timestamps_add_a_local_time_column():
    printer = EventTablePrinter(*streams(), [Column("PID", "pid", 6)], timestamps=True)
    out, _ = run(printer, [Report([Record(0, dict(pid=1))])])
    head, row = out.splitlines()
    assert head == "TIME     PID"
    assert re.match(r"^\d\d:\d\d:\d\d 1$", row)


def test_event_table_lost_events_warn_on_stderr():
    printer = EventTablePrinter(*streams(), [Column("PID", "pid", 6)])
    out, err = run(printer, [Report([], lost=12)])
    assert out == "PID\n" and "12 events lost" in err


def test_dropped_starts_warn_on_stderr_not_stdout():
    printer = EventTablePrinter(*streams(), [Column("PID", "pid", 6)])
    out, err = run(printer, [Report([], dropped_starts=7)])
    assert out == "PID\n" and "7 starts dropped" in err and "lost" not in err


def test_bad_alignment_is_rejected():
    with pytest.raises(ValueError):
        Column("X", "x", 3, align="^")


# ---------------------------------------------------------------------------
# Count tables
def test_funccount_layout_ascending_zero_rows_skipped():
    counts = CountSet(("func",), {("vfs_read",): 35, ("vfs_write",): 0, ("vfs_open",): 3,
                                  ("vfs_fsync",): 35})
    printer = CountTablePrinter(*streams(), key_header="FUNC", banner="Tracing 4 functions")
    out, err = run(printer, [Report(counts)])
    assert err == "Tracing 4 functions\n"
    assert out == ("\n"
                   "FUNC                                    COUNT\n"
                   "%-36s %8d\n" % ("vfs_open", 3)
                   + "%-36s %8d\n" % ("vfs_fsync", 35)
                   + "%-36s %8d\n" % ("vfs_read", 35))


def test_syscount_top_descending_with_key_format_and_time_line():
    counts = CountSet(("nr",), {(i,): 10 * i for i in range(1, 15)})
    when = 1700000000.0
    printer = CountTablePrinter(*streams(), key_header="SYSCALL", key_width=22, top=10,
                                descending=True, timestamps=True,
                                key_format=lambda key: "sys_%d" % key[0])
    out, _ = run(printer, [Report(counts, end=when)])
    lines = out.splitlines()
    assert lines[0] == "" and lines[1] == time.strftime("%H:%M:%S", time.localtime(when))
    assert lines[2] == "SYSCALL                   COUNT"
    assert lines[3:] == ["%-22s %8d" % ("sys_%d" % i, 10 * i) for i in range(14, 4, -1)]


def test_top_keeps_largest_even_ascending():
    counts = CountSet(("k",), {("a",): 1, ("b",): 5, ("c",): 3})
    printer = CountTablePrinter(*streams(), key_header="K", top=2)
    out, _ = run(printer, [Report(counts)])
    assert [l.split()[0] for l in out.splitlines()[2:]] == ["c", "b"]


def test_multi_part_keys_formatted_and_joined():
    counts = CountSet(("comm", "dev"), {(b"dd", 8): 2, ("cp", 253): 1})
    printer = CountTablePrinter(*streams(), key_header="COMM DISK", value_header="IOS")
    out, _ = run(printer, [Report(counts)], ctx({"dev": {8: "sda", 253: "vda"}.get}))
    assert out.splitlines()[2:] == ["%-36s %8d" % ("cp vda", 1), "%-36s %8d" % ("dd sda", 2)]


def test_an_unknown_key_value_prints_as_a_dash_never_none():
    # tpcount --by pid: a thread whose process nobody knows any more
    counts = CountSet(("pid",), {(None,): 3, (42,): 1})
    printer = CountTablePrinter(*streams(), key_header="PID")
    out, _ = run(printer, [Report(counts)], ctx({"pid": lambda v: "%05d" % v}))
    assert out.splitlines()[2:] == ["%-36s %8d" % ("00042", 1), "%-36s %8d" % ("-", 3)]


def test_count_table_interval_without_counts_prints_header_only():
    printer = CountTablePrinter(*streams(), key_header="EVENT")
    out, _ = run(printer, [Report(CountSet(("event",)))])
    assert out == "\n%-36s %8s\n" % ("EVENT", "COUNT")


def test_count_table_refuses_histograms():
    with pytest.raises(TypeError):
        CountTablePrinter(*streams(), key_header="K").report(Report(HistogramSet()), ctx())


# ---------------------------------------------------------------------------
# Kernel strings on a terminal
NASTY = "ev\x1b]0;pwned\x07il\nx\u202e"     # OSC title, BEL, newline, bidi override


def test_event_rows_show_non_printable_characters_as_question_marks():
    cols = [Column("COMM", "comm", 16, truncate=True), Column("PID", "pid", 6)]
    out, _ = run(EventTablePrinter(*streams(), cols),
                 [Report([Record(0, dict(comm=NASTY, pid=7)),
                          Record(1, dict(comm=b"tab\there", pid=8))])])
    assert out.splitlines() == ["COMM             PID",
                                "ev?]0;pwned?il?x 7",     # one "?" per character: aligned
                                "tab?here         8"]


def test_count_keys_show_non_printable_characters_as_question_marks():
    counts = CountSet(("comm",), {(NASTY,): 3})
    out, _ = run(CountTablePrinter(*streams(), key_header="COMM"), [Report(counts)])
    assert out.splitlines()[2] == "%-36s %8d" % ("ev?]0;pwned?il?x?", 3)
    out, _ = run(CountTablePrinter(*streams(), key_header="COMM", key_format=lambda k: k[0]),
                 [Report(counts)])
    assert "\x1b" not in out and "ev?]0;pwned?il?x?" in out


def _cell_by_cell(printer, record, context):
    """A row as the columns' own cell() and pad() make it, one call each."""
    return printer._line([c.cell(record, context) for c in printer.columns])


class _Upper(Column):
    def cell(self, record, ctx):
        return Column.cell(self, record, ctx).upper()


def test_generated_rows_are_the_columns_own_cells_byte_for_byte():
    # Every kind of value and column the cell path handles: formatter,
    # fmt (and a fmt that fails), callable field, truncation, alignment,
    # separators (with a "%"), bytes, None, bool, float, inf, ints, control
    # characters, a column subclass with its own cell().
    def bad_fmt(v):
        return "%.1f" % v
    cols = [Column("TIME(s)", seconds_since_first(), 11, fmt=lambda v: "%.6f" % v),
            Column("COMM", "comm", 6, truncate=True),
            Column("DEV", "dev", 5, align=">"),
            Column("N", "n", 4, sep="%"),
            Column("F", "f", 6, fmt=bad_fmt),
            Column("UP", "comm", 4, truncate=True, sep=" | "),
            _Upper("X", "x", 3),
            Column("PATH", "path", 8)]
    values = [None, True, False, 0, -3, 2 ** 70, 1.5, float("inf"), "s", "tab\there",
              b"b\xffytes", "a-very-long-task-name\x1b[31m", "x%sy"]
    records = [Record(1000 + i, dict(comm=v, dev=v, n=v, f=v, x=v, path=v))
               for i, v in enumerate(values)]
    printer = EventTablePrinter(*streams(), cols)
    context = ctx({"dev": lambda d: "disk%d" % d})
    expected = [_cell_by_cell(printer, r, context) for r in records]
    # (the TIME column counts from the first row: reset its memory)
    cols[0] = Column("TIME(s)", seconds_since_first(), 11, fmt=lambda v: "%.6f" % v)
    printer = EventTablePrinter(*streams(), cols)
    assert [printer.row(r, context) for r in records] == expected
    assert "?" in expected[9] and "%" in expected[0]


@pytest.mark.parametrize("with_subclass", [False, True])
def test_rows_escaped_as_one_line_are_the_cells_own_byte_for_byte(with_subclass):
    # Plain columns only: the generated row escapes the whole line at once
    # (with a subclass column it escapes cell by cell); both must be what
    # the cells make one by one, through report() too.
    cols = [Column("COMM", "comm", 6, truncate=True),
            Column("DEV", "dev", 5, align=">"),
            Column("N", "n", 4, sep="%"),
            Column("PATH", "path", 8)]
    if with_subclass:
        cols.insert(2, _Upper("X", "x", 3))
    values = [None, True, 0, -3, 2 ** 70, 1.5, float("inf"), "s", "tab\there",
              b"b\xffytes", "a-very-long-task-name\x1b[31m", "x%sy", NASTY, "\u202e" * 9]
    records = [Record(i, dict(comm=v, dev=v, n=v, x=v, path=v)) for i, v in enumerate(values)]
    printer = EventTablePrinter(*streams(), cols)
    context = ctx({})
    expected = [_cell_by_cell(printer, r, context) for r in records]
    assert [printer.row(r, context) for r in records] == expected
    assert all(line.isprintable() for line in expected)
    out, _ = run(EventTablePrinter(*streams(), cols), [Report(records[:7]), Report(records[7:])])
    assert out.splitlines()[1:] == expected
