"""The data the ftrace backend's parts pass to each other.

    backend.check()  resolves every logical Event of a Measurement to a
                     ResolvedEvent (which tracefs event, which format field
                     holds each logical field) -> a Plan
    decoders         (textparse / rawparse) turn kernel output into RawEvents
    Aggregator       maps RawEvents back to logical events through the Plan,
                     applies the filters, pairs, aggregates -> core Reports
"""

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


class ResolvedEvent(object):
    """A logical event bound to the tracefs event that provides it.

    logical   the model Event
    probe     the model Probe chosen among the event's alternatives
    system    tracefs event system ("block", "syscalls", or our own
              "kerntrace_<pid>" group for uprobes/kprobes we define)
    event     tracefs event name
    format    core.tracefs.EventFormat of that event (None in replay until a
              line reveals which known format it uses)
    fields    logical field name -> format field name
    probe_def for uprobes/kprobes: the definition line written to
              uprobe_events/kprobe_events (None for tracepoints)
    """

    __slots__ = ("logical", "probe", "system", "event", "format", "fields", "probe_def")

    def __init__(self, logical, probe, system, event, format=None, fields=None, probe_def=None):
        self.logical = logical
        self.probe = probe
        self.system = system
        self.event = event
        self.format = format
        self.fields = dict(fields or {})
        self.probe_def = probe_def

    @property
    def name(self):
        return self.logical.name

    def __repr__(self):
        return "ResolvedEvent(%s -> %s:%s %r)" % (self.logical.name, self.system, self.event,
                                                  self.fields)


class Plan(object):
    """Everything check() found: one ResolvedEvent per logical event, and
    which reading path and kernel-side filters the session will use.

    task_events  None when the measurement reads no task name or process
                 id; else the tasks.TaskEvents this host has (maybe none)
                 that the session enables beside the measured events."""

    def __init__(self, events, read_path="raw", kernel_filters=None, instances=True,
                 task_events=None):
        self.events = list(events)
        self.task_events = list(task_events) if task_events is not None else None
        self.read_path = read_path           # "raw" (trace_pipe_raw) or "text" (trace_pipe)
        self.kernel_filters = dict(kernel_filters or {})  # logical event name -> filter text
        self.instances = instances           # private instance, else top level + lock

    def by_tracefs_name(self):
        return {(e.system, e.event): e for e in self.events}


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
