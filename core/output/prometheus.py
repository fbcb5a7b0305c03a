"""Prometheus text exposition (--prometheus), or OpenMetrics text.

After every interval the printer writes one complete exposition.  Names
follow Prometheus' conventions: they say what is measured (the tool's
declared core.metrics.Metric), in base units, and every series carries a
`tool` label:

    kerntrace_<histogram>_seconds|_bytes   histogram per key: _bucket{le=...}
                                  ascending, cumulative, ending with
                                  le="+Inf" (== _count); _sum; _count
    kerntrace_<counter>_total     counter per key (count tools; for event
                                  tools the number of events)
    kerntrace_lost_events_total, kerntrace_unmatched_events_total,
    kerntrace_dropped_starts_total, kerntrace_folded_series_total,
    kerntrace_folded_events_total          counters of the run itself

(a tool without a Metric: kerntrace_<tool>_<unit> and
kerntrace_<tool>_events_total).  docs/metrics.md lists every metric.

kerntrace reports are per-interval deltas, but Prometheus counters and
histograms are cumulative: this printer ACCUMULATES every report since the
run started (bucket counts, sums, counts, lost events), so each exposition
holds the totals so far, and a key or bucket once seen stays in every later
exposition.  A restart of kerntrace is a counter reset, which Prometheus'
rate() handles.

Histogram values are integers of a smallest unit (nanoseconds, bytes)
divided by the histogram's unit (usecs: // 1000).  A bucket [low, high] in
that unit therefore holds raw values up to (high + 1) * unit - 1, and that,
in the base unit, is its `le` (usecs bucket [2, 3]: le="3.999e-06"); pow2ms
rows are exact already (le="0.001" for 0 -> 1 ms).  _sum is the sum of the
values in the histogram's unit, converted: a lower bound when the unit is
coarser than nanoseconds or bytes.  `le` values are rendered as Go's %g
(what the Go client and OpenMetrics' canonical numbers use), with ".0"
appended in OpenMetrics mode.

Key labels come from the tool's Metric (dev -> device) or the key names
(sanitized to [a-zA-Z_][a-zA-Z0-9_]*), their values through the tool's
formatters and escaped (backslash, double quote, newline).  A family keeps
at most `max_series` label sets (MAX_SERIES by default): observations of
any further label set go to the family's series whose key labels are all
"other", and kerntrace_folded_series_total / _folded_events_total count
them.  openmetrics=True writes OpenMetrics text: counter families without
the _total suffix in their metadata, TYPE before HELP, a UNIT line for
histograms in base units, and "# EOF" closing each exposition.

textfile=PATH writes each exposition to PATH atomically instead of stdout
(a temporary file in the same directory, then rename), the pattern
node_exporter's textfile collector expects; name it *.prom.  stdout=False
writes nothing to stdout (an exporter that only serves /metrics); the
latest exposition is always available from latest().
"""

import decimal
import math
import os
import re
import tempfile
import threading
import time

from ..errors import KerntraceError, OptionError
from ..metrics import MAX_SERIES, RESERVED_LABELS
from ..results import CountSet, HistogramSet
from .base import MachineReadablePrinter, as_text, field_label
from .histograms import bucket_rows, bucket_unit

# Event (records) tools report every ~0.1 s; an exposition that often would
# flood stdout, so for them the printer writes at most this often (and once
# more at the end).
RECORDS_EXPOSITION_S = 1.0

FOLDED_VALUE = "other"

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_METRIC_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")

# A histogram unit -> (base unit, raw units per histogram unit, base units
# per raw unit).  Raw values are integer nanoseconds or bytes.
_NS = decimal.Decimal("1e-9")
_BASE_UNITS = {
    "nsecs": ("seconds", 1, _NS),
    "usecs": ("seconds", 1000, _NS),
    "msecs": ("seconds", 1000000, _NS),
    "bytes": ("bytes", 1, decimal.Decimal(1)),
    "kbytes": ("bytes", 1024, decimal.Decimal(1)),
}

