"""The printer interface the runner drives."""

import time


class RunContext(object):
    """What a printer may need to know about the run (not about the backend's
    internals): tool and backend names, the schedule, host identity, and the
    tool's field formatters (Tool.formatters(args))."""

    def __init__(self, tool, backend, schedule, hostname="", kernel="", args=None,
                 formatters=None):
        self.tool = tool
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
        """Lost-event notice; default: one line on stderr."""
        if report.lost:
            self.err.write("WARNING: %d events lost in this interval (kernel buffer overrun)\n"
                           % report.lost)


def time_line(when=None, colon=True):
    """HH:MM:SS (local time) as -T prints it; perf-tools adds a colon."""
    s = time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time()))
    return s + (":" if colon else "")
