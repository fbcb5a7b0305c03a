"""Prometheus text exposition (--prometheus), or OpenMetrics text.

After every interval the printer writes one complete exposition:

    <prefix>_<tool>_<unit>               histogram, one series per key
        _bucket{<key labels>,le="<inclusive upper bound>"}  ascending,
        cumulative, ending with le="+Inf" (== _count); _sum; _count
    <prefix>_<tool>_events_total         counter per key (count tools; for
                                         event tools the number of events)
    <prefix>_<tool>_lost_events_total    counter: events the kernel dropped
    <prefix>_<tool>_unmatched_events_total  counter: pair ends without a start
    <prefix>_<tool>_dropped_starts_total    counter: pair starts dropped, too
                                         many waiting for their end

kerntrace reports are per-interval deltas, but Prometheus counters and
histograms are cumulative: this printer ACCUMULATES every report since the
run started (bucket counts, sums, counts, lost events), so each exposition
holds the totals so far, and a key or bucket once seen stays in every later
exposition.  A restart of kerntrace is a counter reset, which Prometheus'
rate() handles.

Bucket bounds are those of core.output.histograms.bucket_rows: inclusive
integer upper bounds in the histogram's unit (usecs bucket [2, 3] has
le="3"); perf-tools pow2ms histograms are exposed in nanoseconds
(<prefix>_iolatency_nsecs, le="1e+06" for the 0 -> 1 ms row), like JSON.
`le` values are rendered as Go's %g (what the Go client and OpenMetrics'
canonical numbers use), with ".0" appended in OpenMetrics mode.

Key labels come from the result's key_names (names sanitized to
[a-zA-Z_][a-zA-Z0-9_]*), their values through the tool's formatters and
escaped (backslash, double quote, newline).  openmetrics=True writes
OpenMetrics text: counter families without the _total suffix in their
metadata, TYPE before HELP, and "# EOF" closing each exposition.

textfile=PATH writes each exposition to PATH atomically instead of stdout
(a temporary file in the same directory, then rename), the pattern
node_exporter's textfile collector expects; name it *.prom.
"""

import decimal
import math
import os
import re
import tempfile
import time

from ..errors import KerntraceError, OptionError
from ..results import CountSet, HistogramSet
from .base import MachineReadablePrinter, as_text, field_label
from .histograms import bucket_rows, bucket_unit

# Event (records) tools report every ~0.1 s; an exposition that often would
# flood stdout, so for them the printer writes at most this often (and once
# more at the end).
RECORDS_EXPOSITION_S = 1.0

_METRIC_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")
# Label names the histogram type uses itself or Prometheus reserves.
_RESERVED_LABELS = ("le", "quantile")


def metric_name(name):
    """`name` made a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*."""
    name = _METRIC_BAD.sub("_", as_text(name)) or "_"
    return "_" + name if name[0].isdigit() else name


def label_name(name):
    """`name` made a valid, non-reserved label name: [a-zA-Z_][a-zA-Z0-9_]*,
    not starting with "__", not "le"/"quantile" (those become key_le ...)."""
    name = _LABEL_BAD.sub("_", as_text(name)) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name.startswith("__") or name in _RESERVED_LABELS:
        name = "key_" + name.lstrip("_")
    return name


def escape_label_value(value):
    return as_text(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text):
    return as_text(text).replace("\\", "\\\\").replace("\n", "\\n")


def go_float(value):
    """A number as Go's strconv.FormatFloat(v, 'g', -1, 64) renders it:
    shortest round-trip digits, exponent form from 1e+06 (and below 1e-04)."""
    f = float(value)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(f)).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    text = "".join(str(d) for d in digits)
    exp10 = len(digits) - 1 + exponent      # power of ten of the first digit
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = "%se%s%02d" % (mantissa, "-" if exp10 < 0 else "+", abs(exp10))
    elif exp10 >= len(text) - 1:
        out = text + "0" * (exp10 - len(text) + 1)
    elif exp10 >= 0:
        out = text[:exp10 + 1] + "." + text[exp10 + 1:]
    else:
        out = "0." + "0" * (-exp10 - 1) + text
    return ("-" if sign else "") + out


def _labels_text(labels):
    if not labels:
        return ""
    return "{" + ",".join('%s="%s"' % (n, escape_label_value(v)) for n, v in labels) + "}"


class _HistogramSeries(object):
    """Cumulative state of one histogram series."""

    __slots__ = ("buckets", "total", "count")

    def __init__(self):
        self.buckets = {}     # inclusive upper bound -> count in that bucket
        self.total = 0
        self.count = 0


