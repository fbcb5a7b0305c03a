"""LiveSession: one ftrace run on the live kernel, from check()'s Plan.

start()   take the buffer (own instance, one per event where the plan says
          so, or the top level under the perf-tools lock) and configure it
          (configure.py: probes, buffer size, clock, filters, events), open
          the readers (readers.py), build the decoding pipeline;
close()   undo all of it in reverse (idempotent; safe after a partial start;
          an undo interrupted by a signal is retried by the next close());
wait()    read and decode kernel output for `timeout` seconds, feeding the
          Aggregator (in time order where it needs it: timeorder.py);
collect() drain (bounded), account losses, return the interval's Report;
program_text()  the writes start() makes, recorded by the same
          configure() with dry ControlFiles.

Reading prefers the binary per-CPU trace_pipe_raw and falls back to the text
trace_pipe.  Nothing here sleeps in the kernel: short sleeps between drains
keep wait() responsive to signals on every kernel.
"""

import os
import sys
import time

from kerntrace.core import tracefs
from kerntrace.core.backend import Session
from kerntrace.core.errors import EnableError, one_line
from kerntrace.core.stopsignals import SignalsDeferred

from . import instance as inst
from . import owner
from .configure import configure
from .lock import FtraceLock
from .plan import Lost
from .readers import (MAX_PAGES_PER_ROUND, LossCounter, RawReader, TextReader, WatermarkWait,
                      cpus, read_page_size, read_round)
from .textparse import KernelStackText
from .timeorder import TimeOrder, needs_time_order

# Pause between drains when the buffers are empty: short enough for
# per-interval accuracy, long enough to cost nothing when idle.
POLL_S = 0.03
# collect() drains for at most about this long; after a stop signal what
# the buffer still holds then is reported lost (a big --buffer-kb would
# otherwise hold the exit for as long as decoding it takes).
DRAIN_BOUND_S = 0.25
# Records decoded faster than they print (a flood) are handed on in batches
# of about this many, so what waits to be printed at a stop stays small.
RECORD_BATCH = 4096


def _now():
    return time.monotonic()


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


