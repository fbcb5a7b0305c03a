"""What a tool plugin is, and the helpers its command line uses.

A tool declares its command line, its measurement and its printer; it never
knows which backend runs it.  A minimal plugin module (see
plugins/tpcount.py), named by an entry point in the `kerntrace.plugins`
group:

    from kerntrace.core.api import (Count, CountTablePrinter, Event, Measurement,
                                    Tool, Tracepoint, hookimpl, report_every,
                                    seconds_value)

    KERNTRACE_API_VERSION = "1.0"

    class MyTool(Tool):
        name = "mytool"
        summary = "Count block I/O issues per process."
        examples = [("mytool 5", "count for 5 seconds")]

        def add_arguments(self, parser):
            parser.add_argument("duration", nargs="?", type=seconds_value, default=1)

        def measurement(self, args):
            return Measurement(events=[Event("issue", Tracepoint("block", "block_rq_issue"))],
                               aggregate=Count(keys=("comm",)),
                               schedule=report_every(args.duration, count=1))

        def printer(self, args, out, err):
            return CountTablePrinter(out, err, key_header="COMM")

    @hookimpl
    def kerntrace_tools():
        return [MyTool()]
"""

import argparse
import re

from .backend import MAX_BUFFER_KB
from .errors import OptionError, UsageError, shown
from .model import Schedule
from .metrics import MAX_SERIES

# --backend: "auto" or an installed backend's name (built-in or a plugin's),
# checked against the installed ones when the backend is selected.
_BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")


def seconds_value(text, what="interval"):
    """An interval or duration: seconds > 0, fractions accepted (not inf
    or nan)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        v = None
    if v is None or not v > 0 or v == float("inf"):
        raise UsageError("invalid %s %r: expected a number of seconds > 0" % (what, text))
    return v


def count_value(text):
    """A count: a whole number >= 0 (0: until Ctrl-C)."""
    try:
        v = int(text)
    except (TypeError, ValueError):
        v = -1
    if v < 0:
        raise UsageError("invalid count %r: expected a whole number >= 0" % (text,))
    return v


def top_value(text):
    """How many rows a top-N table shows (-t/-T TOP): a whole number > 0."""
    try:
        v = int(text)
    except (TypeError, ValueError):
        v = 0
    if v < 1:
        raise UsageError("invalid top %r: expected a whole number > 0" % (shown(text),))
    return v


# PIDs are below pid_max, at most PID_MAX_LIMIT (include/linux/threads.h, 64-bit).
PID_MAX_LIMIT = 4 * 1024 * 1024


def pid_value(text):
    """A process id: ASCII digits, 0 < PID < PID_MAX_LIMIT."""
    # ASCII digits only: str.isdigit() also accepts "\u00b2", which int() refuses.
    if (not isinstance(text, str) or not re.match(r"^[0-9]{1,10}\Z", text)
            or not 0 < int(text) < PID_MAX_LIMIT):
        raise UsageError("invalid PID %r" % (text,))
    return int(text)


# bcc's "no interval" (99999999 seconds, three years): a run that reports
# once, when Ctrl-C (or a duration) ends it.
FOREVER = 99999999


def report_at_end(count=0):
    """The Schedule of a tool that prints one report when the run ends."""
    return Schedule(interval=FOREVER, count=count)


def report_every(interval, count=0, duration=None):
    """The Schedule of `interval` seconds, `count` times (0: until Ctrl-C),
    for at most `duration` seconds; interval None: one report at the end
    (report_at_end), as bcc's tools do when given no interval."""
    if interval is None:
        return Schedule(interval=FOREVER, count=count, duration=duration)
    return Schedule(interval=interval, count=count, duration=duration)


def buffer_kb(text):
    """argparse type of --buffer-kb (RunOptions checks the same range)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= MAX_BUFFER_KB:
        raise OptionError("--buffer-kb must be a positive number of KB, at most %d, got %r"
                         % (MAX_BUFFER_KB, text))
    return value


_LISTEN = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):([0-9]{1,5})\Z")


def listen_address(text):
    """argparse type of --prometheus-listen: [HOST]:PORT or PORT (every
    IPv4 address), HOST a name, IPv4 or [IPv6] address -> (host, port)."""
    text = text or ""
    if re.match(r"^[0-9]{1,5}\Z", text):
        text = ":" + text
    m = _LISTEN.match(text)
    port = int(m.group(3)) if m else -1
    if not 0 <= port <= 65535:
        raise OptionError("--prometheus-listen must be [HOST]:PORT or PORT, got %r" % (text,))
    return (m.group(1) or m.group(2) or "", port)


def max_series(text):
    """argparse type of --prometheus-max-series."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise OptionError("--prometheus-max-series must be a whole number >= 1, got %r"
                          % (text,))
    return value


