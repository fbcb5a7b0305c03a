"""Pairs (block I/O issue -> completion) paired a drain lap at a time.

The Aggregator's raw path walks each page entry by entry in Python, holds
each event as a tuple for the time order and calls a generated handler per
event: about 1.2 us of tracer CPU per event, most of what iolatency costs
a busy disk.  Here the per-event work is done by C loops instead (regular
expressions, memoryviews, map/zip/dict/set operations), for the
measurements it suits (bulk_pairs(): chosen at plan time, said under
--explain; the others keep the Aggregator's path):

  split    one regular expression pass tiles a page into entries of the
           bound events' sizes (learnt from the pages) and captures each
           entry's first bytes, up to the last field read; a lap's captures
           of one CPU are joined into records of one stride, whose fields
           are strided memoryview columns; time stamps are the running sum
           of the header deltas.  A page whose entries all have one size
           (the session gives each event its own instance: per-event pages)
           needs no pattern: a check of its headers, then the page itself
           is the records.  A page the pass cannot tile (a time
           extend, a discarded entry, a size not seen yet) is walked by
           RawDecoder into the same columns.  Early (pair) filters drop
           rows, key field overrides (a flush's sector) apply, as read.
  order    per CPU the columns wait as TimeOrder holds events: what a lap
           read up to its watermark is released (TimeOrder's rule), the
           rest waits for the next lap.
  pair     the released batch: keys with one start and one end, the start
           first, no shared value, are paired with dicts and sets (latency
           = end - start, or the pending start of an earlier batch); every
           event of any other key (a sector read twice in the batch, a
           flush, a tie) and the starts left waiting go through the
           Aggregator's own generated handlers and pending table, in time
           order.  A batch whose starts could fill the pending table goes
           through the handlers entirely (drops must fall on the oldest).
  fold     latencies into the histogram: one bucket by min and max, else
           collections.Counter.

What it computes is what the Aggregator computes on the same events in time
order (core.semantics): the shared scenario table runs it too.
"""

import bisect
import collections
import functools
import itertools
import operator
import re
import struct
import sys

from kerntrace.core.buckets import NS_PER_MS, bucket_index
from kerntrace.core.model import LATENCY, LINEAR, LOG2, POW2_MS
from kerntrace.core.results import Histogram as HistogramResult
from kerntrace.core.semantics import late_filters, pair_filters

from .pagecount import handler_reads
from .rawparse import COMMIT_MASK, RawFormatError, page_extent, parse_header_event
from .timeorder import release_round

_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge, "&": operator.and_}
_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
          (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
# entry sizes the splitting pass knows at most (each is one alternative)
MAX_SIZES = 6
_repeat = itertools.repeat
_compress = itertools.compress
_is_not_none = functools.partial(operator.is_not, None)
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)


def bulk_pairs(measurement, plan, byteorder=None):
    """None when `measurement` can be paired in bulk on this plan, else why
    not (one phrase, for --explain)."""
    pair = measurement.pair
    agg = measurement.aggregate
    if pair is None:
        return "not a pair"
    if plan.read_path != "raw":
        return "text trace_pipe"
    if (byteorder or sys.byteorder) != "little" or sys.byteorder != "little":
        return "not a little-endian trace"
    if plan.header_event:
        try:
            if not parse_header_event(plan.header_event).is_standard():
                return "an entry header with other type values"
        except RawFormatError as e:
            return str(e)
    if plan.task_events or plan.kernel_stacks or plan.count_route:
        return "task names, stacks or kernel counts are read"
    if pair.mark is not None or pair.nested is not None or pair.abandon is not None:
        return "a pair with a mark, nesting or an abandon event"
    if pair.carry:
        return "fields carried from the start"
    if agg.kind != "histogram" or agg.keys or agg.value != LATENCY:
        return "not one latency histogram"
    if agg.scale not in (LOG2, LINEAR, POW2_MS):
        return "histogram scale %s" % agg.scale
    roles = _roles(measurement, plan)
    if set(roles.values()) != {"start", "end"} or len(roles) != 2:
        return "the pair's events are not one tracefs event each"
    if any(f.op not in _OPS for f in pair_filters(measurement)):
        return "a filter the columns cannot test"
    for resolved in plan.events:
        if resolved.logical.name not in (pair.start, pair.end):
            continue
        if late_filters(measurement, resolved.logical):
            return "filters decided per event (not by the pair key)"
        fmt = resolved.format
        if fmt is None or fmt.id is None:
            return "event %s has no format yet" % resolved.name
        for name in _column_names(measurement, resolved):
            fname = resolved.fields.get(name)
            f = fmt.field(fname) if fname else None
            if f is None or f.is_string or f.data_loc or f.array_len is not None or \
                    (f.size, bool(f.signed)) not in _CODES:
                return "field %s of %s is not a whole number" % (name, resolved.name)
            field = resolved.logical.field(name)
            if field is not None and field.if_zero is not None:
                return "field %s is derived" % name
            if field is not None and field.override is not None and (
                    name not in pair.key or not _override_ok(resolved, field)):
                return "field %s has an override the columns cannot apply" % name
            if name in resolved.probe.values:
                return "field %s is set by the probe" % name
    return None


