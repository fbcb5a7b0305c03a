"""JSON lines (--json): one JSON object per line, keys sorted, each line
flushed as it is written.  Every object carries

    "schema_version"  1 (SCHEMA_VERSION; the JSON Schema is core/schema/,
                      schema() loads it, docs/json.md documents it)
    "type"      "histogram" | "counts" | "event" | "lost"
    "tool", "backend", "host", "kernel"   (strings; host/kernel may be "":
                      a replay gives the recording's, or "" when the
                      trace file does not say)

Histogram and count tools print one object per interval:

    {"type": "histogram" | "counts",
     "seq": n,                         interval number, from 0
     "interval_start", "interval_end": epoch seconds (float, or null),
     "lost": n,                        events the kernel dropped this interval
     "unmatched": n,                   pair ends seen without their start
     "dropped_starts": n,              pair starts dropped: too many waited for their end
     "key_names": ["disk", ...],       names of the key tuple positions
     "histograms": [                   (type "histogram"), in key order
        {"key": {"disk": 266338304},   raw key values by name
         "labels": {"disk": "vda"},    the same, as the text output shows them
         "unit": "usecs", "scale": "log2" | "linear" | "pow2ms",
         "step": n,                    linear bucket width (1 for the others)
         "buckets": [{"low": 0, "high": 1, "count": 0}, ...],
         "sum": n, "count": n}],
     "seconds": s,                     (type "counts") the interval's real length
                                       (core/rates.py; a replay: the schedule's
                                       interval), or null when unknown
     "counts": [                       (type "counts"), in key order,
        {"key": {...}, "labels": {...}, "count": n,      non-zero counts only
         "rate": r}]}                  count / seconds (per second), or null

Bucket bounds are INCLUSIVE integers in "unit", for the rows the text
output prints (first bucket to the highest non-empty one).  pow2ms
(iolatency) histograms are given in nanoseconds: unit "nsecs", row 0 =
[0, 1000000], row i = [2^(i-1)*1000000+1, 2^i*1000000]; "sum" is then in
nanoseconds too.  Values of unkeyed histograms have "key": {}.

Event (records) tools print one object per event:

    {"type": "event", "ts": n,         kernel monotonic nanoseconds
     "fields": {"comm": "dd", ...},    raw field values
     "labels": {"dev": "vda"},         fields the tool has a formatter for
     "best_effort": ["filename"]}      fields read after the fact (may be stale)

and, for an interval in which the kernel lost events or pair starts were
dropped, one {"type": "lost", "lost": n, "unmatched": n, "dropped_starts": n,
"seq", "interval_start", "interval_end"} object after that interval's events.

Strings are emitted with non-ASCII escaped (\\uXXXX) so any terminal
encoding works; bytes are decoded as UTF-8 with bad bytes replaced;
NaN/infinity and values JSON has no type for become strings.
"""

import json
import math
import pkgutil

from ..model import LINEAR
from ..rates import per_second, report_seconds
from ..results import CountSet, HistogramSet
from .base import MachineReadablePrinter, as_text, field_label, key_order
from .histograms import bucket_rows, bucket_unit


# The version of the structure below; the JSON Schema of this version is
# SCHEMA_RESOURCE (package data of kerntrace.core, so the zipapp has it too).
# Any change of a key's name, type or meaning makes a new version.
SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "schema/output-v%d.json" % SCHEMA_VERSION


def schema_text():
    """The JSON Schema of what --json prints, as text."""
    data = pkgutil.get_data("kerntrace.core", SCHEMA_RESOURCE)
    return data.decode("utf-8")


def schema():
    """The JSON Schema of what --json prints (a dict)."""
    return json.loads(schema_text())


