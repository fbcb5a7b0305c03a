"""User-space aggregation of decoded events: the ftrace backend's map.

The Aggregator does in Python what the eBPF backend does in the kernel:
map each kernel event back to its logical event (through the Plan), apply
every filter of the measurement (the kernel-side filter is only an
optimisation), pair starts with ends, and fold the result into exactly the
core result types (HistogramSet, CountSet, list of Record), as
core.semantics specifies.  The per-event work is done by generated
handlers (handlers.py); pair starts wait in a bounded table (pending.py).

Two ways in:
    feed(raw_event)                    any RawEvent (text path, replay)
    raw_sinks(formats_by_id)           callbacks for RawDecoder.compile_sinks:
                                       the raw path without RawEvent objects
"""

import operator

from kerntrace.core.buckets import NS_PER_MS
from kerntrace.core.results import (CountSet, Histogram as HistogramResult, HistogramSet,
                                    Record, Report)

from kerntrace.core.model import KSTACK

from .handlers import HandlerBuilder
from .kstacks import StackAttacher
from .pending import REJECTED, TOO_DEEP, PendingStarts, Shared, Stack
from .tasks import TaskInfo

# Pair starts kept while waiting for their end; beyond this the oldest are
# dropped (counted in dropped_starts, reported as Report.dropped_starts): an
# end that never comes must not grow memory forever.  A million is more
# than any block layer's requests in flight and a quarter of the largest
# pid_max (a thread has one system call in flight); at the cap a start costs
# about 370 bytes (its key tuple, time stamp, carried comm and pid and the
# table's share: bench/input_bounds.py, starts-2m), some 370 MB in all.
DEFAULT_MAX_PENDING = 1000000


class Counters(object):
    """What happened besides the aggregate, for one interval: what the
    Report carries (lost, unmatched, dropped_starts) and events the plan
    does not use (ignored) or that lack a field it reads (incomplete)."""

    __slots__ = ("lost", "unmatched", "dropped_starts", "incomplete", "ignored")

    def __init__(self):
        self.reset()

    def reset(self):
        for s in self.__slots__:
            setattr(self, s, 0)

    def add(self, other):
        for s in self.__slots__:
            setattr(self, s, getattr(self, s) + getattr(other, s))


