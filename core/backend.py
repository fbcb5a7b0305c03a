"""What a backend is, as the selector and runner see it.

A backend registers through the `kerntrace_backends` hook (see hookspecs)
and implements:

    capabilities(host)            -> [Capability]   what it found on this host
    check(measurement, host)      -> Verdict        can it run this measurement here?
    open(measurement, verdict, options) -> Session  a running measurement

A Session is a context manager: entering it calls start(), which attaches
everything; leaving it (on every path) calls close(), which detaches
everything and restores the kernel as it was.  close() must be idempotent and
must work after a partial start().

    wait(timeout)   process kernel events for up to `timeout` seconds
    collect()       -> Report for what was seen since the last collect()
                       (read-and-reset; in-flight pair starts survive)
    program_text()  a human-readable rendering of what it installs
                    (the generated BPF C, the tracefs writes), or None
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


class Verdict(object):
    """A backend's answer for one measurement on this host.

    ok       it can run it
    reasons  why (not): one short line each, for the user
    plan     backend-private data (e.g. the probe chosen for each event)
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
        self.choices = [c for c in choices if c]

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

    buffer_kb   per-CPU size of the event buffer, None for the backend's
                default: the ftrace instance buffer; the eBPF perf buffer
                (or its ring buffer, shared by all CPUs, sized CPUs x KB)
    """

    def __init__(self, tool="kerntrace", buffer_kb=None, input_file=None,
                 stderr=None, verbose=False):
        if buffer_kb is not None and (isinstance(buffer_kb, bool) or not isinstance(buffer_kb, int)
                                      or not 1 <= buffer_kb <= MAX_BUFFER_KB):
            raise OptionError("--buffer-kb must be between 1 and %d (KB per CPU)" % MAX_BUFFER_KB)
        self.tool = tool
        self.buffer_kb = buffer_kb
        self.input_file = input_file
        self.stderr = stderr
        self.verbose = verbose


class Backend(object):
    name = None
    # Lower is preferred by the selector when several backends can run a tool.
    preference = 100
    # What saved trace this backend replays for --input (a description), or
    # None.  Its check() then sees host.input_file set and plans a replay.
    replays = None

    def capabilities(self, host):
        raise NotImplementedError

    def check(self, measurement, host):
        raise NotImplementedError

    def open(self, measurement, verdict, options):
        raise NotImplementedError

    def cleanup_stale(self, host, stderr=None, problems=None, notes=None):
        """Remove what dead kerntrace processes left behind; return a list
        of one-line descriptions of what was removed.  Every run calls it on
        every backend before tracing, whichever backend it chose (and
        `kerntrace cleanup` does).  When given lists, one line is appended
        to `problems` per thing that could not be removed, and to `notes`
        per thing left alone because its owner may be alive."""
        return []


class Session(object):
    """Built by Backend.open() without touching the kernel (so
    program_text() can show what it would do); entering it starts tracing."""

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
