"""Kernel-function counts from the ftrace function profiler (perf-tools'
funccount way): no event in any buffer, the kernel keeps a counter per
function and CPU.

Where the kernel has CONFIG_FUNCTION_PROFILER (the top-level
`function_profile_enabled` file and `trace_stat/`, which
ftrace_profile_tracefs() in kernel/trace/ftrace.c creates only then) and
set_ftrace_filter is writable, a plain count of kernel-function entries
(funccount 'vfs_*') runs as

    echo 'vfs_read vfs_write' > set_ftrace_filter
    echo 1 > function_profile_enabled
    ... each interval: read trace_stat/function<cpu> of every CPU ...

which costs a counter increment per call instead of a kprobe event (or a
function-tracer record) per call.  Both files are global, not per instance:
the run takes the perf-tools lock (lock.py) as a top-level run does, saves
both files and writes them back on close, and journals them (owner.py) so
the next run's stale cleanup (stale.py) restores them after a SIGKILL.

Counts are cumulative while the profiler stays on and read as differences
from the previous read: re-enabling it to reset would drop the calls made
between the read and the reset, and a read of a busy profile is not atomic
with any reset.  Enabling resets the counters (ftrace_profile_init_cpu()
calls ftrace_profile_reset() on a profile already allocated), so the first
interval counts from zero.

Which measurements qualify (route()): a Count keyed by the event name or not,
no pair, every event a kernel-function entry (no arguments, no return), no
filter but the CPU (the per-CPU files), names the profiler prints apart.
"""

import os
import re
import time

from kerntrace.core import tracefs
from kerntrace.core.backend import Session, check_plan_options
from kerntrace.core.errors import EnableError
from kerntrace.core.model import EVENT_NAME
from kerntrace.core.results import CountSet, Report

from . import instance as inst
from . import owner
from .lock import LOCK_PATH, FtraceLock

# function_stat_show() (kernel/trace/ftrace.c) prints each row as
# "  %-30.30s  %10lu" (name cut to 30 characters, then the hit count) and,
# with CONFIG_FUNCTION_GRAPH_TRACER, time columns after it; the header
# (function_stat_headers()) is "  Function ... Hit ..." and a dashes line.
NAME_WIDTH = 30
_ROW = re.compile(r"^  (\S.{0,29}?) +(\d+)(?:\s|$)")
_STAT_FILE = re.compile(r"^function(\d+)$")
# What set_ftrace_filter gets: kernel symbol names only (no glob, no
# command syntax such as ":traceoff" or "!", no whitespace).
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def has_profiler(root):
    """None if the kernel has the function profiler at `root`, else why not."""
    if not os.path.exists(os.path.join(root, "function_profile_enabled")):
        return "function_profile_enabled missing (CONFIG_FUNCTION_PROFILER off)"
    if not os.path.isdir(os.path.join(root, "trace_stat")):
        return "trace_stat/ missing (CONFIG_FUNCTION_PROFILER off)"
    return None


def kernel_entry(event):
    """The event's kernel-function entry probe, if that is its first probe."""
    probe = event.probes[0] if event.probes else None
    if probe is None or probe.kind != "kprobe" or probe.ret or event.fields:
        return None
    return probe


def route(measurement, feats):
    """({logical event name: kernel function}, None) when the profiler can
    count this measurement on this host, else (None, why not)."""
    agg = measurement.aggregate
    if agg.kind != "count" or measurement.pair is not None or \
            tuple(agg.keys) not in ((EVENT_NAME,), ()):
        return None, "not a plain count per function"
    functions = {}
    for event in measurement.events:
        probe = kernel_entry(event)
        if probe is None:
            return None, "event %s is not a kernel-function entry" % event.name
        if not _FUNCTION_NAME.match(probe.function):
            return None, "%r is not a kernel function name" % probe.function
        functions[event.name] = probe.function
    for f in measurement.filters:
        if f.field != "cpu" or f.op != "==":
            return None, "filter on %s (the profiler counts per CPU only)" % f.field
    cut = [name[:NAME_WIDTH] for name in functions.values()]
    if len(set(cut)) != len(cut):
        return None, "two functions share the first %d characters the profiler prints" \
            % NAME_WIDTH
    why = has_profiler(feats.root)
    if why is None and not feats.function_tracer:
        why = "function tracer not in available_tracers"
    if why is None and feats.ftrace_filter_error:
        why = "set_ftrace_filter not writable: %s" % feats.ftrace_filter_error
    if why is None:
        # function_stat_show() skips a function whose average time is under
        # tracing_thresh (with the graph tracer): its calls would be missed.
        thresh = (tracefs.read_text(os.path.join(feats.root, "tracing_thresh")) or "0").strip()
        if thresh not in ("", "0"):
            why = "tracing_thresh is %s (rows of faster functions are not shown)" % thresh
    if why is not None:
        return None, why
    return functions, None


def parse_stat(text):
    """A trace_stat/function<cpu> text -> {function name (as printed,
    at most 30 characters): hits}."""
    rows = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m and m.group(1) not in ("Function", "--------"):
            rows[m.group(1)] = rows.get(m.group(1), 0) + int(m.group(2))
    return rows


def stat_files(root):
    """{cpu: path} of the per-CPU profile files."""
    d = os.path.join(root, "trace_stat")
    out = {}
    for name in os.listdir(d):
        m = _STAT_FILE.match(name)
        if m:
            out[int(m.group(1))] = os.path.join(d, name)
    return out