# The counters of the run itself: (name, help).  Their help texts, like
# every family's, never name a tool: files of several tools may share them.
RUN_COUNTERS = (
    ("lost_events", "Events the kernel dropped (a buffer overran, or a BPF program was "
                    "skipped) since the run started."),
    ("unmatched_events", "End events seen without their start event since the run started."),
    ("dropped_starts", "Pair start events dropped because too many were waiting for their "
                       "end, since the run started."),
    ("folded_series", "Label sets beyond the series limit, folded into the series labelled "
                      "\"other\" (counted once per interval they appeared in)."),
    ("folded_events", "Observations counted in the \"other\" series because their label set "
                      "was beyond the series limit."),
)


def metric_name(name):
    """`name` made a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*."""
    name = _METRIC_BAD.sub("_", as_text(name)) or "_"
    return "_" + name if name[0].isdigit() else name


def label_name(name):
    """`name` made a valid, non-reserved label name: [a-zA-Z_][a-zA-Z0-9_]*,
    not starting with "__", not le/quantile/tool (those become key_le ...)."""
    name = _LABEL_BAD.sub("_", as_text(name)) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name.startswith("__") or name in RESERVED_LABELS:
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


def base_unit(unit):
    """(base unit or None, raw units per `unit`, base units per raw unit)."""
    return _BASE_UNITS.get(as_text(unit).lower(), (None, 1, decimal.Decimal(1)))


def _labels_text(labels):
    if not labels:
        return ""
    return "{" + ",".join('%s="%s"' % (n, escape_label_value(v)) for n, v in labels) + "}"


class _HistogramSeries(object):
    """Cumulative state of one histogram series."""

    __slots__ = ("buckets", "total", "count")

    def __init__(self):
        self.buckets = {}     # inclusive upper bound (histogram unit) -> count
        self.total = 0
        self.count = 0


class _Family(object):
    """One histogram family: its unit and its series by label tuple."""

    __slots__ = ("unit", "per", "scale", "base", "series")

    def __init__(self, unit):
        self.unit = unit
        self.base, self.per, self.scale = base_unit(unit)
        self.series = {}