class PrometheusPrinter(MachineReadablePrinter):
    def __init__(self, out, err, openmetrics=False, textfile=None, prefix="kerntrace"):
        MachineReadablePrinter.__init__(self, out, err)
        self.openmetrics = bool(openmetrics)
        self.prefix = metric_name(prefix)
        self.textfile = textfile
        if textfile is not None:
            directory = os.path.dirname(os.path.abspath(textfile))
            if not os.path.isdir(directory):
                raise OptionError("--prometheus-file: cannot write %s: no directory %s"
                                  % (textfile, directory))
            if os.path.isdir(textfile):
                raise OptionError("--prometheus-file: cannot write %s: it is a directory"
                                  % textfile)
        self.tool = None
        self.histograms = {}  # metric name -> {label tuple: _HistogramSeries}
        self.units = {}       # metric name -> unit of its bucket bounds
        self.events = None    # label tuple -> count, once a count/event report came
        self.lost_total = 0
        self.unmatched_total = 0
        self.dropped_starts_total = 0
        self._pending = False
        self._last_write = None

    # -- accumulating ---------------------------------------------------
    @staticmethod
    def _labels(key_names, key, ctx):
        if not isinstance(key, tuple):
            key = (key,)
        names = list(key_names) + ["key%d" % i for i in range(len(key_names), len(key))]
        labels, used = [], set()
        for name, value in zip(names, key):
            lname = label_name(name)
            while lname in used:
                lname += "_"
            used.add(lname)
            labels.append((lname, field_label(ctx, name, value)))
        return tuple(labels)

    def _add_histograms(self, hset, ctx):
        for key, hist in hset.histograms.items():
            unit = as_text(bucket_unit(hist))
            name = metric_name("%s_%s_%s" % (self.prefix, self.tool, unit))
            self.units[name] = unit
            series = self.histograms.setdefault(name, {})
            s = series.setdefault(self._labels(hset.key_names, key, ctx), _HistogramSeries())
            for _low, high, count in bucket_rows(hist):
                s.buckets[high] = s.buckets.get(high, 0) + count
                s.count += count
            s.total += hist.total

    def _add_counts(self, labels, n):
        if self.events is None:
            self.events = {}
        self.events[labels] = self.events.get(labels, 0) + n

    def report(self, report, ctx):
        self.tool = self.tool or as_text(report.tool or getattr(ctx, "tool", "") or "tool")
        self.lost(report, ctx)
        self.lost_total += report.lost
        self.unmatched_total += report.unmatched
        self.dropped_starts_total += report.dropped_starts
        data = report.data
        if isinstance(data, HistogramSet):
            self._add_histograms(data, ctx)
        elif isinstance(data, CountSet):
            if self.events is None:
                self.events = {}
            for key, n in data.counts.items():
                self._add_counts(self._labels(data.key_names, key, ctx), n)
        elif isinstance(data, list):
            self._add_counts((), len(data))
        else:
            raise TypeError("PrometheusPrinter cannot print %s" % type(data).__name__)
        self._pending = True
        now = time.monotonic()
        if (not isinstance(data, list) or self._last_write is None
                or now - self._last_write >= RECORDS_EXPOSITION_S):
            self._write(self.exposition())
            self._last_write = now
            self._pending = False

    def finish(self, ctx):
        if self._pending:
            self._write(self.exposition())
            self._pending = False

    # -- rendering ------------------------------------------------------
    def _le(self, bound):
        text = go_float(bound)
        if self.openmetrics and not any(c in text for c in ".eIN"):
            text += ".0"
        return text

    def _family(self, lines, name, kind, help_text):
        # OpenMetrics names a counter family without its _total suffix.
        family = name[:-len("_total")] if self.openmetrics and kind == "counter" else name
        help_line = "# HELP %s %s" % (family, escape_help(help_text))
        type_line = "# TYPE %s %s" % (family, kind)
        lines.extend([type_line, help_line] if self.openmetrics else [help_line, type_line])

    def exposition(self):
        """The full exposition text of everything accumulated so far."""
        tool = self.tool or "tool"
        lines = []
        for name in sorted(self.histograms):
            self._family(lines, name, "histogram",
                         "%s: histogram of values in %s (bucket le = inclusive upper "
                         "bound), cumulative since the run started" % (tool, self.units[name]))
            series = self.histograms[name]
            for labels in sorted(series):
                s = series[labels]
                cumulative = 0
                for high in sorted(s.buckets):
                    cumulative += s.buckets[high]
                    lines.append("%s_bucket%s %d" % (
                        name, _labels_text(labels + (("le", self._le(high)),)), cumulative))
                lines.append("%s_bucket%s %d" % (name, _labels_text(labels + (("le", "+Inf"),)),
                                                 s.count))
                lines.append("%s_sum%s %d" % (name, _labels_text(labels), s.total))
                lines.append("%s_count%s %d" % (name, _labels_text(labels), s.count))
        base = metric_name("%s_%s" % (self.prefix, tool))
        if self.events is not None:
            name = base + "_events_total"
            self._family(lines, name, "counter", "%s: events counted since the run started"
                         % tool)
            for labels in sorted(self.events):
                lines.append("%s%s %d" % (name, _labels_text(labels), self.events[labels]))
        self._family(lines, base + "_lost_events_total", "counter",
                     "%s: events the kernel dropped (a buffer overran, or a BPF program was"
                     " skipped) since the run started" % tool)
        lines.append("%s_lost_events_total %d" % (base, self.lost_total))
        self._family(lines, base + "_unmatched_events_total", "counter",
                     "%s: end events seen without their start event since the run started"
                     % tool)
        lines.append("%s_unmatched_events_total %d" % (base, self.unmatched_total))
        self._family(lines, base + "_dropped_starts_total", "counter",
                     "%s: pair start events dropped because too many were waiting for their "
                     "end, since the run started" % tool)
        lines.append("%s_dropped_starts_total %d" % (base, self.dropped_starts_total))
        if self.openmetrics:
            lines.append("# EOF")
        return "\n".join(lines) + "\n"

    # -- writing --------------------------------------------------------
    def _write(self, text):
        if self.textfile is not None:
            self._write_textfile(text)
            return
        try:
            self.out.write(text)
        except UnicodeEncodeError:
            # A non-UTF-8 locale: the format is UTF-8 whatever the terminal says.
            self.out.flush()
            self.out.buffer.write(text.encode("utf-8"))
        self.out.flush()

    def _write_textfile(self, text):
        path = self.textfile
        directory = os.path.dirname(os.path.abspath(path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp", prefix=".%s.kerntrace-%d-"
                                       % (os.path.basename(path), os.getpid()))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            # mkstemp makes it 0600; the collector may read as another user.
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
            tmp = None
        except (IOError, OSError) as e:
            raise KerntraceError("cannot write %s: %s" % (path, e.strerror or e))
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
