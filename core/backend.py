"""What a backend is, as the selector and runner see it.

A backend registers through the `kerntrace_backends` hook (see hookspecs)
and implements:

    capabilities(host)            -> [Capability]   what it found on this host
    check(measurement, host, options) -> Verdict    can it run this measurement here?
                                     and if so, its plan: everything the run
                                     will do, decided now (probes, filters,
                                     buffer sizes, the program text, names)
    open(measurement, verdict, options) -> Session  a running measurement,
                                     built from verdict.plan alone (options
                                     only say where to report: stderr,
                                     verbose); nothing is decided again

A Session is a context manager: entering it calls start(), which attaches
everything; leaving it (on every path) calls close(), which detaches
everything and restores the kernel as it was.  close() must be idempotent and
must work after a partial start().

    wait(timeout)   process kernel events for up to `timeout` seconds
    collect()       -> Report for what was seen since the last collect()
                       (read-and-reset; in-flight pair starts survive)
    program_text()  exactly what start() hands to the kernel (the BPF C
                    given to bcc, the tracefs writes in order), or None

A plan is immutable once check() has made it (see Frozen): --print-program,
--explain and the run all read the same object.
"""

from .errors import OptionError
from .stopsignals import SignalsDeferred


class Capability(object):
    """One thing a host can or cannot do, and how we know."""

    __slots__ = ("name", "ok", "detail", "backend")

    def __init__(self, name, ok, detail, backend=None):
        self.name = name
        self.ok = bool(ok)
        self.detail = detail
        self.backend = backend

    def as_dict(self):
        return {"name": self.name, "ok": self.ok, "detail": self.detail,
                "backend": self.backend}

    def __repr__(self):
        return "Capability(%s=%s: %s)" % (self.name, self.ok, self.detail)


class Frozen(object):
    """Attributes set in __init__ (then freeze()) and never again: what
    check() decided cannot drift before or during the run."""

    __slots__ = ()

    def freeze(self):
        object.__setattr__(self, "_frozen", True)
        return self

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("%s is immutable (decided by check()): cannot set %s"
                                 % (type(self).__name__, name))
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if getattr(self, "_frozen", False):
            raise AttributeError("%s is immutable (decided by check()): cannot delete %s"
                                 % (type(self).__name__, name))
        object.__delattr__(self, name)


class Verdict(Frozen):
    """A backend's answer for one measurement on this host.

    ok       it can run it
    reasons  why (not): one short line each, for the user
    plan     backend-private and immutable: everything the run needs (see
             the module docstring); describe() gives its --explain lines
    notice   one line the user is told even when another backend runs the
             tool (in our words what a dependency would have printed, e.g.
             bcc's missing kernel headers), or None
    choices  the probe_choice() lines of events that run on another probe
             than their first alternative (also among the reasons);
             `kerntrace doctor` lists them for every backend that can run
    """

    def __init__(self, backend, ok, reasons=(), plan=None, notice=None, choices=()):
        self.backend = backend
        self.ok = bool(ok)
        self.reasons = list(reasons)
        self.plan = plan
        self.notice = notice
        self.choices = tuple(c for c in choices if c)
        self.freeze()

    def describe(self):
        """--explain lines of the plan (what the run will do), if any."""
        describe = getattr(self.plan, "describe", None)
        return list(describe()) if describe is not None else []

    def __repr__(self):
        return "Verdict(%s ok=%s %s)" % (self.backend, self.ok, "; ".join(self.reasons))


def probe_choice(event, probe, skipped):
    """The line a backend's verdict gives for an event whose probe is not
    its first alternative (or None when it is): which probe runs and why
    the earlier ones do not (`skipped`: one reason per alternative tried
    before it).  --explain and `kerntrace doctor` print it."""
    if probe is event.probes[0] or not skipped:
        return None
    return "event %s from %s (not %s)" % (event.name, probe.describe(), "; ".join(skipped))


def members_left_out(event, reasons):
    """The line a verdict gives for the members of an Each alternative
    this host lacks (`reasons`: one per member left out), or None."""
    if not reasons:
        return None
    return "event %s without %s" % (event.name, "; ".join(reasons))


# --buffer-kb: at least a KB, at most 4 GB per CPU.
MAX_BUFFER_KB = 4 * 1024 * 1024


class RunOptions(object):
    """Run-time knobs that are not part of the measurement.

    tool        names what the run creates (an ftrace instance)
    buffer_kb   per-CPU size of the event buffer, None for the backend's
                default: the ftrace instance buffer; the eBPF perf buffer
                (or its ring buffer, shared by all CPUs, sized CPUs x KB)
    stderr, verbose   where a session reports, and whether it says more

    check() plans with tool and buffer_kb (plan_key()); open() must be
    given options with the same ones.
    """

    def __init__(self, tool="kerntrace", buffer_kb=None, stderr=None, verbose=False):
        if buffer_kb is not None and (isinstance(buffer_kb, bool) or not isinstance(buffer_kb, int)
                                      or not 1 <= buffer_kb <= MAX_BUFFER_KB):
            raise OptionError("--buffer-kb must be between 1 and %d (KB per CPU)" % MAX_BUFFER_KB)
        self.tool = tool
        self.buffer_kb = buffer_kb
        self.stderr = stderr
        self.verbose = verbose

    def plan_key(self):
        """The options a plan depends on."""
        return (self.tool, self.buffer_kb)