class ProfileCounts(object):
    """Interval counts from the cumulative per-CPU profiles of one run.

        pc = ProfileCounts({event name: function}, cpu=None, keyed=True)
        counts = pc.take({cpu: stat text})   # {(event name,): calls}, or
                                             # {(): calls} unkeyed
    """

    def __init__(self, functions, cpu=None, keyed=True):
        self.by_printed = {f[:NAME_WIDTH]: name for name, f in functions.items()}
        self.keyed = keyed          # counts per event name, else one total
        self.cpu = cpu
        self.previous = {}          # (cpu, printed name) -> hits

    def take(self, texts):
        counts = {}
        for cpu, text in texts.items():
            if self.cpu is not None and cpu != self.cpu:
                continue
            for printed, hits in parse_stat(text).items():
                name = self.by_printed.get(printed)
                if name is None:
                    continue        # a function of the filter someone else added
                before = self.previous.get((cpu, printed), 0)
                self.previous[(cpu, printed)] = hits
                # fewer hits than before: the profile was reset under us
                n = hits - before if hits >= before else hits
                if n > 0:
                    key = (name,) if self.keyed else ()
                    counts[key] = counts.get(key, 0) + n
        return counts


class ProfilePlan(object):
    """What check() decided for a profiler run."""

    count_route = "profile"

    def __init__(self, tracefs_root, functions, cpu=None, plan_key=None):
        self.tracefs_root = tracefs_root
        self.functions = dict(functions)
        self.cpu = cpu
        self.plan_key = plan_key

    def describe(self):
        return ["event %s <- function profiler (k:%s)" % (n, f)
                for n, f in sorted(self.functions.items())] + [
            "counts in the kernel: function profiler (set_ftrace_filter, "
            "function_profile_enabled, trace_stat/function<cpu> read per interval; "
            "global files under the perf-tools lock, restored at the end)"]


def cpu_filter(measurement):
    for f in measurement.filters:
        if f.field == "cpu":
            return int(f.value)
    return None


class ProfileSession(Session):
    """A funccount-style count run on the function profiler."""

    def __init__(self, measurement, plan, options=None):
        self.measurement = measurement
        self.plan = plan
        self.root = plan.tracefs_root
        self.stderr = getattr(options, "stderr", None)
        self.undo = inst.UndoStack()
        self.counts = ProfileCounts(plan.functions, plan.cpu,
                                    keyed=bool(measurement.aggregate.keys))
        self.journal = None
        self.ops = None
        self.started = False
        self.unrestored = []

    def _configure(self, ops):
        root = self.root
        ops.note("take lock %s" % LOCK_PATH)
        ops.write(os.path.join(root, "set_ftrace_filter"),
                  " ".join(self.plan.functions[n] for n in sorted(self.plan.functions)),
                  what="function filter")
        ops.write(os.path.join(root, "function_profile_enabled"), "1",
                  what="function profiler")
        ops.note("read trace_stat/function<cpu> each interval (the kernel's counts)")

    def program_text(self):
        ops = inst.ControlFiles(self.root, dry_run=True, save=True)
        self._configure(ops)
        return "\n".join(ops.log) + "\n"

    def start(self):
        if self.started:
            return
        self.started = True
        # Journal first: a run killed after it leaves nothing the next run
        # cannot find stale and restore (the filter, the profiler, the lock).
        self.journal = inst.Journal()
        self.undo.push("remove journal", self.journal.remove)
        self.journal.begin(self.root)
        lock = FtraceLock(stderr=self.stderr, held_elsewhere=lambda: owner.live_pids(
            "toplevel-", exclude=(self.journal.owner.name,)))
        lock.acquire()
        self.undo.push("release lock", lock.release)
        enabled = (tracefs.read_text(os.path.join(self.root, "function_profile_enabled"))
                   or "0").strip()
        if enabled != "0":
            raise EnableError("the function profiler is in use by someone else "
                              "(function_profile_enabled is %s)" % enabled)
        tracer = (tracefs.read_text(os.path.join(self.root, "current_tracer")) or "nop").strip()
        if tracer != "nop":
            # its functions are the ones set_ftrace_filter names: ours would
            # change what it traces
            raise EnableError("the top-level %s tracer is in use: set_ftrace_filter is "
                              "its filter too" % tracer)
        self.ops = inst.ControlFiles(self.root, undo=self.undo, save=True,
                                     journal=self.journal)
        self._configure(self.ops)

    def wait(self, timeout):
        time.sleep(max(0.0, timeout))

    def collect(self):
        texts = {}
        try:
            for cpu, path in stat_files(self.root).items():
                texts[cpu] = tracefs.read_text(path) or ""
        except (IOError, OSError) as e:
            raise EnableError("cannot read %s/trace_stat: %s" % (self.root, e))
        counts = self.counts.take(texts)
        return Report(CountSet(self.measurement.aggregate.keys, counts))

    def close(self):
        for what, e in self.undo.run():
            line = str(e).splitlines()[0] if str(e) else what
            if self.stderr is not None:
                self.stderr.write("kerntrace: %s\n" % (
                    line if isinstance(e, inst.Unrestored) else
                    "warning: %s failed: %s" % (what, line)))
            self.unrestored.append(line)


def open_session(measurement, plan, options=None):
    check_plan_options(plan.plan_key, options)
    return ProfileSession(measurement, plan, options)
