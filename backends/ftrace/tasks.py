"""Who a thread id belongs to, as the kernel had it when an event happened:
the process id (tgid) and the task name (comm).

Raw ring-buffer records carry only the thread id (common_pid).  The text
path prints a name too, but the kernel takes it from saved_cmdlines when the
line is formatted, not when the event happened.  A name read later (from
/proc, from those caches) is wrong for a task renamed or exec'd since, and
missing for one that has exited.  So when a measurement reads comm or pid,
the session enables the kernel's own task events in its buffer and feeds
them here in time order, before the events they describe:

    task:task_newtask         a new task (process or thread): its name, and
                              CLONE_THREAD (a thread of its creator's process)
    task:task_rename          prctl(PR_SET_NAME), exec, writes to
                              /proc/PID/comm and kthread names: the new name
    sched:sched_process_exit  the task is gone (forgotten an interval later:
                              its last I/O may still be in flight)

Tasks that existed before the run have no newtask record: snapshot() reads
them from /proc once, after the task events are enabled and before the
measured ones are.  A thread nothing told about (it exited before the run
started, or the kernel has no task events) is looked up in tracefs'
saved_cmdlines / saved_tgids, the kernel's own caches; a name still unknown
is "<...>" and a process id None (printed "-"), as the kernel's trace output
and perf-tools print them.  Nothing here raises on bad input.
"""

import os
import re
import time

from .plan import own_comm_field

# Thread id 0 is the idle task; the kernel prints it as "<idle>".
IDLE_COMM = "<idle>"
# What the kernel prints for a task name it does not know (trace_find_cmdline).
UNKNOWN_COMM = "<...>"
# include/uapi/linux/sched.h: the new task is a thread of its creator's process.
CLONE_THREAD = 0x00010000
# The initial PID namespace's inode number: PROC_PID_INIT_INO of
# include/linux/proc_ns.h, fixed since about v3.8 (older kernels have no
# /proc/PID/ns/pid link: nothing to compare, the snapshot is taken).
INIT_PID_NS = "pid:[4026531836]"
# TASK_COMM_LEN, the kernel's task name buffer, where no format tells it.
TASK_COMM_LEN = 16
_MAX_ENTRIES = 65536
# How often the saved_cmdlines / saved_tgids files are re-read on a miss.
_TABLE_REFRESH_S = 1.0

# A workqueue worker's /proc comm is its name plus "+description" (busy) or
# "-description" (idle): kernel/workqueue.c wq_worker_comm(); events carry
# the name alone ("kworker/u8:2", not "kworker/u8:2+flush-7:0").
_WQ_WORKER = re.compile(r"^(kworker/[^+-]*:\d+H?)[+-]")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (IOError, OSError, ValueError):
        return None


def _now():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()


def _kernel_pids(proc_root):
    """Are the ids under this /proc the ones the kernel records?  Not for a
    process in another PID namespace (a container): records carry the ids of
    the initial namespace.  Unknown (unreadable) counts as yes."""
    try:
        return os.readlink(os.path.join(proc_root, "self", "ns", "pid")) == INIT_PID_NS
    except OSError:
        return True


class _Table(object):
    """A tracefs "PID VALUE" file (saved_cmdlines, saved_tgids), re-read at
    most every _TABLE_REFRESH_S seconds when asked for an unknown PID (the
    kernel adds entries as tasks run; nothing is remembered as unknown)."""

    def __init__(self, path, convert):
        self.path = path
        self.convert = convert
        self.entries = {}
        self.read_at = None

    def get(self, tid):
        v = self.entries.get(tid)
        if v is not None or self.path is None:
            return v
        now = _now()
        if self.read_at is not None and now - self.read_at < _TABLE_REFRESH_S:
            return None
        self.read_at = now
        text = _read(self.path) or ""
        entries = {}
        for line in text.splitlines():
            pid, _sep, value = line.partition(" ")
            try:
                entries[int(pid)] = self.convert(value.strip())
            except ValueError:
                continue
        self.entries = entries
        return entries.get(tid)


