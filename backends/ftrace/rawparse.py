"""Decoding per-CPU ring-buffer pages read from trace_pipe_raw.

A page (a "sub-buffer") is laid out as events/header_page says:

    u64 timestamp            the page's absolute time
    local_t commit           bytes of event data, and two loss flags:
                               bit 31  events were lost before this page
                               bit 30  their count is stored after the data
    char data[...]           4-byte aligned entries

and each entry starts with a 32-bit header (events/header_event):

    type_len:5  time_delta:27  [array[0]:32]

    type_len 1..28   a data event of type_len * 4 bytes right after the header
    type_len 0       a data event whose length (+4) is in array[0]
    29 padding       delta 0: the rest of the page is empty; else a discarded
                     event of array[0] more bytes
    30 time_extend   adds (array[0] << 27) + time_delta to the clock
    31 time_stamp    sets the clock to an absolute value

Every data event's payload starts with the common fields (common_type, the
event id; common_pid) and is decoded by offset/size/signedness from its
format file, with one precompiled struct.Struct per event id.  The page and
sub-buffer size come from header_page and len(data), never assumed (the
sub-buffer size is configurable since v6.7, buffer_subbuf_size_kb).

RawDecoder.decode_page() returns RawEvents; decode_page_into() is the fast
path that hands selected fields straight to callbacks (the Aggregator's),
without building RawEvent objects.
"""

import re
import struct
import sys

from .plan import RawEvent

RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
# libtraceevent's kbuffer reads the committed size from the low 27 bits.
COMMIT_MASK = (1 << 27) - 1
TS_SHIFT = 27
# The absolute time stamp keeps only 59 bits; since Linux commit 6695da58f944
# ("ring-buffer: Have absolute time stamps handle large numbers") readers
# restore the top 5 bits from the previous full time stamp.
TS_MSB = 0xf8 << 56

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}

