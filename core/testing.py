"""Testing a tool without root or a kernel: run it on a saved trace, or
evaluate its Measurement on events written by hand.

    run = replay("runqlat", "tests/data/sleeper.rec", "-L")
    run.reports      # the core result types (Report), one per interval
    run.out          # what the tool printed on stdout (stderr: run.err)

    reports = evaluate(measurement, [TraceEvent("issue", ts=1000, fields={...}),
                                     TraceEvent("done", ts=5000, fields={...})])

replay() goes the way `TOOL --input FILE` goes (core.runner, the backend
that replays saved traces), so what it returns is what a user of the
command would see; evaluate() is core.semantics, the model's
specification.  Plugin authors get both from kerntrace.core.api and, in
pytest, through the `kerntrace_offline` fixture (core/pytest_plugin.py).

This module is imported by kerntrace.core.api, so it imports nothing at
load beyond core.semantics: the runner and plugin host come when used.
"""

import argparse
import io

from .semantics import IntervalEnd, Lost, TraceEvent, evaluate

__all__ = ["replay", "ReplayResult", "ReplayFailed", "evaluate", "TraceEvent", "Lost",
           "IntervalEnd"]

# The output options that replace a tool's printer (core.runner.choose_printer).
_PRINTER_OPTIONS = ("json", "prometheus", "prometheus_file", "prometheus_listen", "openmetrics")


class ReplayFailed(AssertionError):
    """A replay that exited non-zero (replay(check=True)): the message holds
    the exit status and what the tool wrote on stderr."""


class ReplayResult(object):
    """What one replay gave.

    status   the exit status the command would have had (0, 1 or 2)
    reports  the core.results.Report of each interval, in order, as the
             printer received them (tool and backend names set)
    out      what the tool printed on stdout: its own format, or JSON
             lines / Prometheus text with --json / --prometheus
    err      what it printed on stderr (banner, warnings, errors)
    """

    __slots__ = ("status", "reports", "out", "err")

    def __init__(self, status, reports, out, err):
        self.status = status
        self.reports = reports
        self.out = out
        self.err = err

    @property
    def report(self):
        """The one Report of a run that made exactly one (a tool that
        reports once at the end); an AssertionError otherwise."""
        if len(self.reports) != 1:
            raise AssertionError("expected one report, the replay made %d"
                                 % len(self.reports))
        return self.reports[0]

    def __repr__(self):
        return "ReplayResult(status=%d, %d reports)" % (self.status, len(self.reports))


def replay(tool, trace, *args, **kwargs):
    """Run `tool` (its name, or a Tool object) with command-line `args` on
    `trace`: a recording made by `kerntrace record`, or a plain ftrace
    `trace` text file (decoded with kerntrace's stored formats), exactly as
    `TOOL ARGS --input TRACE` would.  Returns a ReplayResult.

    Keyword arguments:
      check=True     raise ReplayFailed when the exit status is not 0
      no_plugins=False
                     load only kerntrace's own plugins (a tool given by
                     name must then be a built-in)

    Nothing touches the kernel: --input replays from the file, so neither
    root nor tracefs is needed.  A tool that is broken (an InvalidSpec) or
    a bug (any other exception) raises here with its traceback, where the
    command would print one line."""
    check = kwargs.pop("check", True)
    no_plugins = kwargs.pop("no_plugins", False)
    if kwargs:
        raise TypeError("replay() got unexpected keyword arguments: %s"
                        % ", ".join(sorted(kwargs)))
    from .cli import _fail
    from .errors import KerntraceError
    from .pluginhost import PluginHost
    from .runner import run
    out, err = io.StringIO(), io.StringIO()
    plugins = PluginHost(load_third_party=not no_plugins, warn=err)
    tool = _tool(plugins, tool)
    argv = [str(a) for a in args] + ["--input", str(trace)]
    reports = []
    try:
        parsed = tool.parse_args(argv, prog=tool.name)
        status = run(_ReportKeeping(tool, parsed, reports), _without_printer_options(parsed),
                     plugins, out=out, err=err)
    except KerntraceError as e:
        status = _fail(tool, err, e)
    result = ReplayResult(status, reports, out.getvalue(), err.getvalue())
    if check and status != 0:
        raise ReplayFailed("%s %s exited with status %d:\n%s" % (
            tool.name, " ".join(argv), status, result.err.rstrip()))
    return result


def _tool(plugins, tool):
    """The Tool object for `tool` (a name: from the installed plugins)."""
    if not isinstance(tool, str):
        return tool
    tools = plugins.tools()
    if tool not in tools:
        raise LookupError("no tool %r is installed (installed: %s)"
                          % (tool, ", ".join(sorted(tools))))
    return tools[tool]


def _without_printer_options(args):
    """A copy of the parsed command line with the output options off: the
    runner then asks the tool for its printer, which _ReportKeeping makes
    (the printer those options choose, keeping each Report)."""
    copy = argparse.Namespace(**vars(args))
    for name in _PRINTER_OPTIONS:
        if hasattr(copy, name):
            setattr(copy, name, None if name.startswith("prometheus_") else False)
    return copy


class _ReportKeeping(object):
    """The tool as the runner sees it: itself in every respect but its
    printer, which also keeps the Reports it is given."""

    def __init__(self, tool, args, reports):
        self._tool = tool
        self._args = args
        self._reports = reports

    def __getattr__(self, name):
        return getattr(self._tool, name)

    def printer(self, args, out, err):
        from .runner import choose_printer
        return _KeepingPrinter(choose_printer(self._tool, self._args, out, err), self._reports)


class _KeepingPrinter(object):
    """Passes everything to `printer`, keeping each Report on the way."""

    def __init__(self, printer, reports):
        self._printer = printer
        self._reports = reports

    def __getattr__(self, name):
        return getattr(self._printer, name)

    def report(self, report, ctx):
        self._reports.append(report)
        return self._printer.report(report, ctx)