def _roles(measurement, plan):
    pair = measurement.pair
    out = {}
    for resolved in plan.events:
        if resolved.logical.name == pair.start:
            out[(resolved.system, resolved.event)] = "start"
        elif resolved.logical.name == pair.end:
            out[(resolved.system, resolved.event)] = "end"
    return out


def _column_names(measurement, resolved):
    """Logical fields the bulk pairing reads of an event: the key, then
    what the pair filters test."""
    names = list(measurement.pair.key)
    for f in pair_filters(measurement):
        # (the handlers test them on every event of the pair)
        if f.field not in names:
            names.append(f.field)
    return names


class _Role(object):
    """One of the pair's two events: what is read of it, and how.

    stored    format fields kept as integer columns (the thread id where the
              handler reads it, the key fields no filter pins)
    pinned    key field -> the value an early == filter pins it to (on
              both events): checked when read, then not kept
    filters   the pair filters: (format field, offset, size, signed, op, value)
    overrides key field overrides: (stored index, [(string offset, size)],
              filters, value, first bytes the strings can start with)
    """

    def __init__(self, role, ev_id, resolved, names, handler, source, measurement, pinned):
        self.role = role
        self.ev_id = ev_id
        fmt = resolved.format
        self.handler = handler
        self.with_tid = "tid" in handler_reads(source)
        pair = measurement.pair
        fname = resolved.fields.get
        self.pinned = pinned
        stored = ["common_pid"] if self.with_tid else []
        stored += [fname(k) for k in pair.key if k not in pinned]
        self.stored = tuple(stored)
        self.specs = tuple(_spec(fmt.field(n)) for n in stored)
        self.free = tuple(stored.index(fname(k)) for k in pair.key if k not in pinned)
        flts = [(fname(f.field), _OPS[f.op], f.value) for f in pair_filters(measurement)]
        self.filters = tuple(_spec(fmt.field(n)) + (op, v) for n, op, v in flts)
        strings = [n for n in names if fmt.field(n).is_string]
        self.overrides = []
        for k in pair.key:
            field = resolved.logical.field(k)
            if field is None or field.override is None:
                continue
            filters, value = field.override
            srcs = [fmt.field(fname(f.field)) for f in filters]
            first = set((f.glob_parts()[1] if f.op == "glob" else f.value)[:1].encode()
                        for f in filters)
            self.overrides.append((stored.index(fname(k)),
                                   [(sf.offset, sf.size, strings.index(sf.name)) for sf in srcs],
                                   filters, value, first))
        # the handler's values (tid, its fields...): a pinned field is its
        # value, an override's string None (the override is applied to
        # the stored key already)
        pin_by_name = dict((fname(k), v) for k, v in pinned.items())
        vals = [("col", stored.index("common_pid"))] if self.with_tid else [("const", 0)]
        for n in names:
            if n in stored:
                vals.append(("col", stored.index(n)))
            elif n in pin_by_name:
                vals.append(("const", pin_by_name[n]))
            else:
                vals.append(("const", None))
        self.values = tuple(vals)
        ends = [o + sz for o, sz, _sg in self.specs] + [f[0] + f[1] for f in self.filters] + [2]
        ends += [o + 1 for ov in self.overrides for o, _sz, _i in ov[1]]
        self.extent = max(ends)
        # the walk reads the stored fields (after the thread id), the filters'
        # and the strings
        self.walk_names = tuple(n for n in stored if n != "common_pid")
        self.walk_filters = []
        for n, op, v in flts:
            if n not in self.walk_names:
                self.walk_names += (n,)
            self.walk_filters.append((self.walk_names.index(n), op, v))
        self.walk_strings = tuple(len(self.walk_names) + i for i in range(len(strings)))
        self.walk_names += tuple(strings)


