"""Running one tool: parse, select a backend, trace, print, restore.

Exit statuses: 0 success (also Ctrl-C/SIGTERM/SIGHUP after tracing started,
and a closed stdout pipe), 1 runtime failure, 2 usage error.  In exporter
mode (--prometheus-file or --prometheus-listen) SIGHUP does not stop the
run: it rewrites the textfile at once (log rotation, a cleaned directory).  The first
Ctrl-C ends tracing and prints the partial interval; a second one aborts the
printing.  The session is always closed, with signals held off, so the
kernel is restored whatever happened.
"""

import errno
import gc
import os
import signal
import sys
import time

from .backend import RunOptions
from .errors import EnableError, KerntraceError, Unsupported, one_line
from .host import Host
from .lookups import Lookups
from .output.base import RunContext
from .recording import open_saved_trace
from .stopsignals import SignalsAsStop, SignalsIgnored, Stop, raise_pending
from .variants import choose, variants

# How often a records (event stream) tool hands events to its printer.
RECORD_FLUSH_S = 0.1


def choose_printer(tool, args, out, err):
    if getattr(args, "json", False):
        from .output import jsonlines
        return jsonlines.JsonLinesPrinter(out, err)
    textfile = getattr(args, "prometheus_file", None)
    listen = getattr(args, "prometheus_listen", None)
    openmetrics = getattr(args, "openmetrics", False)
    if getattr(args, "prometheus", False) or textfile or listen or openmetrics:
        from .output import prometheus     # (only then: it imports tempfile, decimal)
        # Serving /metrics only: stdout stays quiet (unless --prometheus).
        stdout = not (listen and not getattr(args, "prometheus", False))
        return prometheus.PrometheusPrinter(
            out, err, openmetrics=openmetrics, textfile=textfile, metric=tool.metric,
            max_series=getattr(args, "prometheus_max_series", None) or prometheus.MAX_SERIES,
            stdout=stdout)
    return tool.printer(args, out, err)


def _is_epipe(e):
    return isinstance(e, (IOError, OSError)) and e.errno == errno.EPIPE


def run(tool, args, plugins, out=None, err=None, host=None):
    """Run a parsed tool invocation.  Returns the exit status; raises
    KerntraceError for failures the caller prints as one line."""
    out = out or sys.stdout
    err = err or sys.stderr
    listed = variants(tool, args)
    host = host or Host(stderr=err)
    requested = getattr(args, "backend", "auto")
    input_file = getattr(args, "input_file", None)
    if input_file:
        requested = _replaying_backend(plugins.backends(), requested)
        # The one route of --input to a backend: its check() plans a replay
        # of host.saved_trace, and open() follows the verdict's plan.
        host.saved_trace = open_saved_trace(input_file)
    options = RunOptions(tool=tool.name, buffer_kb=getattr(args, "buffer_kb", None),
                         stderr=err,
                         verbose=bool(getattr(args, "explain", False)))
    backends = plugins.backends()
    choice = choose(tool, args, backends, host, requested,
                    hook=plugins.pm.hook.kerntrace_select_backend, listed=listed,
                    options=options)
    selection, measurement = choice.selection, choice.measurement
    if getattr(args, "explain", False):
        for line in choice.explain():
            err.write("kerntrace: %s: %s\n" % (tool.name, line))
    for line in selection.explain() if getattr(args, "explain", False) else selection.notices():
        err.write("kerntrace: %s\n" % line)
    if getattr(args, "explain", False):
        for note in tool.best_effort:
            err.write("kerntrace: %s: best-effort: %s\n" % (tool.name, note))
    session = selection.backend.open(measurement, selection.verdict, options)
    if getattr(args, "print_program", False):
        out.write(session.program_text() or "(the %s backend installs no program)\n"
                  % selection.backend.name)
        return 0
    if not input_file:
        cleanup_stale(backends, host, err)
    printer = choose_printer(tool, args, out, err)
    server = _metrics_server(printer, args)
    reporter = None
    current = [session]     # the session to close (a fallback replaces it)
    with SignalsAsStop():
        if _exporter_mode(args):
            signal.signal(signal.SIGHUP, lambda _s, _f: _rewrite(printer, err))
        try:
            try:
                backend = _start(selection, current, measurement, options, err)
                session = current[0]
                hostname, kernel = traced_host(host, input_file)
                ctx = RunContext(tool.name, backend.name, measurement.schedule,
                                 hostname=hostname, kernel=kernel, args=args,
                                 formatters=tool.formatters(args), measurement=measurement,
                                 variant=choice.variant if choice.variant.name else None,
                                 replay=bool(input_file))
                reporter = _Reporter(session, printer, ctx, tool.name, backend.name,
                                     Lookups(measurement), combine=tool.combiner(args))
                printer.start(ctx)
                with _set_up_kept():
                    _loop(session, measurement, reporter)
            except Stop:
                if reporter is None:
                    return _status(current)  # stopped while attaching: nothing was traced
                # Ctrl-C/SIGTERM: print what the unfinished interval saw.  A
                # second signal while doing that aborts the printing only.
                try:
                    session.stop_recording()
                    reporter.emit(final=True)
                except Stop:
                    pass
            try:
                printer.finish(ctx)
            except Stop:
                pass
        except (IOError, OSError) as e:
            if not _is_epipe(e):
                raise
            silence_stdout()
        finally:
            with SignalsIgnored():
                current[0].close()
                if server is not None:
                    server.stop()
    return _status(current)


