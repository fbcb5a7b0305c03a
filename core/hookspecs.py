"""The kerntrace hook specifications (pluggy project name "kerntrace").

Built-in tools and backends register through these same hooks; third-party
packages do so from the entry-point group `kerntrace.plugins` (ENTRY_POINT_GROUP).
"""

import pluggy

PROJECT = "kerntrace"
ENTRY_POINT_GROUP = "kerntrace.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kerntrace_tools():
    """Return a list of core.tool.Tool instances this plugin provides."""


@hookspec
def kerntrace_backends():
    """Return a list of core.backend.Backend instances this plugin provides."""


@hookspec(firstresult=True)
def kerntrace_select_backend(tool, measurement, verdicts, requested):
    """Pick the backend for a run: return the name of one whose verdict is ok,
    or None to let the next implementation (finally the built-in preference
    order) decide.  `verdicts` maps backend name -> core.backend.Verdict."""
