"""The running kernel's type information (BTF), read in Python.

Only what the eBPF backend asks: the byte offset of a struct member, the
values of an enum, and the parameters of a tracepoint's raw prototype.  The
format is the kernel's Documentation/bpf/btf.rst: a header, a type section
(struct btf_type records, each followed by a kind-specific tail) and a
string section.  The parser is bounded: a file over MAX_BYTES, a section
outside the file, a record running past its section, more than MAX_TYPES
types or a name outside the string section is a BtfError, never a hang or
a crash.  Types are indexed (their offsets, their names) in order, as far
as a lookup needs; errors in the part never indexed are never seen.
"""

import struct

VMLINUX = "/sys/kernel/btf/vmlinux"
MAX_BYTES = 64 << 20        # vmlinux BTF is a few MB; refuse anything absurd
MAX_TYPES = 1 << 20
MAGIC = 0xEB9F

# Kinds (btf.rst, "Type Encoding")
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, \
    FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


# _tail_size() as tables indexed by kind (None: a kind this parser does not
# know), for the indexing loop.
_FIXED_TAIL = tuple(None if k == 0 or k > ENUM64 else
                    (0 if k in (STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64)
                     else _k_fixed) for k, _k_fixed in
                    ((k, {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}.get(k, 0)) for k in range(32)))
_TAIL_PER_VLEN = tuple({STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12,
                        ENUM64: 12}.get(k, 0) for k in range(32))
_NAMED = tuple(k in (STRUCT, UNION, ENUM, ENUM64, TYPEDEF, FUNC) for k in range(32))


class BtfError(Exception):
    """Not BTF this parser can read (one line)."""


def _tail_size(kind, vlen):
    """Bytes of the kind-specific data after a btf_type record."""
    if kind == INT:
        return 4
    if kind == ARRAY:
        return 12
    if kind in (STRUCT, UNION):
        return 12 * vlen
    if kind == ENUM:
        return 8 * vlen
    if kind == FUNC_PROTO:
        return 8 * vlen
    if kind == VAR:
        return 4
    if kind == DATASEC:
        return 12 * vlen
    if kind == DECL_TAG:
        return 4
    if kind == ENUM64:
        return 12 * vlen
    if kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
        return 0
    raise BtfError("unknown BTF kind %d" % kind)


class Member(object):
    """A struct member: name, type id, offset in bits (bitfield_size 0 for
    a plain member)."""

    __slots__ = ("name", "type_id", "bit_offset", "bitfield_size")

    def __init__(self, name, type_id, bit_offset, bitfield_size):
        self.name = name
        self.type_id = type_id
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size

    def __repr__(self):
        return "Member(%s @%d bits)" % (self.name, self.bit_offset)


