"""Replaying a saved trace instead of tracing live.

    saved = open_saved_trace("io.rec")      # core.recording
    plan = replay_plan(measurement, saved)
    with ReplaySession(measurement, plan, saved) as s:
        s.wait(1.0)            # the first call processes the whole file
        report = s.collect()

The file may come from another host and another kernel.  A recording
(`kerntrace record`) carries the format files of its events: they decode
them, whatever the tracepoint.  A plain `cat trace` file carries none: its
events are decoded with the stored formats of known kernel eras
(core.known_formats), choosing per event the first candidate whose print
fmt decodes that event's first line.  Task names and process ids come only
from the file (the comm column, record-tgid): this host's /proc says
nothing about the traced one.
"""

from kerntrace.core import known_formats
from kerntrace.core.backend import Session
from kerntrace.core.errors import KerntraceError, Unsupported
from kerntrace.core.model import KSTACK, Each, Tracepoint
from kerntrace.core.recording import SavedTrace, open_saved_trace
from kerntrace.core.results import CountSet, HistogramSet, Report

from .aggregate import Aggregator
from .plan import Lost, Plan, RawEvent, ResolvedEvent, field_source
from .tasks import TaskInfo
from .textlines import LineSplitter, file_lines
from .textparse import STACK_HEAD, KernelStackText, TextDecoder


def resolve_fields(logical, formats, probe=None):
    """logical field name -> format field name: for each declared Field the
    first of its sources (`probe`'s own for it, if it names some) that one
    of `formats` has, of the right kind (plan.field_source).  Returns
    (mapping, names of fields no format has)."""
    mapping = {}
    missing = []
    for f in logical.fields:
        order = probe.sources_for(f) if probe is not None else f.sources
        found = [src for src in (field_source(fmt, f, probe) for fmt in formats)
                 if src is not None]
        if found:
            mapping[f.name] = min(found, key=order.index)
        else:
            missing.append(f.name)
    return mapping, missing


class ReplayPlan(Plan):
    """A Plan over a saved trace: `saved_trace` (core.recording.SavedTrace)
    is the file; events whose format the file carries have it already."""

    def __init__(self, events, saved_trace):
        object.__setattr__(self, "saved_trace", saved_trace)   # before Plan freezes it
        Plan.__init__(self, events, read_path="text", instances=False)


def _formats_of(saved, system, event):
    """The formats an event's lines may have: the one a recording carries
    (none: it did not record the event), else those of the known kernel
    eras."""
    if saved is not None and saved.recorded:
        carried = saved.formats.get((system, event))
        return [carried] if carried is not None else []
    return known_formats.candidates(system, event)


def replay_plan(measurement, saved=None):
    """A ReplayPlan for replaying `saved` (a SavedTrace; None: plain trace
    text, path given to the session), built without a live kernel.
    Tracepoint probes replay from any trace; probes we define ourselves
    (uprobes, kprobes, USDT probes) only from a recording that says which
    of its events each one is (SavedTrace.probes).  Raises Unsupported."""
    events = []
    for ev in measurement.events:
        chosen, why = None, "no tracepoint probe"
        for probe in ev.probes:
            if isinstance(probe, Each):
                # Every member the trace has an event of: those of a
                # recording (or, for plain text, those with a known format).
                members = [_replayed(saved, ev, m) if isinstance(m, Tracepoint)
                           else _replayed_probe(saved, ev, m) for m in probe.probes]
                found = [r for r, _why in members if r is not None]
                if found:
                    chosen = found
                    break
                why = "; ".join(w for _r, w in members) or why
                continue
            if not isinstance(probe, Tracepoint):
                resolved, probe_why = _replayed_probe(saved, ev, probe)
                if resolved is not None:
                    chosen = [resolved]
                    break
                why = probe_why
                continue
            resolved, why = _replayed(saved, ev, probe)
            if resolved is not None:
                chosen = [resolved]
                break
        if chosen is None:
            raise Unsupported("event %s cannot be replayed from a saved trace: %s" % (ev.name, why))
        events.extend(chosen)
    return ReplayPlan(events, saved)