class LiveSession(Session):
    """A measurement running in the live kernel through tracefs.

    plan     the immutable plan.Plan (check() decided everything in it)
    options  RunOptions: stderr, verbose (the rest is in the plan)

    After start(): `ops` holds the record of every write made (the same
    lines program_text() shows), `configured` what configure() set up (the
    buffer path, the probes as defined, the filters the kernel accepted)."""

    configured = None       # configure.Configured, once start() configured
    page_counter = None     # pagecount.PageCounter: a plain count's pages
    bulk = None             # bulkpair.BulkPairer: a pair's pages, paired per lap
    sleeper = None          # readers.WatermarkWait, made at the first idle wait
    hist = None             # histcount.HistCounts: counts the kernel keeps

    def __init__(self, measurement, plan, options=None):
        self.measurement = measurement
        self.plan = plan
        self.root = plan.tracefs_root
        self.options = options
        self.stderr = getattr(options, "stderr", None) or sys.stderr
        self.verbose = bool(getattr(options, "verbose", False))
        self.undo = inst.UndoStack()
        self.ops = None
        self.configured = None
        self.buffer_path = None
        self.readers = []
        self.decoder = None
        self.binding = None      # raw path: decoder binding for every CPU ...
        self.holds = {}          # cpu -> where its events wait when the CPUs are merged
        self.order = None
        self.aggregator = None
        self.tasks = None        # tasks.TaskInfo: names and process ids of thread ids
        self.losses = None
        self.journal = None
        self.unrestored = []     # what close() could not undo
        self.started = False
        self.stopping = False    # stop_recording() froze the buffer

    def _say(self, text):
        self.stderr.write("kerntrace: %s\n" % text)

    def _explain(self, text):
        if self.verbose:
            self._say(text)

    def _reading_note(self, ops):
        if self.plan.count_route == "hist":
            ops.note("read events/*/*/hist each interval (the kernel's counts)")
            return
        ops.note("read per_cpu/cpu*/trace_pipe_raw" if self.plan.read_path == "raw"
                 else "read trace_pipe")

    # -- Session interface ---------------------------------------------------
    def program_text(self):
        """What start() writes, in order: configure() with dry
        ControlFiles (nothing is written; the plan is not touched)."""
        ops = inst.ControlFiles(self.root, dry_run=True, save=not self.plan.instances)
        configure(self.measurement, self.plan, ops)
        self._reading_note(ops)
        return "\n".join(ops.log) + "\n"

    def start(self):
        if self.started:
            return
        self.started = True
        if not self.plan.instances:
            # Journal first: a run killed after it leaves nothing (not even
            # the perf-tools lock) that the next run cannot find stale.
            self.journal = inst.Journal()
            self.undo.push("remove journal", self.journal.remove)
            self.journal.begin(self.root)
            lock = FtraceLock(stderr=self.stderr, held_elsewhere=self._top_level_users)
            lock.acquire()
            self.undo.push("release lock", lock.release)
        self.ops = ops = inst.ControlFiles(self.root, undo=self.undo,
                                           save=not self.plan.instances, journal=self.journal)
        self.tasks = self._tasks()
        self.tasks.track(self.plan.task_events or ())
        self.configured = configure(self.measurement, self.plan, ops, explain=self._explain,
                                    say=self._say, snapshot_tasks=self._snapshot_tasks)
        self.buffer_path = self.configured.buffer_path
        self._open_readers()
        self._reading_note(ops)
        self._build_pipeline()

    def _snapshot_tasks(self):
        n = self.tasks.snapshot()
        if self.tasks.follows_events:
            how = "followed from " + ", ".join(
                "%s:%s" % (te.system, te.event) for te in self.plan.task_events)
        else:
            how = "from saved_cmdlines/saved_tgids (no task events)"
        self._explain("ftrace: task names and PIDs %s; %d tasks from /proc at the start"
                      % (how, n))

    def _top_level_users(self):
        """PIDs (each in its own namespace) of the other live kerntrace runs
        that use the top level."""
        return owner.live_pids("toplevel-", exclude=(self.journal.owner.name,))

    def _buffer_paths(self):
        """Every buffer the run reads (one per event with
        plan.event_instances)."""
        if self.configured is not None and self.configured.buffers:
            return [path for path, _events in self.configured.buffers]
        return [self.buffer_path] if self.buffer_path else []

    def _open_readers(self):
        cpu_list = cpus(self.buffer_path)
        self.undo.push("close readers", self._close_readers)
        paths = self._buffer_paths()
        # A reader's cpu is its stream: with several buffers (CPU, buffer
        # index), which the losses and the bulk pairing's order key on.
        streams = [(cpu if len(paths) == 1 else (cpu, i), path, cpu)
                   for cpu in cpu_list for i, path in enumerate(paths)]
        if self.plan.read_path == "raw":
            page = read_page_size(self.buffer_path, self.plan.header_page)
            for key, path, cpu in streams:
                self._open_reader(RawReader(key, os.path.join(
                    path, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw"), page))
        else:
            self._open_reader(TextReader(os.path.join(self.buffer_path, "trace_pipe")))
        self.losses = LossCounter(
            (key, os.path.join(path, "per_cpu", "cpu%d" % cpu, "stats"))
            for key, path, cpu in streams)

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
        """Decoder -> (time order) -> aggregator, for the events as
        configured (a probe's format is known once it is defined)."""
        from .aggregate import Aggregator
        plan = self.plan
        if self.configured is not None:
            plan = plan.replace(events=self.configured.events)
        self.aggregator = Aggregator(self.measurement, plan, tasks=self.tasks)
        if plan.read_path == "raw":
            from .rawparse import RawDecoder
            formats = ([ev.format for ev in plan.events]
                       + [te.format for te in plan.task_events or ()])
            by_id = {f.id: f for f in formats if f is not None and f.id is not None}
            self.decoder = RawDecoder(plan.header_page, plan.header_event, by_id)
            # Decode straight into the aggregator's per-event handlers (no
            # RawEvent objects on the hot path).
            sinks = merge_sinks(self.aggregator.raw_sinks(self.decoder.formats_by_id),
                                self.tasks.raw_sinks(self.decoder.formats_by_id))
            # Task names change at the time of their events: the events they
            # name must come after them, whichever CPU logged which.
            self.binding = self.decoder.compile_sinks(sinks)
            if plan.stack_format is not None:
                from .kstacks import KernelSymbols, StackLayout, stack_sink
                layout = StackLayout(plan.stack_format)
                self.binding[layout.id] = stack_sink(layout, KernelSymbols(),
                                                     self.aggregator.attach_stack)
            if needs_time_order(self.measurement) or plan.task_events:
                # Each CPU's events are held in its sorted run.
                self.order = TimeOrder()
                self.holds = {r.cpu: self.order.holder(r.cpu) for r in self.readers}
            if plan.count_route == "hist":
                from .histcount import HistCounts
                self.hist = HistCounts(self.measurement, plan)
            elif plan.count_route == "pages":
                from .pagecount import page_counter
                self.page_counter, why = page_counter(self.measurement, plan, self.decoder,
                                                      self.aggregator)
                if why:
                    self._explain("ftrace: counting event by event: %s" % why)
            elif self.measurement.pair is not None:
                self._bulk_pairing(plan)
        else:
            from .textparse import TextDecoder
            formats = {(te.system, te.event): te.format for te in plan.task_events or ()}
            formats.update({(ev.system, ev.event): ev.format
                            for ev in plan.events if ev.format is not None})
            self.decoder = TextDecoder(formats, stacks=plan.kernel_stacks)

    def _bulk_pairing(self, plan):
        """Pair a drain lap at a time where bulkpair can (it is then the
        round's time order too), else say why not."""
        from .bulkpair import BulkPairer, bulk_pairs
        why = bulk_pairs(self.measurement, plan, self.decoder.byteorder)
        if why is not None and plan.event_instances:
            # (the plan chose the instances for the bulk pairing: the
            # generic path reads one buffer)
            raise EnableError("ftrace: cannot pair the events of its instances: %s" % why)
        if why is not None:
            self._explain("ftrace: pairing event by event: %s" % why)
            return
        self.bulk = self.order = BulkPairer(self.measurement, plan, self.decoder,
                                            self.aggregator)
        self.holds = {}
        self._explain("ftrace: pairing in bulk, a drain lap at a time")

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
        if self.bulk is not None:
            lost = self.bulk.feed_page(page, cpu)
        elif self.page_counter is not None:
            lost = self.page_counter.count_page(page, cpu)
        else:
            _n, lost = self.decoder.decode_page_into(page, cpu, self.binding,
                                                     self.holds.get(cpu))
        if lost != 0:
            self.losses.marker(cpu, lost)

    def _feed_line(self, line):
        item = self.decoder.decode(line)
        if item is None:
            return
        if isinstance(item, Lost):
            self.losses.marker(item.cpu, item.count)
            return
        if item.__class__ is KernelStackText:
            self.aggregator.attach_stack(item.cpu, item.tid, item.frames)
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
                self._idle(remaining)

    def _idle(self, remaining):
        """Wait for more to read: where only interval reports print
        (histograms, counts) until a buffer's watermark; records print as
        they come, so their reads keep polling."""
        if self.sleeper is None:
            raw = [r for r in self.readers if isinstance(r, RawReader)]
            if raw and self.measurement.aggregate.kind != "records" and \
                    self.plan.count_route != "hist":
                self.sleeper = WatermarkWait(raw, self.buffer_path, POLL_S)
            else:
                self.sleeper = WatermarkWait([], None, POLL_S)
            self._explain("ftrace: between reads %s" % (
                "sleeping until a buffer is buffer_percent full" if self.sleeper.active
                else "polling every %g s" % POLL_S))
        self.sleeper.idle(remaining, _now)

    def stop_recording(self):
        # Under a flood the buffer refills as fast as it is drained: the last
        # drain would run into collect()'s bound (seconds of decoding) and a
        # Ctrl-C would not end the run promptly.  The instance's tracing_on
        # stops the writing, keeping what is recorded (the top level's is
        # set back by close()).
        if self.started and self.buffer_path and not self.unrestored:
            for path in self._buffer_paths():
                try:
                    tracefs.write_text(os.path.join(path, "tracing_on"), "0")
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
        if self.hist is not None:
            lost += self._take_hist()
        if lost:
            self.aggregator.feed_lost(lost)
        report = self.aggregator.collect()
        if self.tasks is not None:
            self.tasks.end_interval()
        return report

    def _take_hist(self):
        """The kernel's hist tables since the last read into the aggregator;
        returns the entries they dropped."""
        from .histcount import HistFormatError
        texts = {}
        for ev in self.plan.events:
            path = os.path.join(self.buffer_path, "events", ev.system, ev.event, "hist")
            texts[ev.name] = tracefs.read_text(path) or ""
        try:
            counts, lost = self.hist.take(texts)
        except HistFormatError as e:
            raise EnableError("cannot read the hist table of %s: %s" % (self.buffer_path, e))
        self.aggregator.add_counts(counts)
        return lost

    def close(self):
        errors = self.undo.run()
        for what, e in errors:
            if isinstance(e, inst.Unrestored):
                self._say(one_line(e))
            else:
                self._say("warning: %s failed: %s" % (what, one_line(e)))
            self.unrestored.append(one_line(e))