class Btf(object):
    """Parsed BTF: Btf(data) or Btf.load(path)."""

    def __init__(self, data):
        if len(data) < 24:
            raise BtfError("BTF too short (%d bytes)" % len(data))
        for order in ("<", ">"):
            if struct.unpack_from(order + "H", data, 0)[0] == MAGIC:
                break
        else:
            raise BtfError("no BTF magic")
        self._o = order
        _magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from(order + "HBBIIIII", data, 0)
        if version != 1:
            raise BtfError("BTF version %d not supported" % version)
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfError("bad BTF header length %d" % hdr_len)
        base = hdr_len
        for off, ln, what in ((type_off, type_len, "type"), (str_off, str_len, "string")):
            if base + off + ln > len(data):
                raise BtfError("BTF %s section outside the data" % what)
        self._data = data
        self._types_start = base + type_off
        self._types_end = base + type_off + type_len
        self._str_start = base + str_off
        self._str_end = base + str_off + str_len
        self._offsets = [None]          # type id -> offset of its btf_type record
        self._names = {}                # (kind, name offset) -> first type id
        self._pos = self._types_start   # of the first record not indexed; None: all are

    @classmethod
    def load(cls, path=VMLINUX):
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise BtfError("%s is larger than %d bytes" % (path, MAX_BYTES))
        return cls(data)

    # -- indexing ---------------------------------------------------------------
    def _index(self, type_id=None, key=None):
        """Index type records in order until type `type_id` or the first
        (kind, name offset) `key` is indexed, or to the end when neither
        is given (or found).  The vmlinux BTF has over 100,000 types and
        the block tools' first start waits for this: types are indexed only
        as far as a lookup needs (the ones they read are in the first
        quarter), and the loop does no call per type but the unpack."""
        pos, end = self._pos, self._types_end
        if pos is None:
            return
        unpack = struct.Struct(self._o + "II").unpack_from
        data = self._data
        offsets = self._offsets
        append = offsets.append
        names = self._names
        fixed, per_vlen, named = _FIXED_TAIL, _TAIL_PER_VLEN, _NAMED
        tid = len(offsets) - 1
        stop = MAX_TYPES + 1 if type_id is None else type_id
        while pos < end:
            if tid >= stop:
                break
            if pos + 12 > end:
                raise BtfError("truncated BTF type record")
            name_off, info = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            tail = fixed[kind]
            if tail is None:
                raise BtfError("unknown BTF kind %d" % kind)
            tid += 1
            if tid > MAX_TYPES:
                raise BtfError("more than %d BTF types" % MAX_TYPES)
            append(pos)
            pos += 12 + tail + per_vlen[kind] * (info & 0xFFFF)
            if pos > end:
                raise BtfError("truncated BTF type section")
            if name_off and named[kind]:
                k = (kind, name_off)
                if k not in names:
                    # (kind, name offset) -> first id; names are compared
                    # by their offset in the string section (BTF stores
                    # each string once).
                    names[k] = tid
                    if k == key:
                        break
        else:
            if pos != end:
                raise BtfError("truncated BTF type section")
            pos = None                  # all indexed
        self._pos = pos

    def _record(self, type_id):
        """(name_off, kind, vlen, kind_flag, size_or_type, offset)."""
        if type_id >= len(self._offsets):
            self._index(type_id=type_id)
        if not 0 < type_id < len(self._offsets):
            raise BtfError("BTF type id %d out of range" % type_id)
        pos = self._offsets[type_id]
        name_off, info, size = struct.unpack_from(self._o + "III", self._data, pos)
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size, pos + 12

    def _str(self, off):
        start = self._str_start + off
        if off < 0 or start >= self._str_end:
            raise BtfError("BTF string offset %d out of range" % off)
        end = self._data.find(b"\0", start, self._str_end)
        if end < 0:
            raise BtfError("unterminated BTF string")
        return self._data[start:end].decode("ascii", "replace")

    @property
    def count(self):
        """Number of types (ids 1..count)."""
        self._index()
        return len(self._offsets) - 1

    def kind(self, type_id):
        return self._record(type_id)[1]

    def name(self, type_id):
        return self._str(self._record(type_id)[0])

    def find(self, kind, name):
        """The first type id of this kind and name, or None."""
        off = self._string_offset(name)
        if off is None:
            return None
        tid = self._names.get((kind, off))
        if tid is None and self._pos is not None:
            self._index(key=(kind, off))
            tid = self._names.get((kind, off))
        return tid

    def _string_offset(self, name):
        needle = b"\0" + name.encode("ascii", "replace") + b"\0"
        # The section starts with the empty string's NUL.
        at = self._data.find(needle, self._str_start, self._str_end)
        while at >= 0:
            off = at + 1 - self._str_start
            if self._str(off) == name:
                return off
            at = self._data.find(needle, at + 1, self._str_end)
        return None

    # -- types ------------------------------------------------------------------------
    def resolve(self, type_id):
        """Skip typedefs and qualifiers."""
        for _ in range(64):
            if type_id == 0:
                return 0
            _n, kind, _v, _kf, ref, _pos = self._record(type_id)
            if kind not in _MODIFIERS:
                return type_id
            type_id = ref
        raise BtfError("BTF type chain too long")

    def size(self, type_id):
        """Size in bytes of an integer, enum, struct or union."""
        tid = self.resolve(type_id)
        _n, kind, _v, _kf, size, _pos = self._record(tid)
        if kind in (INT, ENUM, ENUM64, STRUCT, UNION, FLOAT):
            return size
        raise BtfError("BTF type %d (kind %d) has no size" % (tid, kind))

    def pointee(self, type_id):
        """The type a pointer points to (after typedefs), or None."""
        tid = self.resolve(type_id)
        _n, kind, _v, _kf, ref, _pos = self._record(tid)
        return self.resolve(ref) if kind == PTR else None

    def members(self, type_id):
        """[Member] of a struct or union (anonymous members as they are)."""
        tid = self.resolve(type_id)
        _n, kind, vlen, kflag, _size, pos = self._record(tid)
        if kind not in (STRUCT, UNION):
            raise BtfError("BTF type %d is not a struct or union" % tid)
        out = []
        for i in range(vlen):
            name_off, mtype, off = struct.unpack_from(self._o + "III", self._data, pos + 12 * i)
            if kflag:
                out.append(Member(self._str(name_off), mtype, off & 0xFFFFFF, off >> 24))
            else:
                out.append(Member(self._str(name_off), mtype, off, 0))
        return out

    def member(self, struct_name, member_name):
        """(byte offset, type id) of struct_name.member_name, looking into
        anonymous structs and unions; None when there is no such member or
        it is a bitfield."""
        tid = self.find(STRUCT, struct_name)
        if tid is None:
            return None
        return self._member_in(tid, member_name, 0, 0)

    def _member_in(self, tid, name, base_bits, depth):
        if depth > 8:
            return None
        for m in self.members(tid):
            if m.name == name:
                if m.bitfield_size or m.bit_offset % 8:
                    return None
                return (base_bits + m.bit_offset) // 8, m.type_id
            if not m.name and self.kind(self.resolve(m.type_id)) in (STRUCT, UNION):
                r = self._member_in(self.resolve(m.type_id), name, base_bits + m.bit_offset,
                                    depth + 1)
                if r is not None:
                    return r
        return None

    def enum_values(self, name):
        """{enumerator name: value} of enum `name`, or None."""
        tid = self.find(ENUM, name)
        if tid is None:
            tid = self.find(ENUM64, name)
            if tid is None:
                return None
        _n, kind, vlen, kflag, _size, pos = self._record(tid)
        out = {}
        for i in range(vlen):
            if kind == ENUM:
                # kind_flag set: signed values; the members read here are
                # small non-negative numbers either way.
                name_off, val = struct.unpack_from(self._o + ("Ii" if kflag else "II"),
                                                   self._data, pos + 8 * i)
                out[self._str(name_off)] = val
            else:
                name_off, lo, hi = struct.unpack_from(self._o + "III", self._data, pos + 12 * i)
                out[self._str(name_off)] = (hi << 32) | lo
        return out

    def func_proto_params(self, typedef_name):
        """[(param name, type id)] of the function prototype a typedef of a
        function pointer names (the raw tracepoint prototypes
        btf_trace_<name>), or None."""
        tid = self.find(TYPEDEF, typedef_name)
        if tid is None:
            return None
        target = self.pointee(tid)
        if target is None:
            return None
        _n, kind, vlen, _kf, _ret, pos = self._record(target)
        if kind != FUNC_PROTO:
            return None
        out = []
        for i in range(vlen):
            name_off, ptype = struct.unpack_from(self._o + "II", self._data, pos + 8 * i)
            out.append((self._str(name_off), ptype))
        return out

    def struct_name_of_pointer(self, type_id):
        """'request' for a `struct request *`, else None."""
        tid = self.pointee(type_id)
        if not tid or self.kind(tid) != STRUCT:
            return None
        return self.name(tid)
