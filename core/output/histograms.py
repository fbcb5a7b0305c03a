"""Histograms as the tools users already know print them.

    format_log2      bcc's print_log2_hist (biolatency, funclatency, ...)
    format_linear    bcc's print_linear_hist
    format_pow2ms    perf-tools iolatency
    bucket_rows      the rows as inclusive integer bounds, for JSON/Prometheus

and the two printers built on them: BccHistogramPrinter and
PerfToolsHistogramPrinter (the iolatency drop-in).  The formats are specified
in ../shared/reference/output-formats.md and iolatency-compat.md.
"""

from ..buckets import NS_PER_MS, bounds
from ..model import LINEAR, LOG2, POW2_MS
from ..results import Histogram, HistogramSet
from .base import Printer, as_text, field_label, key_order, terminal_text, time_line

# bcc: 40 stars; past slot 32 the label columns widen and the bar halves.
BCC_BAR = 40
BCC_WIDE_BAR = 20
BCC_WIDE_AFTER_SLOT = 32
# perf-tools iolatency: 38 '#'.
PERF_TOOLS_BAR = 38


def _counts(hist, first):
    """Bucket index -> count with indices below `first` folded into `first`
    (log2 slot 0 and slot 1 both hold 0..1; linear/pow2ms never go below 0)
    and negative counts, which no backend should produce, read as 0."""
    out = {}
    for index, count in hist.buckets.items():
        index = max(int(index), first)
        out[index] = out.get(index, 0) + max(int(count), 0)
    return out


def _top(counts):
    nonzero = [i for i, c in counts.items() if c]
    return max(nonzero) if nonzero else None