def _exporter_mode(args):
    return bool(getattr(args, "prometheus_file", None)
                or getattr(args, "prometheus_listen", None)) and hasattr(signal, "SIGHUP")


def _metrics_server(printer, args):
    """The /metrics server of --prometheus-listen, listening (so a port in
    use fails the run before it touches the kernel), or None."""
    address = getattr(args, "prometheus_listen", None)
    if not address:
        return None
    from .output.promserver import MetricsServer
    return MetricsServer(printer, address).start()


def _rewrite(printer, err):
    """SIGHUP in exporter mode: write the textfile again, now."""
    try:
        printer.rewrite()
    except KerntraceError as e:
        err.write("kerntrace: %s\n" % one_line(e))


def _status(current):
    """0, or 1 when close() could not undo everything (it said what)."""
    return 1 if current[0].unrestored else 0


def traced_host(host, input_file):
    """(host name, kernel release) of the machine whose events are shown:
    this one for a live run; for a replay what the recording says it was
    made on, or ("", "") for a plain trace file, which does not say.  A
    replay never passes the replaying machine off as the traced one."""
    if not input_file:
        return host.hostname, host.kernel_release
    meta = host.saved_trace.meta
    return meta.get("hostname", ""), meta.get("release", "")


def cleanup_stale(backends, host, err):
    """Every run first removes what killed kerntrace runs left, whichever
    backend it will trace with: an ftrace instance of a SIGKILLed run keeps
    tracing until someone removes it."""
    if not host.is_root():
        return
    for b in backends:
        try:
            b.cleanup_stale(host, stderr=err)
        except Exception as e:  # never keeps the run from starting
            err.write("kerntrace: %s: cleaning up after killed runs failed: %s\n"
                      % (b.name, one_line(e)))


def _replaying_backend(backends, requested):
    """The backend that replays --input: the one requested, or the
    preferred one that replays saved traces."""
    replaying = [b for b in backends if b.replays]
    if not replaying:
        raise Unsupported("--input: no installed backend replays saved traces")
    if requested == "auto":
        return replaying[0].name
    if requested not in [b.name for b in replaying]:
        raise Unsupported("--input replays a saved trace (%s); it needs --backend %s"
                          % (replaying[0].replays, replaying[0].name))
    return requested


