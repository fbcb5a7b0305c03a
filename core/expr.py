"""A filter expression as users type it, parsed into the model's Filters.

    dev == 8388608 && nr_sector > 8
    comm == "dd" && size >= 4096
    comm ~ "kworker*"

The language is exactly what a Measurement's filters can express: a
conjunction (`&&`) of comparisons `FIELD OP VALUE`, where OP is one of
`== != < <= > >=` (integers) or `== != ~` (strings; `~` is a glob with `*`
at the start and/or end, as in tracefs filters).  A VALUE is an integer
(decimal, 0x hex, optionally negative) or a string in double or single
quotes (a bare word is accepted for string fields).  `||`, `!`,
parentheses, arithmetic and anything else are refused with one line: the
text is parsed here, field names are checked against the event's fields
and values are typed by the Filter constructor, so nothing the user typed
ever reaches tracefs or generated C as text.

parse_filter() takes a resolver, so tools decide what names mean
(tracepoint field names, `args->bytes`, bcc-style argument names,
perf-tools' `common_pid`).
"""

import re

from .errors import UsageError
from .model import INT, STR, Filter

# One token.  Order matters: two-character operators before one-character.
_TOKEN = re.compile(r"""
    (?P<space>[ \t]+)
  | (?P<and>&&)
  | (?P<or>\|\|)
  | (?P<op>==|!=|<=|>=|<|>|~)
  | (?P<name>(?:args->)?[A-Za-z_$][A-Za-z0-9_]*)
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|[0-9]+))
  | (?P<string>"[^"\\]*"|'[^'\\]*')
""", re.VERBOSE)

_OPS = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "~": "glob"}
MAX_EXPRESSION_CHARS = 1024


def _printable(text):
    return "".join(c if c.isprintable() else "?" for c in text)


def tokenize(text):
    """[(kind, text, column)]; UsageError for anything not in the language."""
    if not isinstance(text, str):
        raise UsageError("filter must be text")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise UsageError("filter longer than %d characters" % MAX_EXPRESSION_CHARS)
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            c = text[pos]
            what = ("parentheses are" if c in "()" else "'!' (negation) is" if c == "!"
                    else "%r is" % _printable(c))
            raise UsageError("filter %r: %s not supported at column %d (a filter is "
                             "FIELD OP VALUE [&& ...])" % (_printable(text), what, pos + 1))
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group(), pos + 1))
        pos = m.end()
    return tokens


def _int_value(text, token):
    negative = token.startswith("-")
    digits = token[1:] if negative else token
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
    return -value if negative else value


class Comparison(object):
    """One parsed `FIELD OP VALUE`: field as the resolver named it."""

    __slots__ = ("field", "type", "op", "value")

    def __init__(self, field, type, op, value):
        self.field, self.type, self.op, self.value = field, type, op, value

    def __repr__(self):
        return "Comparison(%s %s %r)" % (self.field, self.op, self.value)


def parse_comparisons(text, resolve):
    """Parse `text` into Comparisons.  `resolve(name)` -> (field, type) or
    None for a name that is not a field (type INT or STR)."""
    tokens = tokenize(text)
    if not tokens:
        raise UsageError("empty filter")
    out = []
    i = 0
    shown = _printable(text)
    while True:
        part = tokens[i:i + 3]
        if len(part) < 3 or [k for k, _, _ in part] not in (
                ["name", "op", "number"], ["name", "op", "string"], ["name", "op", "name"]):
            at = part[-1] if len(part) < 3 and part else (part[0] if part else tokens[-1])
            if any(k == "or" for k, _, _ in tokens):
                raise UsageError("filter %r: '||' is not supported: a filter is comparisons "
                                 "joined by && (run the tool once per alternative)" % shown)
            raise UsageError("filter %r: expected FIELD OP VALUE at column %d" % (shown, at[2]))
        (_, name, _), (_, op, _), (vkind, vtext, vcol) = part
        resolved = resolve(name)
        if resolved is None:
            raise UsageError("filter %r: unknown field %r" % (shown, name))
        field, ftype = resolved
        if ftype == INT:
            if op == "~":
                raise UsageError("filter %r: '~' (glob) applies to string fields, %s is an "
                                 "integer" % (shown, name))
            if vkind != "number":
                raise UsageError("filter %r: %s is an integer field, %s is not an integer"
                                 % (shown, name, vtext))
            value = _int_value(text, vtext)
        elif ftype == STR:
            if vkind == "number":
                raise UsageError("filter %r: %s is a string field: quote the value" % (shown, name))
            value = vtext[1:-1] if vkind == "string" else vtext
            if op not in ("==", "!=", "~"):
                raise UsageError("filter %r: %s is a string field: use ==, != or ~"
                                 % (shown, name))
        else:
            raise UsageError("filter %r: field %s cannot be filtered on" % (shown, name))
        try:
            Filter(field, _OPS[op], value, type=ftype)     # the model validates the value
        except UsageError as e:
            raise UsageError("filter %r: %s" % (shown, e))
        out.append(Comparison(field, ftype, _OPS[op], value))
        i += 3
        if i == len(tokens):
            return out
        kind, tok, col = tokens[i]
        if kind == "or":
            raise UsageError("filter %r: '||' is not supported: a filter is comparisons "
                             "joined by && (run the tool once per alternative)" % shown)
        if kind != "and":
            raise UsageError("filter %r: expected && at column %d, got %r" % (shown, col, tok))
        i += 1


def parse_filter(text, resolve, events=None):
    """Parse `text` into a list of model Filters (applying to `events`, or
    to every event that has the field)."""
    return [Filter(c.field, c.op, c.value, events=events, type=c.type)
            for c in parse_comparisons(text, resolve)]


__all__ = ["parse_filter", "parse_comparisons", "tokenize", "Comparison"]