_HDR_FIELD = re.compile(r"field:\s*(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                        r"(?:\s*signed:(?P<signed>-?\d+);)?")
_HDR_BITS = re.compile(r"^\s*(?P<name>\w+)\s*:\s*(?P<bits>\d+)\s*bits", re.M)
_HDR_TYPE = re.compile(r"^\s*(?P<name>\w+)\s*:\s*type\s*==\s*(?P<value>\d+)", re.M)
_HDR_MAX = re.compile(r"data max type_len\s*==\s*(?P<value>\d+)")


class RawFormatError(ValueError):
    """header_page / header_event text we cannot use."""


class PageHeader(object):
    """events/header_page: where the time stamp, commit and data are."""

    def __init__(self, ts_offset, ts_size, commit_offset, commit_size, data_offset, data_size):
        self.ts_offset = ts_offset
        self.ts_size = ts_size
        self.commit_offset = commit_offset
        self.commit_size = commit_size
        self.data_offset = data_offset
        self.data_size = data_size

    @property
    def page_size(self):
        return self.data_offset + self.data_size


def parse_header_page(text):
    fields = {}
    for m in _HDR_FIELD.finditer(text or ""):
        name = m.group("decl").split()[-1]
        fields[name] = (int(m.group("off")), int(m.group("size")))
    try:
        ts, commit, data = fields["timestamp"], fields["commit"], fields["data"]
    except KeyError as e:
        raise RawFormatError("header_page has no %s field" % e)
    if ts[1] != 8 or commit[1] not in (4, 8):
        raise RawFormatError("header_page: unexpected timestamp/commit sizes")
    return PageHeader(ts[0], ts[1], commit[0], commit[1], data[0], data[1])


class EntryHeader(object):
    """events/header_event: the entry header's bit layout and type values."""

    def __init__(self, type_len_bits=5, delta_bits=27, padding=29, time_extend=30,
                 time_stamp=31, data_max=28):
        self.type_len_bits = type_len_bits
        self.delta_bits = delta_bits
        self.padding = padding
        self.time_extend = time_extend
        self.time_stamp = time_stamp
        self.data_max = data_max

    def is_standard(self):
        """The type values every kernel's header_event has printed so far
        (data up to 28 words, 29 padding, 30 time extend): the layout the
        page-at-once paths (pagecount, bulkpair) read without a walk; any
        other leaves pages to decode_page_into(), which reads these fields."""
        return (self.type_len_bits, self.delta_bits, self.data_max, self.padding,
                self.time_extend) == (5, 27, 28, 29, 30)


def parse_header_event(text):
    text = text or ""
    bits = {m.group("name"): int(m.group("bits")) for m in _HDR_BITS.finditer(text)}
    types = {m.group("name"): int(m.group("value")) for m in _HDR_TYPE.finditer(text)}
    mx = _HDR_MAX.search(text)
    if bits.get("type_len", 5) != 5 or bits.get("time_delta", 27) != 27:
        raise RawFormatError("header_event: unsupported entry header layout %r" % (bits,))
    return EntryHeader(padding=types.get("padding", 29),
                       time_extend=types.get("time_extend", 30),
                       # absent before Linux commit dc4e2801d400 (v4.17): type
                       # 31 was then never written
                       time_stamp=types.get("time_stamp", 31),
                       data_max=int(mx.group("value")) if mx else 28)


# ---------------------------------------------------------------------------
# Field layouts
def _cstr(b):
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode("utf-8", "replace")


class EventLayout(object):
    """How to pull some fields of one event type out of its payload.

    unpack(data, pos) -> tuple (common_pid, field values...) before string
    fix-ups; `fix` is None when every requested field is a plain integer
    (the tuple is then final) or a function(values, data, pos, length)
    returning the final sequence."""

    __slots__ = ("names", "unpack", "fix", "min_size")

    def __init__(self, names, unpack, fix, min_size):
        self.names = names
        self.unpack = unpack
        self.fix = fix
        self.min_size = min_size


def compile_layout(event_format, names=None, byteorder=None):
    """An EventLayout for `names` (format field names; default every
    payload field) of `event_format`.  Unknown names raise KeyError."""
    endian = "<" if (byteorder or sys.byteorder) == "little" else ">"
    if names is None:
        names = [f.name for f in event_format.payload_fields()]
    names = tuple(names)
    # Every format since tracing began has common_type at 0 (2 bytes), read
    # as the entry's event id, and common_pid; one that does not is not
    # decoded rather than guessed at.
    ctype_field = event_format.field("common_type")
    if ctype_field is None or (ctype_field.offset, ctype_field.size) != (0, 2):
        raise KeyError("common_type is not the first 2 bytes")
    pid = event_format.field("common_pid")
    if pid is None:
        raise KeyError("no common_pid field")
    wanted = [pid] + [event_format.by_name[n] for n in names]
    # struct needs fields in offset order; reorder afterwards when asked otherwise
    order = sorted(range(len(wanted)), key=lambda i: wanted[i].offset)
    codes = []
    pos = 0
    fixups = []
    for rank, i in enumerate(order):
        f = wanted[i]
        if f.offset < pos:
            # overlapping fields cannot be one struct: read this one separately
            raise KeyError("field %s overlaps another" % f.name)
        if f.offset > pos:
            codes.append("%dx" % (f.offset - pos))
        if f.data_loc:
            codes.append("I")
            rel = f.rel_loc
            fixups.append((rank, "rel" if rel else "loc", f.offset + f.size))
        elif f.array_len is not None or (f.size, bool(f.signed)) not in _INT_CODES:
            codes.append("%ds" % f.size)
            if f.is_string:
                fixups.append((rank, "str", 0))
        else:
            codes.append(_INT_CODES[(f.size, bool(f.signed))])
        pos = f.offset + f.size
    st = struct.Struct(endian + "".join(codes))
    identity = order == sorted(order)
    reorder = None
    if not identity:
        back = [0] * len(order)
        for rank, i in enumerate(order):
            back[i] = rank
        reorder = back
    fix = _make_fix(fixups, reorder, len(order))
    return EventLayout(names, st.unpack_from, fix, st.size)


def _make_fix(fixups, reorder, count):
    """The fix-up function of a layout of `count` values, generated for its
    fields (a loop over the fix-ups per event cost more than the decoding
    it did)."""
    if not fixups and reorder is None:
        return None
    fixed = {rank: (kind, field_end) for rank, kind, field_end in fixups}
    names = ["a%d" % i for i in range(count)]
    lines = ["def fix(values, data, pos, length):",
             "    %s, = values" % ", ".join(names)]
    for rank, (kind, field_end) in sorted(fixed.items()):
        if kind == "str":
            lines.append("    a%d = _str(a%d)" % (rank, rank))
        else:
            # _data_loc() inline, its strings through the cache (paths,
            # file names: few distinct values, as for the char arrays)
            a = "a%d" % rank
            lines += ["    s = pos + (%s & 0xffff) + %d" % (a, field_end if kind == "rel" else 0),
                      "    e = s + (%s >> 16)" % a,
                      "    b = data[s:e if e < pos + length else pos + length]",
                      "    %s = _str_get(b)" % a,
                      "    if %s is None:" % a,
                      "        %s = _loc_str(b)" % a]
    order = reorder if reorder is not None else range(count)
    lines.append("    return (%s,)" % ", ".join("a%d" % i for i in order))
    ns = {"_str": _cached_cstr, "_str_get": _CSTR_CACHE.get, "_loc_str": _loc_str}
    exec(compile("\n".join(lines) + "\n", "<kerntrace layout fix>", "exec"), ns)
    return ns["fix"]


# Fixed-size char arrays (comm, rwbs) take few distinct values: decoding
# each once saves most of the per-event string work.  Bounded, as the
# values come from the kernel.
_CSTR_CACHE = {}
_CSTR_CACHE_MAX = 4096


def _cached_cstr(b):
    s = _CSTR_CACHE.get(b)
    if s is None:
        s = _cstr(b)
        if len(_CSTR_CACHE) >= _CSTR_CACHE_MAX:
            _CSTR_CACHE.clear()
        _CSTR_CACHE[b] = s
    return s


# Longer strings are decoded every time: the cache stays small.
_LOC_CACHED_MAX = 256


def _loc_str(b):
    """A __data_loc string's bytes (cut at the data's end) as text; short
    ones are kept in the string cache."""
    return _cached_cstr(b) if len(b) <= _LOC_CACHED_MAX else _cstr(b)


def _data_loc(v, data, pos, length, field_end):
    # __data_loc: offset (low 16 bits) and length (high 16) of the data
    # from the event start; since Linux commit 05770dd0ad11 ("tracing:
    # Support __rel_loc ...") (v5.17) __rel_loc counts the offset from the
    # end of the field instead (field_end, else 0).
    start = pos + (v & 0xffff) + field_end
    stop = min(start + (v >> 16), pos + length)
    return _cstr(data[start:stop]) if start < stop else ""


# ---------------------------------------------------------------------------
class RawDecoder(object):
    """Ring-buffer pages -> events.

    header_page_text, header_event_text   the events/header_page and
                                          events/header_event files
    formats_by_id                         common_type id -> EventFormat
    byteorder                             of the traced kernel (default: ours)

    Counters: self.unknown (entries of ids not in formats_by_id),
    self.malformed (pages cut short or with an entry that runs past the
    data: decoding stops there)."""

    def __init__(self, header_page_text, header_event_text, formats_by_id, byteorder=None):
        self.page = parse_header_page(header_page_text)
        self.entry = parse_header_event(header_event_text)
        self.byteorder = byteorder or sys.byteorder
        self._endian = "<" if self.byteorder == "little" else ">"
        # pages in our own byte order can be read as a memoryview of C
        # unsigned ints (when those are the 32 bits of an entry header word)
        self._native_words = self.byteorder == sys.byteorder and struct.calcsize("I") == 4
        self.formats_by_id = dict(formats_by_id)
        self.unknown = 0
        self.malformed = 0
        self.unsupported = {}       # event id -> why its layout cannot be decoded
        self._all = {}
        for ev_id, fmt in self.formats_by_id.items():
            try:
                self._all[ev_id] = (fmt, compile_layout(fmt, byteorder=self.byteorder))
            except (KeyError, ValueError, struct.error) as e:
                self.unsupported[ev_id] = str(e)

    @property
    def page_size(self):
        """Bytes per page as header_page describes it (read at least this)."""
        return self.page.page_size

    # -- sinks -------------------------------------------------------------
    def compile_sinks(self, wanted):
        """wanted: {event id: (format field names, callback)} -> a binding
        for decode_page_into().  The callback is called as
        callback(ts, cpu, values) with values[0] the common_pid and then the
        named fields in order."""
        binding = {}
        for ev_id, (names, callback) in wanted.items():
            fmt = self.formats_by_id.get(ev_id)
            if fmt is None:
                continue
            layout = compile_layout(fmt, names, byteorder=self.byteorder)
            binding[ev_id] = (layout.unpack, layout.fix, callback, layout.min_size)
        return binding

    # -- decoding ----------------------------------------------------------
    def decode_page(self, data, cpu):
        """One page -> (list of RawEvent, lost): lost is 0, the number of
        events the kernel dropped before this page, or None when it flagged
        a loss without a count."""
        out = []
        append = out.append
        sinks = {}
        for ev_id, (fmt, layout) in self._all.items():
            sinks[ev_id] = (layout.unpack, layout.fix,
                            _raw_event_maker(fmt, layout.names, append), layout.min_size)
        lost = self.decode_page_into(data, cpu, sinks)[1]
        return out, lost

    def decode_page_into(self, data, cpu, binding, hold=None):
        """Walk one page, calling the bound callbacks.  Returns (number of
        entries delivered, lost) with lost as in decode_page().  Never
        raises on malformed data (it stops at the first bad entry).

        hold: a list's append, to hold the events back for ordering
        (timeorder): each is appended as (callback, ts, cpu, values)
        instead of being delivered; a call per event fewer than a sink
        that holds them."""
        ph = self.page
        if len(data) < ph.data_offset:
            return 0, 0
        if data.__class__ is not bytes:
            # (a bytearray or view): the layouts' string slices key a cache
            data = bytes(data)
        endian = self._endian
        (page_ts,) = struct.unpack_from(endian + "Q", data, ph.ts_offset)
        (commit,) = struct.unpack_from(endian + ("Q" if ph.commit_size == 8 else "I"),
                                       data, ph.commit_offset)
        commit &= 0xffffffff
        size = commit & COMMIT_MASK
        start = ph.data_offset
        avail = len(data) - start
        lost = 0
        if commit & RB_MISSED_EVENTS:
            lost = None
            if commit & RB_MISSED_STORED and size + ph.commit_size <= avail:
                (lost,) = struct.unpack_from(endian + ("Q" if ph.commit_size == 8 else "I"),
                                             data, start + size)
        bad = size > avail
        if bad:
            size = avail
        nwords = size >> 2
        if not nwords:
            self.malformed += bad
            return 0, lost
        if self._native_words:
            # Most page words are payload the loop never looks at: a view
            # makes ints only of the words read (unpacking the whole page cost
            # more than the rest of the decoding).
            view = memoryview(data)
            words = view[start:start + (nwords << 2)].cast("I")
        else:
            view = None
            words = struct.unpack_from("%s%dI" % (endian, nwords), data, start)
        # Per-event cost is what limits the raw path, so the data event (the
        # common entry) is decoded first with as few operations as possible;
        # the rarer entry types follow.
        little = endian == "<"
        eh = self.entry
        data_max, padding, time_extend = eh.data_max, eh.padding, eh.time_extend
        get = binding.get
        ts = page_ts
        delivered = 0
        unknown = 0
        i = 0
        try:
            while i < nwords:
                h = words[i]
                tl = h & 31 if little else h >> 27
                if 0 < tl <= data_max:
                    w = i + 1
                    i = w + tl
                    if i > nwords:
                        raise IndexError("entry runs past the data")
                    ts += h >> 5 if little else h & 0x7ffffff
                    sink = get(words[w] & 0xffff if little else words[w] >> 16)
                    if sink is None:
                        unknown += 1
                        continue
                    unpack, fix, callback, min_size = sink
                    if tl << 2 < min_size:
                        raise IndexError("entry shorter than its format")
                    if fix is None:
                        values = unpack(data, start + (w << 2))
                    else:
                        pos = start + (w << 2)
                        values = fix(unpack(data, pos), data, pos, tl << 2)
                    if hold is None:
                        callback(ts, cpu, values)
                    else:
                        hold((callback, ts, cpu, values))
                    delivered += 1
                    continue
                delta = h >> 5 if little else h & 0x7ffffff
                if tl == 0:
                    if i + 1 >= nwords:
                        break
                    length = words[i + 1] - 4
                    w = i + 2
                    i = w + ((length + 3) >> 2)
                    if length <= 0:
                        raise IndexError("empty entry")
                elif tl == padding:
                    if delta == 0:
                        break       # the rest of the page is unused
                    # a discarded event: its delta still counts (as
                    # libtraceevent's kbuffer reads it)
                    ts += delta
                    i += 1 + ((words[i + 1] + 3) >> 2)
                    continue
                elif tl == time_extend:
                    ts += (words[i + 1] << TS_SHIFT) + delta
                    i += 2
                    continue
                else:   # time_stamp
                    ts = _absolute(ts, (words[i + 1] << TS_SHIFT) + delta)
                    i += 2
                    continue
                if i > nwords:
                    raise IndexError("entry runs past the data")
                ts += delta
                etype = words[w] & 0xffff if little else words[w] >> 16
                sink = get(etype)
                if sink is None:
                    unknown += 1
                    continue
                unpack, fix, callback, min_size = sink
                if length < min_size:
                    raise IndexError("entry shorter than its format")
                pos = start + (w << 2)
                values = unpack(data, pos)
                if fix is not None:
                    values = fix(values, data, pos, length)
                if hold is None:
                    callback(ts, cpu, values)
                else:
                    hold((callback, ts, cpu, values))
                delivered += 1
        except (IndexError, struct.error):
            bad = True
        finally:
            if view is not None:
                # do not keep a bytearray's buffer exported (it could not resize)
                words.release()
                view.release()
        self.malformed += bad       # pages, not entries
        self.unknown += unknown
        return delivered, lost


def page_extent(page, commit_code, data):
    """(start, stop, lost) of a whole page's entries as header_page places
    them, with lost as in RawDecoder.decode_page(); None when the page is
    cut short (the bulk paths then leave it to decode_page_into, which
    decodes what there is)."""
    start = page.data_offset
    if len(data) < start:
        return None
    (commit,) = struct.unpack_from(commit_code, data, page.commit_offset)
    commit &= 0xffffffff
    size = commit & COMMIT_MASK
    if size + start > len(data):
        return None
    lost = 0
    if commit & RB_MISSED_EVENTS:
        lost = None
        if commit & RB_MISSED_STORED and size + page.commit_size <= len(data) - start:
            (lost,) = struct.unpack_from(commit_code, data, start + size)
    return start, start + size, lost


def _absolute(prev, abs_ts):
    if prev & TS_MSB:
        abs_ts |= prev & TS_MSB
        if abs_ts < prev:
            abs_ts += 1 << 59
    return abs_ts


def _raw_event_maker(fmt, names, append):
    system, event = fmt.system, fmt.name

    def make(ts, cpu, values):
        append(RawEvent(system, event, ts, values[0], cpu, None,
                        dict(zip(names, values[1:]))))
    return make


# ---------------------------------------------------------------------------
# Building pages: for tests and benchmarks (the kernel writes the real ones).
def encode_payload(event_format, pid, fields, byteorder=None):
    """An event payload as the kernel lays it out: common fields, then each
    field at its offset; strings for __data_loc fields are appended."""
    endian = "<" if (byteorder or sys.byteorder) == "little" else ">"
    fixed = max(f.offset + f.size for f in event_format.fields)
    buf = bytearray(fixed)
    tail = bytearray()
    values = dict(fields)
    values.setdefault("common_type", event_format.id)
    values.setdefault("common_pid", pid)
    for f in event_format.fields:
        v = values.get(f.name)
        if f.data_loc:
            s = (v or "").encode() + b"\0"
            loc = len(buf) + len(tail) - (f.offset + f.size if f.rel_loc else 0)
            struct.pack_into(endian + "I", buf, f.offset, (len(s) << 16) | loc)
            tail += s
        elif f.array_len is not None or (f.size, bool(f.signed)) not in _INT_CODES:
            b = v.encode() if isinstance(v, str) else bytes(v or b"")
            buf[f.offset:f.offset + f.size] = b[:f.size].ljust(f.size, b"\0")
        elif v is not None:
            code = _INT_CODES[(f.size, bool(f.signed))]
            struct.pack_into(endian + code, buf, f.offset, v)
    out = bytes(buf + tail)
    return out + b"\0" * (-len(out) % 4)


class PageBuilder(object):
    """Assembles one ring-buffer page of entries.

        pb = PageBuilder(header_page_text)
        pb.add(payload, ts)   # False when the page is full
        data = pb.page(lost=None)
    """

    def __init__(self, header_page_text, byteorder=None, start_ts=None):
        self.header = parse_header_page(header_page_text)
        self._endian = "<" if (byteorder or sys.byteorder) == "little" else ">"
        self._little = self._endian == "<"
        self.page_ts = start_ts
        self._last = start_ts
        self._data = bytearray()

    def _word(self, type_len, delta):
        v = (type_len | (delta << 5)) if self._little else ((type_len << 27) | delta)
        return struct.pack(self._endian + "I", v)

    def _fits(self, n):
        return len(self._data) + n <= self.header.data_size

    def add(self, payload, ts):
        if self.page_ts is None:
            self.page_ts = self._last = ts
        delta = ts - self._last
        entry = bytearray()
        if delta >= 1 << TS_SHIFT:
            entry += self._word(30, delta & ((1 << TS_SHIFT) - 1))
            entry += struct.pack(self._endian + "I", delta >> TS_SHIFT)
            delta = 0
        payload = payload + b"\0" * (-len(payload) % 4)
        if len(payload) <= 28 * 4:
            entry += self._word(len(payload) >> 2, delta) + payload
        else:
            entry += self._word(0, delta) + struct.pack(self._endian + "I", len(payload) + 4)
            entry += payload
        if not self._fits(len(entry)):
            return False
        self._data += entry
        self._last = ts
        return True

    def add_raw(self, entry_bytes):
        """Append pre-built entry bytes (padding, time stamps, garbage)."""
        self._data += entry_bytes

    def word(self, type_len, delta, *array):
        return self._word(type_len, delta) + b"".join(
            struct.pack(self._endian + "I", a) for a in array)

    def __len__(self):
        return len(self._data)

    def page(self, lost=0):
        """The page bytes.  lost: 0, a count (stored after the data when it
        fits), or None (flag the loss without a count)."""
        h = self.header
        size = len(self._data)
        commit = size
        data = bytes(self._data)
        long_code = "Q" if h.commit_size == 8 else "I"
        if lost is None:
            commit |= RB_MISSED_EVENTS
        elif lost:
            commit |= RB_MISSED_EVENTS
            if size + h.commit_size <= h.data_size:
                data += struct.pack(self._endian + long_code, lost)
                commit |= RB_MISSED_STORED
        out = bytearray(h.page_size)
        struct.pack_into(self._endian + "Q", out, h.ts_offset, self.page_ts or 0)
        struct.pack_into(self._endian + long_code, out, h.commit_offset, commit)
        out[h.data_offset:h.data_offset + len(data)] = data
        return bytes(out)