def check_plan_options(plan_key, options):
    """open() is given the options check() planned with (or None)."""
    if options is not None and options.plan_key() != plan_key:
        raise ValueError("the plan was made for tool/--buffer-kb %r, not %r"
                         % (plan_key, options.plan_key()))


class Backend(object):
    name = None
    # Lower is preferred by the selector when several backends can run a tool.
    preference = 100
    # What saved trace this backend replays for --input (a description), or
    # None.  Its check() then sees host.saved_trace (core.recording.SavedTrace)
    # and plans a replay; the verdict's plan is all open() needs.
    replays = None

    # What `kerntrace record` writes with this backend (a description), or
    # None: then it has no open_recording().
    records = None

    def capabilities(self, host):
        raise NotImplementedError

    def check(self, measurement, host, options=None):
        raise NotImplementedError

    def open(self, measurement, verdict, options):
        raise NotImplementedError

    def open_recording(self, measurement, host, options):
        """For `kerntrace record` (backends whose `records` is set): a
        Session that, entered, traces the measurement's events without
        aggregating; header() -> (clock, [(system, event, format text)],
        header_page, header_event); pump(out, timeout) and, after
        stop_recording(), drain(out) write the trace text to binary `out`."""
        raise NotImplementedError

    def cleanup_stale(self, host, stderr=None, problems=None, notes=None):
        """Remove what dead kerntrace processes left behind; return a list
        of one-line descriptions of what was removed.  Every run calls it on
        every backend before tracing, whichever backend it chose (and
        `kerntrace cleanup` does).  When given lists, one line is appended
        to `problems` per thing that could not be removed, and to `notes`
        per thing left alone because its owner may be alive."""
        return []


class LazyBackend(Backend):
    """A backend named and ordered now, imported when first used.

    Every command lists the backends, but one run probes only those it may
    choose (`--backend ftrace` asks no other), and importing a backend's
    code generator or bcc finder costs a start that never uses it.
    `load()` returns the real Backend; it is called on the first
    capabilities(), check(), open() or open_recording().  `cleanup_stale`,
    which every run calls on every backend, is a function of its own
    (host, stderr, problems, notes) so it imports only what removing a
    killed run's leftovers needs."""

    def __init__(self, name, preference, load, cleanup_stale=None, replays=None, records=None):
        self.name = name
        self.preference = preference
        self.replays = replays
        self.records = records
        self._load = load
        self._cleanup_stale = cleanup_stale
        self._backend = None

    def loaded(self):
        """The real backend (imported on the first call)."""
        if self._backend is None:
            self._backend = self._load()
        return self._backend

    def capabilities(self, host):
        return self.loaded().capabilities(host)

    def check(self, measurement, host, options=None):
        return self.loaded().check(measurement, host, options)

    def open(self, measurement, verdict, options):
        return self.loaded().open(measurement, verdict, options)

    def open_recording(self, measurement, host, options):
        return self.loaded().open_recording(measurement, host, options)

    def cleanup_stale(self, host, stderr=None, problems=None, notes=None):
        if self._cleanup_stale is None:
            return self.loaded().cleanup_stale(host, stderr=stderr, problems=problems,
                                               notes=notes)
        return self._cleanup_stale(host, stderr=stderr, problems=problems, notes=notes)

    def __repr__(self):
        return "LazyBackend(%s%s)" % (self.name, "" if self._backend is None else ", loaded")


class Session(object):
    """Built by Backend.open() from a verdict's plan without touching the
    kernel (so program_text() can show what it will do); entering it
    starts tracing."""

    def __enter__(self):
        # start() creates kernel state (instances, probes, programs) and
        # records how to undo each piece just after creating it: a Stop
        # raised in between would leave that piece behind.  So a stop signal
        # during start() is delivered when it returns, when close() knows
        # everything; start() must therefore never wait indefinitely.
        try:
            with SignalsDeferred():
                self.start()
        except BaseException:
            self.close()
            raise
        return self

    # A replay session runs on the trace's own clock: the runner does not
    # wait in real time, collect() returns the next interval of trace time,
    # and `finished` becomes true after the last one.
    replay = False
    finished = False
    # What close() could not undo, one line each (the session has said it on
    # stderr); the run then ends with status 1.
    unrestored = ()

    def start(self):
        raise NotImplementedError

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self, timeout):
        """Trace for up to `timeout` seconds.  A true result: it returned
        early because a batch of records is waiting for collect()."""
        raise NotImplementedError

    def collect(self):
        raise NotImplementedError

    def stop_recording(self):
        """The run is ending (a stop signal): record no new events, so the
        last collect() returns what was recorded until now, in a bounded
        time however fast events arrive.  A backend whose collect() is
        bounded anyway need not override it."""

    def close(self):
        raise NotImplementedError

    def program_text(self):
        return None
