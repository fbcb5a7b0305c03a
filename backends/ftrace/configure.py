"""Setting up a run's ftrace buffer from its Plan, write by write.

configure() performs every write that prepares the buffer through a
ControlFiles, in this order: the instance (or nothing: the top level),
probe definitions, buffer size, clock, options, the function tracer, the
PID filter, event filters, task events, measured events, tracing_on.  With
plan.event_instances there is an instance per event, each set up in turn
with its one event.  With
dry ControlFiles the same code only records the writes: that record is
--print-program, so it shows exactly what start() writes.

Everything written comes from the plan (check() decided it).  What only the
live kernel can say at that moment is read here and nowhere decided again:
  - a name the plan chose that another live run owns (the same PID in
    another PID namespace) is replaced by the next free one, said under
    --explain: the one place a run can differ from --print-program
  - the format of a probe we define exists once it is defined
  - a filter the kernel rejects (EINVAL, e.g. globs before the `~`
    operator) is retried without globs (the record shows that retry as a
    comment, IF_REJECTED, where the kernel accepts the first), then left
    to user space
  - the threads of a `pid == N` process are those at the start
"""

import errno
import os

from kerntrace.core import tracefs
from kerntrace.core.errors import EnableError, FilterError

from . import instance as inst
from . import histcount, probes
from .lock import LOCK_PATH
from .readers import cpus

# Names tried for our instance or a probe before giving up.
NAME_TRIES = 100
# How the record shows a filter written only if the kernel rejects the one
# before (a comment: the dry run cannot know).
IF_REJECTED = "if the kernel rejects it (EINVAL): echo"


class Configured(object):
    """What configure() set up.

    buffer_path     the buffer's directory (the instance, or the top level)
    instance_name   the instance's name, None at the top level
    buffers         [(buffer path, [ResolvedEvent as defined])]: the one
                    buffer with every event, or with plan.event_instances
                    one instance per event (buffer_path, instance_name: the
                    first)
    events          the plan's events as defined: a probe with its format
                    and the name it got
    kernel_filters  logical event name -> the filter the kernel accepted,
                    or None
    """

    def __init__(self):
        self.buffer_path = None
        self.instance_name = None
        self.buffers = []
        self.events = []
        self.kernel_filters = {}


def threads(pid):
    """Thread ids of a process (just the pid if /proc does not list them)."""
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid) if t.isdigit())
    except OSError:
        tids = []
    return tids or [pid]