class Aggregator(object):
    """Decoded events -> core Reports, for one measurement and plan.

        agg = Aggregator(measurement, plan, tasks=TaskInfo(...))
        agg.feed(raw_event) / agg.feed_lost(n)
        report = agg.collect()       # read-and-reset; pending pair starts stay

    self.counters holds the current interval's side counts; after collect(),
    self.last holds those of the interval just reported.  max_pending is
    fixed at construction.  self.sources: logical event name -> its generated handler's source."""

    def __init__(self, measurement, plan, tasks=None, max_pending=DEFAULT_MAX_PENDING):
        self.measurement = measurement
        self.plan = plan
        self.tasks = tasks if tasks is not None else TaskInfo()
        self.max_pending = max_pending
        self.counters = Counters()
        self.last = Counters()
        self._pending = PendingStarts(max_pending, self.counters)
        self._hists = {}
        self._counts = {}
        self._records = []
        self.sources = {}
        # kernel stacks (model.KSTACK): each goes to the record its event made
        self.stacks = StackAttacher(KSTACK)
        self._takes_stacks = KSTACK in getattr(measurement.aggregate, "fields", ())
        self._handlers = {}        # (system, event) -> (names, handler)
        self._getters = {}         # (system, event) -> fields dict -> tuple
        builder = HandlerBuilder(measurement, plan, self.tasks,
                                 self._namespace(measurement.aggregate))
        for resolved, names, handler, source in builder.build():
            key = (resolved.system, resolved.event)
            if self._takes_stacks:
                handler = self._stack_taking(handler)
            self._handlers[key] = (names, handler)
            self._getters[key] = _tuple_getter(names)
            self.sources[resolved.logical.name] = source

    def _stack_taking(self, handler):
        """The handler, noting on each CPU the record its last event made
        (or that it made none: the next stack there is not a record's)."""
        records = self._records
        made, forget = self.stacks.made, self.stacks.forget

        def taking(ts, cpu, v, comm=None, tgid=None):
            n = len(records)
            handler(ts, cpu, v, comm, tgid)
            if len(records) > n:
                made(cpu, v[0], records[-1])
            else:
                forget(cpu)
        return taking

    def attach_stack(self, cpu, tid, frames):
        """A kernel stack (function names) thread `tid` wrote on `cpu`
        after an event: into that event's record, if it made one."""
        self.stacks.attach(cpu, tid, frames)

    def _namespace(self, agg):
        """What the generated handlers use, by the names they use."""
        pending = self._pending
        ns = {
            "_st": self.counters,
            "_pending": pending.table,
            "_pending_pop": pending.table.pop,
            "_pending_get": pending.table.get,
            "_drop_oldest": pending.drop_oldest,
            "_reject_start": pending.reject,
            "_REJECTED": REJECTED,
            "_TOO_DEEP": TOO_DEEP,
            "_Stack": Stack,
            "_share": pending.share,
            "_end_shared": pending.end_shared,
            "_Shared": Shared,
            "_hists": self._hists,
            "_hists_get": self._hists.get,
            "_counts": self._counts,
            "_counts_get": self._counts.get,
            "_records_append": self._records.append,
            "_Record": _record_maker(),
            "_Hist": HistogramResult,
            "_tgid_of": self.tasks.tgid,
            "_comm_of": self.tasks.comm,
            "_uid_of": self.tasks.uid,
            "_task_entry": (self.tasks.entry_getter() if hasattr(self.tasks, "entry_getter")
                            else None),
            "_max_pending": self.max_pending,
            "_EMPTY": (),
            "_BE_COMM": ("comm",),
            "_BE_UID": ("uid",),
            "_BE_COMM_UID": ("comm", "uid"),
        }
        if agg.kind == "histogram":
            ns.update(_scale=agg.scale, _unit=agg.unit, _step=agg.step, _div=agg.divisor,
                      _NS_PER_MS=NS_PER_MS)
        return ns

    # -- feeding -----------------------------------------------------------
    def handler_for(self, system, event):
        """(format field names, handler) of a tracefs event, or None."""
        return self._handlers.get((system, event))

    def pairing_state(self):
        """(pending starts table, histograms by key, Counters): what the
        handlers update, for bulkpair.BulkPairer to update the same way."""
        return self._pending.table, self._hists, self.counters

    def raw_sinks(self, formats_by_id):
        """{event id: (format field names, callback)} for the events of this
        plan, for RawDecoder.compile_sinks()."""
        out = {}
        for ev_id, fmt in formats_by_id.items():
            h = self._handlers.get((fmt.system, fmt.name))
            if h is not None:
                out[ev_id] = h
        return out

    def feed(self, raw):
        """One RawEvent (fields by format field name)."""
        key = (raw.system, raw.event)
        h = self._handlers.get(key)
        if h is None:
            self.counters.ignored += 1
            return
        try:
            values = (raw.tid,) + self._getters[key](raw.fields)
        except (KeyError, TypeError):
            self.counters.incomplete += 1
            return
        h[1](raw.ts, raw.cpu, values, raw.comm, raw.tgid)

    def add_counts(self, counts):
        """Counts made elsewhere ({count key: n}: the kernel's hist tables,
        histcount.py), added to this interval's."""
        c = self._counts
        for key, n in counts.items():
            c[key] = c.get(key, 0) + n

    def feed_lost(self, n):
        """The kernel lost n events (None: lost some, count unknown, counted
        as 1)."""
        if n is None:
            self.counters.lost += 1
        elif n > 0:
            self.counters.lost += int(n)
        else:
            return
        if self.measurement.pair is not None and self.measurement.pair.shared:
            # A lost end would keep its shared key waiting forever.
            self._pending.release_shared()

    @property
    def pending(self):
        """Pair starts waiting for their end."""
        return len(self._pending)

    @property
    def records_waiting(self):
        """Records made since the last collect()."""
        return len(self._records)

    # -- reporting -----------------------------------------------------------
    def collect(self):
        """A Report of everything since the last collect(), then reset
        (starts still in flight stay pending)."""
        agg = self.measurement.aggregate
        if agg.kind == "histogram":
            for h in self._hists.values():
                h.count = sum(h.buckets.values())
            data = HistogramSet(agg.keys, dict(self._hists))
            self._hists.clear()
        elif agg.kind == "count":
            data = CountSet(agg.keys, dict(self._counts))
            self._counts.clear()
        else:
            data = list(self._records)
            del self._records[:]
            if self._takes_stacks:
                for r in data:
                    frames = r.fields.get(KSTACK)
                    if frames.__class__ is list:
                        # (a text stack, filled line by line) as the raw one
                        r.fields[KSTACK] = tuple(frames)
        c = self.counters
        # An event whose fields the trace does not show (a text line whose
        # print fmt leaves a field out) is lost to the measurement: said as
        # lost, never dropped without a word.
        report = Report(data, lost=c.lost + c.incomplete, unmatched=c.unmatched,
                        dropped_starts=c.dropped_starts)
        self.last = Counters()
        self.last.add(c)
        c.reset()
        return report


def _record_maker():
    """Record(ts, fields, best_effort) for the generated handlers, without
    the copy of `fields` (a dict each handler builds for its record alone)
    and with the best-effort sets made once: a flood makes a record per
    event."""
    new = Record.__new__
    frozen = {}
    none = Record(0, {}).best_effort

    def make(ts, fields, best_effort=()):
        r = new(Record)
        r.ts = ts if ts.__class__ is int else int(ts)
        r.fields = fields
        if best_effort:
            be = frozen.get(best_effort)
            if be is None:
                be = frozen[best_effort] = frozenset(best_effort)
            r.best_effort = be
        else:
            r.best_effort = none
        return r
    return make


def _tuple_getter(names):
    """fields dict -> tuple of the named values, at C speed."""
    if not names:
        return lambda fields: ()
    if len(names) == 1:
        name = names[0]
        return lambda fields: (fields[name],)
    return operator.itemgetter(*names)
