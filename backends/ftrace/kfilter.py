"""Model filters -> tracefs event filter expressions.

Only what the kernel can evaluate *exactly* is pushed into an event's
`filter` file, so the kernel keeps a superset of what the tool wants and the
aggregator (which re-checks every filter in user space) decides the rest:

    tid                 common_pid (the kernel's common_pid is a thread id)
    INT fields          <format field> <op> <decimal>, only if the value fits
                        the field's size and signedness (the kernel truncates
                        the constant to the field size: `dev == 2**32+5`
                        would match dev 5)
    STR/USTR fields     == / != "text";  glob -> ~ "pattern"
    pid (a tgid)        never here: common_pid would drop the process's other
                        threads.  See pid_for_set_event_pid().

Values come from core.model.Filter, already validated there; they are
checked again here against a stricter pattern before being quoted, so
nothing a user typed reaches the kernel unvalidated.
"""

import re

from kerntrace.core import semantics
from kerntrace.core.model import INT

# What a string constant may contain inside "..." in a filter expression.
_SAFE_CONST = re.compile(r"^[A-Za-z0-9_.:+/@%#=,\- *]{0,64}\Z")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_OPS = ("==", "!=", "<", "<=", ">", ">=", "&")


class Clause(object):
    """One `field op constant` term; `glob` marks the ones older kernels
    reject (no ~ operator; no & before v4.10), so they can be dropped on
    EINVAL."""

    __slots__ = ("text", "glob", "filter")

    def __init__(self, text, glob=False, filter=None):
        self.text = text
        self.glob = glob
        self.filter = filter

    def __repr__(self):
        return "Clause(%r)" % self.text


def _fits(value, fmt_field):
    size = getattr(fmt_field, "size", 8) or 8
    if size > 8:
        return False
    bits = size * 8
    if fmt_field.signed:
        return -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    return 0 <= value < (1 << bits)


def _int_clause(name, flt, fmt_field):
    if flt.op not in _INT_OPS or isinstance(flt.value, bool) or not isinstance(flt.value, int):
        return None
    if fmt_field is not None and not _fits(flt.value, fmt_field):
        return None
    if flt.op == "&":
        # Since Linux v4.10 (filter_pred_BAND_*) a predicate may be `field &
        # mask`, true where any bit is set; older kernels reject it (EINVAL)
        # and user space applies it.  A mask with the sign bit of a signed
        # field is left to user space (the constant would not fit).
        return Clause("%s & %d" % (name, flt.value), glob=True, filter=flt)
    return Clause("%s %s %d" % (name, flt.op, flt.value), filter=flt)


def _str_clause(name, flt):
    value = flt.value
    if not isinstance(value, str) or not _SAFE_CONST.match(value):
        return None
    if flt.op == "glob":
        # Since Linux commit b0f1a59a ("tracing/filters: Use a different op
        # for glob match") globs use "~"; kernels before it reject "~"
        # (EINVAL) and the clause is dropped for user-space filtering.
        return Clause('%s ~ "%s"' % (name, value), glob=True, filter=flt)
    if flt.op in ("==", "!=") and "*" not in value:
        return Clause('%s %s "%s"' % (name, flt.op, value), filter=flt)
    return None


def clauses(filters, resolved):
    """Kernel clauses for the model filters that apply to one resolved
    event (plan.ResolvedEvent).  Filters the kernel cannot evaluate exactly
    are left out (user space applies them)."""
    out = []
    fmt = resolved.format
    for flt in filters:
        if flt.field == "tid":
            if flt.type == INT:
                field = fmt.field("common_pid") if fmt is not None else None
                c = _int_clause("common_pid", flt, field)
                if c:
                    out.append(c)
            continue
        src = resolved.fields.get(flt.field)
        if src is None or not _FIELD_NAME.match(src):
            continue            # context fields (pid, comm, cpu, ts): user space
        declared = resolved.logical.field(flt.field)
        if declared is not None and declared.depends_on():
            continue            # a derived value (if_zero, override): the kernel has the raw one
        field = fmt.field(src) if fmt is not None else None
        if fmt is not None and field is None:
            continue
        if flt.type == INT:
            if field is not None and field.is_string:
                continue
            c = _int_clause(src, flt, field)
        else:
            if field is not None and not field.is_string:
                continue
            c = _str_clause(src, flt)
        if c:
            out.append(c)
    return out


def expression(clause_list):
    """Join clauses into one filter expression ('' for none)."""
    return " && ".join(c.text for c in clause_list)


def kernel_side_filters(measurement, logical):
    """The filters of event `logical` the kernel may apply: those that may
    drop it leaving no trace (core.semantics.early_filters).  A pair start
    its other filters reject must reach user space, where it leaves a
    marker that silences its end; an end its other filters reject still
    retires its start there."""
    return semantics.early_filters(measurement, logical)


def event_filter(measurement, resolved):
    """The filter expression for one resolved event, or None."""
    text = expression(clauses(kernel_side_filters(measurement, resolved.logical), resolved))
    return text or None


def without_globs(clause_list):
    return [c for c in clause_list if not c.glob]


def pid_for_set_event_pid(measurement):
    """The PID of a `pid == N` filter that applies to every event, or None.

    The model's pid is a process (tgid).  The kernel's set_event_pid keeps
    events of the listed task ids; with options/event-fork it also follows
    tasks they create, so listing every thread of N at start is a superset
    of the process (children are dropped again in user space).  Only a
    filter every event may apply early (core.semantics.early_filters)
    qualifies: one that decides a pair's start late (a block request's
    pid, where its end runs in another task) must see every start."""
    for flt in measurement.filters:
        if flt.field == "pid" and flt.op == "==" and isinstance(flt.value, int) \
                and not isinstance(flt.value, bool) and flt.value > 0 \
                and all(flt.applies_to(e) and flt in semantics.early_filters(measurement, e)
                        for e in measurement.events):
            return flt.value
    return None
