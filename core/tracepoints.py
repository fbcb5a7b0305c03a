"""Tracepoints of this host for tools that take any tracepoint by name
(tpoint, argdist): listing them, reading one's format file, and declaring
its fields as model Fields.

Tools get these through kerntrace.core.api; they read (never write)
tracefs, as `kerntrace doctor` does.
"""

import fnmatch
import os
import re

from . import tracefs
from .errors import TracingUnavailable, UsageError
from .model import (CONTEXT_FIELDS, EVENT_NAME, INT, LATENCY, QUEUED, STR, TRACER_RECORDS, Field,
                    is_identifier)

# Names a declared field may not have (the model's implicit ones); a
# payload field so named is declared as "<name>_" with the real name as source.
_RESERVED = set(CONTEXT_FIELDS) | {LATENCY, QUEUED, EVENT_NAME}


_SPEC = re.compile(r"^(?:t:)?([^:]*):([^:]*)\Z")


def parse_tracepoint(spec):
    """'block:block_rq_issue' or 't:block:block_rq_issue' -> (category,
    name); UsageError for anything that cannot name a tracepoint."""
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if not m or not all(is_identifier(part) for part in m.groups()):
        raise UsageError("invalid tracepoint %r (expected CATEGORY:EVENT, names of letters, "
                         "digits and _ of at most 64 characters, e.g. block:block_rq_issue)"
                         % (spec,))
    if m.group(1) == TRACER_RECORDS:
        raise UsageError("%s is not a tracepoint: events/%s/ describes the records of ftrace's "
                         "own tracers, which cannot be enabled" % (spec, TRACER_RECORDS))
    return m.group(1), m.group(2)


def _root():
    loc = tracefs.locate()
    if loc is None:
        raise TracingUnavailable("tracefs not found (root? kernel built with tracing?)")
    return loc.path


def list_tracepoints(pattern=None, root=None):
    """Sorted "category:name" of every tracepoint (a glob `pattern` such as
    "block:*" or "*open*" narrows them), not ftrace's own record formats."""
    events = os.path.join(root or _root(), "events")
    out = []
    try:
        categories = os.listdir(events)
    except OSError as e:
        raise TracingUnavailable("cannot list %s: %s" % (events, e.strerror))
    for cat in categories:
        cdir = os.path.join(events, cat)
        if cat == TRACER_RECORDS or not os.path.isdir(cdir):
            continue
        try:
            names = os.listdir(cdir)
        except OSError:
            continue
        for name in names:
            if os.path.isdir(os.path.join(cdir, name)):
                spec = "%s:%s" % (cat, name)
                if pattern is None or fnmatch.fnmatchcase(spec, pattern):
                    out.append(spec)
    return sorted(out)


def format_text(category, name, root=None):
    """The format file of a tracepoint, as the kernel shows it."""
    path = os.path.join(tracefs.event_dir(root or _root(), category, name), "format")
    text = tracefs.read_text(path)
    if text is None:
        raise UsageError("tracepoint %s:%s not found" % (category, name))
    return text


def field_type(ff):
    """The model type of a format field: INT for a 1, 2, 4 or 8 byte scalar
    (pointers included), STR for a char array or __data_loc string, None for
    what the model cannot carry (other arrays, __rel_loc strings)."""
    if ff.is_string and not ff.rel_loc:
        return STR
    if ff.array_len is None and not ff.data_loc and ff.size in (1, 2, 4, 8):
        return INT
    return None


class TracepointFields(object):
    """A tracepoint's payload fields as model Fields.

    fields     [Field] in format-file order (payload fields the model can
               carry; a field named like a context field gets a trailing _)
    by_source  format field name -> declared Field name
    skipped    format field names not carried (arrays, __rel_loc)
    pointers   declared names of pointer fields (printed in hex)
    """

    def __init__(self, category, name, fmt):
        self.category, self.name = category, name
        self.fields, self.by_source, self.skipped, self.pointers = [], {}, [], set()
        for ff in fmt.payload_fields():
            ftype = field_type(ff)
            if ftype is None:
                self.skipped.append(ff.name)
                continue
            declared = ff.name + "_" if ff.name in _RESERVED else ff.name
            self.fields.append(Field(declared, ftype, sources=(ff.name,)))
            self.by_source[ff.name] = declared
            if "*" in ff.ctype:
                self.pointers.add(declared)

    def type_of(self, declared):
        for f in self.fields:
            if f.name == declared:
                return f.type
        return None


def tracepoint_fields(category, name, root=None):
    """TracepointFields of a tracepoint of this host; UsageError when it
    does not exist."""
    fmt = tracefs.read_format(root or _root(), category, name)
    if fmt is None:
        raise UsageError("tracepoint %s:%s not found" % (category, name))
    return TracepointFields(category, name, fmt)


__all__ = ["parse_tracepoint", "list_tracepoints", "format_text", "tracepoint_fields",
           "TracepointFields", "field_type"]
