"""Filters as C, from typed and validated core.model.Filter values only.

Numbers become integer literals we format ourselves (ULL/LL, with the
comparison's outcome decided here when the value cannot be represented in
the field's signedness).  Strings never appear in the C text as string
literals: each byte is emitted as a decimal integer in generated
byte-by-byte comparisons with constant indexes (unrolled here, so no loop
reaches the verifier).
"""

from kerntrace.core.model import INT

S64_MAX = (1 << 63) - 1
S64_MIN = -(1 << 63)
U64_MAX = (1 << 64) - 1

# For a value out of the field's range, what `field OP value` is for every
# field value: value above the range (True) / below it (False).
_ABOVE = {"==": False, "!=": True, "<": True, "<=": True, ">": False, ">=": False}
_BELOW = {"==": False, "!=": True, "<": False, "<=": False, ">": True, ">=": True}


def int_literal(value, signed):
    """A C integer literal for an already range-checked Python int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("integer literal from %r" % (value,))
    if signed:
        if value < S64_MIN or value > S64_MAX:
            raise ValueError("%d does not fit s64" % value)
        if value == S64_MIN:
            return "(-%dLL - 1)" % S64_MAX
        return "%dLL" % value
    if value < 0 or value > U64_MAX:
        raise ValueError("%d does not fit u64" % value)
    return "%dULL" % value


def int_filter(expr, signed, flt):
    """C expression: `expr OP value` for an INT filter, evaluated in the
    field's own signedness, so it agrees with core.model.Filter.matches()
    on the decoded value."""
    v = flt.value
    if flt.op == "&":
        # bits of the 64-bit value, whatever its signedness (a mask, model.Filter)
        return "(((u64)(%s) & %s) != 0)" % (expr, int_literal(v, False))
    if signed:
        if v > S64_MAX:
            return "1" if _ABOVE[flt.op] else "0"
        return "((s64)(%s) %s %s)" % (expr, flt.op, int_literal(v, True))
    if v < 0:
        return "1" if _BELOW[flt.op] else "0"
    return "((u64)(%s) %s %s)" % (expr, flt.op, int_literal(v, False))


def _pattern_bytes(text):
    data = text.encode("ascii")
    if b"\0" in data:
        raise ValueError("NUL in a filter pattern")
    return list(bytearray(data))


def _bytes_equal(pattern, at):
    """s[at + i] == byte, for each byte of the pattern (constant indexes)."""
    return " && ".join("s[%d] == %d" % (at + i, b) for i, b in enumerate(pattern)) or "1"


# Upper bound on the byte comparisons one string filter may generate
# (a 64-byte pattern in a 128-byte string is 4160).
MAX_COMPARISONS = 8192


def string_match_function(fname, flt, size):
    """A static C function `int fname(const char *s)` that is 1 when the
    string in char s[size] matches the STR filter (==, != or a glob with
    '*' at the start and/or end).

    Relies on the invariant every generated reader keeps: the buffer was
    zeroed and then filled by a *_str helper (or bpf_get_current_comm), so
    every byte after the first NUL is NUL too.  Pattern bytes are never
    NUL, so a match found anywhere lies inside the string.  The bytes are
    read through a volatile pointer: each comparison loads its own byte,
    which keeps the compiler from holding (and spilling to the 512-byte BPF
    stack) a hundred loaded bytes at once."""
    if flt.op == "glob":
        anchored_start, text, anchored_end = flt.glob_parts()
    else:
        anchored_start, text, anchored_end = True, flt.value, True
    pat = _pattern_bytes(text)
    k = len(pat)
    body = []
    if k > size:
        body.append("return 0;")
    elif anchored_start and anchored_end:
        cmp = _bytes_equal(pat, 0)
        body.append("return %s;" % cmp if k == size else
                    "return %s && s[%d] == 0;" % (cmp, k) if k else "return s[0] == 0;")
    elif k == 0:
        body.append("return 1;")
    elif anchored_start:
        body.append("return %s;" % _bytes_equal(pat, 0))
    else:
        starts = range(0, size - k + 1)
        if len(starts) * k > MAX_COMPARISONS:
            raise ValueError("a %d-byte pattern in a %d-byte string needs too many comparisons"
                             % (k, size))
        for start in starts:
            end = start + k
            cond = _bytes_equal(pat, start)
            if anchored_end and end < size:
                cond += " && s[%d] == 0" % end
            body.append("if (%s) return 1;" % cond)
        body.append("return 0;")
    lines = ["static __always_inline int %s(const char *str)" % fname, "{",
             "    const volatile char *s = (const volatile char *)str;"]
    lines.extend("    " + b for b in body)
    lines.append("}")
    return "\n".join(lines)


def string_filter(fname, flt, arg):
    """The C expression calling the function string_match_function made."""
    return "%s%s(%s)" % ("!" if flt.op == "!=" else "", fname, arg)


def describe(flt):
    """A description for a C comment.  String values stay out of the C
    text entirely (even comments): only their length is shown."""
    if flt.type == INT:
        return "%s %s %d" % (flt.field, flt.op, flt.value)
    return "%s %s <%d-byte pattern>" % (flt.field, flt.op, len(flt.value))
