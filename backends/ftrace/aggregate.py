"""User-space aggregation of decoded events: the ftrace backend's map.

The Aggregator does in Python what the eBPF backend does in the kernel:
map each kernel event back to its logical event (through the Plan), apply
every filter of the measurement (the kernel-side filter is only an
optimisation), pair starts with ends, and fold the result into exactly the
core result types (HistogramSet, CountSet, list of Record).

Speed matters (a busy disk makes hundreds of thousands of events a second),
so for each logical event one small Python function is generated, like the
eBPF backend generates C: it reads only the fields it needs, by position,
and does the filtering, pairing and bucketing inline.  Only identifiers
validated by the model (logical field names) appear in that source; every
value (filter constants, format field names, event names) is passed in the
function's namespace, never spliced into code.

Pending pair starts: the start's time stamp alone, or a tuple (ts, carried
fields...).  A pair with a mark keeps a list [start ts, mark ts or None,
carried fields...] that its mark handler updates in place.

Two ways in:
    feed(raw_event)                    any RawEvent (text path, replay)
    raw_sinks(formats_by_id)           callbacks for RawDecoder.compile_sinks:
                                       the raw path without RawEvent objects
                                       (RawFeeder wires the two together)
"""

import operator
import re
from collections import OrderedDict

from kerntrace.core.buckets import NS_PER_MS
from kerntrace.core.model import EVENT_NAME, LATENCY, LINEAR, LOG2, POW2_MS, QUEUED
from kerntrace.core.results import (CountSet, Histogram as HistogramResult, HistogramSet,
                                    Record, Report)
from kerntrace.core.semantics import early_filters, late_filters

from .plan import own_comm_field
from .tasks import TaskInfo

# Pair starts kept while waiting for their end; beyond this the oldest are
# dropped (counted in dropped_starts, reported as Report.dropped_starts): an
# end that never comes must not grow memory forever.  A million is more
# than any block layer's requests in flight and a quarter of the largest
# pid_max (a thread has one system call in flight); at the cap a start costs
# about 370 bytes (its key tuple, time stamp, carried comm and pid and the
# table's share: bench/input_bounds.py, starts-2m), some 370 MB in all.
DEFAULT_MAX_PENDING = 1000000


class _Rejected(object):
    """The pending entry of a pair start its filters rejected."""

    __slots__ = ()

    def __repr__(self):
        return "<rejected start>"


_REJECTED = _Rejected()