def _replayed(saved, ev, probe):
    """(ResolvedEvent, None) for tracepoint `probe` of logical event `ev`
    in the saved trace, or (None, why not)."""
    formats = _formats_of(saved, probe.category, probe.name)
    if saved is not None and saved.recorded and not formats:
        # a recording holds the events it enabled, and only those
        return None, "the recording has no %s:%s (it recorded %s)" % (
            probe.category, probe.name,
            ", ".join(sorted("%s:%s" % k for k in saved.formats)) or "nothing")
    if not formats and ev.fields:
        return None, ("no known format for %s:%s (a recording made with `kerntrace record` "
                      "carries its formats)" % (probe.category, probe.name))
    fields, missing = resolve_fields(ev, formats, probe)
    if missing:
        return None, "%s:%s has no field %s" % (probe.category, probe.name, ", ".join(missing))
    fmt = formats[0] if len(formats) == 1 and saved is not None and saved.recorded else None
    return ResolvedEvent(ev, probe, probe.category, probe.name, fmt, fields), None


def _replayed_probe(saved, ev, probe):
    """(ResolvedEvent, None) for a probe we define (uprobe, kprobe, USDT)
    that the recording holds as one of its events, or (None, why not).  Its
    fields are the probe's fetch arguments, named after the model fields
    (backends/ftrace/probes.py), and the values the probe sets itself."""
    recorded = saved.probes if saved is not None and saved.recorded else {}
    where = recorded.get(probe.describe())
    if where is None:
        return None, ("%s: %s" % (probe.describe(), "the recording did not probe it"
                                  if saved is not None and saved.recorded else
                                  "a plain trace file does not say what its probe events "
                                  "probed (a recording made with `kerntrace record` does)"))
    fmt = saved.formats.get(where)
    if fmt is None:
        return None, "%s: the recording has no format of %s:%s" % ((probe.describe(),) + where)
    fields = {}
    for f in ev.fields:
        if f.name in probe.values:
            continue
        if fmt.field(f.name) is None:
            return None, "%s: the recorded %s:%s has no field %s" % (
                (probe.describe(),) + where + (f.name,))
        fields[f.name] = f.name
    return ResolvedEvent(ev, probe, where[0], where[1], fmt, fields), None


def empty_data(aggregate):
    if aggregate.kind == "histogram":
        return HistogramSet(aggregate.keys)
    if aggregate.kind == "count":
        return CountSet(aggregate.keys)
    return []