def _start(selection, current, measurement, options, err):
    """Start the chosen backend's (already opened) session, current[0].
    With --backend auto, a backend whose start fails although its check()
    passed (a program the verifier rejects, an attach the kernel refuses)
    hands over to the next backend that can run the tool, saying so on
    stderr; current[0] is then that backend's session.  Returns the backend
    whose session started (a failed session has closed itself)."""
    backend = selection.backend
    following = list(selection.alternatives)
    while True:
        try:
            current[0].__enter__()
            return backend
        except EnableError as e:
            if not following:
                raise
            nxt = following.pop(0)
            err.write("kerntrace: %s: cannot start: %s; running on %s instead\n"
                      % (backend.name, one_line(e, "failed"), nxt.name))
            backend = nxt
            current[0] = backend.open(measurement, selection.verdicts[backend.name], options)


def silence_stdout():
    """stdout's reader went away (| head): make later flushes harmless."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _Reporter(object):
    """Turns each collect() into a numbered Report with its wall-clock
    interval and hands it to the printer."""

    def __init__(self, session, printer, ctx, tool, backend, lookups=None, combine=None):
        self.session, self.printer, self.ctx = session, printer, ctx
        self.lookups = lookups
        self.combine = combine
        self.tool, self.backend = tool, backend
        self.seq = 0
        self.last_wall = ctx.started

    def emit(self, final=False):
        report = self.session.collect()
        if self.lookups:
            self.lookups.apply(report.data)
        # (after the lookups: a tool's combiner joins complete records)
        if self.combine is not None and isinstance(report.data, list):
            report.data = self.combine(report.data)
        report.tool, report.backend = self.tool, self.backend
        report.seq = self.seq
        report.start = self.last_wall
        report.end = time.time()
        self.last_wall = report.end
        self.seq += 1
        if (final and isinstance(report.data, list) and not report.data and not report.lost
                and not report.dropped_starts):
            return report
        self.printer.report(report, self.ctx)
        try:
            self.printer.out.flush()
        except AttributeError:
            pass
        return report


def _replay_loop(session, measurement, reporter):
    count = measurement.schedule.count
    n = 0
    while not session.finished:
        session.wait(0)
        reporter.emit()
        n += 1
        if count and n >= count and measurement.aggregate.kind != "records":
            return


class _set_up_kept(object):
    """While tracing: what the set-up made (modules, formats, generated
    handlers, the tool) lives until the run ends, so the cyclic garbage
    collector is told not to scan it again (gc.freeze, Python 3.7+).  Under
    a flood every event makes objects, and each collection of the oldest
    generation walked all of it: about 7% of opensnoop's CPU on ftrace.
    Undone when the loop ends (a library caller runs on)."""

    def __enter__(self):
        self.unfreeze = getattr(gc, "unfreeze", None)
        if self.unfreeze is not None:
            getattr(gc, "freeze")()
        return self

    def __exit__(self, *exc):
        if self.unfreeze is not None:
            self.unfreeze()
        return False


def _loop(session, measurement, reporter):
    if session.replay:
        return _replay_loop(session, measurement, reporter)
    sched = measurement.schedule
    records = measurement.aggregate.kind == "records"
    period = RECORD_FLUSH_S if records else sched.interval
    t0 = time.monotonic()
    end = t0 + sched.duration if sched.duration else None
    n = 0
    next_at = t0
    while True:
        next_at += period
        if end is not None and next_at > end:
            next_at = end
        while True:
            raise_pending()
            now = time.monotonic()
            if now >= next_at:
                break
            if session.wait(next_at - now) and records:
                # A batch is waiting: print it now (and start the period
                # again), so records never pile up faster than they print.
                next_at = time.monotonic()
                break
        last = ((end is not None and time.monotonic() >= end)
                or (not records and sched.count and n + 1 >= sched.count))
        if last:
            session.stop_recording()
        reporter.emit()
        n += 1
        if last:
            return
