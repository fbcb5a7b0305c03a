"""LiveSession: one ftrace run on the live kernel.

start()   take the buffer (own instance, or the
          top level under the perf-tools lock), define probes, size the
          buffer, set the clock, write filters, enable events, open readers;
close()   undo all of it in reverse (idempotent; safe after a partial start;
          an undo interrupted by a signal is retried by the next close());
wait()    read and decode kernel output for `timeout` seconds, feeding the
          Aggregator;
collect() drain, account losses, return the interval's Report.

Reading prefers the binary per-CPU trace_pipe_raw (one sub-buffer page per
read, O_NONBLOCK: EAGAIN means empty) and falls back to the text trace_pipe.
Nothing here sleeps in the kernel: short sleeps between drains keep wait()
responsive to signals on every kernel.
"""

import errno
import itertools
import operator
import os
import re
import sys
import time

from kerntrace.core import tracefs
from kerntrace.core.backend import Session
from kerntrace.core.errors import EnableError, FilterError, one_line
from kerntrace.core.stopsignals import SignalsDeferred

from . import instance as inst
from . import kfilter, owner, probes
from .lock import FtraceLock
from .plan import Lost
from .rawparse import RawFormatError, parse_header_page
from .textlines import CHUNK_BYTES, LineSplitter

# Pause between drains when the buffers are empty: short enough for
# per-interval accuracy, long enough to cost nothing when idle.
POLL_S = 0.03
# Pages read per CPU per drain round, so wait() returns on time under load.
MAX_PAGES_PER_ROUND = 256
# When the CPUs' events are merged (TimeOrder), a round reads them in laps
# of lap_pages() pages per CPU and merges after each lap, so the events held
# back for ordering are about one lap's: a thousand or so stay in the CPU
# cache, where a whole round's tens of thousands made the merged raw path
# about 30% slower (bench/ftrace_throughput.py).  Every lap reads every CPU
# and an idle one costs a few microseconds, so laps grow with the CPUs.
MIN_LAP_PAGES = 8

# Names tried for our instance or a probe before giving up.
_NAME_TRIES = 100

_STAT = re.compile(r"^\s*(overrun|commit overrun|dropped events)\s*:\s*(\d+)", re.M)
_ENTRIES = re.compile(r"^entries\s*:\s*(\d+)", re.M)
# collect() drains for at most about this long; after a stop signal what
# the buffer still holds then is reported lost (a big --buffer-kb would
# otherwise hold the exit for as long as decoding it takes).
DRAIN_BOUND_S = 0.25
# Records decoded faster than they print (a flood) are handed on in batches
# of about this many, so what waits to be printed at a stop stays small.
RECORD_BATCH = 4096


def _now():
    return time.monotonic()


