"""Plain counts kept by the kernel: hist triggers in our own instance.

Where the kernel has hist triggers (CONFIG_HIST_TRIGGERS, since Linux commit
7ef224d1d0e3 ("tracing: Add 'hist' event trigger command") (v4.7)), a Count
measurement without pairing needs no event in any buffer: each event gets a
trigger in kerntrace's own instance,

    hist:keys=<format fields>:vals=hitcount:size=<N> if <filter>

and every interval reads the instance's events/<system>/<event>/hist.  A
trigger arms its event by itself (soft mode: counted, not recorded), so the
buffer stays empty and the tracer's cost no longer grows with the rate.

Feature detection: the per-event `hist` file, which event_create_dir()
(kernel/trace/trace_events.c) creates only under #ifdef CONFIG_HIST_TRIGGERS;
README's mention of "hist" is documentation, not the event's capability.
Compound keys (76a3b0c8ac34, "tracing: Add hist trigger support for
compound keys") came in the same v4.7 series.

Counts are cumulative in the kernel and read per interval as differences
from the last read: clearing the table (`:clear`) after reading would drop
the hits that land between the read and the clear.  Keys the table had no
room for are the `Dropped:` total; its growth is reported as lost.
Removal: `!hist:...` on close; a killed run's instance is removed by the
next run's stale cleanup (stale.py), and removing an instance removes its
triggers (event_trace_del_tracer() calls clear_event_triggers()).

Which measurements qualify (hist_route()): Count aggregate, no pair, events
that are tracepoints (not probes we define), every key the event name, the
thread id or a whole-number format field, every filter of each event one the
kernel evaluates exactly (kfilter, no glob), and a private instance.
"""

import os
import re
import sys

from kerntrace.core.model import EVENT_NAME

from . import kfilter

# Table entries per trigger (the kernel's default is 2048: TRACING_MAP_BITS
# _DEFAULT); more keys than this are counted as dropped, and lost.
HIST_SIZE = 8192

# One table entry as hist_trigger_entry_print() prints it (kernel/trace/
# trace_events_hist.c): "{ key: value, key: value } hitcount: N", integer
# keys with "%s: %10llu" (unsigned 64-bit).
_ENTRY = re.compile(r"^\{ (.*?) *\} hitcount: *(\d+)")
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): *(\d+)$")
_DROPPED = re.compile(r"^ +Dropped: *(\d+)", re.M)
_HITS = re.compile(r"^ +Hits: *(\d+)", re.M)


class HistFormatError(ValueError):
    """A hist file that does not read as the kernel prints it."""


def has_hist(root, system, event):
    """The kernel has hist triggers for this event (its `hist` file)."""
    return os.path.exists(os.path.join(root, "events", system, event, "hist"))


def key_fields(measurement, resolved):
    """[(logical key, format field or None for the event name)] of one
    resolved event, or a string: why its keys cannot be table keys."""
    fmt = resolved.format
    out = []
    for key in measurement.aggregate.keys:
        if key == EVENT_NAME:
            out.append((key, None))
            continue
        if key == "tid":
            out.append((key, "common_pid"))
            continue
        src = resolved.fields.get(key)
        declared = resolved.logical.field(key)
        if src is None or fmt is None or fmt.field(src) is None:
            return "key %s is not a format field of %s:%s" % (key, resolved.system,
                                                               resolved.event)
        if declared is not None and declared.depends_on():
            return "key %s is derived from other fields" % key
        f = fmt.field(src)
        if f.is_string or f.size not in (1, 2, 4, 8):
            return "key %s is not a whole number" % key
        out.append((key, src))
    return out


def trigger_command(fields, filter_text=None, size=HIST_SIZE):
    """The hist trigger for format fields `fields` (none: one entry per
    event, keyed on its type)."""
    keys = [f for f in fields if f is not None] or ["common_type"]
    for k in keys:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", k):
            raise ValueError("not a field name: %r" % (k,))
    cmd = "hist:keys=%s:vals=hitcount:size=%d" % (",".join(keys), size)
    if filter_text:
        cmd += " if " + filter_text
    return cmd


def removal_command(command):
    return "!" + command