def jsonable(value):
    """`value` as something json.dumps accepts and strict parsers read."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {as_text(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=key_order)
    return as_text(value)


def _key_names(names, key):
    """Names for each position of `key`; positions beyond key_names get
    key0, key1, ... (a backend bug, but the output stays valid)."""
    names = list(names)
    return names + ["key%d" % i for i in range(len(names), len(key))]


def _key_objects(names, key, ctx):
    if not isinstance(key, tuple):
        key = (key,)
    names = _key_names(names, key)
    raw = {n: jsonable(v) for n, v in zip(names, key)}
    labels = {n: field_label(ctx, n, v) for n, v in zip(names, key)}
    return raw, labels


class JsonLinesPrinter(MachineReadablePrinter):
    def __init__(self, out, err):
        MachineReadablePrinter.__init__(self, out, err)

    def write(self, obj):
        """Write one object as a line (a merged result, say)."""
        self._emit(obj)

    def interval_object(self, report, ctx):
        """The object of a histogram or counts report, not yet written."""
        if isinstance(report.data, HistogramSet):
            return self._histograms(report, report.data, ctx)
        return self._counts(report, report.data, ctx)

    def _emit(self, obj):
        self.out.write(json.dumps(obj, sort_keys=True, ensure_ascii=True) + "\n")
        self.out.flush()

    def _common(self, report, ctx):
        return {"schema_version": SCHEMA_VERSION,
                "tool": as_text(report.tool or getattr(ctx, "tool", "") or ""),
                "backend": as_text(report.backend or getattr(ctx, "backend", "") or ""),
                "host": as_text(getattr(ctx, "hostname", "") or ""),
                "kernel": as_text(getattr(ctx, "kernel", "") or "")}

    def _interval(self, report):
        return {"seq": report.seq,
                "interval_start": float(report.start) if report.start is not None else None,
                "interval_end": float(report.end) if report.end is not None else None,
                "lost": report.lost, "unmatched": report.unmatched,
                "dropped_starts": report.dropped_starts}

    def report(self, report, ctx):
        data = report.data
        self.lost(report, ctx)
        if isinstance(data, HistogramSet):
            self._emit(self._histograms(report, data, ctx))
        elif isinstance(data, CountSet):
            self._emit(self._counts(report, data, ctx))
        elif isinstance(data, list):
            for record in data:
                self._emit(self._event(report, record, ctx))
            if report.lost or report.dropped_starts:
                obj = self._common(report, ctx)
                obj.update(self._interval(report))
                obj["type"] = "lost"
                self._emit(obj)
        else:
            raise TypeError("JsonLinesPrinter cannot print %s" % type(data).__name__)

    def _histograms(self, report, hset, ctx):
        obj = self._common(report, ctx)
        obj.update(self._interval(report))
        obj["type"] = "histogram"
        obj["key_names"] = list(hset.key_names)
        items = []
        for key in sorted(hset.histograms, key=key_order):
            hist = hset.histograms[key]
            raw, labels = _key_objects(hset.key_names, key, ctx)
            items.append({"key": raw, "labels": labels,
                          "unit": as_text(bucket_unit(hist)), "scale": hist.scale,
                          "step": int(hist.step) if hist.scale == LINEAR else 1,
                          "buckets": [{"low": lo, "high": hi, "count": n}
                                      for lo, hi, n in bucket_rows(hist)],
                          "sum": hist.total, "count": hist.count})
        obj["histograms"] = items
        return jsonable(obj)

    def _counts(self, report, cset, ctx):
        obj = self._common(report, ctx)
        obj.update(self._interval(report))
        obj["type"] = "counts"
        obj["key_names"] = list(cset.key_names)
        seconds = report_seconds(report, ctx)
        obj["seconds"] = seconds
        items = []
        for key in sorted((k for k, n in cset.counts.items() if n), key=key_order):
            raw, labels = _key_objects(cset.key_names, key, ctx)
            items.append({"key": raw, "labels": labels, "count": cset.counts[key],
                          "rate": per_second(cset.counts[key], seconds)})
        obj["counts"] = items
        return jsonable(obj)

    def _event(self, report, record, ctx):
        obj = self._common(report, ctx)
        formatters = getattr(ctx, "formatters", None) or {}
        obj.update({"type": "event", "ts": record.ts,
                    "fields": record.fields,
                    "labels": {n: field_label(ctx, n, v) for n, v in record.fields.items()
                               if n in formatters},
                    "best_effort": sorted(record.best_effort)})
        return jsonable(obj)