# ---------------------------------------------------------------------------
# The task events: which format fields each one is read through.
class TaskEvent(object):
    """A kernel task event this host has, and the format fields read from
    it (in the order the handlers take them after common_pid)."""

    __slots__ = ("kind", "system", "event", "format", "names")

    def __init__(self, kind, system, event, format, names):
        self.kind = kind
        self.system = system
        self.event = event
        self.format = format
        self.names = tuple(names)

    def __repr__(self):
        return "TaskEvent(%s %s:%s %r)" % (self.kind, self.system, self.event, self.names)


def _has(fmt, name, string):
    f = fmt.field(name)
    return f is not None and bool(f.is_string) == string


def resolve_task_events(event_format):
    """The task events this host has, as TaskEvents: `event_format(system,
    name)` returns a core.tracefs.EventFormat or None.  Detected by their
    format files (task:task_newtask and task:task_rename date from about
    v3.4; a kernel without them leaves names to snapshot() and the saved_*
    caches).  Creation and renaming are only used together: a rename record
    without the creations before it would leave new tasks nameless."""
    found = []
    newtask = event_format("task", "task_newtask")
    rename = event_format("task", "task_rename")
    if newtask is None or rename is None:
        return found
    if not (_has(newtask, "pid", False) and _has(newtask, "comm", True)
            and _has(newtask, "clone_flags", False) and _has(rename, "newcomm", True)):
        return found
    # Read through each kernel's format: newtask's comm is a char[16] or,
    # in some kernels, a __data_loc string; clone_flags an unsigned long or
    # a u64; oom_score_adj (not read) an int or a short.
    found.append(TaskEvent("newtask", "task", "task_newtask", newtask,
                           ("pid", "comm", "clone_flags")))
    # The renamed task: its "pid" field (a kthread is named by its creator,
    # /proc/PID/comm is written by another thread), else the current task.
    found.append(TaskEvent("rename", "task", "task_rename", rename,
                           ("pid", "newcomm") if _has(rename, "pid", False) else ("newcomm",)))
    exit_ = event_format("sched", "sched_process_exit")
    if exit_ is not None:
        found.append(TaskEvent("exit", "sched", "sched_process_exit", exit_, ()))
    return found


def needs_task_identity(measurement, resolved=None):
    """Does the measurement read a task's name or process id (in its
    aggregate, its filters or its pair) that its events do not carry?
    `resolved`: the plan's ResolvedEvents, when known (an event's own comm
    field names the current task at the event: bitesize needs no more)."""
    names = set(f.field for f in measurement.filters)
    agg = measurement.aggregate
    for attr in ("keys", "fields"):
        names.update(getattr(agg, attr, None) or ())
    value = getattr(agg, "value", None)
    if value:
        names.add(value)
    if measurement.pair is not None:
        names.update(measurement.pair.key)
        names.update(measurement.pair.carry)
    if "pid" in names:
        return True
    if "comm" not in names:
        return False
    return resolved is None or any(own_comm_field(ev) is None for ev in resolved)


