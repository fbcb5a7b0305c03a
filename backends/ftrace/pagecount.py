"""Plain counts straight from trace_pipe_raw pages, without decoding events.

A Count measurement without pairing needs of each event only its type and
the few fields its keys and filters read; decoding whole events into tuples
and calling a handler per event (what the Aggregator's raw path does) costs
more than a busy kernel's syscall rate allows (bench/count_pages.py).
PageCounter instead tallies, per page, the distinct
(event type, [thread id], key fields...) seen, and hands each distinct one
with its multiplicity to the Aggregator's own generated handler (called
with `n`): filters and keys mean exactly what they mean for records, and
the folding costs a few calls per page instead of one per event.

Two ways through a page, both exact:
  uniform  under load a page is a run of entries of one size (one event
           format, no time extends, no padding between): the columns read
           are strided memoryviews and collections.Counter tallies their
           rows in C (a few microseconds for a page of ~145 events)
  walk     any other page (time extends, padding, several sizes, entries
           past 28 words, a byte order not ours): RawDecoder's own walk, into
           per-type counting callbacks
Losses come from the page header (missed-events flag) as for every page.

Which measurements qualify (counts_from_pages()): Count aggregate, no pair,
raw read path, nothing read per event in time order (no task events
followed), no key or filter on the time stamp, and every field read a
fixed-size integer.  Else the Aggregator's path runs, unchanged.
"""

import collections
import re
import struct
import sys

from .rawparse import compile_layout, page_extent

# struct codes of strided memoryview columns, by (size, signed); 8-byte
# fields are read as two 4-byte words (a 28-byte entry stride is not a
# multiple of 8) and joined when folded.
_COLUMN_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
                 (4, False): "I", (4, True): "i"}
_TS_OR_CPU = re.compile(r"\b(ts|cpu)\b")


def handler_reads(source):
    """Which per-event context a generated handler's body uses: a set of
    "ts", "cpu", "tid" (its first line unpacks v into _v0 = tid, _v1...)."""
    body = source.split("\n", 2)[2] if source.count("\n") >= 2 else ""
    used = set(_TS_OR_CPU.findall(body))
    if re.search(r"\b_v0\b", body):
        used.add("tid")
    return used


def counts_from_pages(measurement, plan):
    """None when the measurement's events can be counted per page on this
    plan, else why not (one phrase).  PageCounter checks the generated
    handlers again and refuses in the same terms."""
    agg = measurement.aggregate
    if agg.kind != "count":
        return "not a plain count"
    if measurement.pair is not None:
        return "paired events"
    if plan.read_path != "raw":
        return "text trace_pipe"
    if plan.task_events:
        return "task names and process ids followed in time order"
    read = set(agg.keys) | set(f.field for f in measurement.filters)
    if "ts" in read:
        return "keyed or filtered on time stamps"
    for ev in plan.events:
        if ev.format is None:
            return "event %s has no format yet" % ev.name
        for name in read:
            src = ev.fields.get(name)
            f = ev.format.field(src) if src else None
            if f is None and name == "comm":
                f = ev.format.field("comm")
            if f is not None and (f.is_string or f.size not in (1, 2, 4, 8)):
                return "field %s of event %s is not a whole number" % (name, ev.name)
    return None


class NotCountable(Exception):
    """The events cannot be counted per page after all (a string field, a
    handler reading the time stamp): the Aggregator's path runs."""


class _EventColumns(object):
    """How one event type's rows are read and folded back."""

    __slots__ = ("ev_id", "names", "handler", "min_size", "with_tid", "columns",
                 "rebuild")

    def __init__(self, ev_id, fmt, names, handler, with_tid, byteorder):
        self.ev_id = ev_id
        self.names = tuple(names)
        self.handler = handler
        self.with_tid = with_tid
        layout = compile_layout(fmt, self.names, byteorder=byteorder)
        if layout.fix is not None:
            raise NotCountable("event %s:%s: a string field is read" % (fmt.system, fmt.name))
        self.min_size = layout.min_size
        # strided columns: (byte offset in the payload, code) per word read;
        # rebuild turns a row of them back into (tid, fields...)
        cols = []
        parts = []                          # per value: (first column, n words, signed)
        fields = ([fmt.field("common_pid")] if with_tid else []) + [fmt.field(n) for n in names]
        for f in fields:
            if f.size == 8:
                parts.append((len(cols), 2, bool(f.signed)))
                cols.append((f.offset, "I"))
                cols.append((f.offset + 4, "i" if f.signed else "I"))
            else:
                code = _COLUMN_CODES.get((f.size, bool(f.signed)))
                if code is None:
                    raise NotCountable("field %s of %s bytes" % (f.name, f.size))
                parts.append((len(cols), 1, bool(f.signed)))
                cols.append((f.offset, code))
        self.columns = tuple(cols)
        self.rebuild = _rebuilder(parts, with_tid)


