"""The result types every backend returns, defined once.

A backend session's collect() returns a Report per interval whose `data` is
exactly one of HistogramSet, CountSet or a list of Record.  The contract test
(tests/test_contract.py) checks that every backend yields these types and no
others, so the output layer never needs to know which backend ran.
"""

from .buckets import bounds


class Histogram(object):
    """One histogram: bucket index -> count, plus the sum and number of the
    values bucketed (for averages and Prometheus _sum/_count)."""

    __slots__ = ("scale", "unit", "step", "buckets", "total", "count")

    def __init__(self, scale, unit, step=1, buckets=None, total=0, count=None):
        self.scale = scale
        self.unit = unit
        self.step = step
        self.buckets = dict(buckets or {})
        self.total = int(total)
        self.count = int(count if count is not None else sum(self.buckets.values()))

    def add(self, index, value, n=1):
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.total += value * n
        self.count += n

    def bounds(self, index):
        return bounds(self.scale, index, self.step)

    def max_index(self):
        nz = [i for i, c in self.buckets.items() if c]
        return max(nz) if nz else None

    def __eq__(self, other):
        return (isinstance(other, Histogram) and self.scale == other.scale
                and self.unit == other.unit and self.step == other.step
                and {k: v for k, v in self.buckets.items() if v}
                == {k: v for k, v in other.buckets.items() if v}
                and self.total == other.total and self.count == other.count)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Histogram(%s %s n=%d %r)" % (self.scale, self.unit, self.count,
                                            sorted(self.buckets.items()))


class HistogramSet(object):
    """Histograms per key: `key_names` names the tuple positions of each key
    (empty for an unkeyed histogram, whose only key is ())."""

    __slots__ = ("key_names", "histograms")

    def __init__(self, key_names=(), histograms=None):
        self.key_names = tuple(key_names)
        self.histograms = dict(histograms or {})

    def __eq__(self, other):
        return (isinstance(other, HistogramSet) and self.key_names == other.key_names
                and self.histograms == other.histograms)

    def __repr__(self):
        return "HistogramSet(%r, %r)" % (self.key_names, self.histograms)


class CountSet(object):
    """Event counts per key tuple."""

    __slots__ = ("key_names", "counts")

    def __init__(self, key_names=(), counts=None):
        self.key_names = tuple(key_names)
        self.counts = dict(counts or {})

    def __eq__(self, other):
        return (isinstance(other, CountSet) and self.key_names == other.key_names
                and {k: v for k, v in self.counts.items() if v}
                == {k: v for k, v in other.counts.items() if v})

    def __repr__(self):
        return "CountSet(%r, %r)" % (self.key_names, self.counts)


_NONE = frozenset()


class Record(object):
    """One event (or pair): `ts` in kernel monotonic ns and the declared
    fields by name.  Fields marked best-effort (read after the fact, e.g. a
    file name looked up in /proc) are listed in `best_effort`."""

    __slots__ = ("ts", "fields", "best_effort")

    def __init__(self, ts, fields, best_effort=()):
        self.ts = int(ts)
        self.fields = dict(fields)
        self.best_effort = frozenset(best_effort) if best_effort else _NONE

    def __getitem__(self, name):
        return self.fields[name]

    def get(self, name, default=None):
        return self.fields.get(name, default)

    def __eq__(self, other):
        return isinstance(other, Record) and (self.ts, self.fields) == (other.ts, other.fields)

    def __repr__(self):
        return "Record(%d, %r)" % (self.ts, self.fields)


class Report(object):
    """What one interval produced.

    data       HistogramSet, CountSet or list of Record
    lost       events the kernel reported lost in this interval: buffer
               overruns, runs of a BPF program the kernel skipped, and
               tracepoint events it delivered without running the BPF
               program (these may include events the tool's filters would
               have dropped: the program never saw the event)
    unmatched  end events seen without their start: started before tracing
               or lost (pairs only; not the ends of starts filtered out)
    dropped_starts
               pair starts given up because the backend's table of starts
               waiting for their end was full (a backend drops the oldest or
               refuses the newest); their ends, if they come, count as
               unmatched
    start/end  wall-clock time.time() of the interval
    """

    __slots__ = ("tool", "backend", "seq", "start", "end", "data", "lost", "unmatched",
                 "dropped_starts")

    def __init__(self, data, lost=0, unmatched=0, tool=None, backend=None, seq=0,
                 start=None, end=None, dropped_starts=0):
        self.data = data
        self.lost = int(lost)
        self.unmatched = int(unmatched)
        self.dropped_starts = int(dropped_starts)
        self.tool = tool
        self.backend = backend
        self.seq = seq
        self.start = start
        self.end = end

    def __repr__(self):
        return "Report(%s/%s #%d lost=%d unmatched=%d dropped_starts=%d %r)" % (
            self.tool, self.backend, self.seq, self.lost, self.unmatched, self.dropped_starts,
            self.data)
