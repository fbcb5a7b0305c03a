"""What a Measurement means: the reference evaluator.

This module is the specification of the model (core/model.py).  Given a
Measurement and a time-ordered stream of decoded events it produces the
core result types (core/results.py), one Report per interval, by the rules
below.  Every backend must give the same Reports for the same events: the
shared scenario table (tests/scenarios.py) runs each scenario through this
evaluator, the ftrace backend's Aggregator and the eBPF backend's generated
C.  Backends are free in *how* (kernel filters, inline code, BPF maps), not
in *what*.

    reports = evaluate(measurement, [TraceEvent("issue", ts=..., fields={...}),
                                     ..., Lost(3), IntervalEnd(), ...])

It is plain Python with no dependencies, written to be read top to bottom,
not to be fast; a tool author can run a plugin's Measurement on a recorded
or hand-written stream without root and without a kernel.

One rule here is also used by the backends to place filters: which filters
may reject an event outright, before any pairing state is looked at
(early_filters).  The ftrace backend pushes those of a pair's events into
the kernel's filter files; the eBPF backend tests them first in each
handler.
"""

from .buckets import bucket_index
from .model import EVENT_NAME, LATENCY, QUEUED
from .results import CountSet, Histogram as HistogramResult, HistogramSet, Record, Report


# ---------------------------------------------------------------------------
# The input: decoded events, losses and interval boundaries.
class TraceEvent(object):
    """One decoded event, as any backend sees it once decoded.

    name    the logical event's name (Event.name in the measurement)
    ts      nanoseconds, monotonic
    cpu, pid (process id, tgid), tid (thread id), comm (task name), uid
            (real user id): the context fields every event has
            (model.CONTEXT_FIELDS)
    fields  declared field name -> the value read from the probe, before
            the field's if_zero and override are applied (int, or str for
            STR/USTR fields)
    """

    __slots__ = ("name", "ts", "cpu", "pid", "tid", "comm", "uid", "fields")

    def __init__(self, name, ts, cpu=0, pid=1, tid=None, comm="", fields=None, uid=0):
        self.name = name
        self.ts = int(ts)
        self.cpu = cpu
        self.pid = pid
        self.tid = pid if tid is None else tid
        self.comm = comm
        self.uid = uid
        self.fields = dict(fields or {})

    def __repr__(self):
        return "TraceEvent(%s ts=%d pid=%d tid=%d cpu=%d comm=%r %r)" % (
            self.name, self.ts, self.pid, self.tid, self.cpu, self.comm, self.fields)