class _Shared(object):
    """The pending entry of a shared key (Pair.shared) that several starts
    hold: `n` ends are still to come, each counted as unmatched."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return "<shared key, %d ends to come>" % self.n

# core.buckets' bucket_index() as inline expressions (a call per event
# costs more than the arithmetic); tests compare the two on many values.
_BUCKET_EXPR = {
    LOG2: "%(v)s.bit_length() if %(v)s > 0 else 1",
    LINEAR: "%(v)s // _step if %(v)s > 0 else 0",
    POW2_MS: "0 if %(v)s <= _NS_PER_MS else ((%(v)s + _NS_PER_MS - 1) // _NS_PER_MS - 1).bit_length()",
}

_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class Counters(object):
    """What happened besides the aggregate, for one interval."""

    __slots__ = ("lost", "lost_uncounted", "unmatched", "negative_latency", "dropped_starts",
                 "replaced_starts", "incomplete", "ignored")

    def __init__(self):
        self.reset()

    def reset(self):
        for s in self.__slots__:
            setattr(self, s, 0)

    def as_dict(self):
        return {s: getattr(self, s) for s in self.__slots__}

    def add(self, other):
        for s in self.__slots__:
            setattr(self, s, getattr(self, s) + getattr(other, s))


class _Code(object):
    """Source lines of one generated handler, with the values it loads."""

    def __init__(self):
        self.lines = []
        self.loaded = set()

    def emit(self, line, indent=1):
        self.lines.append("    " * indent + line)


def _check_name(name):
    if not _SAFE_NAME.match(name):
        raise ValueError("not an identifier: %r" % (name,))
    return name


class _EventProgram(object):
    """The generated handler of one logical event."""

    def __init__(self, agg, resolved, role):
        self.agg = agg
        self.resolved = resolved
        self.logical = resolved.logical
        self.role = role                   # "plain", "start", "mark" or "end"
        self.fmt = resolved.format
        self.names = []                    # format field names read, in v[1:] order
        self.ns = {}
        self.code = _Code()
        self._consts = 0

    # -- values ------------------------------------------------------------
    def const(self, value, prefix="_c"):
        name = "%s%d" % (prefix, self._consts)
        self._consts += 1
        self.ns[name] = value
        return name

    def _format_has(self, fname):
        return self.fmt is None or self.fmt.field(fname) is not None

    def _field_index(self, fname):
        if fname not in self.names:
            self.names.append(fname)
        # v[0] is the thread id; fields follow.  Named in finish().
        return "v[@%s@]" % fname

    def load(self, name):
        """Emit code that puts logical value `name` in variable x_<name>
        (once) and return the variable name."""
        var = "x_" + _check_name(name)
        if name in self.code.loaded:
            return var
        self.code.loaded.add(name)
        emit = self.code.emit
        if name == EVENT_NAME:
            emit("%s = %s" % (var, self.const(self.logical.name, "_event")))
        elif name == "ts":
            emit("%s = ts" % var)
        elif name == "cpu":
            emit("%s = cpu" % var)
        elif name == "tid":
            emit("%s = v[0]" % var)
        elif name == "pid":
            emit("%s = tgid if tgid is not None else _tgid_of(v[0])" % var)
        elif name == "comm":
            own = self._own_comm_field()
            if own is not None:
                emit("%s = comm if comm is not None else %s" % (var, self._field_index(own)))
            else:
                emit("%s = comm if comm is not None else _comm_of(v[0])" % var)
                # (the kernel's task events name it at the event, if followed)
                self.comm_after_the_fact = not self.agg.tasks.follows_events
        else:
            fname = self.resolved.fields.get(name)
            if fname is None or not self._format_has(fname):
                emit("%s = None" % var)
            else:
                emit("%s = %s" % (var, self._field_index(fname)))
            self._derive(name, var)
        return var

    def _derive(self, name, var):
        """A declared field's if_zero fallback and override (model.Field)."""
        field = self.logical.field(name)
        if field is None:
            return
        emit = self.code.emit
        if field.if_zero is not None:
            other, factor = field.if_zero
            dep = self.load(other)
            emit("if not %s and %s is not None:" % (var, dep))
            emit("%s = %s * %s" % (var, dep, self.const(factor)), 2)
        if field.override is not None:
            filters, value = field.override
            tests = []
            for f in filters:
                dep = self.load(f.field)
                tests.append("(%s is not None and %s(%s))" % (dep, self.const(f.matches, "_ovr"),
                                                             dep))
            emit("if %s:" % " or ".join(tests))
            emit("%s = %s" % (var, self.const(value)), 2)

    comm_after_the_fact = False

    def _own_comm_field(self):
        return own_comm_field(self.resolved)

    # -- filters -----------------------------------------------------------
    def filters(self, which, reject=()):
        """Return from the handler when one of the filters `which` rejects
        the event, after the `reject` statements."""
        for f in which:
            var = self.load(f.field)
            c = self.const(f.value)
            if f.op == "glob":
                g = self.const(f.matches, "_glob")
                self.code.emit("if %s is None or not %s(%s):" % (var, g, var))
            elif f.op == "==":
                self.code.emit("if %s != %s:" % (var, c))
            elif f.op == "!=":
                self.code.emit("if %s is None or %s == %s:" % (var, var, c))
            else:
                self.code.emit("if %s is None or not (%s %s %s):" % (var, var, f.op, c))
            for line in reject:
                self.code.emit(line, 2)
            self.code.emit("return", 2)

    # -- finishing -----------------------------------------------------------
    def finish(self):
        """Compile; returns the handler function."""
        if self.fmt is not None:
            # struct reads in offset order: ask for the fields that way
            self.names.sort(key=lambda n: self.fmt.field(n).offset)
        body = "\n".join(self.code.lines) or "    pass"
        # one unpacking of v up front is cheaper than indexing it per value
        for i, n in enumerate(self.names):
            body = body.replace("v[@%s@]" % n, "_v%d" % (i + 1))
        body = body.replace("v[0]", "_v0")
        unpack = "    %s, = v\n" % ", ".join("_v%d" % i for i in range(len(self.names) + 1))
        src = "def handler(ts, cpu, v, comm=None, tgid=None):\n" + unpack + body + "\n"
        self.source = src
        ns = dict(self.agg.namespace)
        ns.update(self.ns)
        exec(compile(src, "<kerntrace aggregate %s>" % self.logical.name, "exec"), ns)
        return ns["handler"]