# ---------------------------------------------------------------------------
class TaskInfo(object):
    """tid -> tgid and tid -> comm.

    proc_root       where snapshot() reads the tasks that exist at the start;
                    None: nowhere (replay of a trace from another host)
    saved_cmdlines  path of tracefs' saved_cmdlines file, or None
    saved_tgids     path of tracefs' saved_tgids file (record-tgid), or None

    follows_events is true once track() was given the task events: names
    then come from the kernel's records at the time of each event."""

    def __init__(self, proc_root="/proc", saved_cmdlines=None, saved_tgids=None,
                 max_entries=_MAX_ENTRIES):
        self.proc_root = proc_root
        self.max_entries = max(2, int(max_entries))
        self._tasks = {}            # tid -> [comm or None, tgid or None]
        self._cmdlines = _Table(saved_cmdlines, str)
        self._tgids = _Table(saved_tgids, int)
        self._exited = []           # (tid, entry) that exited this interval
        self._exited_before = []    # ... and in the interval before
        self._events = {}           # (system, event) -> (names, handler)
        self.comm_len = TASK_COMM_LEN
        self.follows_events = False
        self._uids = {}             # tid -> real uid read from /proc this interval

    # -- what the kernel told ------------------------------------------------
    def learn(self, tid, tgid=None, comm=None):
        """Remember what is known of a thread now (a snapshot, a trace line)."""
        e = self._tasks.get(tid)
        if e is None:
            self._put(tid, comm, tgid)
            return
        if comm is not None:
            e[0] = comm
        if tgid is not None:
            e[1] = tgid

    def _put(self, tid, comm, tgid):
        tasks = self._tasks
        if len(tasks) >= self.max_entries and tid not in tasks:
            self._make_room()
        tasks[tid] = [comm, tgid]

    def _make_room(self):
        """Forget exited tasks, then the oldest quarter of the rest."""
        tasks = self._tasks
        for tid, e in self._exited_before + self._exited:
            if tasks.get(tid) is e:
                del tasks[tid]
        self._exited, self._exited_before = [], []
        extra = len(tasks) - (self.max_entries * 3) // 4
        if extra > 0:
            it = iter(tasks)
            for tid in [next(it) for _ in range(extra)]:
                del tasks[tid]

    def created(self, parent, tid, comm, clone_flags):
        """task_newtask: `parent` (the current task) created `tid`."""
        tgid = self.tgid(parent) if clone_flags & CLONE_THREAD else tid
        self._tasks.pop(tid, None)          # a reused thread id: a new task
        self._put(tid, comm, tgid)
        self._uids.pop(tid, None)

    def renamed(self, tid, comm):
        """task_rename: `tid` is called `comm` from now on.  A new entry:
        a thread that execs takes its process leader's id after the leader
        exits, and must not be forgotten with it."""
        e = self._tasks.get(tid)
        if e is None:
            self._put(tid, comm, None)
        else:
            self._tasks[tid] = [comm, e[1]]

    def exited(self, tid):
        """sched_process_exit: forgotten at the end of the next interval
        (events of its last moments, its I/O completions, may follow)."""
        e = self._tasks.get(tid)
        if e is not None:
            self._exited.append((tid, e))
        self._uids.pop(tid, None)

    def end_interval(self):
        """An interval was reported: forget the tasks that exited in the
        one before it."""
        tasks = self._tasks
        for tid, e in self._exited_before:
            if tasks.get(tid) is e:
                del tasks[tid]
        self._exited_before, self._exited = self._exited, []
        # setuid() leaves no event here: an interval's reads at most
        self._uids.clear()

    # -- the task events -----------------------------------------------------
    def track(self, task_events):
        """Follow these TaskEvents (resolve_task_events()); returns
        {(system, event): (format field names, handler(ts, cpu, values))}
        with values[0] the common_pid and then the named fields."""
        handlers = {}
        for te in task_events:
            if te.kind == "newtask":
                f = te.format.field("comm")
                if f is not None and not f.data_loc and f.size:
                    self.comm_len = f.size
                handlers[(te.system, te.event)] = (te.names, self._on_newtask)
            elif te.kind == "rename":
                handlers[(te.system, te.event)] = (
                    te.names, self._on_rename if len(te.names) == 2 else self._on_rename_current)
            elif te.kind == "exit":
                handlers[(te.system, te.event)] = (te.names, self._on_exit)
        self._events = handlers
        self.follows_events = any(te.kind == "rename" for te in task_events)
        return dict(handlers)

    def _on_newtask(self, ts, cpu, v):
        self.created(v[0], v[1], v[2], v[3])

    def _on_rename(self, ts, cpu, v):
        self.renamed(v[1], v[2])

    def _on_rename_current(self, ts, cpu, v):
        self.renamed(v[0], v[1])

    def _on_exit(self, ts, cpu, v):
        self.exited(v[0])

    def raw_sinks(self, formats_by_id):
        """{event id: (names, handler)} for RawDecoder.compile_sinks()."""
        out = {}
        for ev_id, fmt in formats_by_id.items():
            h = self._events.get((fmt.system, fmt.name))
            if h is not None:
                out[ev_id] = h
        return out

    def is_task_event(self, system, event):
        return (system, event) in self._events

    def feed(self, raw):
        """A decoded RawEvent: True if it was one of the task events (then
        consumed here), False if it is for the aggregator."""
        h = self._events.get((raw.system, raw.event))
        if h is None:
            return False
        names, handler = h
        try:
            values = (raw.tid,) + tuple(raw.fields[n] for n in names)
            handler(raw.ts, raw.cpu, values)
        except (KeyError, TypeError, ValueError):
            pass            # a record a saved or damaged trace garbled: skipped
        return True

    # -- the tasks that exist at the start -----------------------------------
    def snapshot(self):
        """Learn every thread /proc lists now (under proc_root); returns how
        many.  Only for names at the start: later changes come from events."""
        root = self.proc_root
        if not root or not _kernel_pids(root):
            return 0
        try:
            pids = [int(p) for p in os.listdir(root) if p.isdigit()]
        except OSError:
            return 0
        n = 0
        for pid in pids:
            try:
                tids = [int(t) for t in os.listdir(os.path.join(root, str(pid), "task"))
                        if t.isdigit()]
            except OSError:
                continue
            for tid in tids:
                text = _read(os.path.join(root, str(pid), "task", str(tid), "comm"))
                if not text:
                    continue
                self.learn(tid, tgid=pid, comm=self._kernel_comm(text.rstrip("\n")))
                n += 1
        return n

    def _kernel_comm(self, name):
        """/proc's task name as events carry it: no workqueue description,
        at most the kernel's buffer (a kthread's /proc name is its full one
        since Linux 5.17, "kthread: dynamically allocate memory to store
        kthread's full name")."""
        m = _WQ_WORKER.match(name)
        if m:
            name = m.group(1)
        return name[:self.comm_len - 1]

    # -- answers -------------------------------------------------------------
    # Without the task events, what snapshot() read may be stale (a thread
    # id reused, a task renamed): the kernel's caches come first then.
    def entry_getter(self):
        """tid -> the [comm, tgid] the task events keep (either may be
        None), or None: for handlers that read them inline where
        follows_events, before asking comm() and tgid()."""
        return self._tasks.get

    def tgid(self, tid):
        """The process id of a thread, or None if it cannot be known."""
        e = self._tasks.get(tid)
        if e is not None and e[1] is not None and self.follows_events:
            return e[1]
        if tid == 0:
            return 0
        v = self._tgids.get(tid)
        if v is None and e is not None:
            v = e[1]
        return v

    def comm(self, tid, fallback=None):
        """The task name of a thread: the kernel's records, else `fallback`
        (a name the caller has, e.g. a trace line's), else saved_cmdlines,
        else what snapshot() read, else UNKNOWN_COMM (never None)."""
        e = self._tasks.get(tid)
        if e is not None and e[0] is not None and self.follows_events:
            return e[0]
        if fallback is not None:
            return fallback
        if tid == 0:
            return IDLE_COMM
        v = self._cmdlines.get(tid)
        if v is None and e is not None:
            v = e[0]
        return v if v is not None else UNKNOWN_COMM

    def uid(self, tid):
        """The real user id of a thread from /proc/TID/status, or None: no
        ftrace record carries it.  Best-effort: read when the event is
        decoded (a task gone by then has none; one that changed its uid
        since shows the new one).  Kept for the interval, never a miss."""
        v = self._uids.get(tid)
        if v is not None or self.proc_root is None:
            return v
        for line in (_read("%s/%d/status" % (self.proc_root, tid)) or "").splitlines():
            if line.startswith("Uid:"):
                parts = line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    v = self._uids[tid] = int(parts[1])
                break
        return v

    def __len__(self):
        return len(self._tasks)