class Lost(object):
    """The kernel reported `n` events lost here (None: some, count unknown,
    which counts as 1)."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return "Lost(%r)" % (self.n,)


class IntervalEnd(object):
    """An interval boundary: the Report of everything since the previous
    one is made here."""

    __slots__ = ()

    def __repr__(self):
        return "IntervalEnd()"


# ---------------------------------------------------------------------------
# Filter placement: the one rule both backends use.
def decided_by_key(pair, flt):
    """A filter whose outcome is the same on every event of a pair with the
    same key: it tests a pair key field, or the process id when the thread
    id is a key (a thread belongs to one process)."""
    return flt.field in pair.key or (flt.field == "pid" and "tid" in pair.key)


def pair_filters(measurement):
    """The filters that decide for a whole pair, by its key: those decided
    by the key that apply to the start and (if the pair has one) to the
    mark.  Every event of a pair whose key one of them rejects is dropped
    before anything else, the end included, even where the filter does
    not name the end: its start and mark would both have been rejected,
    so the end belongs to a request the tool does not want (it is not
    counted as unmatched)."""
    pair = measurement.pair
    if pair is None:
        return []
    starters = [measurement.event(pair.start)]
    if pair.mark is not None:
        starters.append(measurement.event(pair.mark))
    return [f for f in measurement.filters
            if decided_by_key(pair, f) and all(f.applies_to(e) for e in starters)]


def early_filters(measurement, event):
    """The filters that may reject `event` (a model Event) outright, before
    any pairing state is looked at, leaving no trace: every filter of an
    event outside a pair; for a pair's start, mark and end its pair filters
    only (the abandon event's too).  A pair event's other filters decide
    later (see Evaluator): a
    start they reject still takes its key, so that its end is dropped
    rather than counted unmatched, and an end they reject still retires
    its start."""
    pair = measurement.pair
    if pair is None or event.name not in (pair.start, pair.mark, pair.end, pair.abandon):
        return measurement.filters_for(event)
    return pair_filters(measurement)


def late_filters(measurement, event):
    """The filters of a pair event that are not early_filters()."""
    early = early_filters(measurement, event)
    return [f for f in measurement.filters_for(event) if f not in early]


# ---------------------------------------------------------------------------
# Reading values.
def field_value(event_spec, ev, name):
    """The value of `name` on TraceEvent `ev` of model Event `event_spec`.

    Context fields come from the event; "event" is the logical name.  A
    declared field is the value read, then (model.Field) if_zero: where it
    is 0 it is the other field times the factor; then override: where any
    of its filters matches the other field, it is the override value.
    Filters, pair keys and aggregates all see the result."""
    if name == EVENT_NAME:
        return ev.name
    if name in ("ts", "cpu", "pid", "tid", "comm", "uid"):
        return getattr(ev, name)
    field = event_spec.field(name)
    if field is None:
        return None     # Records of a field other events declare (model.Measurement)
    value = ev.fields[name]
    if field is not None and field.if_zero is not None:
        other, factor = field.if_zero
        if value == 0:
            value = ev.fields[other] * factor
    if field is not None and field.override is not None:
        filters, replacement = field.override
        if any(f.matches(ev.fields[f.field]) for f in filters):
            value = replacement
    return value


def passes(filters, event_spec, ev):
    return all(f.matches(field_value(event_spec, ev, f.field)) for f in filters)


# ---------------------------------------------------------------------------
# Pairing state: what a key has pending.
class _Start(object):
    """A start waiting for its end: its time, the time of the latest mark
    (None until one is seen) and the carried fields."""

    __slots__ = ("ts", "mark", "carried")

    def __init__(self, ts, mark, carried):
        self.ts = ts
        self.mark = mark
        self.carried = carried


class _Rejected(object):
    """A start (or mark) its late filters rejected: its end is dropped."""

    __slots__ = ()


class _Shared(object):
    """A shared key value (Pair.shared) several starts hold: `ends` more
    ends are to come, none of them measured."""

    __slots__ = ("ends",)

    def __init__(self, ends):
        self.ends = ends


REJECTED = _Rejected()


class _TooDeep(object):
    """A start of a nested pair beyond its depth: not measured (counted in
    dropped_starts); it holds its level so that the ends pair right."""

    __slots__ = ()


TOO_DEEP = _TooDeep()


class Evaluator(object):
    """Feed events, losses and boundaries one at a time; collect() makes the
    Report of the interval (starts still pending stay pending).

    This evaluator keeps every pending start.  A backend may bound its
    table of pending starts; what it gives up is counted in
    Report.dropped_starts and the ends of those starts as unmatched: the
    scenario table does not hold such streams."""

    def __init__(self, measurement):
        self.m = measurement
        # key tuple -> _Start, REJECTED or _Shared; for a nested pair, a
        # list of _Start, REJECTED or TOO_DEEP, innermost last
        self.pending = {}
        self._reset()

    def _reset(self):
        self.lost = 0
        self.unmatched = 0
        self.dropped_starts = 0
        self.hists = {}
        self.counts = {}
        self.records = []

    # -- input -------------------------------------------------------------
    def feed(self, item):
        if isinstance(item, Lost):
            self.feed_lost(item.n)
        elif isinstance(item, IntervalEnd):
            return self.collect()
        else:
            self.feed_event(item)
        return None

    def feed_lost(self, n):
        """Lost events are counted in Report.lost (None counts as 1).  The
        end a shared key waits for may have been among them, and the key
        would then wait forever: every shared key is forgotten."""
        self.lost += 1 if n is None else max(0, int(n))
        for k in [k for k, s in self.pending.items() if isinstance(s, _Shared)]:
            del self.pending[k]

    def feed_event(self, ev):
        """An event the measurement does not name, or that its pair does
        not use, is ignored."""
        spec = self._spec(ev.name)
        if spec is None:
            return
        pair = self.m.pair
        if pair is None:
            # A plain event: its filters (all of them) decide; it is then
            # aggregated with its own values.
            if passes(self.m.filters_for(spec), spec, ev):
                self._aggregate(ev, lambda name: field_value(spec, ev, name))
            return
        if ev.name not in (pair.start, pair.mark, pair.end, pair.abandon):
            return
        # Pair filters (early_filters) come first, for all four roles.
        if not passes(pair_filters(self.m), spec, ev):
            return
        key = tuple(field_value(spec, ev, k) for k in pair.key)
        if ev.name == pair.abandon:
            self._abandon(key)
            return
        accepted = passes(late_filters(self.m, spec), spec, ev)
        if ev.name == pair.start:
            self._start(spec, ev, key, accepted)
        elif ev.name == pair.mark:
            self._mark(spec, ev, key, accepted)
        else:
            self._end(spec, ev, key, accepted)

    def _spec(self, name):
        for e in self.m.events:
            if e.name == name:
                return e
        return None

    # -- pairing -------------------------------------------------------------
    def _is_shared(self, key):
        pair = self.m.pair
        return bool(pair.shared) and all(
            key[pair.key.index(k)] == v for k, v in pair.shared.items())

    def _start(self, spec, ev, key, accepted):
        """A start with a shared key value while another start holds it
        (accepted or not): whose end is whose can no longer be told, so
        the key becomes shared and neither is measured.  Otherwise a start
        its filters reject takes its key as REJECTED; an accepted one is
        stored with its time and carried fields.  Either replaces what the
        key had pending (a requeued request reuses its key)."""
        if self.m.pair.nested is not None:
            self._push(spec, ev, key, accepted)
            return
        if self._is_shared(key) and key in self.pending:
            held = self.pending[key]
            self.pending[key] = _Shared(held.ends + 1 if isinstance(held, _Shared) else 2)
            return
        if not accepted:
            self.pending[key] = REJECTED
            return
        self.pending[key] = _Start(ev.ts, None, self._carried(spec, ev))

    def _push(self, spec, ev, key, accepted):
        """A nested pair's start is pushed on its key's stack (REJECTED if
        its filters reject it); beyond the pair's depth it is TOO_DEEP,
        counted in dropped_starts."""
        stack = self.pending.setdefault(key, [])
        if len(stack) >= self.m.pair.nested:
            self.dropped_starts += 1
            stack.append(TOO_DEEP)
        elif not accepted:
            stack.append(REJECTED)
        else:
            stack.append(_Start(ev.ts, None, self._carried(spec, ev)))

    def _abandon(self, key):
        """The key's life ended (its thread exited): what it has pending
        is forgotten; each start that would have been measured counts in
        dropped_starts (REJECTED and TOO_DEEP ones do not count again)."""
        held = self.pending.pop(key, None)
        entries = held if isinstance(held, list) else [held]
        self.dropped_starts += sum(1 for s in entries if isinstance(s, _Start))

    def _mark(self, spec, ev, key, accepted):
        """A mark its filters reject ends its pair (REJECTED; a shared key
        stays shared).  An accepted mark sets its time in the pending start
        (a later mark replaces an earlier one); a shared key is left alone;
        with no start pending (nothing, or REJECTED) the mark starts the
        pair itself, carrying its own fields, with its time as start and
        mark (no queue time)."""
        held = self.pending.get(key)
        if isinstance(held, _Shared):
            return
        if not accepted:
            self.pending[key] = REJECTED
            return
        if isinstance(held, _Start):
            held.mark = ev.ts
            return
        self.pending[key] = _Start(ev.ts, ev.ts, self._carried(spec, ev))

    def _end(self, spec, ev, key, accepted):
        """An end takes its key's pending entry, whatever its filters say
        (a nested pair: the innermost one of the key's stack; the end of a
        TOO_DEEP start is unmatched).
        A rejected end measures nothing and counts nothing (one of a shared
        key's ends is used up).  An accepted end: with nothing pending it
        is unmatched; with a shared key it is unmatched and one of the
        key's ends is used up; after a REJECTED start it is dropped; else
        the pair yields LATENCY = end - (mark, else start) and QUEUED =
        mark - start (0 without a mark), each at least 0 (clock skew
        between CPUs) -- unless LATENCY is below the pair's min_latency:
        then it yields nothing --, the carried fields of its start and every other
        value from the end."""
        if self.m.pair.nested is not None:
            # the innermost pending start of the key is this end's
            stack = self.pending.get(key)
            held = stack.pop() if stack else None
            if stack == []:
                del self.pending[key]
            if held is TOO_DEEP:
                held = None         # not measured: the end counts as unmatched
        else:
            held = self.pending.pop(key, None)
        if isinstance(held, _Shared):
            if accepted:
                self.unmatched += 1
            if held.ends > 1:
                self.pending[key] = _Shared(held.ends - 1)
            return
        if not accepted:
            return
        if held is None:
            self.unmatched += 1
            return
        if held is REJECTED:
            return
        if held.mark is None:
            latency, queued = ev.ts - held.ts, 0
        else:
            latency, queued = ev.ts - held.mark, held.mark - held.ts
        if max(0, latency) < self.m.pair.min_latency:
            return                  # faster than the pair's threshold
        values = {LATENCY: max(0, latency), QUEUED: max(0, queued)}
        values.update(held.carried)

        def value(name):
            if name in values:
                return values[name]
            return field_value(spec, ev, name)
        self._aggregate(ev, value)

    def _carried(self, spec, ev):
        return dict((c, field_value(spec, ev, c)) for c in self.m.pair.carry)

    # -- aggregation -----------------------------------------------------------
    def _aggregate(self, ev, value):
        """Histogram: value // divisor (floor division) goes to the bucket
        core.buckets gives for the scale, and into the sum.  Count: one per
        key tuple.  Records: one Record at the event's time (the end's, for
        a pair) with the fields named."""
        agg = self.m.aggregate
        if agg.kind == "histogram":
            v = value(agg.value) // agg.divisor
            k = tuple(value(n) for n in agg.keys)
            h = self.hists.get(k)
            if h is None:
                h = self.hists[k] = HistogramResult(agg.scale, agg.unit, agg.step)
            h.add(bucket_index(agg.scale, v, agg.step), v)
        elif agg.kind == "count":
            k = tuple(value(n) for n in agg.keys)
            self.counts[k] = self.counts.get(k, 0) + 1
        else:
            self.records.append(Record(ev.ts, dict((f, value(f)) for f in agg.fields)))

    # -- output ----------------------------------------------------------------
    def collect(self):
        """The Report of the interval; pending starts stay pending."""
        agg = self.m.aggregate
        if agg.kind == "histogram":
            data = HistogramSet(agg.keys, self.hists)
        elif agg.kind == "count":
            data = CountSet(agg.keys, self.counts)
        else:
            data = self.records
        report = Report(data, lost=self.lost, unmatched=self.unmatched,
                        dropped_starts=self.dropped_starts)
        self._reset()
        return report


def evaluate(measurement, stream):
    """The Reports of a stream: one at each IntervalEnd and one at its
    end."""
    ev = Evaluator(measurement)
    reports = []
    for item in stream:
        r = ev.feed(item)
        if r is not None:
            reports.append(r)
    reports.append(ev.collect())
    return reports