def star_bar(count, max_count, width):
    """bcc: floor(width * count / max) stars (integer arithmetic, so no
    float rounding can add a star)."""
    if max_count <= 0 or count <= 0:
        return ""
    return "*" * min(width, width * count // max_count)


def hash_bar(count, max_count, width):
    """perf-tools: ceil(width * count / max) '#', so any non-zero row shows."""
    if max_count <= 0 or count <= 0:
        return ""
    return "#" * min(width, -(-width * count // max_count))


def format_log2(hist, unit_label=None):
    """bcc log2 histogram lines: slots 1..highest non-empty (leading empty
    slots kept), nothing at all for an empty histogram."""
    unit_label = hist.unit if unit_label is None else unit_label
    counts = _counts(hist, 1)
    top = _top(counts)
    if top is None:
        return []
    if top <= BCC_WIDE_AFTER_SLOT:
        header = "     %-19s : count     distribution"
        row = "%10d -> %-10d : %-8d |%-40s|"
        width = BCC_BAR
    else:
        header = "               %-29s : count     distribution"
        row = "%20d -> %-20d : %-8d |%-20s|"
        width = BCC_WIDE_BAR
    max_count = max(counts.values())
    lines = [header % unit_label]
    for slot in range(1, top + 1):
        low, high = bounds(LOG2, slot)
        count = counts.get(slot, 0)
        lines.append(row % (low, high, count, star_bar(count, max_count, width)))
    return lines


def format_linear(hist, unit_label=None):
    """bcc linear histogram lines: buckets 0..highest non-empty, each row
    labelled with its bucket's low bound (index * step)."""
    unit_label = hist.unit if unit_label is None else unit_label
    counts = _counts(hist, 0)
    top = _top(counts)
    if top is None:
        return []
    max_count = max(counts.values())
    lines = ["     %-13s : count     distribution" % unit_label]
    for index in range(0, top + 1):
        low = bounds(LINEAR, index, hist.step)[0]
        count = counts.get(index, 0)
        lines.append("        %-10d : %-8d |%-40s|"
                     % (low, count, star_bar(count, max_count, BCC_BAR)))
    return lines


def format_pow2ms(hist):
    """perf-tools iolatency lines: header, then rows 0 -> 1, 1 -> 2, 2 -> 4 ...
    up to the highest non-empty row; an empty interval still prints the
    header and the row 0 -> 1 with count 0."""
    counts = _counts(hist, 0)
    top = _top(counts) or 0
    max_count = max(counts.values()) if counts else 0
    lines = ["%8s .. %-8s: %-8s |%-38s|" % (">=(ms)", "<(ms)", "I/O", "Distribution")]
    for row in range(0, top + 1):
        low, high = bounds(POW2_MS, row)
        count = counts.get(row, 0)
        lines.append("%8d -> %-8d: %-8d |%-38s|"
                     % (low, high, count, hash_bar(count, max_count, PERF_TOOLS_BAR)))
    return lines


def format_histogram(hist, unit_label=None):
    """The lines for `hist` in the format its scale calls for."""
    if hist.scale == LOG2:
        return format_log2(hist, unit_label)
    if hist.scale == LINEAR:
        return format_linear(hist, unit_label)
    if hist.scale == POW2_MS:
        return format_pow2ms(hist)
    raise ValueError("unknown histogram scale %r" % (hist.scale,))


def bucket_unit(hist):
    """The unit of bucket_rows' bounds: the histogram's own, except pow2ms,
    whose rows are given in nanoseconds so every bound is an integer."""
    return "nsecs" if hist.scale == POW2_MS else hist.unit


def bucket_rows(hist):
    """[(low, high, count)] with INCLUSIVE integer bounds in bucket_unit(hist),
    over the same rows the text formats print (first row to highest non-empty
    row; empty histogram: no rows).  pow2ms row 0 is [0, 1 ms] and row i
    (2^(i-1) ms, 2^i ms], i.e. [2^(i-1) ms + 1 ns, 2^i ms]."""
    first = 1 if hist.scale == LOG2 else 0
    counts = _counts(hist, first)
    top = _top(counts)
    if top is None:
        return []
    rows = []
    for index in range(first, top + 1):
        low, high = bounds(hist.scale, index, hist.step)
        if hist.scale == POW2_MS:
            low = 0 if index == 0 else low * NS_PER_MS + 1
            high = high * NS_PER_MS
        rows.append((low, high, counts.get(index, 0)))
    return rows


def _histogram_set(report, who):
    data = report.data
    if not isinstance(data, HistogramSet):
        raise TypeError("%s prints HistogramSet reports, got %s" % (who, type(data).__name__))
    return data


def _write_line(stream, text):
    stream.write(text if text.endswith("\n") else text + "\n")


class BccHistogramPrinter(Printer):
    """bcc-style histogram output (biolatency, funclatency, ...).

    banner      written to stderr when tracing starts
    section     callable(key tuple) -> the whole section line, e.g.
                "disk = vda"; default `<key name> = <formatted value>`
    timestamps  -T: an HH:MM:SS line (no colon) after each interval's blank line
    average     -e: after each histogram bcc's "avg = ..., total: ..., count: ..."
                (blank line before and after, as bcc prints it)
    unit_label  the histogram header label (default: the histogram's unit)
    """

    def __init__(self, out, err, banner=None, section=None, timestamps=False,
                 average=False, unit_label=None):
        Printer.__init__(self, out, err)
        self.banner = banner
        self.section = section
        self.timestamps = timestamps
        self.average = average
        self.unit_label = unit_label

    def start(self, ctx):
        if self.banner:
            _write_line(self.err, self.banner)

    def _section_line(self, key_names, key, ctx):
        if self.section is not None:
            return terminal_text(as_text(self.section(key)))
        return terminal_text(", ".join("%s = %s" % (name, field_label(ctx, name, value))
                                       for name, value in zip(key_names, key)))

    def report(self, report, ctx):
        hset = _histogram_set(report, type(self).__name__)
        self.lost(report, ctx)
        lines = [""]
        if self.timestamps:
            lines.append(time_line(report.end, colon=False))
        for key in sorted(hset.histograms, key=key_order):
            hist = hset.histograms[key]
            body = format_histogram(hist, self.unit_label)
            if hset.key_names:
                if not body:
                    # bcc clears its maps each interval: an empty key never shows.
                    continue
                lines.append("")
                lines.append(self._section_line(hset.key_names, key, ctx))
            lines.extend(body)
            if self.average and hist.count > 0:
                unit = self.unit_label or hist.unit
                lines.extend(["", "avg = %d %s, total: %d %s, count: %d" % (
                    hist.total // hist.count, unit, hist.total, unit, hist.count), ""])
        self.out.write("\n".join(lines) + "\n")


class PerfToolsHistogramPrinter(Printer):
    """perf-tools iolatency output, byte for byte: banner on stdout; per
    interval an empty line, with -T an "HH:MM:SS:" line, then the pow2ms
    histogram (several keys, if a tool passes them, are summed); at the end
    an empty line and `ending`.  Lost events: WARNING lines on stderr."""

    def __init__(self, out, err, banner, timestamps=False, ending="Ending tracing..."):
        Printer.__init__(self, out, err)
        self.banner = banner
        self.timestamps = timestamps
        self.ending = ending

    def start(self, ctx):
        if self.banner:
            _write_line(self.out, self.banner)

    def report(self, report, ctx):
        hset = _histogram_set(report, type(self).__name__)
        self.lost(report, ctx)
        merged = Histogram(POW2_MS, "ms")
        for hist in hset.histograms.values():
            for index, count in hist.buckets.items():
                merged.add(index, 0, count)
        lines = [""]
        if self.timestamps:
            lines.append(time_line(report.end, colon=True))
        lines.extend(format_pow2ms(merged))
        self.out.write("\n".join(lines) + "\n")

    def finish(self, ctx):
        if self.ending:
            self.out.write("\n" + self.ending + "\n")
