"""kerntrace's pytest plugin: the `kerntrace_offline` fixture, for testing a
tool plugin without root or a kernel.

Installing kerntrace registers this module with pytest (setup.cfg, entry
point group pytest11), so a plugin's tests use the fixture without any
import or conftest.py:

    def test_replays_the_recording(kerntrace_offline):
        run = kerntrace_offline.replay("runqlat", "tests/data/sleeper.rec")
        assert run.report.unmatched == 0

pytest loads this module in every run where kerntrace is installed, also
runs that never use the fixture: it imports nothing of kerntrace until a
test asks for the fixture.  Disable it with `pytest -p no:kerntrace`.
"""

import pytest


class Offline(object):
    """What the kerntrace_offline fixture gives a test (kerntrace.core.testing
    documents the functions):

    replay(tool, trace, *args, check=True, no_plugins=False)
        run a tool (name or Tool object) with its command-line args on a
        recording (`kerntrace record`) or a plain ftrace `trace` file, as
        `TOOL ARGS --input TRACE`; a ReplayResult (status, reports, out, err)
    evaluate(measurement, stream)
        the reference evaluator (core.semantics): the Reports of a
        time-ordered stream of TraceEvent, Lost and IntervalEnd
    TraceEvent, Lost, IntervalEnd
        the items of such a stream
    tool(name)
        the installed tool of that name
    measurement(tool, *args)
        the Measurement a tool (name or Tool object) builds from a command line
    """

    def __init__(self):
        from kerntrace.core import testing
        self.replay = testing.replay
        self.evaluate = testing.evaluate
        self.TraceEvent = testing.TraceEvent
        self.Lost = testing.Lost
        self.IntervalEnd = testing.IntervalEnd
        self._tools = None

    def tool(self, name):
        if self._tools is None:
            from kerntrace.core.pluginhost import PluginHost
            self._tools = PluginHost().tools()
        if name not in self._tools:
            raise LookupError("no tool %r is installed (installed: %s)"
                              % (name, ", ".join(sorted(self._tools))))
        return self._tools[name]

    def measurement(self, tool, *args):
        if isinstance(tool, str):
            tool = self.tool(tool)
        return tool.measurement(tool.parse_args([str(a) for a in args], prog=tool.name))


@pytest.fixture
def kerntrace_offline():
    """Run kerntrace tools without root or a kernel: replay(tool, trace,
    *args) on a recorded trace, evaluate(measurement, stream) on events
    written by hand (see kerntrace.core.pytest_plugin.Offline)."""
    return Offline()