class Aggregator(object):
    """Decoded events -> core Reports, for one measurement and plan.

        agg = Aggregator(measurement, plan, tasks=TaskInfo(...))
        agg.feed(raw_event) / agg.feed_lost(n)
        report = agg.collect()       # read-and-reset; pending pair starts stay

    self.counters holds the current interval's side counts; after collect(),
    self.last holds those of the interval just reported and self.totals the
    sums since the start.  max_pending is fixed at construction."""

    def __init__(self, measurement, plan, tasks=None, max_pending=DEFAULT_MAX_PENDING):
        self.measurement = measurement
        self.plan = plan
        self.tasks = tasks if tasks is not None else TaskInfo()
        self.max_pending = max_pending
        self.counters = Counters()
        self.last = Counters()
        self.totals = Counters()
        # insertion order = age: the oldest start is dropped first, in O(1)
        # (a dict's first key is found by skipping the slots of deleted
        # ones, so dropping from the front of a dict is quadratic)
        self._pending = OrderedDict()
        self._hists = {}
        self._counts = {}
        self._records = []
        agg = measurement.aggregate
        self.namespace = self._namespace(agg)
        self.sources = {}
        self._handlers = {}        # (system, event) -> (names, handler)
        self._getters = {}         # (system, event) -> fields dict -> tuple
        self._build()

    # -- construction ------------------------------------------------------
    def _namespace(self, agg):
        ns = {
            "_st": self.counters,
            "_pending": self._pending,
            "_pending_pop": self._pending.pop,
            "_pending_get": self._pending.get,
            "_drop_oldest": self._drop_oldest,
            "_reject_start": self._reject_start,
            "_REJECTED": _REJECTED,
            "_share": self._share,
            "_end_shared": self._end_shared,
            "_Shared": _Shared,
            "_hists": self._hists,
            "_hists_get": self._hists.get,
            "_counts": self._counts,
            "_counts_get": self._counts.get,
            "_records_append": self._records.append,
            "_Record": Record,
            "_Hist": HistogramResult,
            "_tgid_of": self.tasks.tgid,
            "_comm_of": self.tasks.comm,
            "_max_pending": self.max_pending,
            "_EMPTY": (),
            "_BE_COMM": ("comm",),
        }
        if agg.kind == "histogram":
            ns.update(_scale=agg.scale, _unit=agg.unit, _step=agg.step, _div=agg.divisor,
                      _NS_PER_MS=NS_PER_MS)
        return ns

    def _build(self):
        pair = self.measurement.pair
        roles = []
        for resolved in self.plan.events:
            name = resolved.logical.name
            if pair is None:
                roles.append((0, resolved, "plain"))
            elif name == pair.start:
                roles.append((0, resolved, "start"))
            elif name == pair.mark:
                roles.append((1, resolved, "mark"))  # after the start: it writes its layout
            elif name == pair.end:
                roles.append((2, resolved, "end"))   # after the start: it reads its layout
            # else: an event the pair does not use
        self._carry_comm_flag = None                 # index of the "comm looked up" flag
        self._start_tuple = True
        # a pending entry's first carried field: after the start's (and the
        # mark's) time stamp
        self._carry_base = 2 if pair is not None and pair.mark is not None else 1
        for _order, resolved, role in sorted(roles, key=lambda r: r[0]):
            prog = _EventProgram(self, resolved, role)
            getattr(self, "_gen_" + role)(prog)
            handler = prog.finish()
            key = (resolved.system, resolved.event)
            names = tuple(prog.names)
            self._handlers[key] = (names, handler)
            self._getters[key] = _tuple_getter(names)
            self.sources[resolved.logical.name] = prog.source

    def _aggregate_names(self):
        agg = self.measurement.aggregate
        if agg.kind == "histogram":
            return list(agg.keys) + [agg.value]
        if agg.kind == "count":
            return list(agg.keys)
        return list(agg.fields)

    def _gen_plain(self, prog):
        prog.filters(early_filters(self.measurement, prog.logical))
        self._gen_aggregate(prog, {})

    def _gen_start(self, prog):
        pair = self.measurement.pair
        emit = prog.code.emit
        # core.semantics: pair filters first, then shared keys, then the
        # start's other filters
        prog.filters(early_filters(self.measurement, prog.logical))
        emit("k = %s" % _tuple_src([prog.load(k) for k in pair.key]))
        shared = self._shared_test(prog)
        if shared:
            # another request in flight with this key: whose end is whose
            # can no longer be told (whether this one passes the filters or not)
            emit("if %s and k in _pending:" % shared)
            emit("_share(k)", 2)
            emit("return", 2)
        # A start its filters reject still takes its key, so that its end is
        # neither measured nor counted unmatched.
        prog.filters(late_filters(self.measurement, prog.logical),
                     reject=("_reject_start(k)",))
        carried = self._carried(prog)
        emit("n = len(_pending)")
        if pair.mark is not None:
            # a list: the mark handler sets its time in place
            emit("_pending[k] = [%s]" % ", ".join(["ts", "None"] + carried))
        else:
            # nothing carried: the start's time stamp alone, no tuple per event
            self._start_tuple = bool(carried)
            emit("_pending[k] = %s" % (_tuple_src(["ts"] + carried) if carried else "ts"))
        emit("if len(_pending) == n:")
        # a reused key replaced the old start (which keeps its age rank)
        emit("_st.replaced_starts += 1", 2)
        emit("elif n >= _max_pending:")
        emit("_drop_oldest()", 2)

    def _shared_test(self, prog):
        """Python test of `k` for a shared key value (Pair.shared), or None."""
        pair = self.measurement.pair
        tests = ["k[%d] == %s" % (pair.key.index(f), prog.const(v))
                 for f, v in sorted(pair.shared.items())]
        return " and ".join(tests) or None

    def _carried(self, prog):
        """Variables of the carried fields as `prog` reads them, then the
        best-effort comm flag where records need it."""
        pair = self.measurement.pair
        carried = [prog.load(c) for c in pair.carry]
        agg = self.measurement.aggregate
        if prog.role == "start":
            if (agg.kind == "records" and "comm" in agg.fields and "comm" in pair.carry
                    and prog.comm_after_the_fact):
                # remember whether the carried comm was looked up after the fact
                carried.append("comm is None")
                self._carry_comm_flag = self._carry_base + len(carried) - 1
        elif self._carry_comm_flag is not None:
            # the same layout as the start's (a mark starting a pair)
            carried.append("comm is None" if prog.comm_after_the_fact else "False")
        return carried

    def _gen_mark(self, prog):
        """Set the mark's time in the pending start; only when no start is
        pending does the mark start the pair (and read what it carries)."""
        pair = self.measurement.pair
        emit = prog.code.emit
        prog.filters(early_filters(self.measurement, prog.logical))
        emit("k = %s" % _tuple_src([prog.load(k) for k in pair.key]))
        # a rejected mark ends the pair: its end is then dropped, as after a
        # rejected start
        prog.filters(late_filters(self.measurement, prog.logical),
                     reject=("_reject_start(k)",))
        emit("s = _pending_get(k)")
        emit("if s is not None and s is not _REJECTED:")
        if pair.shared:
            emit("if s.__class__ is not _Shared:", 2)   # several requests: no mark
            emit("s[1] = ts", 3)
        else:
            emit("s[1] = ts", 2)
        emit("return", 2)
        carried = self._carried(prog)
        emit("_pending[k] = [%s]" % ", ".join(["ts", "ts"] + carried))
        emit("if len(_pending) > _max_pending:")
        emit("_drop_oldest()", 2)

    def _gen_end(self, prog):
        pair = self.measurement.pair
        emit = prog.code.emit
        prog.filters(early_filters(self.measurement, prog.logical))
        key = _tuple_src([prog.load(k) for k in pair.key])
        emit("k = %s" % key)
        emit("s = _pending_pop(k, None)")
        # an end its filters reject ends its pair (one of a shared key's)
        prog.filters(late_filters(self.measurement, prog.logical),
                     reject=("_end_shared(k, s, False)",) if pair.shared else ())
        emit("if s is None:")
        emit("_st.unmatched += 1", 2)
        emit("return", 2)
        if pair.shared:
            emit("if s.__class__ is _Shared:")
            emit("_end_shared(k, s, True)", 2)
            emit("return", 2)
        emit("if s is _REJECTED:")
        emit("return", 2)
        if pair.mark is None:
            emit("x_latency = ts - %s" % ("s[0]" if self._start_tuple else "s"))
        else:
            emit("m = s[1]")
            emit("if m is None:")
            emit("x_latency = ts - s[0]", 2)
            if QUEUED in self._aggregate_names():
                emit("x_queued = 0", 2)
                emit("else:")
                emit("x_latency = ts - m", 2)
                emit("x_queued = m - s[0]", 2)
                emit("if x_queued < 0:", 2)
                emit("_st.negative_latency += 1", 3)
                emit("x_queued = 0", 3)
                prog.code.loaded.add(QUEUED)
            else:
                emit("else:")
                emit("x_latency = ts - m", 2)
        emit("if x_latency < 0:")
        # clock skew between CPUs: never a negative latency
        emit("_st.negative_latency += 1", 2)
        emit("x_latency = 0", 2)
        prog.code.loaded.add(LATENCY)
        carried = {}
        for i, c in enumerate(pair.carry):
            var = "x_" + _check_name(c)
            emit("%s = s[%d]" % (var, i + self._carry_base))
            prog.code.loaded.add(c)
            carried[c] = var
        self._gen_aggregate(prog, carried)

    def _gen_aggregate(self, prog, carried):
        agg = self.measurement.aggregate
        emit = prog.code.emit
        if agg.kind == "histogram":
            keys = _tuple_src([prog.load(k) for k in agg.keys])
            val = prog.load(agg.value)
            if agg.value not in (LATENCY, QUEUED, "ts", "tid", "cpu"):
                # a field the event could not provide (or a pid nobody knows)
                emit("if %s is None:" % val)
                emit("_st.incomplete += 1", 2)
                emit("return", 2)
            if agg.divisor != 1:
                emit("%s = %s // _div" % (val, val))
            emit("hk = %s" % keys)
            emit("h = _hists_get(hk)")
            emit("if h is None:")
            emit("h = _hists[hk] = _Hist(_scale, _unit, _step)", 2)
            # Histogram.add() inlined (count is summed at collect())
            emit("b = h.buckets")
            emit("i = %s" % (_BUCKET_EXPR[agg.scale] % {"v": val}))
            emit("b[i] = b.get(i, 0) + 1")
            emit("h.total += %s" % val)
        elif agg.kind == "count":
            keys = _tuple_src([prog.load(k) for k in agg.keys])
            emit("ck = %s" % keys)
            emit("_counts[ck] = _counts_get(ck, 0) + 1")
        else:
            pairs = ", ".join("%r: %s" % (_check_name(f), prog.load(f)) for f in agg.fields)
            # comm looked up in /proc after the event is marked best effort
            if "comm" in carried and self._carry_comm_flag:
                emit("_records_append(_Record(ts, {%s}, _BE_COMM if s[%d] else _EMPTY))"
                     % (pairs, self._carry_comm_flag))
            elif "comm" in agg.fields and "comm" not in carried and prog.comm_after_the_fact:
                emit("_records_append(_Record(ts, {%s}, _EMPTY if comm is not None else _BE_COMM))"
                     % pairs)
            else:
                emit("_records_append(_Record(ts, {%s}))" % pairs)

    # -- feeding -----------------------------------------------------------
    def handler_for(self, system, event):
        """(format field names, handler) of a tracefs event, or None."""
        return self._handlers.get((system, event))

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

    def feed_lost(self, n):
        """The kernel lost n events (None: lost some, count unknown, counted
        as 1 and flagged in counters.lost_uncounted)."""
        if n is None:
            self.counters.lost += 1
            self.counters.lost_uncounted += 1
        elif n > 0:
            self.counters.lost += int(n)
        else:
            return
        if self.measurement.pair is not None and self.measurement.pair.shared:
            # A lost end would keep its shared key waiting forever.
            for k in [k for k, v in self._pending.items() if v.__class__ is _Shared]:
                del self._pending[k]

    def _reject_start(self, key):
        """A pair start (or mark) its filters rejected: its end is dropped."""
        if self._pending.get(key).__class__ is _Shared:
            return
        self._pending[key] = _REJECTED
        if len(self._pending) > self.max_pending:
            self._drop_oldest()

    def _share(self, key):
        """One more start for a shared key that is already pending."""
        s = self._pending[key]
        if s.__class__ is _Shared:
            s.n += 1
        else:
            self._pending[key] = _Shared(2)

    def _end_shared(self, key, s, counted):
        """An end for a key several starts hold: not measured (`counted` as
        unmatched unless its filters rejected it); the key stays pending for
        the ends still to come."""
        if s.__class__ is not _Shared:
            return
        if counted:
            self.counters.unmatched += 1
        if s.n > 1:
            s.n -= 1
            self._pending[key] = s

    def _drop_oldest(self):
        extra = len(self._pending) - self.max_pending
        if extra <= 0:
            return
        popitem = self._pending.popitem
        for _ in range(extra):
            popitem(last=False)
        self.counters.dropped_starts += extra

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
        c = self.counters
        report = Report(data, lost=c.lost, unmatched=c.unmatched,
                        dropped_starts=c.dropped_starts)
        self.last = Counters()
        self.last.add(c)
        self.totals.add(c)
        c.reset()
        return report


def _tuple_src(items):
    if not items:
        return "_EMPTY"
    return "(%s,)" % ", ".join(items)


def _tuple_getter(names):
    """fields dict -> tuple of the named values, at C speed."""
    if not names:
        return lambda fields: ()
    if len(names) == 1:
        name = names[0]
        return lambda fields: (fields[name],)
    return operator.itemgetter(*names)


class RawFeeder(object):
    """The raw path end to end: pages -> RawDecoder -> Aggregator, without
    RawEvent objects.

        feeder = RawFeeder(decoder, aggregator)
        n = feeder.feed_page(data, cpu)      # events delivered
    """

    def __init__(self, decoder, aggregator):
        self.decoder = decoder
        self.aggregator = aggregator
        self.binding = decoder.compile_sinks(aggregator.raw_sinks(decoder.formats_by_id))

    def feed_page(self, data, cpu):
        n, lost = self.decoder.decode_page_into(data, cpu, self.binding)
        if lost != 0:
            self.aggregator.feed_lost(lost)
        return n