class ReplaySession(Session):
    """A Session over a saved trace: `saved` is a core.recording.SavedTrace
    (or the path of a file, read as open_saved_trace reads --input)."""

    replay = True

    def __init__(self, measurement, plan, saved, stderr=None):
        self.measurement = measurement
        self.plan = plan
        self.saved = saved if isinstance(saved, SavedTrace) else None
        self.path = saved.path if isinstance(saved, SavedTrace) else saved
        self.stderr = stderr           # where the end-of-file notice goes, if anywhere
        self.exhausted = False         # the whole file has been processed
        self.undecodable = 0           # lines of our events whose payload did not decode
        self.formats = {}              # (system, event) -> EventFormat used
        self.aggregator = None
        self._intervals_left = None    # generator over the file, per interval
        self._stacks = KSTACK in getattr(measurement.aggregate, "fields", ())

    def start(self):
        """Replay touches no kernel state; the file is read by collect().
        A file without one trace line of the traced events (or a lost-events
        marker) is refused here, before anything is printed: an empty
        result would look like a quiet system."""
        ours = TextDecoder({(e.system, e.event): None for e in self.plan.events})
        if not any(ours.decode(line) is not None for line in self._lines()):
            raise KerntraceError("nothing decoded from %s: no trace lines of %s" % (
                self.path, ", ".join("%s:%s" % (e.system, e.event) for e in self.plan.events)))
        head = STACK_HEAD.encode()
        if self._stacks and not any(head in line for line in self._lines()):
            raise KerntraceError("%s holds no kernel stacks (\"<stack trace>\" lines: a "
                                 "recording made with stacks, or options/stacktrace set)"
                                 % self.path)

    def close(self):
        pass

    def program_text(self):
        lines = ["# replay of %s (reads the file; installs nothing)" % self.path]
        for e in self.plan.events:
            lines.append("# %s <- %s:%s %s, format %s" % (
                e.name, e.system, e.event, e.fields,
                "carried by the recording" if e.format is not None
                else "of a stored kernel era that decodes its first line"))
        return "\n".join(lines) + "\n"

    def _lines(self, splitter=None):
        """The file's lines, read in bounded chunks: a line longer than the
        kernel prints is counted in splitter.overlong and skipped."""
        if self.saved is None:
            self.saved = open_saved_trace(self.path)
        f = self.saved.open_trace()
        try:
            with f:
                for line in file_lines(f, splitter=splitter):
                    yield line
        except (IOError, OSError) as e:
            raise KerntraceError("cannot read %s: %s" % (self.path, e.strerror or e))

    def _choose_formats(self):
        """First pass: which format each event's lines have (the one a
        recording carries, else one of the known eras')."""
        if self.saved is None:
            self.saved = open_saved_trace(self.path)
        fixed = {}
        candidates = {}
        for e in self.plan.events:
            key = (e.system, e.event)
            if e.format is not None:
                fixed[key] = e.format
            else:
                # only formats that have every field the tool reads
                cands = [f for f in _formats_of(self.saved, e.system, e.event)
                         if not resolve_fields(e.logical, [f])[1]]
                if cands:
                    candidates[key] = cands
                else:
                    fixed[key] = None       # counted, never decoded
        chooser = TextDecoder(fixed, candidates)
        if candidates:
            for line in self._lines():
                chooser.decode(line)
                if len(chooser.chosen) == len(candidates):
                    break
        formats = dict(fixed)
        for key, cands in candidates.items():
            # an event absent from the file: any candidate will do
            formats[key] = chooser.chosen.get(key, cands[0])
        return formats

    def _bound_plan(self, formats):
        events = []
        for e in self.plan.events:
            fmt = formats.get((e.system, e.event))
            fields = dict(e.fields)
            # (a probe we define names its fetch args after the model fields:
            # its sources, argN, may be another field's name there)
            if fmt is not None and isinstance(e.probe, Tracepoint):
                mapping, _missing = resolve_fields(e.logical, [fmt])
                fields.update(mapping)
            events.append(ResolvedEvent(e.logical, e.probe, e.system, e.event, fmt, fields,
                                        e.probe_def))
        return Plan(events, read_path="text", kernel_filters=self.plan.kernel_filters,
                    instances=self.plan.instances)   # this replay's own, built once

    def _intervals(self):
        """Feed the file to the aggregator, pausing (yield) each time trace
        time crosses an interval boundary, so a replay prints the intervals
        the live run would have printed.  Records are streamed as one
        report per boundary too; without a boundary the file is one interval."""
        self.formats = self._choose_formats()
        plan = self._bound_plan(self.formats)
        self.aggregator = Aggregator(self.measurement, plan, tasks=TaskInfo(proc_root=None))
        decoder = TextDecoder(self.formats, stacks=self._stacks)
        splitter = LineSplitter()
        feed = self.aggregator.feed
        step = int(self.measurement.schedule.interval * 1e9)
        boundary = None
        for line in self._lines(splitter):
            r = decoder.decode(line)
            if r is None:
                continue
            if type(r) is RawEvent:
                if boundary is None or r.ts >= boundary:
                    if boundary is not None:
                        self.undecodable = decoder.undecodable + splitter.overlong
                        yield
                    # Intervals are aligned to multiples of the interval in
                    # trace time, so a replay splits the same way every time.
                    # Intervals without events are skipped: a jump in trace
                    # time (a clock step, a gap between captures) prints the
                    # intervals that have events, not every one in between.
                    boundary = (r.ts // step + 1) * step
                feed(r)
            elif type(r) is KernelStackText:
                self.aggregator.attach_stack(r.cpu, r.tid, r.frames)
            elif isinstance(r, Lost):
                self.aggregator.feed_lost(r.count)
        self.undecodable = decoder.undecodable + splitter.overlong
        self.exhausted = True
        if self.undecodable and self.stderr is not None:
            # lines that looked like ours but were not: a damaged or foreign
            # file should not look like a quiet one
            self.stderr.write("kerntrace: warning: %d lines of %s could not be decoded (a payload "
                              "in no known format, or a line longer than the kernel prints)\n"
                              % (self.undecodable, self.path))

    def wait(self, timeout):
        """Nothing to wait for: collect() reads the file up to the next
        interval boundary of trace time."""

    def collect(self):
        """The next interval of trace time; `finished` after the last."""
        if self._intervals_left is None:
            self._intervals_left = self._intervals()
        if not self.finished:
            try:
                next(self._intervals_left)
            except StopIteration:
                self.finished = True
        if self.aggregator is None:
            return Report(empty_data(self.measurement.aggregate))
        return self.aggregator.collect()