def _rebuilder(parts, with_tid):
    """A function: row of column words (after the event type) -> (tid,
    fields...), generated (it runs once per distinct row of every page)."""
    items = [] if with_tid else ["0"]
    for first, n, _signed in parts:
        # little-endian: the low word, then the high word, read signed when
        # the field is (the join is then the field's signed value)
        items.append("r[%d]" % first if n == 1 else "r[%d] | (r[%d] << 32)" % (first, first + 1))
    if with_tid and all(n == 1 for _f, n, _s in parts):
        return tuple            # the row is (tid, fields...) already
    return eval("lambda r: (%s,)" % ", ".join(items))     # only the indexes above


class PageCounter(object):
    """Counts a plain Count measurement's events page by page.

        pc = PageCounter(decoder, aggregator.raw_sinks(decoder.formats_by_id),
                         aggregator.sources_by_event())
        lost = pc.count_page(page, cpu)    # counts folded into the aggregator

    decoder  the session's RawDecoder (page and entry header layouts,
             formats by id, and its walk for irregular pages)
    sinks    {event id: (format field names, handler)}: the Aggregator's
    sources  {event id: generated handler source}

    Raises NotCountable when a handler needs what a page count does not
    keep.  Counters: uniform_pages, walked_pages (how pages went)."""

    def __init__(self, decoder, sinks, sources):
        self.decoder = decoder
        self.page = decoder.page
        self.uniform_pages = 0
        self.walked_pages = 0
        self._uniform_ok = (decoder.byteorder == "little" == sys.byteorder
                            and decoder.entry.is_standard())
        self.events = {}
        for ev_id, (names, handler) in sinks.items():
            fmt = decoder.formats_by_id.get(ev_id)
            if fmt is None:
                continue
            reads = handler_reads(sources.get(ev_id, ""))
            if "ts" in reads:
                raise NotCountable("a filter or key reads the time stamp")
            # (the cpu: a page is one CPU's, and rows are folded per page)
            self.events[ev_id] = _EventColumns(ev_id, fmt, names, handler, "tid" in reads,
                                               decoder.byteorder)
        # the walk's callbacks count into one dict, folded after each page
        self._walked = collections.Counter()
        self._walk_binding = decoder.compile_sinks(dict(
            (ev_id, (ec.names, _walk_counter(self._walked, ev_id, ec.with_tid)))
            for ev_id, ec in self.events.items()))
        # one event type and no column read (tpcount): a run is counted by
        # comparing its type column with the type repeated
        self._single = None
        if len(self.events) == 1:
            ev_id, ec = next(iter(self.events.items()))
            if not ec.columns:
                self._single = (ec, struct.pack("<H", ev_id))
        # the columns every counted event has at the same offsets, or None
        layouts = set(ec.columns for ec in self.events.values())
        self._columns = None
        if len(layouts) == 1:
            self._columns = tuple((off, code, struct.calcsize(code))
                                  for off, code in layouts.pop())
        self._largest_min_size = max([ec.min_size for ec in self.events.values()] or [0])
        self._commit_code = "<" + ("Q" if self.page.commit_size == 8 else "I")

    # -- one page ------------------------------------------------------------
    def count_page(self, data, cpu):
        """Count one page's events into the aggregator; returns lost as
        RawDecoder.decode_page_into() does (0, a count, or None)."""
        if self._uniform_ok:
            done = self._uniform(data, cpu)
            if done is not False:
                self.uniform_pages += 1
                return done
        self.walked_pages += 1
        walked = self._walked
        _n, lost = self.decoder.decode_page_into(data, cpu, self._walk_binding)
        if walked:
            events = self.events
            for (ev_id, values), n in walked.items():
                events[ev_id].handler(0, cpu, values, None, None, n)
            walked.clear()
        return lost

    def _uniform(self, data, cpu):
        """Count a page whose data is one run of equal-size data entries
        (possibly ending in padding); False for any other page, counting
        nothing (the walk then takes it)."""
        extent = page_extent(self.page, self._commit_code, data)
        if extent is None:
            return False
        start, stop, lost = extent
        size = stop - start
        if size == 0:
            return lost
        # the first entry: a data entry of 1..28 words (anything else: walk)
        (h,) = struct.unpack_from("<I", data, start)
        tl = h & 31
        if not 0 < tl <= 28:
            return False
        stride = (tl + 1) << 2
        m = size // stride
        rest = size - m * stride
        if rest:
            # only padding that ends the page's data may follow the run
            (h2,) = struct.unpack_from("<I", data, start + m * stride)
            if h2 & 31 != 29 or h2 >> 5:
                return False
        # Why the run check is exact: every entry before the first one of
        # another size sits on the stride grid, so that entry's header is
        # on it too: at a grid point of the run (where its type_len, or the
        # 29/30/31 of padding, time extend or time stamp, fails the check
        # below) or at the run's end (the padding check above).
        view = memoryview(data)
        # the low byte of every entry header: all of type_len tl?
        heads = view[start:start + (m - 1) * stride + 1:stride].tobytes()
        if heads.translate(_DATA_HEADS[tl]).strip(b"\0"):
            return False
        payload = tl << 2
        # event types: the low 16 bits of each entry's first payload word
        tcol = view[start + 4:start + 4 + (m - 1) * stride + 2].cast("H")[::stride >> 1]
        if self._single is not None:
            ec, type_bytes = self._single
            if tcol.tobytes() == type_bytes * m:
                if payload < ec.min_size:
                    return False
                ec.handler(0, cpu, (0,), None, None, m)
                return lost
        columns = self._columns
        if columns is None:
            return False
        # every entry read at the counted events' column offsets (rows of
        # other event types are dropped: their columns mean nothing)
        cols = [tcol]
        for off, code, csize in columns:
            if stride % csize:
                return False
            base = start + 4 + off
            cols.append(view[base:base + (m - 1) * stride + csize].cast(code)
                        [::stride // csize])
        rows = collections.Counter(zip(*cols))
        events = self.events
        if payload < self._largest_min_size:
            for row in rows:
                ec = events.get(row[0])
                if ec is not None and payload < ec.min_size:
                    return False    # (before anything is counted)
        unknown = 0
        for row, n in rows.items():
            ec = events.get(row[0])
            if ec is None:
                unknown += n
            else:
                ec.handler(0, cpu, ec.rebuild(row[1:]), None, None, n)
        self.decoder.unknown += unknown
        return lost


def _walk_counter(counts, ev_id, with_tid):
    if with_tid:
        def count(ts, cpu, values):
            counts[(ev_id, values)] += 1
    else:
        def count(ts, cpu, values):
            counts[(ev_id, (0,) + tuple(values[1:]))] += 1
    return count


def _data_heads_tables():
    """Per type_len: a bytes.translate table turning the low byte of an
    entry header into 0 when its type_len is that one."""
    tables = {}
    for tl in range(1, 29):
        tables[tl] = bytes(0 if (b & 31) == tl else 1 for b in range(256))
    return tables


_DATA_HEADS = _data_heads_tables()


def page_counter(measurement, plan, decoder, aggregator):
    """(PageCounter, None) for a measurement counted per page on this plan,
    else (None, why not)."""
    why = counts_from_pages(measurement, plan)
    if why is not None:
        return None, why
    names = {}
    for ev in plan.events:
        if ev.format is not None and ev.format.id is not None:
            names[ev.format.id] = ev.name
    sources = dict((ev_id, aggregator.sources.get(name, "")) for ev_id, name in names.items())
    sinks = dict((ev_id, sink) for ev_id, sink in
                 aggregator.raw_sinks(decoder.formats_by_id).items() if ev_id in names)
    try:
        return PageCounter(decoder, sinks, sources), None
    except NotCountable as e:
        return None, str(e)
