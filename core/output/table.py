"""Tables: one row per event (biosnoop, opensnoop style) or per counted key
(funccount, syscount style), in bcc's column conventions
(../shared/reference/output-formats.md).  Every cell and key goes
through base.terminal_text: a task name with a newline or an escape
sequence prints as "?" there, never raw."""

import time

from ..results import CountSet, Record
from .base import Printer, as_text, field_label, key_order, terminal_text, time_line


def default_text(value):
    """A cell without its own fmt: numbers as integers, bytes decoded,
    a missing value as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return "%d" % value
    if isinstance(value, float):
        try:
            return "%d" % int(value)
        except (OverflowError, ValueError):   # inf, nan
            return str(value)
    return as_text(value)


class Column(object):
    """One column of an event table.

    header    column title
    field     record field name, or callable(record, ctx) -> value
    width     cell width (cells are padded, never cut, unless truncate=True)
    align     "<" left or ">" right, for the header and the cells alike
    fmt       callable(value) -> str; default: the tool's formatter for a
              named field if it has one, else default_text
    truncate  cut cells to `width` (bcc's "%-14.14s" for COMM)
    sep       what is printed between the previous column and this one: a
              space, or "" where the tool being reproduced prints none
              (bcc biosnoop's "%-7s" BYTES then "%7s" LAT(ms))

    A left-aligned last column is not padded (bcc prints PATH, ARGS as "%s").
    """

    def __init__(self, header, field, width, align="<", fmt=None, truncate=False, sep=" "):
        if align not in ("<", ">"):
            raise ValueError("align must be '<' or '>'")
        self.header = header
        self.field = field
        self.width = int(width)
        self.align = align
        self.fmt = fmt
        self.truncate = truncate
        self.sep = sep

    def pad(self, text, last=False):
        if last and self.align == "<":
            return text
        return text.ljust(self.width) if self.align == "<" else text.rjust(self.width)

    def cell(self, record, ctx):
        if callable(self.field):
            value = self.field(record, ctx)
        else:
            value = record.get(self.field)
        if self.fmt is not None:
            try:
                text = as_text(self.fmt(value))
            except Exception:
                # A value the tool did not expect (e.g. missing): show it raw.
                text = default_text(value)
        elif not callable(self.field) and self.field in getattr(ctx, "formatters", {}):
            text = field_label(ctx, self.field, value)
        else:
            text = default_text(value)
        text = terminal_text(text)
        if self.truncate:
            text = text[:self.width]
        return text


def seconds_since_first():
    """A Column field giving each record's time in seconds since the first
    record printed (bcc's TIME(s) column); format it with fmt, e.g.
    Column("TIME(s)", seconds_since_first(), 11, fmt=lambda v: "%.6f" % v)."""
    first = []

    def elapsed(record, ctx):
        if not first:
            first.append(record.ts)
        return (record.ts - first[0]) / 1e9

    return elapsed


def milliseconds(ns):
    """Nanoseconds as bcc's and perf-tools' snoop tools print milliseconds
    ("%.2f")."""
    return "%.2f" % (ns / 1e6)


def trace_seconds(ns):
    """Trace-clock nanoseconds as perf-tools prints trace timestamps:
    seconds with 6 decimals (integer arithmetic: no float rounding)."""
    sec, usec = divmod(int(ns) // 1000, 1000000)
    return "%d.%06d" % (sec, usec)


def compile_row(columns, ctx):
    """function(record, ctx) -> the row's line, as the columns' cell() and
    pad() make it, generated as one function: a busy snoop prints tens of
    thousands of rows a second and the calls per cell were most of its
    cost.  A column of a subclass is asked through its own methods.  The
    source holds only generated names; every value is in its namespace."""
    formatters = getattr(ctx, "formatters", {})
    ns = {"_as_text": as_text, "_default_text": default_text, "_terminal_text": terminal_text,
          "_field_label": field_label, "_str": str, "_int": int}
    # a Record's get() is its dict's (a C call, not a Python method call)
    ns["_Record"] = Record
    lines = ["def row(record, ctx):",
             "    get = record.fields.get if record.__class__ is _Record else record.get"]
    parts = []
    last = len(columns) - 1
    # terminal_text() maps each character to one character, so cutting and
    # padding cells commute with it: where every column is a plain Column
    # (and every separator printable) one test of the whole line replaces a
    # test per cell, the same text either way.
    whole_line = all(type(c).cell is Column.cell and type(c).pad is Column.pad
                     and c.sep.isprintable() for c in columns)
    for i, col in enumerate(columns):
        t = "t%d" % i
        ns["_col%d" % i] = col
        parts.append(col.sep.replace("%", "%%") if i else "")
        if type(col).cell is not Column.cell or type(col).pad is not Column.pad:
            lines.append("    %s = _col%d.pad(_col%d.cell(record, ctx), %s)"
                         % (t, i, i, i == last))
            parts.append("%s")
            continue
        if callable(col.field):
            ns["_field%d" % i] = col.field
            lines.append("    v = _field%d(record, ctx)" % i)
        else:
            ns["_name%d" % i] = col.field
            lines.append("    v = get(_name%d)" % i)
        if col.fmt is not None:
            ns["_fmt%d" % i] = col.fmt
            lines += ["    try:",
                      "        %s = _fmt%d(v)" % (t, i),
                      "        if %s.__class__ is not _str:" % t,
                      "            %s = _as_text(%s)" % (t, t),
                      "    except Exception:",
                      "        %s = _default_text(v)" % t]
        elif not callable(col.field) and col.field in formatters:
            lines.append("    %s = _field_label(ctx, _name%d, v)" % (t, i))
        else:
            # default_text's common cases first
            lines += ["    c = v.__class__",
                      "    if c is _str:",
                      "        %s = v" % t,
                      "    elif c is _int:",
                      "        %s = '%%d' %% v" % t,
                      "    else:",
                      "        %s = _default_text(v)" % t]
        if not whole_line:
            lines += ["    if not %s.isprintable():" % t,
                      "        %s = _terminal_text(%s)" % (t, t)]
        # cut and padded by the line's format: "%-6s" is ljust(6), "%4s"
        # rjust(4), "%-16.16s" [:16].ljust(16) (the cell is text by now)
        cut = ".%d" % col.width if col.truncate else ""
        if i == last and col.align == "<":
            parts.append("%%%ss" % cut)
        else:
            parts.append("%%%s%d%ss" % ("-" if col.align == "<" else "", col.width, cut))
    ns["_LINE"] = "".join(parts)
    lines.append("    line = _LINE %% (%s,)" % ", ".join("t%d" % i for i in range(len(columns))))
    if whole_line:
        lines += ["    if not line.isprintable():",
                  "        line = _terminal_text(line)"]
    lines.append("    return line")
    exec(compile("\n".join(lines) + "\n", "<kerntrace table row>", "exec"), ns)
    return ns["row"]


def _local_time(record, ctx):
    return time_line(time.time(), colon=False)


def _write_line(stream, text):
    stream.write(text if text.endswith("\n") else text + "\n")


class EventTablePrinter(Printer):
    """One row per Record, under a header line printed when tracing starts.
    timestamps=True adds a leading TIME column (HH:MM:SS local time at
    printing, as bcc's -T does).  The banner goes to stderr."""

    def __init__(self, out, err, columns, banner=None, timestamps=False):
        Printer.__init__(self, out, err)
        columns = list(columns)
        if timestamps:
            columns.insert(0, Column("TIME", _local_time, 8))
        if not columns:
            raise ValueError("an event table needs at least one column")
        self.columns = columns
        self.banner = banner

    def _line(self, cells):
        last = len(self.columns) - 1
        return "".join((col.sep if i else "") + col.pad(text, i == last)
                       for i, (col, text) in enumerate(zip(self.columns, cells)))

    def header(self):
        return self._line([c.header for c in self.columns])

    def row(self, record, ctx):
        return self._row_function(ctx)(record, ctx)

    def _row_function(self, ctx):
        compiled = self._compiled
        if compiled is None or compiled[0] is not ctx:
            compiled = self._compiled = (ctx, compile_row(self.columns, ctx))
        return compiled[1]

    _compiled = None        # (ctx, row function): the columns' cells as one function

    def start(self, ctx):
        if self.banner:
            _write_line(self.err, self.banner)
            # tracing is on: say so now, not when stderr's buffer fills
            self.err.flush()
        self.out.write(self.header() + "\n")

    def report(self, report, ctx):
        if not isinstance(report.data, list):
            raise TypeError("EventTablePrinter prints Record lists, got %s"
                            % type(report.data).__name__)
        self.lost(report, ctx)
        if report.data:
            # the row function itself, unless a subclass makes its rows
            row = (self._row_function(ctx) if type(self).row is EventTablePrinter.row
                   else self.row)
            self.out.write("\n".join([row(r, ctx) for r in report.data]) + "\n")


class PerfToolsEventTablePrinter(EventTablePrinter):
    """An event table as perf-tools prints it: the banner and, at the end,
    "Ending tracing..." on stdout, around the table."""

    def __init__(self, out, err, columns, banner):
        EventTablePrinter.__init__(self, out, err, columns)
        self.stdout_banner = banner

    def start(self, ctx):
        self.out.write(self.stdout_banner + "\n")
        EventTablePrinter.start(self, ctx)

    def finish(self, ctx):
        EventTablePrinter.finish(self, ctx)
        self.out.write("\nEnding tracing...\n")


class CountTablePrinter(Printer):
    """funccount / syscount style counts per key, each interval: a blank
    line, with timestamps an HH:MM:SS line, the header ("%-36s %8s" by
    default) and one row per non-zero key, ascending by count (descending
    with descending=True); top=N keeps the N largest counts.

    key_format  callable(key tuple) -> str; default: the key's values, each
                through the tool's formatter, joined by a space
    key_width / value_width  column widths (syscount uses 22)
    """

    def __init__(self, out, err, key_header, value_header="COUNT", key_format=None,
                 banner=None, timestamps=False, top=None, descending=False,
                 key_width=36, value_width=8):
        Printer.__init__(self, out, err)
        self.key_header = key_header
        self.value_header = value_header
        self.key_format = key_format
        self.banner = banner
        self.timestamps = timestamps
        self.top = top
        self.descending = descending
        self.key_width = key_width
        self.value_width = value_width

    def start(self, ctx):
        if self.banner:
            _write_line(self.err, self.banner)

    def key_text(self, key_names, key, ctx):
        if not isinstance(key, tuple):
            key = (key,)
        if self.key_format is not None:
            return terminal_text(as_text(self.key_format(key)))
        names = list(key_names) + [None] * (len(key) - len(key_names))
        return terminal_text(" ".join(field_label(ctx, name, value)
                                      for name, value in zip(names, key)))

    def rows(self, counts, ctx):
        """[(key text, count)] in print order."""
        n = counts.counts
        # Rank largest first to apply top; ties in key order either way.
        keys = sorted((k for k in n if n[k]), key=lambda k: (-n[k], key_order(k)))
        if self.top is not None:
            keys = keys[:self.top]
        if not self.descending:
            keys.sort(key=lambda k: (n[k], key_order(k)))
        return [(self.key_text(counts.key_names, k, ctx), counts.counts[k]) for k in keys]

    def report(self, report, ctx):
        if not isinstance(report.data, CountSet):
            raise TypeError("CountTablePrinter prints CountSet reports, got %s"
                            % type(report.data).__name__)
        self.lost(report, ctx)
        lines = [""]
        if self.timestamps:
            lines.append(time_line(report.end, colon=False))
        lines.append("%-*s %*s" % (self.key_width, self.key_header,
                                   self.value_width, self.value_header))
        for text, count in self.rows(report.data, ctx):
            lines.append("%-*s %*d" % (self.key_width, text, self.value_width, count))
        self.out.write("\n".join(lines) + "\n")