def hist_route(measurement, plan):
    """{logical event name: trigger command} when every event of the plan
    can be counted by a hist trigger, else why not (a string)."""
    agg = measurement.aggregate
    if agg.kind != "count" or measurement.pair is not None:
        return "not a plain count"
    if not plan.instances or plan.tracefs_root is None:
        return "no instance of our own"
    commands = {}
    for ev in plan.events:
        if ev.probe_def or ev.system == "ftrace":
            return "event %s is not a tracepoint" % ev.name
        if not has_hist(plan.tracefs_root, ev.system, ev.event):
            return "no hist triggers (events/%s/%s/hist missing)" % (ev.system, ev.event)
        fields = key_fields(measurement, ev)
        if isinstance(fields, str):
            return fields
        narrow = [src for _k, src in fields if src is not None and ev.format.field(src).size < 8]
        if sys.byteorder == "big" and narrow and len(fields) > 1:
            # a compound key holds a narrow field in the first bytes of its
            # 8-byte slot: printed as u64, a big-endian kernel shifts it
            return "compound keys of fields narrower than 8 bytes (big-endian)"
        wanted = [f for f in measurement.filters if f.applies_to(ev.logical)]
        clauses = kfilter.clauses(wanted, ev)
        if len(clauses) != len(wanted) or any(c.glob for c in clauses):
            return "a filter of event %s the kernel cannot apply exactly" % ev.name
        commands[ev.name] = trigger_command([src for _k, src in fields],
                                           kfilter.expression(clauses) or None)
    return commands


def parse_hist(text):
    """A hist file's text -> ({(key values...): hitcount}, hits, dropped)
    for the first trigger in it (ours: the only one in our instance).
    Key values come in the order the entry prints them, as unsigned 64-bit
    numbers.  Raises HistFormatError for text that is not a histogram."""
    if "# event histogram" not in text:
        raise HistFormatError("no '# event histogram' header")
    rows = {}
    for line in text.splitlines():
        if line.startswith("Totals:"):
            break
        m = _ENTRY.match(line)
        if not m:
            continue
        values = []
        for part in m.group(1).split(", "):
            k = _KEY.match(part.strip())
            if not k:
                raise HistFormatError("unexpected key %r" % part.strip())
            values.append(int(k.group(2)))
        key = tuple(values)
        rows[key] = rows.get(key, 0) + int(m.group(2))
    dropped = _DROPPED.search(text)
    hits = _HITS.search(text)
    if dropped is None or hits is None:
        raise HistFormatError("no Totals (Hits:, Dropped:)")
    return rows, int(hits.group(1)), int(dropped.group(1))


def _field_value(value, size, signed):
    """A key as printed (u64) -> the field's value.  A lone key is the
    field's value widened to 64 bits (sign-extended when signed); in a
    compound key only the field's own bytes are copied into a zeroed
    8-byte slot (add_to_key()): both read right at the field's width."""
    bits = 8 * size
    value &= (1 << bits) - 1
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


class HistCounts(object):
    """Interval counts from the cumulative tables of one run.

        hc = HistCounts(measurement, plan)
        counts, lost = hc.take({logical event name: hist text})

    counts: {count key tuple (the measurement's keys): n} since the last
    take(); lost: growth of the tables' Dropped totals."""

    def __init__(self, measurement, plan):
        self.events = {}
        for ev in plan.events:
            fields = key_fields(measurement, ev)
            widths = []
            for _key, src in fields:
                f = ev.format.field(src) if src is not None else None
                widths.append((f.size, bool(f.signed)) if f is not None else (8, False))
            self.events[ev.name] = (fields, widths)
        self.previous = {}          # event name -> (rows, dropped)

    def take(self, texts):
        counts = {}
        lost = 0
        for name, text in texts.items():
            fields, widths = self.events[name]
            rows, _hits, dropped = parse_hist(text)
            before_rows, before_dropped = self.previous.get(name, ({}, 0))
            self.previous[name] = (rows, dropped)
            lost += max(0, dropped - before_dropped)
            # table key columns: the non-name keys in order, else common_type
            for row, n in rows.items():
                n -= before_rows.get(row, 0)
                if n <= 0:
                    continue
                key = []
                col = 0
                for (_logical, src), (size, signed) in zip(fields, widths):
                    if src is None:
                        key.append(name)
                    else:
                        key.append(_field_value(row[col], size, signed))
                        col += 1
                key = tuple(key)
                counts[key] = counts.get(key, 0) + n
        return counts, lost