class _Configurer(object):
    def __init__(self, measurement, plan, ops, explain, say, snapshot_tasks):
        self.measurement = measurement
        self.plan = plan
        self.root = plan.tracefs_root
        self.ops = ops
        self.explain = explain
        self.say = say
        self.snapshot_tasks = snapshot_tasks
        self.done = Configured()
        self.buffer_path = None

    def run(self):
        plan, ops = self.plan, self.ops
        paths = []
        if plan.instances:
            for planned in (plan.event_instances or (plan.instance_name,)):
                name = self._claim_instance_name(planned)
                if self.done.instance_name is None:
                    self.done.instance_name = name
                path = os.path.join(self.root, "instances", name)
                ops.mkdir_instance(path)
                paths.append(path)
        else:
            # (start() has taken it, with the journal, before configuring.)
            ops.note("take lock %s" % LOCK_PATH)
            paths.append(self.root)
        self.done.buffer_path = paths[0]
        self.done.events = [self._define_probe(ev) if ev.probe_def else ev
                            for ev in plan.events]
        if plan.event_instances:
            # one event per buffer: each page holds entries of one size
            self.done.buffers = [(p, [ev]) for p, ev in zip(paths, self.done.events)]
        else:
            self.done.buffers = [(paths[0], list(self.done.events))]
        for path, events in self.done.buffers:
            self.buffer_path = path
            self._buffer_settings()
            self._pid_filter()
            for ev in events:
                self._apply_filter(ev)
            self._enable(events)
            self._tracing_on()
        self.buffer_path = self.done.buffer_path
        return self.done

    def _event_dir(self, ev):
        return os.path.join(self.buffer_path, "events", ev.system, ev.event)

    # -- names ----------------------------------------------------------------
    def _claim_instance_name(self, planned):
        """The instance name the plan chose, or while another live run owns
        it (the same PID in another PID namespace) the next free one."""
        name = planned
        for _ in range(NAME_TRIES):
            if self.ops.dry_run or not os.path.exists(os.path.join(self.root, "instances", name)):
                if self.ops.claim(name):
                    if name != planned:
                        self.explain("instance %s is another run's: using %s"
                                     % (planned, name))
                    return name
            name = inst.instance_name(self.plan.plan_key[0] if self.plan.plan_key else None)
        raise EnableError("cannot create an instance: the names of PID %d are all in use "
                          "by other kerntrace runs" % os.getpid())

    def _define_probe(self, ev):
        """Define a probe event under the name the plan gave it (another one
        while another run owns that); returns it as defined, with its
        format (a dry run: as planned)."""
        ops = self.ops
        planned = ev
        for _ in range(NAME_TRIES):
            if ops.claim(ev.event, "%s/%s" % (ev.system, ev.event)):
                break
            system, event = probes.next_name()
            ev = ev.replace(system=system, event=event,
                            probe_def=probes.renamed(ev.probe_def, system, event))
        else:
            raise EnableError("event %s: the probe names of PID %d are all in use by other "
                              "kerntrace runs" % (ev.name, os.getpid()))
        if ev is not planned:
            self.explain("probe %s/%s is another run's: using %s/%s"
                         % (planned.system, planned.event, ev.system, ev.event))
        fname = "uprobe_events" if ev.probe.kind in ("uprobe", "uretprobe", "usdt") \
            else "kprobe_events"
        ops.append_definition(os.path.join(self.root, fname), ev.probe_def,
                              probes.removal_line(ev.system, ev.event),
                              "event %s (%s)" % (ev.name, ev.probe.describe()))
        if ops.dry_run:
            return ev
        fmt = tracefs.read_format(self.root, ev.system, ev.event)
        if fmt is None:
            raise EnableError("event %s: probe %s/%s defined but has no format file"
                              % (ev.name, ev.system, ev.event))
        return ev.replace(format=fmt)

    # -- the buffer -----------------------------------------------------------
    def _buffer_settings(self):
        ops, plan, b = self.ops, self.plan, self.buffer_path
        if not plan.instances:
            # The shared buffer may hold older events; perf-tools clears it too.
            ops.clear_buffer(b)
        size = os.path.join(b, "buffer_size_kb")
        if not plan.instances and (ops.read(size) or "").strip() == "X":
            # Sizes differ per CPU: save each one to restore it.
            for cpu in cpus(b):
                ops.save_only(os.path.join(b, "per_cpu", "cpu%d" % cpu, "buffer_size_kb"))
        ops.write(size, str(int(plan.buffer_kb)), what="buffer size")
        if plan.trace_clock:
            ops.write(os.path.join(b, "trace_clock"), plan.trace_clock, what="trace clock")
        # Process ids of threads that exit before we look them up in /proc:
        # with record-tgid the kernel keeps them in saved_tgids (and the text
        # path prints them).
        if plan.record_tgid:
            ops.write(os.path.join(b, "options", "record-tgid"), "1", what="record-tgid option")
        if plan.kernel_stacks:
            # a kernel_stack record after each event of this buffer (only
            # the run's own events in an instance)
            ops.write(os.path.join(b, "options", "stacktrace"), "1", what="stacktrace option")
        func = [ev for ev in plan.events if ev.system == "ftrace" and ev.event == "function"]
        if func:
            ops.write(os.path.join(b, "set_ftrace_filter"),
                      " ".join(ev.probe.function for ev in func), what="function filter")
            ops.write(os.path.join(b, "current_tracer"), "function", what="function tracer",
                      undo_value="nop")

    def _pid_filter(self):
        ops = self.ops
        pid = self.plan.event_pid
        if pid is None:
            return
        path = os.path.join(self.buffer_path, "set_event_pid")
        err = ops.try_write(path, " ".join(str(t) for t in threads(pid)))
        if err is not None:
            self.explain("set_event_pid rejected (%s): filtering PID %d in user space"
                         % (err.strerror or err, pid))
            ops.try_write(path, "")
            return
        ops.write(os.path.join(self.buffer_path, "options", "event-fork"), "1",
                  what="event-fork option")

    def _apply_filter(self, ev):
        ops = self.ops
        path = os.path.join(self._event_dir(ev), "filter")
        planned = self.plan.kernel_filters.get(ev.name)
        attempts = [e for e in (planned, self.plan.filter_fallbacks.get(ev.name)) if e]
        text = None
        for i, expr in enumerate(attempts):
            err = ops.try_write(path, expr)
            if err is None:
                text = expr
                for later in attempts[i + 1:]:
                    # What a kernel that rejects it gets instead: --print-
                    # cannot know which kernel that is (nothing is written).
                    ops.note("%s '%s' > %s" % (IF_REJECTED, later, path))
                break
            if err.errno != errno.EINVAL:
                raise FilterError("event %s: cannot write filter to %s: %s (errno %d)"
                                  % (ev.name, path, err.strerror or err, err.errno or 0))
            self.explain("the kernel rejected filter %r on %s:%s; filtering in user space"
                         % (expr, ev.system, ev.event))
        if text is None and (planned or not self.plan.instances):
            # No kernel filter: make sure none is left (a rejected write, or
            # a filter someone set on the shared top-level event).
            current = (ops.read(path) or "none").strip()
            if current != "none" and ops.try_write(path, "0") is not None:
                raise FilterError("event %s: cannot clear filter %s" % (ev.name, path))
        self.done.kernel_filters[ev.name] = text

    def _enable(self, events):
        ops, plan = self.ops, self.plan
        measured = set((ev.system, ev.event) for ev in events)
        for te in plan.task_events or ():
            if (te.system, te.event) in measured:
                continue            # enabled below, read by both
            d = os.path.join(self.buffer_path, "events", te.system, te.event)
            if not plan.instances:
                self._clear_shared_filter(os.path.join(d, "filter"))
            ops.write(os.path.join(d, "enable"), "1",
                      what="enable %s:%s (task names)" % (te.system, te.event))
        if plan.task_events is not None:
            # The tasks that exist now; from here on every new task and new
            # name is in the buffer, before any measured event (enabled next).
            ops.note("read /proc/*/task/*/comm (the tasks that exist already)")
            if self.snapshot_tasks is not None:
                self.snapshot_tasks()
        for ev in events:
            if ev.system == "ftrace" and ev.event == "function":
                continue        # the function tracer records these
            if plan.count_route == "hist":
                # the trigger arms the event itself: counted, not recorded
                cmd = plan.count_triggers[ev.name]
                ops.write(os.path.join(self._event_dir(ev), "trigger"), cmd,
                          what="hist trigger on %s:%s" % (ev.system, ev.event),
                          undo_value=histcount.removal_command(cmd))
                continue
            # Probe events must be disabled before their definition can be
            # removed, even in our own instance (removed after them).
            undo = "0" if ev.probe_def else None
            ops.write(os.path.join(self._event_dir(ev), "enable"), "1",
                      what="enable %s:%s" % (ev.system, ev.event), undo_value=undo)

    def _clear_shared_filter(self, path):
        """A filter someone set on a shared top-level event would hide
        records we need: cleared (and restored at the end)."""
        current = (self.ops.read(path) or "none").strip()
        if current != "none" and self.ops.try_write(path, "0") is not None:
            raise FilterError("cannot clear filter %s" % path)

    def _tracing_on(self):
        ops = self.ops
        path = os.path.join(self.buffer_path, "tracing_on")
        if not self.plan.instances and not ops.dry_run:
            if (ops.read(path) or "1").strip()[:1] == "0":
                self.say("warning: tracing is off in the top-level buffer (tracing_on=0): "
                         "turning it on for this run; it is set back to 0 at the end")
                ops.undo.push("say tracing_on restored",
                              lambda: self.say("tracing_on set back to 0"))
        ops.write(path, "1", what="tracing_on")


def configure(measurement, plan, ops, explain=None, say=None, snapshot_tasks=None):
    """Set up (or, with dry `ops`, record) the run's buffer; a Configured.
    `explain(line)` hears what differs from the plan, `say(line)` what the
    user is always told, `snapshot_tasks()` runs once task events are on."""
    ignore = lambda _line: None     # noqa: E731
    return _Configurer(measurement, plan, ops, explain or ignore, say or ignore,
                       snapshot_tasks).run()
