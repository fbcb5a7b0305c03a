"""The printer interface the runner drives."""

import time


class RunContext(object):
    """What a printer may need to know about the run (not about the backend's
    internals): tool and backend names, the schedule, host identity, and the
    tool's field formatters (Tool.formatters(args)); the measurement that
    runs, the Variant it came from (core.variants; None for a tool with one
    measurement) and whether the run replays a recording."""

    def __init__(self, tool, backend, schedule, hostname="", kernel="", args=None,
                 formatters=None, measurement=None, variant=None, replay=False):
        self.tool = tool
        self.measurement = measurement
        self.variant = variant
        self.replay = bool(replay)
        # field name -> callable(value) -> str, for labels (dev -> "vda")
        self.formatters = dict(formatters or {})
        self.backend = backend
        self.schedule = schedule
        self.hostname = hostname
        self.kernel = kernel
        self.args = args
        self.started = time.time()


class Printer(object):
    """Receives reports and writes them.  Data goes to `out` (stdout);
    banners and notices to `err` (stderr) unless a drop-in format says
    otherwise."""

    def __init__(self, out, err):
        self.out = out
        self.err = err

    def start(self, ctx):
        """Called once tracing is live (banner)."""

    def report(self, report, ctx):
        """Called with each core.results.Report."""
        raise NotImplementedError

    def finish(self, ctx):
        """Called once at the end (count reached, duration over, Ctrl-C)."""

    def lost(self, report, ctx):
        """Lost-event notices; default: one line each on stderr.  The
        kernel dropped the lost ones: a buffer overran, or it skipped a BPF
        program."""
        if report.lost:
            self.err.write("WARNING: %d events lost in this interval (dropped by the kernel)\n"
                           % report.lost)
        if report.dropped_starts:
            self.err.write("WARNING: %d starts dropped in this interval (too many waiting for "
                           "their end, nested too deep, or their thread exited)\n"
                           % report.dropped_starts)


class MachineReadablePrinter(Printer):
    """Base of the JSON and Prometheus printers: stdout carries only data, so
    the one human line that says tracing is live goes to stderr (scripts
    wait for it before starting a workload)."""

    def start(self, ctx):
        self.err.write("Tracing with %s on the %s backend. Ctrl-C to end.\n"
                       % (ctx.tool, ctx.backend))
        try:
            self.err.flush()
        except AttributeError:
            pass


def time_line(when=None, colon=True):
    """HH:MM:SS (local time) as -T prints it; perf-tools adds a colon."""
    s = time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time()))
    return s + (":" if colon else "")


# ---------------------------------------------------------------------------
# Helpers shared by the printers (added for the output layer).

def as_text(value):
    """`value` as str: bytes decoded as UTF-8 (bad bytes replaced, so a task
    name or path with invalid UTF-8 never stops the output), others str()."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def terminal_text(text):
    """`text` safe to write to a terminal: every character that is not
    printable (newline, tab, ESC and other control characters, Unicode
    format characters such as bidi overrides) becomes "?", as ps(1) shows
    task names.  One character stays one character, so columns still line
    up.  The text printers pass everything they print from the kernel (task
    names, labels, any string field) through it; JSON and Prometheus escape
    in their own syntax instead."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def field_label(ctx, name, value):
    """How every output format shows a value of field `name`: the tool's
    formatter for it when there is one (dev -> "vda"), else the value itself;
    "-" for a value nobody knows (None), never "None".
    A formatter that fails on an unexpected value falls back to the raw value:
    a label is not worth a traceback in the middle of a run."""
    if value is None:
        return "-"          # unknown (a process id nobody had): as tables show it
    formatters = getattr(ctx, "formatters", None) or {}
    fmt = formatters.get(name) if name is not None else None
    if fmt is not None:
        try:
            return as_text(fmt(value))
        except Exception:
            pass
    return as_text(value)


def _sortable(part):
    if part is None:
        return (0, 0)
    if isinstance(part, (int, float)):
        return (1, part)
    if isinstance(part, str):
        return (2, part)
    if isinstance(part, bytes):
        return (3, part)
    return (4, repr(part))


def key_order(key):
    """Sort key for result keys whose parts may mix types (None, numbers,
    strings), which plain sorted() refuses on Python 3."""
    if not isinstance(key, tuple):
        key = (key,)
    return tuple(_sortable(p) for p in key)