def _spec(f):
    return (f.offset, f.size, bool(f.signed))


def _pinned(measurement):
    """Key fields an early == filter pins on both events (no override):
    field -> value."""
    pair = measurement.pair
    out = {}
    for f in pair_filters(measurement):
        if f.op == "==" and f.field in pair.key:
            if any(e.field(f.field) is not None and e.field(f.field).override is not None
                   for e in measurement.events):
                continue
            out[f.field] = f.value
    return out


def _override_ok(resolved, field):
    """Can the columns apply this key field's override: every filter tests
    a fixed-size string of the event against text anchored at its start
    (a row whose string does not start with the text's first byte cannot
    match)."""
    filters, _value = field.override
    for f in filters:
        src = resolved.fields.get(f.field)
        sf = resolved.format.field(src) if src else None
        if sf is None or not sf.is_string or sf.data_loc or f.op not in ("glob", "=="):
            return False
        if f.op == "glob":
            start, text, _end = f.glob_parts()
            if not start or not text:
                return False
        elif not f.value:
            return False
        dep = resolved.logical.field(f.field)
        if dep is not None and (dep.if_zero is not None or dep.override is not None):
            return False
    return True


class _Run(object):
    """One CPU's events of one role waiting for release: parallel lists."""

    __slots__ = ("ts", "seq", "cols")

    def __init__(self, ncols):
        self.ts = []
        self.seq = []
        self.cols = [[] for _ in range(ncols)]

    def take(self, limit):
        """Remove and return (ts, seq, cols) of the events with ts <= limit
        (None: all)."""
        ts = self.ts
        n = len(ts) if limit is None else bisect.bisect_right(ts, limit)
        if n == len(ts):
            out = (ts, self.seq, self.cols)
            self.ts, self.seq, self.cols = [], [], [[] for _ in self.cols]
            return out
        out = (ts[:n], self.seq[:n], [c[:n] for c in self.cols])
        del ts[:n]
        del self.seq[:n]
        for c in self.cols:
            del c[:n]
        return out


