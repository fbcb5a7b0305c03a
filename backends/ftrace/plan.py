"""The data the ftrace backend's parts pass to each other.

    backend.check()  resolves every logical Event of a Measurement to a
                     ResolvedEvent (which tracefs event, which format field
                     holds each logical field) and decides everything else
                     the run does (buffer, instance name, kernel filters,
                     clock, options) -> an immutable Plan; the session and
                     --print-program read it and change nothing in it
    decoders         (textparse / rawparse) turn kernel output into RawEvents
    Aggregator       maps RawEvents back to logical events through the Plan,
                     applies the filters, pairs, aggregates -> core Reports
"""

import types

from kerntrace.core.backend import Frozen
from kerntrace.core.model import STR, USTR


def field_source(fmt, field, probe=None):
    """The format field of `fmt` that provides model Field `field`: the
    first of its sources (`probe`'s own for it, if it names some) the
    format has, of the right kind (a string field for STR/USTR, else not).
    None when there is none."""
    for src in (probe.sources_for(field) if probe is not None else field.sources):
        f = fmt.field(src)
        if f is not None and (field.type in (STR, USTR)) == f.is_string:
            return src
    return None


def own_comm_field(resolved):
    """The event's own "comm" format field, when it holds the current
    task's name: the format has one, no declared field reads it (a
    declared one means it is someone else's name), and the format has no
    "pid" beside it (comm and pid together describe another task: the
    wakee of sched_wakeup, the target of signal_generate).  Else None."""
    fmt = resolved.format
    if fmt is None or fmt.field("comm") is None or fmt.field("pid"):
        return None
    if "comm" in resolved.fields.values():
        return None
    return "comm"


class ResolvedEvent(Frozen):
    """A logical event bound to the tracefs event that provides it.

    logical   the model Event
    probe     the model Probe chosen among the event's alternatives
    system    tracefs event system ("block", "syscalls", or our own
              "kerntrace_<pid>" group for uprobes/kprobes we define)
    event     tracefs event name
    format    core.tracefs.EventFormat of that event (None for a probe we
              define until it is defined: the session's configured events
              carry it; None in replay until a line reveals which known
              format it uses)
    fields    logical field name -> format field name
    probe_def for uprobes/kprobes: the definition line written to
              uprobe_events/kprobe_events (None for tracepoints)
    """

    __slots__ = ("logical", "probe", "system", "event", "format", "fields", "probe_def",
                 "_frozen")

    def __init__(self, logical, probe, system, event, format=None, fields=None, probe_def=None):
        self.logical = logical
        self.probe = probe
        self.system = system
        self.event = event
        self.format = format
        self.fields = types.MappingProxyType(dict(fields or {}))
        self.probe_def = probe_def
        self.freeze()

    def replace(self, **changes):
        """A copy with some attributes changed (a probe's format once it is
        defined, its name when another run owns the planned one)."""
        args = dict(logical=self.logical, probe=self.probe, system=self.system,
                    event=self.event, format=self.format, fields=self.fields,
                    probe_def=self.probe_def)
        args.update(changes)
        return ResolvedEvent(**args)

    @property
    def name(self):
        return self.logical.name

    def __repr__(self):
        return "ResolvedEvent(%s -> %s:%s %r)" % (self.logical.name, self.system, self.event,
                                                  self.fields)


