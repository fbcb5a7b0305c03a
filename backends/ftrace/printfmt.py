"""Decoding a text payload with the event's own `print fmt:` line.

The kernel prints an event's payload with the printf format and argument
list shown in its format file:

    print fmt: "%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)),
               ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, ...

compile_print_fmt() turns that into a matcher: each conversion becomes a
regex group bound to its argument expression, so a field added or renamed by
a new kernel (the ~6.11 ioprio token, `error` vs `errors`) is read from that
kernel's format instead of breaking a hand-written parser.

What an argument expression yields:
    REC->field (under casts and parentheses)   that field
    MAJOR/MINOR halves of REC->dev              dev rebuilt as (MAJ << 20) | MIN
    __get_str(x) / __get_rel_str(x)             string field x
    anything else (__print_symbolic, __print_flags, arithmetic)
                                                matched, not assigned
Integer fields come back as Python ints with the field's width and
signedness (as the raw path decodes them); strings as str.
"""

import re

# One printf conversion as the kernel's vsnprintf accepts it.
_CONV = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?"
                   r"(?P<len>hh|h|ll|l|L|q|j|z|Z|t)?(?P<conv>[diouxXcspn%])")
# %p takes alphanumeric extensions (%pS, %pI4, %pUb, ...).
_PTR_EXT = re.compile(r"[A-Za-z0-9]*")

_CAST = re.compile(r"^\(\s*(?:const\s+|volatile\s+|struct\s+|enum\s+)*"
                   r"[A-Za-z_][A-Za-z0-9_]*(?:\s+[A-Za-z_][A-Za-z0-9_]*)*\s*\**\s*\)\s*")
_REC_FIELD = re.compile(r"^REC->([A-Za-z_][A-Za-z0-9_]*)$")
_GET_STR = re.compile(r"^__get(?:_rel)?_str\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")
_MACRO_DEV = re.compile(r"^(MAJOR|MINOR)\(\s*REC->([A-Za-z_][A-Za-z0-9_]*)\s*\)$")
# MAJOR(dev) and MINOR(dev) as the preprocessor expands them (MINORBITS 20).
_MAJOR = re.compile(r"^\(*\s*REC->([A-Za-z_][A-Za-z0-9_]*)\s*\)*\s*>>\s*20$")
_MINOR = re.compile(r"^\(*\s*REC->([A-Za-z_][A-Za-z0-9_]*)\s*\)*\s*&\s*"
                    r"\(\s*\(\s*1U?L*\s*<<\s*20\s*\)\s*-\s*1\s*\)$")

MINORBITS = 20
# The longest number text the kernel prints for a field of at most 64 bits:
# 22 octal digits (decimal needs 20 and a sign, hex 16).  A longer digit run
# is no value the kernel printed: the payload does not decode, the same on
# every Python (3.11+ int() refuses over 4300 digits, older ones convert
# slowly) and in time bounded by the payload's length.
MAX_NUMBER_CHARS = 23


class PrintFmtError(ValueError):
    """The print fmt line cannot be parsed."""