def _column(view, stride, m, off, fsize, signed):
    """Field (off, fsize) of m records of `stride` bytes in `view`, a list."""
    if fsize == 8 and stride % 8:
        # a stride that is not a multiple of 8: two 32-bit words
        lo = view[off:off + (m - 1) * stride + 4].cast("I")[::stride >> 2].tolist()
        hi = view[off + 4:off + (m - 1) * stride + 8].cast(
            "i" if signed else "I")[::stride >> 2].tolist()
        if hi.count(0) == m:
            return lo
        return list(map(operator.or_, lo, map(operator.lshift, hi, _repeat(32))))
    code = _CODES[(fsize, signed)]
    return view[off:off + (m - 1) * stride + fsize].cast(code)[::stride // fsize].tolist()


class BulkPairer(object):
    """The session's decoder and time order for a measurement bulk_pairs()
    accepted.

        bp = BulkPairer(measurement, plan, decoder, aggregator)
        read_round(readers, bp.feed_page, bp)  # bp is the round's order

    Counters: split_pages, walked_pages; bulk_events, handler_events (how
    the events were paired)."""

    def __init__(self, measurement, plan, decoder, aggregator):
        self.measurement = measurement
        self.decoder = decoder
        self.page = decoder.page
        self.pending, self.hists, self.counters = aggregator.pairing_state()
        self.max_pending = aggregator.max_pending
        self.agg = measurement.aggregate
        pair = measurement.pair
        self.min_latency = pair.min_latency
        self.pinned = _pinned(measurement)
        roles = _roles(measurement, plan)
        self.roles = {}
        sizes = set()
        for resolved in plan.events:
            role = roles.get((resolved.system, resolved.event))
            if role is None:
                continue
            names, handler = aggregator.handler_for(resolved.system, resolved.event)
            self.roles[resolved.format.id] = _Role(
                role, resolved.format.id, resolved, names, handler,
                aggregator.sources.get(resolved.logical.name, ""), measurement, self.pinned)
            sizes.add(_predicted_size(resolved.format))
        self.start = [r for r in self.roles.values() if r.role == "start"][0]
        self.end = [r for r in self.roles.values() if r.role == "end"][0]
        # key tuples from the free (unpinned) key columns
        self._key_parts = tuple(("const", self.pinned[k]) if k in self.pinned else ("free", None)
                                for k in pair.key)
        self._nfree = sum(1 for kind, _v in self._key_parts if kind == "free")
        # shared key values: (position among the free columns or None, value)
        self._shared = []
        for k, v in sorted((pair.shared or {}).items()):
            if k in self.pinned:
                self._shared.append((None, v))
            else:
                free = [kk for kk in pair.key if kk not in self.pinned]
                self._shared.append((free.index(k), v))
        # every entry captured up to the largest extent read, 4-byte aligned
        self._capture = (4 + max(r.extent for r in self.roles.values()) + 3) & ~3
        self._walk_binding = decoder.compile_sinks(dict(
            (ev_id, (r.walk_names, self._walk_sink(r))) for ev_id, r in self.roles.items()))
        # A "cpu" here is the reader's: a CPU number, or (CPU, buffer
        # index) where each event has its own buffer (a stream of its own).
        self._held = {}             # cpu -> [records, [(index, page ts)], stride, count]
        self._runs = {}             # cpu -> {ev_id: _Run}
        self._seq = {}              # cpu -> entries read so far
        self._last = {}             # cpu -> last ts read this lap
        self._truncated = set()
        self.watermark = None
        self._sizes = sizes
        self._compile()
        self._commit_code = "<" + ("Q" if self.page.commit_size == 8 else "I")
        self.split_pages = 0
        self.fixed_pages = 0
        self.walked_pages = 0
        self.bulk_events = 0
        self.handler_events = 0

    # -- splitting pages -------------------------------------------------------
    def _compile(self):
        """The two patterns for the known entry sizes: `tile` matches a
        page's run of such entries, `split` captures the first bytes of
        each (the entries' header types differ: one parse)."""
        sizes = sorted(s for s in self._sizes if s + 4 >= self._capture and s <= 28 * 4)
        if not sizes:
            self._split = self._tile = None
            return
        alts, heads = [], b""
        for s in sizes:
            cls = b"".join(re.escape(bytes([(s >> 2) | (k << 5)])) for k in range(8))
            heads += cls
            alts.append(b"[" + cls + b"].{%d}" % (s + 3))
        body = b"|".join(alts)
        self._tile = re.compile(b"(?s)(?:" + body + b")*")
        self._split = re.compile(b"(?s)(?=([" + heads + b"].{%d}))(?:" % (self._capture - 1)
                                 + body + b")")

    def _run(self, cpu, ev_id):
        runs = self._runs.get(cpu)
        if runs is None:
            runs = self._runs[cpu] = dict((i, _Run(len(r.stored)))
                                          for i, r in self.roles.items())
        return runs[ev_id]

    def feed_page(self, data, cpu):
        """Take one page of `cpu`; returns lost as
        RawDecoder.decode_page_into() does.  Its entries are decoded with
        the CPU's other pages of the lap (end_round), a C pass each for all
        of them: per page the passes would cost more than its events."""
        got = self._fixed_page(data, cpu)
        if got is not False:
            self.fixed_pages += 1
            return got
        got = self._split_page(data, cpu)
        if got is not False:
            self.split_pages += 1
            return got
        self.walked_pages += 1
        self._decode_split(cpu)     # (the CPU's events stay in read order)
        _n, lost = self.decoder.decode_page_into(data, cpu, self._walk_binding)
        self._learn(data)
        return lost

    def _data(self, data):
        """(start, stop, lost) of a page's entries, None when the page is
        cut short."""
        return page_extent(self.page, self._commit_code, data)

    def _hold(self, cpu, stride, data, n):
        """The CPU's lap record list for records of `stride` bytes (the
        held ones of another stride decoded first), with this page's first
        record's time stamp noted."""
        held = self._held.get(cpu)
        if held is not None and held[2] != stride:
            self._decode_split(cpu)
            held = None
        if held is None:
            held = self._held[cpu] = [[], [], stride, 0]
        held[1].append((held[3], struct.unpack_from("<Q", data, self.page.ts_offset)[0]))
        held[3] += n
        return held[0]

    def _fixed_page(self, data, cpu):
        """Hold a page whose entries are all of one known size (no time
        extend, at most padding at the end) as it is; False when it is not
        such a page."""
        got = self._data(data)
        if got is None:
            return False
        start, stop, lost = got
        if stop - start < 8:
            return False
        tl = data[start] & 31
        L = (tl << 2) + 4
        if not 0 < tl <= 28 or (tl << 2) not in self._sizes or L < self._capture:
            return False
        n = (stop - start) // L
        heads = data[start:start + n * L:L].translate(_TYPE_LEN)
        k = n - len(heads.lstrip(heads[:1]))
        end = start + k * L
        if end != stop:
            # only padding that ends the page's data may follow
            if end + 4 > stop or struct.unpack_from("<I", data, end)[0] != 29:
                return False
        if k:
            self._hold(cpu, L, data, k).append(memoryview(data)[start:end])
        return lost

    def _split_page(self, data, cpu):
        """Capture a page's entries, held for the CPU's lap; False (nothing
        held) when the page is not a run of known entry sizes."""
        got = self._data(data)
        if got is None or self._tile is None:
            return False
        start, stop, lost = got
        end = self._tile.match(data, start, stop).end()
        if end != stop:
            # only padding that ends the page's data may follow
            if end + 4 > stop or struct.unpack_from("<I", data, end)[0] != 29:
                return False
        if end == start:
            return lost
        found = self._split.findall(data, start, end)
        self._hold(cpu, self._capture, data, len(found)).extend(found)
        return lost

    def _decode_split(self, cpu):
        """The held entries of `cpu` into its runs."""
        held = self._held.pop(cpu, None)
        if held is None:
            return
        found, firsts, L, n = held
        if not n:
            return
        view = memoryview(b"".join(found))
        deltas = list(map(operator.rshift, view.cast("I")[::L >> 2].tolist(), _repeat(5)))
        # each page's first entry counts from its page's time stamp
        prev = before = 0
        for i, page_ts in firsts:
            before += sum(deltas[prev:i])       # the time of entry i - 1
            deltas[i] += page_ts - before
            prev = i
        ts = list(itertools.accumulate(deltas))
        seq0 = self._seq.get(cpu, 0)
        self._seq[cpu] = seq0 + n
        self._last[cpu] = ts[-1]
        types = view[4:4 + (n - 1) * L + 2].cast("H")[::L >> 1].tolist()
        known = 0
        for ev_id, r in self.roles.items():
            k = types.count(ev_id)
            if not k:
                continue
            known += k
            sel = None if k == n else list(map(operator.eq, types, _repeat(ev_id)))
            self._store(r, cpu, view, L, n, sel, ts, range(seq0, seq0 + n))
        self.decoder.unknown += n - known

    def _store(self, r, cpu, view, L, n, sel, ts, seqs):
        """Role r's rows (sel: mask, None: all) of the captured records (L
        bytes each) into the CPU's run: its early filters drop rows,
        overrides apply."""
        for off, size, signed, op, value in r.filters:
            col = _column(view, L, n, 4 + off, size, signed)
            if sel is not None:
                col = list(_compress(col, sel))
            if op is operator.eq:
                if col.count(value) == len(col):
                    continue
            else:
                ok = list(map(op, col, _repeat(value)))
                if all(ok):
                    continue
            keep = list(map(op, _column(view, L, n, 4 + off, size, signed), _repeat(value)))
            sel = keep if sel is None else list(map(operator.and_, sel, keep))
        cols = [_column(view, L, n, 4 + o, sz, sg) for o, sz, sg in r.specs]
        for ov in r.overrides:
            _override(ov, cols, view, L, n)
        if sel is not None:
            ts = _compress(ts, sel)
            seqs = _compress(seqs, sel)
            cols = [_compress(c, sel) for c in cols]
        run = self._run(cpu, r.ev_id)
        run.ts.extend(ts)
        run.seq.extend(seqs)
        for dst, c in zip(run.cols, cols):
            dst.extend(c)

    def _walk_sink(self, r):
        ev_id = r.ev_id
        with_tid = r.with_tid
        filters, strings, overrides = r.walk_filters, r.walk_strings, r.overrides
        nstored = len(r.stored) - (1 if with_tid else 0)     # (after the thread id)

        def sink(ts, cpu, values):
            fields = values[1:]
            for i, op, value in filters:
                if not op(fields[i], value):
                    return
            row = list(values[:1 + nstored] if with_tid else fields[:nstored])
            for col, srcs, flts, value, _first in overrides:
                if any(f.matches(fields[strings[i]]) for f, (_o, _s, i) in zip(flts, srcs)):
                    row[col] = value
            run = self._run(cpu, ev_id)
            run.ts.append(ts)
            seq = self._seq.get(cpu, 0)
            self._seq[cpu] = seq + 1
            run.seq.append(seq)
            for dst, v in zip(run.cols, row):
                dst.append(v)
            self._last[cpu] = ts
        return sink

    def _learn(self, data):
        """Add the entry sizes of our events in a walked page to the split."""
        ph = self.page
        start = ph.data_offset
        if len(data) < start + 4:
            return
        (commit,) = struct.unpack_from(self._commit_code, data, ph.commit_offset)
        size = min(commit & COMMIT_MASK, len(data) - start)
        words = memoryview(data)[start:start + (size & ~3)].cast("I")
        i, n = 0, len(words)
        new = set()
        try:
            while i < n:
                h = words[i]
                tl = h & 31
                if 0 < tl <= 28:
                    if i + 1 < n and (words[i + 1] & 0xffff) in self.roles:
                        new.add(tl << 2)
                    i += 1 + tl
                elif tl == 0:
                    i = i + 2 + ((words[i + 1] + 3 - 4) >> 2) if i + 1 < n else n
                elif tl == 29:
                    if not h >> 5:
                        break
                    i = i + 1 + ((words[i + 1] + 3) >> 2) if i + 1 < n else n
                else:
                    i += 2
        finally:
            words.release()
        new -= self._sizes
        if new and len(self._sizes) + len(new) <= MAX_SIZES:
            self._sizes |= new
            self._compile()

    # -- the time order (readers.read_round's interface) -----------------------
    def truncated(self, cpu):
        self._truncated.add(cpu)

    def end_round(self):
        """TimeOrder.end_round(): release what is known complete."""
        for cpu in list(self._held):
            self._decode_split(cpu)
        top = cut = None
        for cpu, last in self._last.items():
            if cpu in self._truncated and (cut is None or last < cut):
                cut = last
            if top is None or last > top:
                top = last
        self._last.clear()
        return release_round(self, cut, top)

    def flush(self):
        """TimeOrder.flush(): everything read is released."""
        for cpu in list(self._held):
            self._decode_split(cpu)
        self._last.clear()
        self._truncated.clear()
        return self._release(None)

    # -- pairing ---------------------------------------------------------------
    def _release(self, limit):
        parts = {self.start.ev_id: [], self.end.ev_id: []}
        for cpu in sorted(self._runs):
            for ev_id, run in self._runs[cpu].items():
                if run.ts:
                    parts[ev_id].append((cpu,) + run.take(limit))
        total = sum(len(p[1]) for ps in parts.values() for p in ps)
        if total:
            self._pair(self._joined(parts[self.start.ev_id], self.start),
                       self._joined(parts[self.end.ev_id], self.end))
        return total

    def _joined(self, parts, r):
        """(ts, seq, cpus, cols, match keys) of one role's released events."""
        if len(parts) == 1:
            cpu, ts, seq, cols = parts[0]
            cpus = [cpu] * len(ts)
        else:
            ts, seq, cpus = [], [], []
            cols = [[] for _ in r.stored]
            for cpu, t, s, c in parts:
                ts.extend(t)
                seq.extend(s)
                cpus.extend(_repeat(cpu, len(t)))
                for dst, src in zip(cols, c):
                    dst.extend(src)
        if len(r.free) == 1:
            mk = cols[r.free[0]]
        else:
            mk = list(zip(*[cols[i] for i in r.free]))
        return ts, seq, cpus, cols, mk

    def _full(self, mks):
        """Pending-table keys (the pair key tuples) of match keys."""
        parts = []
        j = 0
        for kind, v in self._key_parts:
            if kind == "const":
                parts.append(_repeat(v))
            else:
                parts.append(mks if self._nfree == 1 else map(operator.itemgetter(j), mks))
                j += 1
        return list(zip(*parts))

    def _pair(self, s, e):
        sts, _sseq, _scpu, _scols, smk = s
        ets, _eseq, _ecpu, _ecols, emk = e
        pending = self.pending
        if len(pending) + len(sts) > self.max_pending or not self._nfree:
            # starts may be dropped (in time order), or every key is one:
            # the handlers take all
            self._by_handlers(s, e, None, None)
            return
        ds = dict(zip(smk, sts))
        de = dict(zip(emk, ets))
        odd = set()         # keys whose events the handlers take
        if len(ds) != len(smk):
            odd.update(_repeated(smk))
        if len(de) != len(emk):
            odd.update(_repeated(emk))
        for pos, value in self._shared:
            if pos is None:
                odd.update(smk)
                odd.update(emk)
            elif self._nfree == 1:
                if value in ds or value in de:
                    odd.add(value)
            else:
                for mk in (smk, emk):
                    odd.update(_compress(mk, map(operator.eq, map(operator.itemgetter(pos), mk),
                                                 _repeat(value))))
        lat = []
        if emk and not odd and len(de) == len(emk) and de.keys() <= ds.keys():
            # every end's start is in the batch (the common case)
            lat = list(map(operator.sub, ets, map(ds.__getitem__, emk)))
            both = de.keys()
            if min(lat) <= 0:
                both, lat = self._ordered(ds, de, set(both), odd)
        else:
            both = (ds.keys() & de.keys()) - odd
            if both:
                both, lat = self._ordered(ds, de, both, odd)
        if both and pending:
            # an older start of a key is replaced by the batch's
            if len(pending) < len(both):
                stale = [k for k in pending if self._match_key(k) in both]
            else:
                stale = self._full(list(both))
            collections.deque(map(pending.pop, stale, _repeat(None)), 0)
        only_end = de.keys() - ds.keys()
        if odd:
            only_end -= odd
        if only_end:
            oe = list(only_end)
            held = list(map(pending.pop, self._full(oe), _repeat(None)))
            misses = held.count(None)
            if misses:
                self.counters.unmatched += misses
                found = list(map(_is_not_none, held))
                oe = list(_compress(oe, found))
                held = list(_compress(held, found))
            lat.extend(map(operator.sub, map(de.__getitem__, oe), held))
        self.bulk_events += 2 * len(both) + len(only_end)
        waiting = ds.keys() - de.keys()
        if odd:
            waiting -= odd
        if odd:
            self._by_handlers(s, e, odd, waiting)
        elif waiting:
            rows = self._waiting(s, waiting)
            if len(rows) > 1:
                rows.sort()
            pending.update(zip(map(operator.itemgetter(4), rows),
                               map(operator.itemgetter(0), rows)))
            self.bulk_events += len(rows)
        if lat:
            self._fold(lat)

    def _ordered(self, ds, de, both, odd):
        """(keys paired, latencies): a key whose end is not after its start
        goes to the handlers (odd), which order them."""
        bk = list(both)
        lat = list(map(operator.sub, map(de.__getitem__, bk), map(ds.__getitem__, bk)))
        if min(lat) <= 0:
            late = set(_compress(bk, map(operator.ge, _repeat(0), lat)))
            odd |= late
            both = both - late
            bk = list(both)
            lat = list(map(operator.sub, map(de.__getitem__, bk), map(ds.__getitem__, bk)))
        return both, lat

    def _match_key(self, key):
        if self._nfree == 1:
            return key[[i for i, (kind, _v) in enumerate(self._key_parts) if kind == "free"][0]]
        return tuple(v for (kind, _c), v in zip(self._key_parts, key) if kind == "free")

    def _waiting(self, s, waiting):
        """(ts, cpu, seq, None, key) of the starts whose match key waits."""
        sts, sseq, scpu, _cols, smk = s
        sel = list(map(waiting.__contains__, smk))
        keys = self._full(list(_compress(smk, sel)))
        return [(t, c, q, None, k) for (t, c, q), k in
                zip(_compress(zip(sts, scpu, sseq), sel), keys)]

    def _rows(self, r, ev, sel):
        """(ts, cpu, seq, handler, values) of role r's events (sel: mask)."""
        ts, seq, cpus, cols, _mk = ev
        if not ts:
            return []
        vcols = [cols[i] if kind == "col" else _repeat(i) for kind, i in r.values]
        items = zip(ts, cpus, seq, _repeat(r.handler), zip(*vcols))
        return list(_compress(items, sel) if sel is not None else items)

    def _by_handlers(self, s, e, odd, waiting):
        """The events of the odd keys (None: all) through the generated
        handlers, and the waiting starts into the pending table, in time
        order (ties: CPU, then read order)."""
        sel_s = list(map(odd.__contains__, s[4])) if odd is not None else None
        sel_e = list(map(odd.__contains__, e[4])) if odd is not None else None
        rows = self._rows(self.start, s, sel_s) + self._rows(self.end, e, sel_e)
        self.handler_events += len(rows)
        if waiting:
            w = self._waiting(s, waiting)
            self.bulk_events += len(w)
            rows += w
        rows.sort(key=_ORDER)
        pending = self.pending
        for ts, cpu, _seq, handler, values in rows:
            if handler is None:
                pending[values] = ts
            else:
                handler(ts, cpu if cpu.__class__ is int else cpu[0], values)

    def _fold(self, lat):
        """Latencies (ns) into the histogram, as the end handler does."""
        agg = self.agg
        lo, hi = min(lat), max(lat)
        if lo < 0:
            # clock skew between CPUs: never a negative latency
            lat = list(map(max, lat, _repeat(0)))
            lo = 0
        if self.min_latency:
            lat = list(filter(self.min_latency.__le__, lat))
            if not lat:
                return
            lo = min(lat)
        if agg.divisor != 1:
            lat = list(map(operator.floordiv, lat, _repeat(agg.divisor)))
            lo, hi = lo // agg.divisor, hi // agg.divisor
        h = self.hists.get(())
        if h is None:
            h = self.hists[()] = HistogramResult(agg.scale, agg.unit, agg.step)
        b = h.buckets
        h.total += sum(lat)
        first = bucket_index(agg.scale, lo, agg.step)
        if first == bucket_index(agg.scale, hi, agg.step):
            # (buckets are monotonic: all in one)
            b[first] = b.get(first, 0) + len(lat)
            return
        if agg.scale == POW2_MS:
            rows = collections.Counter(map(operator.floordiv,
                                           map(operator.add, lat, _repeat(NS_PER_MS - 1)),
                                           _repeat(NS_PER_MS)))
            rows = [(0 if q <= 1 else (q - 1).bit_length(), n) for q, n in rows.items()]
        elif agg.scale == LOG2:
            rows = [(i or 1, n) for i, n in
                    collections.Counter(map(int.bit_length, lat)).items()]
        else:
            rows = collections.Counter(map(operator.floordiv, lat, _repeat(agg.step))).items()
        for i, n in rows:
            b[i] = b.get(i, 0) + n


# Events of equal time stamps go in the order of (reader's cpu, read order):
# where each event has its own buffer, (CPU, buffer index), the start's
# buffer index (the plan's event order; the kernel keeps no order between
# two buffers).
_ORDER = operator.itemgetter(0, 1, 2)
# a header's first byte -> its type_len
_TYPE_LEN = bytes(b & 31 for b in range(256))


def _override(ov, cols, view, L, n):
    """Apply a key field's override to its column: only rows whose string
    starts with one of the filters' first bytes can match, and are tested."""
    col, srcs, filters, value, first = ov
    key = cols[col]
    done = set()
    for off, _size, _i in srcs:
        heads = view[4 + off:4 + off + (n - 1) * L + 1:L].tobytes()
        for b in first:
            at = heads.find(b)
            while at >= 0:
                if at not in done:
                    done.add(at)
                    pos = at * L + 4
                    strs = [_cstr(view[pos + o:pos + o + sz].tobytes()) for o, sz, _j in srcs]
                    if any(f.matches(strs[k]) for k, f in enumerate(filters)):
                        key[at] = value
                at = heads.find(b, at + 1)


def _cstr(b):
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode("utf-8", "replace")


def _repeated(keys):
    """The keys that occur more than once."""
    counts = collections.Counter(keys)
    return _compress(counts.keys(), map(operator.lt, _repeat(1), counts.values()))


def _predicted_size(fmt):
    """The payload size of an event whose strings are all empty (one NUL
    each), rounded up to whole words: what most of its entries take."""
    if fmt is None or not fmt.fields:
        return 0
    size = max(f.offset + f.size for f in fmt.fields)
    size += sum(1 for f in fmt.fields if f.data_loc)
    return (size + 3) & ~3