def backend_name(text):
    """argparse type of --backend."""
    if not _BACKEND_NAME.match(text or ""):
        raise OptionError("--backend must be auto or an installed backend's name, got %r"
                         % (text,))
    return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of
    printing usage and exiting itself.  The message does not name the
    program: whoever prints it does ("biosnoop: unrecognized ...")."""

    def error(self, message):
        raise UsageError(message)


def add_common_arguments(parser):
    g = parser.add_argument_group("kerntrace options")
    g.add_argument("--backend", type=backend_name, default="auto", metavar="NAME",
                   help="auto (default: the best this host allows), ebpf, ftrace, or a "
                        "plugin's backend")
    g.add_argument("--json", action="store_true",
                   help="print JSON lines (one object per interval or event)")
    g.add_argument("--prometheus", action="store_true",
                   help="print Prometheus text exposition format")
    g.add_argument("--prometheus-file", metavar="PATH",
                   help="write the Prometheus exposition atomically to PATH each interval "
                        "(node_exporter textfile collector) instead of stdout")
    g.add_argument("--openmetrics", action="store_true",
                   help="OpenMetrics text instead of Prometheus text (alone: on stdout)")
    g.add_argument("--prometheus-listen", type=listen_address, metavar="[HOST]:PORT",
                   help="serve the exposition at http://HOST:PORT/metrics while tracing "
                        "(exporter mode; SIGHUP rewrites --prometheus-file)")
    g.add_argument("--prometheus-max-series", type=max_series, metavar="N",
                   default=MAX_SERIES,
                   help="label sets per metric at most; further ones fold into label "
                        "value \"other\" (default %d)" % MAX_SERIES)
    g.add_argument("--print-program", action="store_true",
                   help="print what the backend would install (BPF C, tracefs writes) and exit")
    g.add_argument("--input", metavar="FILE", dest="input_file",
                   help="replay a recording (kerntrace record) or a saved trace file "
                        "instead of tracing live")
    g.add_argument("--buffer-kb", type=buffer_kb, metavar="KB",
                   help="per-CPU event buffer size: the ftrace instance's buffer; on eBPF "
                        "the perf buffer (or ring buffer, CPUs x KB) carrying event records")
    g.add_argument("--explain", action="store_true",
                   help="say on stderr which backend was chosen and why")


class Tool(object):
    name = None
    summary = ""
    description = ""
    # (command line, what it does) pairs shown by -h
    examples = ()
    # Arguments `kerntrace doctor` uses to build a representative measurement
    # (for tools whose positional arguments are required).
    sample_args = ()
    # What the tool reads after the fact on every backend (from /proc, say),
    # one phrase each: --explain and `kerntrace doctor` say so.
    best_effort = ()
    # What the tool measures, named for Prometheus (core.metrics.Metric):
    # None exposes it under the tool's own name.
    metric = None
    # Options (one option string each, e.g. "-D") that change how a report
    # prints or what it is keyed by, never which events are traced:
    # `kerntrace merge` takes them to print merged --json output as the tool
    # does with them (API 1.2).
    display_options = ()

    def add_arguments(self, parser):
        """Add the tool's own options to an argparse parser."""

    def build_parser(self, prog=None):
        epilog = ""
        if self.examples:
            width = max(len(c) for c, _ in self.examples)
            epilog = "examples:\n" + "\n".join(
                "    %-*s  # %s" % (width, c, d) for c, d in self.examples)
        parser = ArgumentParser(prog=prog or self.name, description=self.summary + (
            "\n\n" + self.description if self.description else ""),
            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.add_arguments(parser)
        add_common_arguments(parser)
        return parser

    def parse_args(self, argv, prog=None):
        """Return an argparse.Namespace that has at least the common options
        (backend, json, prometheus, print_program, input_file, buffer_kb,
        explain).  Tools with a legacy command line override this."""
        return self.build_parser(prog).parse_args(argv)

    def measurement(self, args):
        raise NotImplementedError

    def show(self, args, out, err):
        """A mode that traces nothing (tpoint -l lists tracepoints, -v
        prints a format file): write to `out` and return the exit status.
        None (the default): trace as usual."""
        return None

    def printer(self, args, out, err):
        raise NotImplementedError

    def formatters(self, args):
        """Field name -> callable(value) -> str used for labels in every
        output format (e.g. {"dev": disk_name}).  Default: none."""
        return {}

    def combiner(self, args):
        """None, or a callable(list of Record) -> list of Record applied to
        each report's records before any printer (table, JSON, Prometheus)
        sees them: a tool whose rows join several events (execsnoop: an exec
        and its return; exitsnoop: an exit and the exit code or signal that
        came before it) keeps its state there, backend-independent.  It runs
        on --input replays too, so a recording holds the events, not rows."""
        return None

    # Optional, for drop-in tools with their own error wording:
    #   format_error(exc) -> list of lines, or None for the default one line
    #   exit_status_for(exc) -> int

    def self_check(self):
        """Why this tool object is unusable, or None (checked at plugin load)."""
        for attr in ("measurement", "printer"):
            if getattr(type(self), attr) is getattr(Tool, attr):
                return "tool %r does not define %s()" % (self.name, attr)
        if not isinstance(self.summary, str) or not self.summary:
            return "tool %r has no summary" % (self.name,)
        return None