# ---------------------------------------------------------------------------
class RawReader(object):
    """per_cpu/cpuN/trace_pipe_raw of one CPU, non-blocking."""

    def __init__(self, cpu, path, page_size):
        self.cpu = cpu
        self.path = path
        self.page_size = page_size
        self.fd = None

    def open(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read_pages(self, limit):
        pages = []
        while len(pages) < limit:
            try:
                data = os.read(self.fd, self.page_size)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            pages.append(data)
        return pages

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class TextReader(object):
    """trace_pipe of the buffer (all CPUs), non-blocking, split in lines."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        # lines longer than the kernel prints are dropped as they arrive
        self.splitter = LineSplitter()

    def open(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read_lines(self, limit):
        lines = []
        for _ in range(limit):
            try:
                data = os.read(self.fd, CHUNK_BYTES)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            lines.extend(p.decode("utf-8", "replace") for p in self.splitter.feed(data))
        return lines

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class LossCounter(object):
    """Events lost per interval.  Two views of the same losses: the per-CPU
    `stats` counters (overrun, commit overrun, dropped events) and the
    markers the readers see (raw pages' missed-events flag, text
    `[LOST N EVENTS]` lines).  They count the same events, so per CPU the
    larger of the two is taken, never the sum."""

    def __init__(self, stats_paths):
        self.stats_paths = dict(stats_paths)     # cpu -> path
        self.base = {cpu: self._read(p) for cpu, p in self.stats_paths.items()}
        self.markers = {}

    @staticmethod
    def _read(path):
        text = tracefs.read_text(path) or ""
        return sum(int(m.group(2)) for m in _STAT.finditer(text))

    def marker(self, cpu, count):
        # "[LOST EVENTS]" without a number: at least one.
        self.markers[cpu] = self.markers.get(cpu, 0) + (count if count else 1)

    def take(self):
        total = 0
        cpus = set(self.stats_paths) | set(self.markers)
        for cpu in cpus:
            delta = 0
            if cpu in self.stats_paths:
                now = self._read(self.stats_paths[cpu])
                delta = max(0, now - self.base.get(cpu, 0))
                self.base[cpu] = now
            total += max(delta, self.markers.get(cpu, 0))
        self.markers = {}
        return total

    def unread(self):
        """Events still in the buffers (stats' `entries`)."""
        total = 0
        for path in self.stats_paths.values():
            m = _ENTRIES.search(tracefs.read_text(path) or "")
            total += int(m.group(1)) if m else 0
        return total


def needs_time_order(measurement):
    """Must events reach the aggregator in timestamp order across CPUs?

    A Pair must see a start before its end, and one key's events in the
    order they happened, whichever CPU logged them.  Records are printed in
    the order the aggregator makes them: timestamp order, as perf-tools'
    trace_pipe and our text path print them (bcc prints per-CPU perf
    buffers in arrival order, which no user relies on; a TIME(s) column
    counted from the first row must not go backwards).  Histograms and
    counts of single events are sums: any order gives the same result, so
    they skip the merge."""
    return measurement.pair is not None or measurement.aggregate.kind == "records"


# Held events are (handler, ts, cpu, values): sorted by ts, released as
# handler(ts, cpu, values).
_TS = operator.itemgetter(1)


class TimeOrder(object):
    """Puts events read from the per-CPU buffers back in timestamp order
    before they reach the aggregator (which pairs starts with ends in the
    order it sees them: an I/O issued on CPU 1 and completed on CPU 0 must
    not arrive completion first just because CPU 0 was read first).

    A round (in the session, one lap of read_round()) reads every CPU
    once.  An event read in round R-1 was committed before round R began,
    and so was every event with a smaller timestamp (they happened before
    it); round R reads every CPU after that, so once round R is over,
    everything up to the watermark, the largest timestamp read in rounds
    <= R-1, is known and is released in order.  A CPU whose round stopped at the page limit bounds
    the release by the last timestamp read from it (the rest of that CPU is
    newer), and such a round raises the watermark no further than that.

    Each CPU's buffer is already in timestamp order, so a round leaves one
    sorted run per CPU next to the sorted events held back from earlier
    rounds.  end_round() merges those runs (list.sort finds the sorted runs
    and merges them in C, in time linear in the events for a few CPUs) and
    releases the prefix up to the limit.  Ties keep the order in which the
    runs were read (the sort is stable)."""

    def __init__(self):
        self.pending = []           # held back, sorted by ts after each round
        self.watermark = None       # max ts read in completed earlier rounds
        self._runs = {}             # cpu -> this round's events, in read order
        self._truncated = set()

    def _run(self, cpu):
        run = self._runs.get(cpu)
        if run is None:
            run = self._runs[cpu] = []
        return run

    def sink(self, handler, cpu=None):
        """A decoder callback(ts, cpu, values) that holds the event for
        ordering.  With `cpu` it appends straight to that CPU's run (one
        sink per CPU and event, the fast way); without, it looks the run up
        by the event's cpu."""
        if cpu is not None:
            append = self._run(cpu).append

            def hold(ts, cpu, values):
                append((handler, ts, cpu, values))
            return hold
        run_of = self._run

        def hold_any(ts, cpu, values):
            run_of(cpu).append((handler, ts, cpu, values))
        return hold_any

    def bindings(self, decoder, sinks, cpus):
        """{cpu: decoder binding} that hold the aggregator's sinks
        ({event id: (names, handler)}) in this order's per-CPU runs."""
        return {cpu: decoder.compile_sinks({ev_id: (names, self.sink(handler, cpu))
                                            for ev_id, (names, handler) in sinks.items()})
                for cpu in cpus}

    def truncated(self, cpu):
        """This round stopped reading `cpu` before its buffer was empty."""
        self._truncated.add(cpu)

    def end_round(self):
        """Release what is now known to be complete; returns the count."""
        top = None          # the largest last ts of this round's runs
        cut = None          # the smallest last ts of a CPU left unfinished
        pending = self.pending
        for cpu, run in self._runs.items():
            if not run:
                continue
            last = run[-1][1]
            if cpu in self._truncated and (cut is None or last < cut):
                cut = last
            if top is None or last > top:
                top = last
            pending += run
            del run[:]
        limit = self.watermark
        if cut is not None and (limit is None or cut < limit):
            limit = cut
        n = self._release(limit) if limit is not None else 0
        if top is not None:
            # A round that left a CPU unfinished still raises the watermark
            # (up to what it read of that CPU): otherwise a CPU that keeps
            # the reader busy would hold every event back until it calms.
            if cut is not None and cut < top:
                top = cut
            if self.watermark is None or top > self.watermark:
                self.watermark = top
        self._truncated.clear()
        return n

    def flush(self):
        """Everything has been read (a round found nothing): release all."""
        pending = self.pending
        for run in self._runs.values():
            pending += run
            del run[:]
        self._truncated.clear()
        return self._release(None)

    def _release(self, limit):
        """Deliver the held events with ts <= limit (None: all), in order."""
        pending = self.pending
        if not pending:
            return 0
        pending.sort(key=_TS)
        if limit is None or pending[-1][1] <= limit:
            self.pending = []
            _deliver(pending)
            return len(pending)
        count = _count_upto(pending, limit)
        try:
            _deliver(itertools.islice(pending, count))
        finally:
            # off the queue whatever a handler does: never delivered twice
            del pending[:count]
        return count


def _count_upto(items, limit):
    """How many of the ts-sorted items have ts <= limit (a bisection by
    hand: bisect's key= needs Python 3.10)."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid][1] <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _deliver(items):
    for handler, ts, cpu, values in items:
        handler(ts, cpu, values)


def lap_pages(ncpus):
    """Pages per CPU in one lap of a merged drain round."""
    return max(MIN_LAP_PAGES, min(MAX_PAGES_PER_ROUND, 4 * ncpus))


def read_round(readers, feed, order=None, lap=None):
    """One drain round over per-CPU raw readers (RawReader or anything with
    .cpu and .read_pages(limit)): up to MAX_PAGES_PER_ROUND pages of each
    CPU, feed(page, cpu) for each page.  With a TimeOrder the round goes in
    laps of `lap` pages per CPU (default lap_pages()), each one ending with
    order.end_round(), or order.flush() when it found nothing; a CPU that
    fills its lap is marked truncated.  Returns the number of pages read."""
    if order is None:
        lap = MAX_PAGES_PER_ROUND
    elif lap is None:
        lap = lap_pages(len(readers))
    budget = MAX_PAGES_PER_ROUND
    total = 0
    while budget > 0:
        size = min(lap, budget)
        budget -= size
        got = 0
        unfinished = False
        for r in readers:
            pages = r.read_pages(size)
            for page in pages:
                feed(page, r.cpu)
            if len(pages) >= size:
                unfinished = True
                if order is not None:
                    order.truncated(r.cpu)
            got += len(pages)
        total += got
        if order is not None:
            if got:
                order.end_round()
            else:
                order.flush()
        if not unfinished:
            break
    return total


# ---------------------------------------------------------------------------
def merge_sinks(first, then):
    """{event id: (format field names, handler)} for two consumers of the
    same decoder: an event both read is decoded once and handed to `first`,
    then to `then` (each gets common_pid and its own fields, in its order)."""
    out = dict(first)
    for ev_id, (names2, h2) in then.items():
        if ev_id not in out:
            out[ev_id] = (names2, h2)
            continue
        names1, h1 = out[ev_id]
        names = tuple(names1) + tuple(n for n in names2 if n not in names1)
        n1 = len(names1) + 1
        pick = [0] + [1 + names.index(n) for n in names2]

        def both(ts, cpu, v, h1=h1, h2=h2, n1=n1, pick=pick):
            h1(ts, cpu, v[:n1])
            h2(ts, cpu, tuple(v[i] for i in pick))
        out[ev_id] = (names, both)
    return out


def _cpus(buffer_path):
    d = os.path.join(buffer_path, "per_cpu")
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())


def _threads(pid):
    """Thread ids of a process (just the pid if /proc does not list them)."""
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid) if t.isdigit())
    except OSError:
        tids = []
    return tids or [pid]


def read_page_size(root, buffer_path):
    """Bytes per trace_pipe_raw read: the sub-buffer size where it is
    configurable, else the data page from events/header_page, else the
    system page size."""
    # Since the Linux patch "tracing: Update subbuffer with kilobytes not page
    # order" (Dec 2023) buffer_subbuf_size_kb gives sub-buffers beyond a page.
    text = tracefs.read_text(os.path.join(buffer_path, "buffer_subbuf_size_kb"))
    if text and text.strip().isdigit():
        return int(text.strip()) * 1024
    try:
        return parse_header_page(tracefs.read_text(
            os.path.join(root, "events", "header_page"))).page_size
    except RawFormatError:
        return os.sysconf("SC_PAGE_SIZE")


class LiveSession(Session):
    """A measurement running in the live kernel through tracefs."""

    def __init__(self, measurement, plan, tracefs_root, options, features,
                 buffer_kb, pid=None):
        self.measurement = measurement
        self.plan = plan
        self.root = tracefs_root
        self.options = options
        self.features = features
        self.buffer_kb = buffer_kb
        self.pid = os.getpid() if pid is None else pid
        self.stderr = getattr(options, "stderr", None) or sys.stderr
        self.verbose = bool(getattr(options, "verbose", False))
        self.tool = getattr(options, "tool", None) or "kerntrace"
        self.undo = inst.UndoStack()
        self.buffer_path = None
        self.instance_name = None
        self.readers = []
        self.decoder = None
        self.binding = None      # raw path: decoder binding for every CPU ...
        self.bindings = {}       # ... or per CPU, when the CPUs are merged
        self.order = None
        self.aggregator = None
        self.tasks = None        # tasks.TaskInfo: names and process ids of thread ids
        self.losses = None
        self.journal = None
        self.unrestored = []     # what close() could not undo
        self.started = False
        self.stopping = False    # stop_recording() froze the buffer
        self.notes = []          # what --explain/verbose may show

    # -- helpers -------------------------------------------------------------
    def _say(self, text):
        self.stderr.write("kerntrace: %s\n" % text)

    def _explain(self, text):
        self.notes.append(text)
        if self.verbose:
            self._say(text)

    def _has(self, ops, rel):
        """Does our buffer have this file?  (For --print-program the new
        instance does not exist yet: the top level has the same files.)"""
        if ops.dry_run:
            return os.path.exists(os.path.join(self.root, rel))
        return os.path.exists(os.path.join(self.buffer_path, rel))

    def _event_dir(self, ev):
        return os.path.join(self.buffer_path, "events", ev.system, ev.event)

    # -- configuration (shared by start() and program_text()) ----------------
    def _configure(self, ops):
        plan = self.plan
        if plan.instances:
            if self.instance_name is None:
                self.instance_name = self._claim_instance_name(ops)
            self.buffer_path = os.path.join(self.root, "instances", self.instance_name)
            ops.mkdir_instance(self.buffer_path)
        else:
            self.buffer_path = self.root
        self._define_probes(ops)
        self._buffer_settings(ops)
        self._pid_filter(ops)
        for ev in plan.events:
            self._apply_filter(ops, ev)
        self._enable(ops)
        self._tracing_on(ops)

    def _claim_instance_name(self, ops):
        """A new instance name whose owner lock we hold (the same PID in
        another PID namespace may own the first one we make)."""
        for _ in range(_NAME_TRIES):
            name = inst.instance_name(self.tool, self.pid)
            if ops.dry_run or not os.path.exists(os.path.join(self.root, "instances", name)):
                if ops.claim(name):
                    return name
        raise EnableError("cannot create an instance: the names of PID %d are all in use "
                          "by other kerntrace runs" % self.pid)

    def _claim_probe_name(self, ops, ev):
        """Take the owner lock of a probe event's name, renaming it while
        another run (the same PID in another PID namespace) owns it."""
        for _ in range(_NAME_TRIES):
            if ops.claim(ev.event, "%s/%s" % (ev.system, ev.event)):
                return
            ev.system, ev.event = probes.next_name(self.pid)
            ev.probe_def = probes.renamed(ev.probe_def, ev.system, ev.event)
        raise EnableError("event %s: the probe names of PID %d are all in use by other "
                          "kerntrace runs" % (ev.name, self.pid))

    def _define_probes(self, ops):
        for ev in self.plan.events:
            if not ev.probe_def:
                continue
            self._claim_probe_name(ops, ev)
            fname = "uprobe_events" if ev.probe.kind in ("uprobe", "uretprobe") else "kprobe_events"
            ops.append_definition(os.path.join(self.root, fname), ev.probe_def,
                                  probes.removal_line(ev.system, ev.event),
                                  "event %s (%s)" % (ev.name, ev.probe.describe()))
            if not ops.dry_run:
                fmt = tracefs.read_format(self.root, ev.system, ev.event)
                if fmt is None:
                    raise EnableError("event %s: probe %s/%s defined but has no format file"
                                      % (ev.name, ev.system, ev.event))
                ev.format = fmt

    def _buffer_settings(self, ops):
        b = self.buffer_path
        if not self.plan.instances:
            # The shared buffer may hold older events; perf-tools clears it too.
            ops.clear_buffer(b)
        if self.buffer_kb:
            size = os.path.join(b, "buffer_size_kb")
            if not self.plan.instances and (ops.read(size) or "").strip() == "X":
                # Sizes differ per CPU: save each one to restore it.
                for cpu in _cpus(b):
                    ops.save_only(os.path.join(b, "per_cpu", "cpu%d" % cpu, "buffer_size_kb"))
            ops.write(size, str(int(self.buffer_kb)), what="buffer size")
            if not ops.dry_run:
                self._explain("ftrace: %s buffer %d KB per CPU (%s)" % (
                    "instance" if self.plan.instances else "top-level", self.buffer_kb,
                    "--buffer-kb" if getattr(self.options, "buffer_kb", None)
                    else "default for these events"))
        # (A new instance's files do not exist yet for --print-program: the
        # top level lists the same clocks.)
        clocks = (tracefs.read_text(os.path.join(b, "trace_clock"))
                  or tracefs.read_text(os.path.join(self.root, "trace_clock")) or "")
        # "mono" (CLOCK_MONOTONIC) makes timestamps comparable with other
        # sources; kernels without it keep their default clock.
        if re.search(r"(^|\s|\[)mono(\]|\s|$)", clocks) and "[mono]" not in clocks:
            ops.write(os.path.join(b, "trace_clock"), "mono", what="trace clock")
        # Process ids of threads that exit before we look them up in /proc:
        # with record-tgid the kernel keeps them in saved_tgids (and the text
        # path prints them).  Since Linux commit d914ba37d714 ("tracing: Add
        # support for recording tgid of tasks") (v4.13).
        if self._has(ops, os.path.join("options", "record-tgid")):
            ops.write(os.path.join(b, "options", "record-tgid"), "1", what="record-tgid option")
        func = [ev for ev in self.plan.events if ev.system == "ftrace" and ev.event == "function"]
        if func:
            ops.write(os.path.join(b, "set_ftrace_filter"),
                      " ".join(ev.probe.function for ev in func), what="function filter")
            ops.write(os.path.join(b, "current_tracer"), "function", what="function tracer",
                      undo_value="nop")

    def _pid_filter(self, ops):
        pid = kfilter.pid_for_set_event_pid(self.measurement)
        path = os.path.join(self.buffer_path, "set_event_pid")
        fork = os.path.join(self.buffer_path, "options", "event-fork")
        if pid is None or not self._has(ops, "set_event_pid") \
                or not self._has(ops, os.path.join("options", "event-fork")):
            return
        err = ops.try_write(path, " ".join(str(t) for t in _threads(pid)))
        if err is not None:
            self._explain("set_event_pid rejected (%s): filtering PID %d in user space"
                          % (err.strerror or err, pid))
            ops.try_write(path, "")
            return
        ops.write(fork, "1", what="event-fork option")

    def _apply_filter(self, ops, ev):
        path = os.path.join(self._event_dir(ev), "filter")
        clause_list = kfilter.clauses(kfilter.kernel_side_filters(self.measurement, ev.logical), ev)
        attempts = [clause_list]
        if any(c.glob for c in clause_list):
            attempts.append(kfilter.without_globs(clause_list))
        text = None
        for cl in attempts:
            expr = kfilter.expression(cl)
            if not expr:
                break
            err = ops.try_write(path, expr)
            if err is None:
                text = expr
                break
            if err.errno != errno.EINVAL:
                raise FilterError("event %s: cannot write filter to %s: %s (errno %d)"
                                  % (ev.name, path, err.strerror or err, err.errno or 0))
            self._explain("the kernel rejected filter %r on %s:%s; filtering in user space"
                          % (expr, ev.system, ev.event))
        if text is None and (clause_list or not self.plan.instances):
            # No kernel filter: make sure none is left (a rejected write, or
            # a filter someone set on the shared top-level event).
            current = (ops.read(path) or "none").strip()
            if current != "none" and ops.try_write(path, "0") is not None:
                raise FilterError("event %s: cannot clear filter %s" % (ev.name, path))
        self.plan.kernel_filters[ev.name] = text

    def _enable(self, ops):
        measured = set((ev.system, ev.event) for ev in self.plan.events)
        for te in self.plan.task_events or ():
            if (te.system, te.event) in measured:
                continue            # enabled below, read by both
            d = os.path.join(self.buffer_path, "events", te.system, te.event)
            if not self.plan.instances:
                self._clear_shared_filter(ops, os.path.join(d, "filter"))
            ops.write(os.path.join(d, "enable"), "1",
                      what="enable %s:%s (task names)" % (te.system, te.event))
        if self.plan.task_events is not None:
            # The tasks that exist now; from here on every new task and new
            # name is in the buffer, before any measured event (enabled next).
            if ops.dry_run:
                ops.log.append("# read /proc/*/task/*/comm (the tasks that exist already)")
            else:
                n = self.tasks.snapshot()
                if self.tasks.follows_events:
                    how = "followed from " + ", ".join(
                        "%s:%s" % (te.system, te.event) for te in self.plan.task_events)
                else:
                    how = "from saved_cmdlines/saved_tgids (no task events)"
                self._explain("ftrace: task names and PIDs %s; %d tasks from /proc at the start"
                              % (how, n))
        for ev in self.plan.events:
            if ev.system == "ftrace" and ev.event == "function":
                continue        # the function tracer records these
            # Probe events must be disabled before their definition can be
            # removed, even in our own instance (removed after them).
            undo = "0" if ev.probe_def else None
            ops.write(os.path.join(self._event_dir(ev), "enable"), "1",
                      what="enable %s:%s" % (ev.system, ev.event), undo_value=undo)

    @staticmethod
    def _clear_shared_filter(ops, path):
        """A filter someone set on a shared top-level event would hide
        records we need: cleared (and restored at the end)."""
        current = (ops.read(path) or "none").strip()
        if current != "none" and ops.try_write(path, "0") is not None:
            raise FilterError("cannot clear filter %s" % path)

    def _tracing_on(self, ops):
        path = os.path.join(self.buffer_path, "tracing_on")
        if not self.plan.instances and not ops.dry_run:
            if (ops.read(path) or "1").strip()[:1] == "0":
                self._say("warning: tracing is off in the top-level buffer (tracing_on=0): "
                          "turning it on for this run; it is set back to 0 at the end")
                self.undo.push("say tracing_on restored",
                               lambda: self._say("tracing_on set back to 0"))
        ops.write(path, "1", what="tracing_on")

    # -- Session interface ---------------------------------------------------
    def program_text(self):
        saved = (self.buffer_path, self.instance_name, dict(self.plan.kernel_filters))
        ops = inst.ControlFiles(self.root, dry_run=True, save=not self.plan.instances)
        try:
            if not self.plan.instances:
                ops.log.append("# take lock %s" % FtraceLock().path)
            self._configure(ops)
        finally:
            self.buffer_path, self.instance_name, self.plan.kernel_filters = saved
        reading = ("read per_cpu/cpu*/trace_pipe_raw" if self.plan.read_path == "raw"
                   else "read trace_pipe")
        ops.log.append("# %s" % reading)
        return "\n".join(ops.log) + "\n"

    def start(self):
        if self.started:
            return
        self.started = True
        if not self.plan.instances:
            # Journal first: a run killed after it leaves nothing (not even
            # the perf-tools lock) that the next run cannot find stale.
            self.journal = inst.Journal(self.pid)
            self.undo.push("remove journal", self.journal.remove)
            self.journal.begin(self.root)
            lock = FtraceLock(stderr=self.stderr, held_elsewhere=self._top_level_users)
            lock.acquire()
            self.undo.push("release lock", lock.release)
        ops = inst.ControlFiles(self.root, undo=self.undo, save=not self.plan.instances,
                                journal=self.journal)
        self.tasks = self._tasks()
        self.tasks.track(self.plan.task_events or ())
        self._configure(ops)
        self._open_readers()
        self._build_pipeline()

    def _top_level_users(self):
        """PIDs (each in its own namespace) of the other live kerntrace runs
        that use the top level."""
        return owner.live_pids("toplevel-", exclude=(self.journal.owner.name,))

    def _open_readers(self):
        cpus = _cpus(self.buffer_path)
        self.undo.push("close readers", self._close_readers)
        if self.plan.read_path == "raw":
            page = read_page_size(self.root, self.buffer_path)
            for cpu in cpus:
                self._open_reader(RawReader(cpu, os.path.join(
                    self.buffer_path, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw"), page))
        else:
            self._open_reader(TextReader(os.path.join(self.buffer_path, "trace_pipe")))
        self.losses = LossCounter(
            (cpu, os.path.join(self.buffer_path, "per_cpu", "cpu%d" % cpu, "stats"))
            for cpu in cpus)

    def _open_reader(self, reader):
        try:
            reader.open()
        except OSError as e:
            # EBUSY: since about 6.5 a pipe has one reader (someone else is
            # reading the top-level buffer).
            raise EnableError("cannot read %s: %s (errno %d)"
                              % (reader.path, e.strerror or e, e.errno or 0))
        self.readers.append(reader)

    def _close_readers(self):
        readers, self.readers = self.readers, []
        for r in readers:
            r.close()

    def _build_pipeline(self):
        from .aggregate import Aggregator
        if self.tasks is None:
            self.tasks = self._tasks()
            self.tasks.track(self.plan.task_events or ())
        if self.plan.read_path == "raw":
            from .rawparse import RawDecoder
            hp = tracefs.read_text(os.path.join(self.root, "events", "header_page")) or ""
            he = tracefs.read_text(os.path.join(self.root, "events", "header_event")) or ""
            formats = ([ev.format for ev in self.plan.events]
                       + [te.format for te in self.plan.task_events or ()])
            by_id = {f.id: f for f in formats if f is not None and f.id is not None}
            self.decoder = RawDecoder(hp, he, by_id)
            self.aggregator = Aggregator(self.measurement, self.plan, tasks=self.tasks)
            # Decode straight into the aggregator's per-event handlers (no
            # RawEvent objects on the hot path).
            sinks = merge_sinks(self.aggregator.raw_sinks(self.decoder.formats_by_id),
                                self.tasks.raw_sinks(self.decoder.formats_by_id))
            # Task names change at the time of their events: the events they
            # name must come after them, whichever CPU logged which.
            if needs_time_order(self.measurement) or self.plan.task_events:
                # One binding per CPU: each appends to its CPU's sorted run.
                self.order = TimeOrder()
                self.bindings = self.order.bindings(self.decoder, sinks,
                                                    [r.cpu for r in self.readers])
            else:
                self.binding = self.decoder.compile_sinks(sinks)
        else:
            from .textparse import TextDecoder
            formats = {(te.system, te.event): te.format for te in self.plan.task_events or ()}
            formats.update({(ev.system, ev.event): ev.format
                            for ev in self.plan.events if ev.format is not None})
            self.decoder = TextDecoder(formats)
            self.aggregator = Aggregator(self.measurement, self.plan, tasks=self.tasks)

    def _tasks(self):
        """Thread id -> process id / task name for the aggregator (the raw
        records carry only the thread id; the text lines a name the kernel
        looked up when it printed them)."""
        from .tasks import TaskInfo

        def path(name):
            p = os.path.join(self.root, name)
            return p if os.path.exists(p) else None
        return TaskInfo(saved_cmdlines=path("saved_cmdlines"), saved_tgids=path("saved_tgids"))

    # -- reading -------------------------------------------------------------
    def _drain(self):
        """One round over every reader; returns how much was read.  Stop
        signals (Ctrl-C, SIGTERM, SIGHUP) are held off for the round: a page
        read from trace_pipe_raw is consumed in the kernel, so a signal
        between the read and the decode would lose its events unreported."""
        with SignalsDeferred():
            return self._drain_round()

    def _drain_round(self):
        readers = list(self.readers)
        if readers and isinstance(readers[0], RawReader):
            return read_round(readers, self._feed_page, self.order)
        n = 0
        for r in readers:
            # trace_pipe merges the CPUs in timestamp order itself.
            for line in r.read_lines(MAX_PAGES_PER_ROUND):
                n += 1
                self._feed_line(line)
        return n

    def _feed_page(self, page, cpu):
        # Page losses go to the LossCounter (not straight to the aggregator):
        # the stats counters report the same events.
        _n, lost = self.decoder.decode_page_into(page, cpu,
                                                 self.bindings.get(cpu, self.binding))
        if lost != 0:
            self.losses.marker(cpu, lost)

    def _feed_line(self, line):
        item = self.decoder.decode(line)
        if item is None:
            return
        if isinstance(item, Lost):
            self.losses.marker(item.cpu, item.count)
            return
        tasks = self.tasks
        if tasks.follows_events:
            # the name at the event, not the one saved_cmdlines had when
            # the kernel printed the line
            item.comm = tasks.comm(item.tid, item.comm)
        if tasks.is_task_event(item.system, item.event):
            # (a measured one too: the aggregator sees it with the name
            # from before the change it records)
            if self.aggregator.handler_for(item.system, item.event) is not None:
                self.aggregator.feed(item)
            tasks.feed(item)
            return
        self.aggregator.feed(item)

    def wait(self, timeout):
        deadline = _now() + max(0.0, timeout)
        while True:
            read = self._drain() if self.readers else 0
            if self.aggregator.records_waiting >= RECORD_BATCH:
                return True
            remaining = deadline - _now()
            if remaining <= 0:
                return
            if not read:
                time.sleep(min(POLL_S, remaining))

    def stop_recording(self):
        # Under a flood the buffer refills as fast as it is drained: the last
        # drain would run into collect()'s bound (seconds of decoding) and a
        # Ctrl-C would not end the run promptly.  The instance's tracing_on
        # stops the writing, keeping what is recorded (the top level's is
        # set back by close()).
        if self.started and self.buffer_path and not self.unrestored:
            try:
                tracefs.write_text(os.path.join(self.buffer_path, "tracing_on"), "0")
            except (IOError, OSError):
                pass    # the drain stays bounded all the same
            self.stopping = True

    def collect(self):
        # Drain until empty, but bounded (a flood refills the buffer as fast
        # as it is read): by time, and for records by what one print should
        # hold.  What a stop leaves unread is counted lost.
        deadline = _now() + DRAIN_BOUND_S
        left = 0
        for _ in range(64):
            if not self.readers or not self._drain():
                break
            if _now() > deadline or self.aggregator.records_waiting >= RECORD_BATCH:
                left = self.losses.unread() if self.stopping and self.losses else 0
                if left:
                    self._say("%d events not read before the stop (counted as lost)" % left)
                break
        lost = (self.losses.take() if self.losses else 0) + left
        if lost:
            self.aggregator.feed_lost(lost)
        report = self.aggregator.collect()
        if self.tasks is not None:
            self.tasks.end_interval()
        return report

    def close(self):
        errors = self.undo.run()
        for what, e in errors:
            if isinstance(e, inst.Unrestored):
                self._say(one_line(e))
            else:
                self._say("warning: %s failed: %s" % (what, one_line(e)))
            self.unrestored.append(one_line(e))