class Plan(Frozen):
    """Everything check() decided for one run, immutable.

    events          (ResolvedEvent, ...) in measurement order
    read_path       "raw" (per-CPU trace_pipe_raw) or "text" (trace_pipe)
    instances       a private instance (else the top level under the lock)
    task_events     None when the measurement reads no task name or process
                    id; else the tasks.TaskEvents this host has (maybe
                    none) that the session enables beside the measured events
    kernel_filters  logical event name -> the filter expression written to
                    its `filter` file, or None (user space filters all)
    filter_fallbacks  logical event name -> the expression tried when the
                    kernel rejects the first (its globs dropped), or None
    tracefs_root    the tracefs mount the run uses (None for a replay)
    instance_name   the instance's name (instances only): the one created,
                    unless another live run owns it (see configure.py)
    event_instances  () or the instance name of each event, in event order:
                    one instance per event, so that each page holds entries
                    of one size (bulkpair's fast split); instance_name is
                    then the first
    buffer_kb       per-CPU KB written to buffer_size_kb; buffer_source says
                    why ("--buffer-kb" or "default for these events")
    trace_clock     the clock written to trace_clock, or None
    record_tgid     options/record-tgid is set (the kernel has it)
    event_pid       the process id whose threads set_event_pid lists (with
                    options/event-fork): a `pid == N` filter every event
                    applies early, where the kernel has both; else None
    header_page, header_event  the raw path's ring buffer layouts
    plan_key        the RunOptions.plan_key() it was made for
    count_route     how a plain count is counted: "hist" (the kernel's hist
                    triggers: histcount.py), "pages" (rows tallied per
                    trace_pipe_raw page: pagecount.py), or None (event by
                    event); count_note says why not the others
    count_triggers  "hist": logical event name -> its trigger command
    kernel_stacks   the run takes kernel stacks (options/stacktrace,
                    kstacks.py); stack_format is then the ftrace/kernel_stack
                    EventFormat the raw path decodes (None on the text path)
    """

    def __init__(self, events, read_path="raw", kernel_filters=None, instances=True,
                 task_events=None, filter_fallbacks=None, tracefs_root=None,
                 instance_name=None, buffer_kb=None, buffer_source=None, trace_clock=None,
                 record_tgid=False, event_pid=None, header_page="", header_event="",
                 plan_key=None, count_route=None, count_note=None, count_triggers=None,
                 kernel_stacks=False, stack_format=None, event_instances=()):
        self.events = tuple(events)
        self.task_events = tuple(task_events) if task_events is not None else None
        self.read_path = read_path
        self.kernel_filters = types.MappingProxyType(dict(kernel_filters or {}))
        self.filter_fallbacks = types.MappingProxyType(dict(filter_fallbacks or {}))
        self.instances = instances
        self.tracefs_root = tracefs_root
        self.instance_name = instance_name
        self.buffer_kb = buffer_kb
        self.buffer_source = buffer_source
        self.trace_clock = trace_clock
        self.record_tgid = bool(record_tgid)
        self.event_pid = event_pid
        self.header_page = header_page
        self.header_event = header_event
        self.plan_key = plan_key
        self.count_route = count_route
        self.count_note = count_note
        self.count_triggers = types.MappingProxyType(dict(count_triggers or {}))
        self.kernel_stacks = bool(kernel_stacks)
        self.stack_format = stack_format
        self.event_instances = tuple(event_instances or ())
        self.freeze()

    _FIELDS = ("events", "read_path", "kernel_filters", "instances", "task_events",
               "filter_fallbacks", "tracefs_root", "instance_name", "buffer_kb",
               "buffer_source", "trace_clock", "record_tgid", "event_pid", "header_page",
               "header_event", "plan_key", "count_route", "count_note",
               "count_triggers", "kernel_stacks", "stack_format", "event_instances")

    def replace(self, **changes):
        """A new Plan with some decisions changed (a replay binding formats;
        tests forcing another kernel's path); this one stays as it is."""
        args = dict((f, getattr(self, f)) for f in self._FIELDS)
        args.update(changes)
        return Plan(**args)

    def describe(self):
        """--explain lines: where each event comes from and what the run
        writes, as the session will (from this plan, nothing recomputed)."""
        lines = []
        for ev in self.events:
            flt = self.kernel_filters.get(ev.name)
            lines.append("event %s <- %s:%s%s%s" % (
                ev.name, ev.system, ev.event,
                " (%s)" % ev.probe.describe() if ev.probe_def else "",
                "; kernel filter %s" % flt if flt else ""))
        if self.tracefs_root is None:
            return lines
        where = ("instance %s" % self.instance_name if self.instances
                 else "the top-level buffer under the perf-tools lock")
        if self.event_instances:
            where = "instances %s (one per event)" % ", ".join(
                "%s (%s)" % (name, ev.name) for name, ev in zip(self.event_instances,
                                                                 self.events))
        lines.append("%s, %d KB per CPU%s (%s)" % (where, self.buffer_kb,
                                                  " each" if self.event_instances else "",
                                                  self.buffer_source))
        lines.append("reads %s" % ("per_cpu/cpu*/trace_pipe_raw" if self.read_path == "raw"
                                   else "trace_pipe"))
        if self.kernel_stacks:
            lines.append("kernel stacks: options/stacktrace (a kernel_stack record after "
                         "each event)")
        if self.count_route == "hist":
            lines.append("counts in the kernel: hist triggers, tables read per interval "
                         "(no event recorded)")
        elif self.count_route == "pages":
            lines.append("counts per page: event types and key fields only, no event decoded"
                         + (" (not by hist triggers: %s)" % self.count_note
                            if self.count_note else ""))
        elif self.count_note:
            lines.append("counts event by event (%s)" % self.count_note)
        return lines


class RawEvent(object):
    """One decoded kernel event, before it is mapped to a logical event.

    ts      nanoseconds (trace clock of the buffer)
    tid     the kernel's common_pid (a thread id)
    tgid    the process id when the kernel recorded it (record-tgid), else None
    comm    task name when known (text path: from the line; raw path: None)
    fields  format field name -> value (int, or str for char arrays/strings)
    """

    __slots__ = ("system", "event", "ts", "tid", "tgid", "cpu", "comm", "fields")

    def __init__(self, system, event, ts, tid, cpu, comm=None, fields=None, tgid=None):
        self.system = system
        self.event = event
        self.ts = ts
        self.tid = tid
        self.tgid = tgid
        self.cpu = cpu
        self.comm = comm
        self.fields = fields if fields is not None else {}

    def __repr__(self):
        return "RawEvent(%s:%s ts=%d tid=%d cpu=%d %r)" % (self.system, self.event, self.ts,
                                                           self.tid, self.cpu, self.fields)


class Lost(object):
    """The kernel reported `count` lost events on `cpu` (count None: the
    kernel said events were lost without a number)."""

    __slots__ = ("cpu", "count")

    def __init__(self, cpu, count):
        self.cpu = cpu
        self.count = count

    def __repr__(self):
        return "Lost(cpu=%s, %s)" % (self.cpu, self.count)
