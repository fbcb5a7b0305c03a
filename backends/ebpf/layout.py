"""C structs shared by the generated BPF program and the Python side.

One Layout describes a struct in both languages: its C declaration, and how
to decode its bytes (a map key or value, a perf/ring buffer record) into
model field values.  Integer members are 8 bytes and come first, strings
(char arrays) after them, so the C layout has no interior padding on any
architecture and the Python struct format mirrors it exactly.
"""

import struct

U64 = "u64"
S64 = "s64"
STRING = "str"


class Member(object):
    """name: the model's name for the value (or an internal one);
    cname: the C member name; kind: U64, S64 or STRING; size: bytes."""

    __slots__ = ("name", "cname", "kind", "size")

    def __init__(self, name, cname, kind, size=8):
        self.name = name
        self.cname = cname
        self.kind = kind
        self.size = size if kind == STRING else 8

    def c_decl(self):
        if self.kind == STRING:
            return "char %s[%d];" % (self.cname, self.size)
        return "%s %s;" % (self.kind, self.cname)

    def __repr__(self):
        return "Member(%s %s/%d)" % (self.cname, self.kind, self.size)


def field_member(name, kind, size=8):
    """The member for model field `name`: C names are prefixed so that no
    model identifier can collide with a C keyword or type."""
    return Member(name, "f_" + name, kind, size)


class Layout(object):
    def __init__(self, cname, members):
        self.cname = cname
        ints = [m for m in members if m.kind != STRING]
        strs = [m for m in members if m.kind == STRING]
        self.members = ints + strs
        fmt = "=" + "".join("q" if m.kind == S64 else "Q" for m in ints) + \
              "".join("%ds" % m.size for m in strs)
        raw = struct.calcsize(fmt)
        align = 8 if ints else 1
        self.size = (raw + align - 1) // align * align
        self._struct = struct.Struct(fmt)

    @property
    def empty(self):
        return not self.members

    def member(self, name):
        for m in self.members:
            if m.name == name:
                return m
        return None

    def c_decl(self):
        lines = ["struct %s {" % self.cname]
        lines.extend("    " + m.c_decl() for m in self.members)
        lines.append("};")
        return "\n".join(lines)

    def decode(self, data):
        """bytes (at least self.size long) -> {member name: int or str}."""
        values = self._struct.unpack_from(data)
        out = {}
        for m, v in zip(self.members, values):
            if m.kind == STRING:
                v = v.split(b"\0", 1)[0].decode("utf-8", "replace")
            out[m.name] = v
        return out

    def __repr__(self):
        return "Layout(%s %r)" % (self.cname, self.members)