class PrometheusPrinter(MachineReadablePrinter):
    def __init__(self, out, err, openmetrics=False, textfile=None, prefix="kerntrace",
                 metric=None, max_series=MAX_SERIES, stdout=True):
        MachineReadablePrinter.__init__(self, out, err)
        self.openmetrics = bool(openmetrics)
        self.prefix = metric_name(prefix)
        self.metric = metric
        self.max_series = max_series
        self.stdout = stdout
        self.textfile = textfile
        if textfile is not None and self.openmetrics:
            raise OptionError("--openmetrics: node_exporter's textfile collector reads "
                              "Prometheus text only; use it with --prometheus or "
                              "--prometheus-listen")
        if textfile is not None:
            directory = os.path.dirname(os.path.abspath(textfile))
            if not os.path.isdir(directory):
                raise OptionError("--prometheus-file: cannot write %s: no directory %s"
                                  % (textfile, directory))
            if os.path.isdir(textfile):
                raise OptionError("--prometheus-file: cannot write %s: it is a directory"
                                  % textfile)
        self.tool = None
        self.histograms = {}  # metric name -> _Family
        self.events = None    # label tuple -> count, once a count/event report came
        self.lost_events_total = 0
        self.unmatched_events_total = 0
        self.dropped_starts_total = 0
        self.folded_series_total = 0
        self.folded_events_total = 0
        self._pending = False
        self._last_write = None
        self._latest = {}     # openmetrics flag -> the latest exposition text
        self._lock = threading.Lock()
        self._in_report = False
        self._rewrite_asked = False
        # Render OpenMetrics and Prometheus text both (a /metrics endpoint
        # that negotiates the format by the scraper's Accept header).
        self.keep_both = False

    # -- names ----------------------------------------------------------
    def _histogram_name(self, family):
        measured = self.metric.histogram if self.metric and self.metric.histogram else self.tool
        return metric_name("%s_%s_%s" % (self.prefix, measured, family.base or family.unit))

    def _counter_name(self):
        if self.metric is not None and self.metric.counter:
            return metric_name("%s_%s_total" % (self.prefix, self.metric.counter))
        return metric_name("%s_%s_events_total" % (self.prefix, self.tool))

    # -- accumulating ---------------------------------------------------
    def _labels(self, key_names, key, ctx):
        if not isinstance(key, tuple):
            key = (key,)
        names = list(key_names) + ["key%d" % i for i in range(len(key_names), len(key))]
        renamed = self.metric.labels if self.metric is not None else {}
        labels, used = [("tool", self.tool)], set(["tool"])
        for name, value in zip(names, key):
            lname = label_name(renamed.get(name, name))
            while lname in used:
                lname += "_"
            used.add(lname)
            labels.append((lname, field_label(ctx, name, value)))
        return tuple(labels)

    def _slot(self, table, labels, folded, n):
        """`labels`, or the family's "other" label set once `table` holds
        max_series label sets and `labels` is not among them."""
        if labels in table or len(table) < self.max_series or len(labels) <= 1:
            return labels
        folded.add(labels)
        self.folded_events_total += n
        return labels[:1] + tuple((name, FOLDED_VALUE) for name, _ in labels[1:])

    def _add_histograms(self, hset, ctx, folded):
        for key, hist in hset.histograms.items():
            unit = as_text(bucket_unit(hist))
            family = _Family(unit)
            name = self._histogram_name(family)
            family = self.histograms.setdefault(name, family)
            rows = bucket_rows(hist)
            n = sum(count for _low, _high, count in rows)
            labels = self._slot(family.series, self._labels(hset.key_names, key, ctx),
                                folded, n)
            s = family.series.get(labels)
            if s is None:
                s = family.series[labels] = _HistogramSeries()
            for _low, high, count in rows:
                s.buckets[high] = s.buckets.get(high, 0) + count
            s.count += n
            s.total += hist.total

    def _add_counts(self, labels, n, folded):
        if self.events is None:
            self.events = {}
        labels = self._slot(self.events, labels, folded, n)
        self.events[labels] = self.events.get(labels, 0) + n

    def report(self, report, ctx):
        self._in_report = True
        try:
            self._report(report, ctx)
        finally:
            self._in_report = False
        if self._rewrite_asked:
            self.rewrite()

    def _report(self, report, ctx):
        self.tool = self.tool or as_text(report.tool or getattr(ctx, "tool", "") or "tool")
        self.lost(report, ctx)
        self.lost_events_total += report.lost
        self.unmatched_events_total += report.unmatched
        self.dropped_starts_total += report.dropped_starts
        data = report.data
        folded = set()
        if isinstance(data, HistogramSet):
            self._add_histograms(data, ctx, folded)
        elif isinstance(data, CountSet):
            if self.events is None:
                self.events = {}
            for key, n in data.counts.items():
                self._add_counts(self._labels(data.key_names, key, ctx), n, folded)
        elif isinstance(data, list):
            self._add_counts((("tool", self.tool),), len(data), folded)
        else:
            raise TypeError("PrometheusPrinter cannot print %s" % type(data).__name__)
        self.folded_series_total += len(folded)
        self._pending = True
        now = time.monotonic()
        if (not isinstance(data, list) or self._last_write is None
                or now - self._last_write >= RECORDS_EXPOSITION_S):
            self._publish()
            self._last_write = now
            self._pending = False

    def finish(self, ctx):
        if self._pending:
            self._publish()
            self._pending = False

    def rewrite(self):
        """Write the latest exposition again (SIGHUP in exporter mode): a
        textfile someone removed or rotated away is back at once.  Called
        while a report is being added, it waits for that report's end."""
        if self._in_report:
            self._rewrite_asked = True
            return
        self._rewrite_asked = False
        if self.tool is not None:
            self._publish(stdout=False)

    def latest(self, openmetrics=False):
        """The latest exposition (Prometheus text, or OpenMetrics), or None
        before the first report; safe to call from another thread."""
        with self._lock:
            return self._latest.get(bool(openmetrics))

    # -- rendering ------------------------------------------------------
    def _le(self, text, openmetrics):
        if openmetrics and not any(c in text for c in ".eIN"):
            text += ".0"
        return text

    @staticmethod
    def _family(lines, name, kind, help_text, openmetrics, unit=None):
        # OpenMetrics names a counter family without its _total suffix.
        family = name[:-len("_total")] if openmetrics and kind == "counter" else name
        help_line = "# HELP %s %s" % (family, escape_help(help_text))
        type_line = "# TYPE %s %s" % (family, kind)
        if openmetrics:
            lines.extend([type_line, help_line])
            if unit:
                lines.append("# UNIT %s %s" % (family, unit))
        else:
            lines.extend([help_line, type_line])

    def _histogram_help(self, family):
        if self.metric is not None and self.metric.histogram:
            text = self.metric.histogram_help
        else:
            text = "%s: histogram of values in %s" % (self.tool, family.unit)
        return ("%s, in %s (bucket le: inclusive upper bound), since the run started."
                % (text.rstrip("."), family.base or family.unit))

    def _counter_help(self):
        if self.metric is not None and self.metric.counter:
            text = self.metric.counter_help
        else:
            text = "%s: events counted" % self.tool
        return "%s, since the run started." % text.rstrip(".")

    def _bound(self, family, high):
        """The base-unit `le` text of a bucket's inclusive upper bound."""
        raw = (int(high) + 1) * family.per - 1
        return go_float(decimal.Decimal(raw) * family.scale)

    def exposition(self, openmetrics=None):
        """The full exposition text of everything accumulated so far."""
        om = self.openmetrics if openmetrics is None else bool(openmetrics)
        tool = self.tool or "tool"
        lines = []
        for name in sorted(self.histograms):
            family = self.histograms[name]
            self._family(lines, name, "histogram", self._histogram_help(family), om,
                         family.base if name.endswith("_" + str(family.base)) else None)
            # Every series of a family has the same buckets (those any of
            # them has), so sum by (le) over series adds like with like.
            highs = set()
            for s in family.series.values():
                highs.update(s.buckets)
            bounds = [(high, self._le(self._bound(family, high), om)) for high in sorted(highs)]
            for labels in sorted(family.series):
                s = family.series[labels]
                cumulative = 0
                for high, le in bounds:
                    cumulative += s.buckets.get(high, 0)
                    lines.append("%s_bucket%s %d" % (
                        name, _labels_text(labels + (("le", le),)), cumulative))
                lines.append("%s_bucket%s %d" % (name, _labels_text(labels + (("le", "+Inf"),)),
                                                 s.count))
                total = decimal.Decimal(s.total) * family.per * family.scale
                lines.append("%s_sum%s %s" % (name, _labels_text(labels), go_float(total)))
                lines.append("%s_count%s %d" % (name, _labels_text(labels), s.count))
        if self.events is not None:
            name = self._counter_name()
            self._family(lines, name, "counter", self._counter_help(), om)
            for labels in sorted(self.events):
                lines.append("%s%s %d" % (name, _labels_text(labels), self.events[labels]))
        tool_label = _labels_text((("tool", tool),))
        for counter, help_text in RUN_COUNTERS:
            name = "%s_%s_total" % (self.prefix, counter)
            self._family(lines, name, "counter", help_text, om)
            lines.append("%s%s %d" % (name, tool_label, getattr(self, counter + "_total")))
        if om:
            lines.append("# EOF")
        return "\n".join(lines) + "\n"

    # -- writing --------------------------------------------------------
    def _publish(self, stdout=True):
        text = self.exposition()
        other = self.exposition(not self.openmetrics) if self.keep_both else None
        with self._lock:
            self._latest[self.openmetrics] = text
            self._latest[not self.openmetrics] = other
        if self.textfile is not None:
            self._write_textfile(text)
        elif self.stdout and stdout:
            self._write(text)

    def _write(self, text):
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