# ---------------------------------------------------------------------------
# Splitting `"format", arg, arg, ...`
def _c_string(text, start):
    """Parse the C string literal starting at text[start] == '"'.
    Returns (value, index after the closing quote)."""
    out = []
    i = start + 1
    n = len(text)
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r", "0": "\0"}
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(escapes.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise PrintFmtError("unterminated string in print fmt")


def split_args(text):
    """Top-level comma-separated expressions (commas inside (), {}, [] or
    string literals do not split)."""
    args = []
    depth = 0
    cur = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    tail = "".join(cur).strip()
    if tail:
        args.append(tail)
    return args


def split_print_fmt(print_fmt):
    """'"fmt", a, b' -> ('fmt', ['a', 'b'])."""
    text = print_fmt.strip()
    if not text.startswith('"'):
        raise PrintFmtError("print fmt does not start with a string")
    fmt, end = _c_string(text, 0)
    rest = text[end:].strip()
    if rest.startswith(","):
        rest = rest[1:]
    elif rest:
        raise PrintFmtError("unexpected text after the format string")
    return fmt, split_args(rest)


# ---------------------------------------------------------------------------
# Argument expressions
def _strip_outer(expr):
    """Remove casts and parentheses that enclose the whole expression."""
    prev = None
    while expr != prev:
        prev = expr
        expr = expr.strip()
        m = _CAST.match(expr)
        if m and m.end() < len(expr):
            expr = expr[m.end():]
            continue
        if expr.startswith("(") and expr.endswith(")") and _encloses(expr):
            expr = expr[1:-1]
    return expr


def _encloses(expr):
    """True if the '(' at 0 is closed by the ')' at the end."""
    depth = 0
    for i, c in enumerate(expr):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i == len(expr) - 1
    return False


def classify_arg(expr):
    """An argument expression -> (kind, field name): kind is 'field',
    'major', 'minor' or 'ignore' (field None)."""
    e = _strip_outer(expr)
    m = _GET_STR.match(e)
    if m:
        return "field", m.group(1)
    m = _REC_FIELD.match(e)
    if m:
        return "field", m.group(1)
    m = _MACRO_DEV.match(e)
    if m:
        return m.group(1).lower(), m.group(2)
    m = _MAJOR.match(e)
    if m:
        return "major", m.group(1)
    m = _MINOR.match(e)
    if m:
        return "minor", m.group(1)
    return "ignore", None


# ---------------------------------------------------------------------------
def _int_converter(base, field, conv):
    """Text of a number -> int normalised to the field's width and sign."""
    if field is None or field.size not in (1, 2, 4, 8) or field.array_len is not None:
        return lambda s: int(s, base)
    if base == 10 and (conv == "u") != bool(field.signed):
        # %u into an unsigned field or %d into a signed one: the kernel
        # printed the value itself, in range; plain int() is exact
        return int
    bits = field.size * 8
    mask = (1 << bits) - 1
    if field.signed:
        top = 1 << (bits - 1)
        full = 1 << bits

        def convert(s):
            v = int(s, base) & mask
            return v - full if v >= top else v
    else:
        def convert(s):
            return int(s, base) & mask
    return convert


class _Piece(object):
    """The regex of one part of a print fmt: a literal, or a conversion.

    `text` is the regex, its group (if any) capturing; `plain` the same
    without capturing groups (to repeat it inside a look-ahead).  An
    ambiguous piece (a %s string or %p symbol, which may hold the text that
    follows it) has `value`, the regex of its own text, and `pad`, the
    blanks its width allows before it (`trail` after, left-justified)."""

    def __init__(self, text="", plain=None, value=None, pad="", trail="", captures=True):
        self.text = text
        self.plain = text if plain is None else plain
        self.value = value
        self.pad = pad
        self.trail = trail
        self.captures = captures and value is None     # one group, in `text`


def _literal(text):
    return _Piece(re.escape(text), captures=False)


def _pad(width):
    """Blanks a width pads with: at most the width (a value is never
    shorter than nothing), unbounded for a '*' width."""
    if not width:
        return ""
    if width == "*":
        return r"\s*"
    return r"\s{0,%d}" % int(width)


def _conversion_piece(flags, width, prec, conv, has_0x):
    pad = _pad(width)
    trail = pad if width and "-" in flags else ""  # left-justified: padding after
    if conv in "di":
        core = r"[-+]?\d+"
    elif conv == "u":
        core = r"\d+"
    elif conv == "o":
        core = r"[0-7]+"
    elif conv in "xX":
        # The "0x" is optional: syscall events do not print through their
        # print fmt ("0x%08lx"): bare hex before, and since "tracing: Have
        # syscall trace events show "0x" for values greater than 10" (v6.18)
        # "0x" only from 10 up; kprobe/uprobe output adds one to %lx.
        lead = "" if has_0x else pad + r"(?:0[xX])?"
        return _Piece(lead + r"([0-9a-fA-F]+)" + trail, lead + r"[0-9a-fA-F]+" + trail)
    elif conv == "c":
        return _Piece(r"(.)" + trail, r"." + trail)
    elif conv == "s":
        value = r".{0,%d}?" % int(prec) if prec and prec != "*" else r".*?"
        return _Piece(value=value, pad=pad, trail=trail)
    else:
        raise PrintFmtError("conversion %%%s" % conv)
    return _Piece(pad + "(" + core + ")" + trail, pad + core + trail)


def _assemble(pieces):
    """The pieces -> (regex text, group number of each conversion's value).

    A %s string may contain the text that follows it, so a plain lazy
    group per string backtracks over every split of the payload: with
    three strings (block_rq_issue) the work grew with the cube of the
    payload's length.  Each ambiguous piece is matched once instead, in a
    look-ahead (atomic in Python's re) that takes the shortest value
    followed by everything up to the next ambiguous piece (or the end of
    the payload), then consumed by back-reference: a payload costs work
    linear in its length, and a string is cut at the first place the rest
    of the line fits, as the kernel's separators are meant to be read."""
    parts = []
    groups = []
    ngroups = 0
    ambiguous = [i for i, p in enumerate(pieces) if p.value is not None]
    for i, piece in enumerate(pieces):
        if piece.value is None:
            parts.append(piece.text)
            if piece.captures:
                ngroups += 1
            groups.append(ngroups if piece.captures else None)
            continue
        # named groups: back-references by number stop at 99
        pad = ""
        if piece.pad:
            pad = "(?P<_p%d>%s)" % (i, piece.pad)
            ngroups += 1
        ngroups += 1
        groups.append(ngroups)
        later = [j for j in ambiguous if j > i]
        if not later:
            # the last one: its look-ahead reads (and captures) the rest
            rest = pieces[i + 1:]
            for p in rest:
                if p.captures:
                    ngroups += 1
                groups.append(ngroups if p.captures else None)
            parts.append(r"(?=%s(?P<_v%d>%s)%s%s\Z)" % (
                pad, i, piece.value, piece.trail, "".join(p.text for p in rest)))
            return "".join(parts), groups
        follow = "".join(p.plain for p in pieces[i + 1:later[0]])
        parts.append(r"(?=%s(?P<_v%d>%s)%s%s)%s(?P=_v%d)%s" % (
            pad, i, piece.value, piece.trail, follow, "(?P=_p%d)" % i if pad else "", i,
            piece.trail))
    parts.append(r"\Z")
    return "".join(parts), groups


class PayloadDecoder(object):
    """A compiled print fmt.  decode(payload) -> {field: value} or None
    when the payload does not have this format's shape."""

    def __init__(self, event_format, regex, slots, pattern_text):
        self.format = event_format
        self.regex = regex
        self.pattern = pattern_text
        # slots: one (regex group, kind, field name, converter) per
        # conversion; only the assigned ones are read: their texts in one
        # m.group() call, then the non-string ones converted
        assigned = [(g, name, conv) for g, kind, name, conv in slots if kind == "field"]
        self._groups = tuple(i for i, _n, _c in assigned) or (0,)
        self._names = tuple(name for _i, name, _c in assigned)
        if len(self._groups) == 1:
            self._groups = self._groups * 2         # m.group(i, i): always a tuple
        self._convert = tuple((name, conv) for _i, name, conv in assigned if conv is not str)
        halves = {}
        for g, kind, name, _conv in slots:
            if kind in ("major", "minor"):
                halves.setdefault(name, {})[kind] = g
        self._devs = tuple((name, h["major"], h["minor"]) for name, h in halves.items()
                           if "major" in h and "minor" in h)

    def decode(self, payload):
        m = self.regex.match(payload.rstrip())
        if m is None:
            return None
        out = dict(zip(self._names, m.group(*self._groups)))
        try:
            for name, conv in self._convert:
                text = out[name]
                if len(text) > MAX_NUMBER_CHARS:
                    return None
                out[name] = conv(text)
            for name, major, minor in self._devs:
                major, minor = m.group(major, minor)
                if len(major) > MAX_NUMBER_CHARS or len(minor) > MAX_NUMBER_CHARS:
                    return None
                out[name] = (int(major) << MINORBITS) | int(minor)
        except (ValueError, TypeError):
            return None
        return out

    def __repr__(self):
        return "PayloadDecoder(%s: %s)" % (self.format.name, self.pattern)


def compile_print_fmt(event_format):
    """EventFormat -> PayloadDecoder.  Raises PrintFmtError when the print
    fmt cannot be parsed at all."""
    fmt, args = split_print_fmt(event_format.print_fmt or '""')
    pieces = []
    slots = []
    argi = 0
    pos = 0
    for m in _CONV.finditer(fmt):
        literal = fmt[pos:m.start()]
        conv = m.group("conv")
        end = m.end()
        if conv == "%":
            pieces.append(_literal(literal + "%"))
            pos = end
            continue
        if conv == "p":
            end += _PTR_EXT.match(fmt, end).end() - end
        has_0x = conv in "xX" and literal.endswith(("0x", "0X"))
        if has_0x:
            literal = literal[:-2]
        pieces.append(_literal(literal))
        if has_0x:
            pieces.append(_Piece(r"(?:0[xX])?", captures=False))
        pos = end
        # A '*' width or precision takes an argument of its own.
        argi += (m.group("width") == "*") + (m.group("prec") == "*")
        if conv == "n":
            argi += 1
            continue
        expr = args[argi] if argi < len(args) else ""
        argi += 1
        if conv == "p":
            pieces.append(_Piece(r"(\S+)", r"\S+") if end == m.end() else _Piece(value=r".*?"))
            slots.append((len(pieces) - 1, "ignore", None, None))
            continue
        pieces.append(_conversion_piece(m.group("flags"), m.group("width"), m.group("prec"),
                                        conv, has_0x))
        kind, name = classify_arg(expr)
        field = event_format.field(name) if name else None
        if kind == "field" and field is None:
            kind, name = "ignore", None
        converter = None
        if kind == "field":
            text_field = field.is_string
            if conv == "s":
                converter = str if text_field else _int_converter(10, field, "d")
            elif conv == "c":
                converter = (lambda s: s) if text_field else (lambda s: ord(s))
            elif text_field:
                converter = str
            else:
                converter = _int_converter(16 if conv in "xX" else 8 if conv == "o" else 10,
                                           field, conv)
        slots.append((len(pieces) - 1, kind, name, converter))
    # trailing blanks are not the format's: decode() strips them
    pieces.append(_literal(fmt[pos:].rstrip()))
    pattern, groups = _assemble(pieces)
    try:
        regex = re.compile(pattern, re.S)
    except re.error as e:
        raise PrintFmtError("cannot compile print fmt: %s" % e)
    return PayloadDecoder(event_format, regex,
                          [(groups[i], kind, name, conv) for i, kind, name, conv in slots],
                          pattern)
