"""The kerntrace hook specifications (pluggy project name "kerntrace").

Every tool and backend, built-in or not, is a plugin: an object (usually a
module) named by an entry point in the group `kerntrace.plugins`
(ENTRY_POINT_GROUP) that implements some of these hooks with `hookimpl`.
Plugin authors import all of this from kerntrace.core.api.
"""

import pluggy

PROJECT = "kerntrace"
ENTRY_POINT_GROUP = "kerntrace.plugins"

# The version of the plugin API (kerntrace.core.api), "MAJOR.MINOR".  A
# plugin declares the version it was written for as a module attribute
# KERNTRACE_API_VERSION (none declared: "1.0", the first).  It loads when
# the major versions are equal and its minor is at most this one's: minors
# only add names, a new major removes or changes some.
API_VERSION = "1.2"
# The minor that added each name to kerntrace.core.api after "1.0": a
# plugin importing one declares at least that version.
API_NAMES_SINCE = {"Metric": "1.1", "Usdt": "1.1", "KSTACK": "1.1", "usdt_probes": "1.1",
                   "top_value": "1.2"}
API_VERSION_ATTRIBUTE = "KERNTRACE_API_VERSION"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kerntrace_tools():
    """Return the tools this plugin provides: a list of
    kerntrace.core.api.Tool instances, each with a unique `name` (the
    command: `kerntrace NAME` and, with a console script, `NAME`).  Called
    once per command; a tool whose name an earlier plugin (a built-in
    first) already registered is ignored with a warning."""


@hookspec
def kerntrace_backends():
    """Return the backends this plugin provides: a list of
    kerntrace.core.backend.Backend instances, each with a unique `name`
    (what --backend NAME selects).  `--backend auto` tries them in order of
    their `preference` (lower first)."""


@hookspec(firstresult=True)
def kerntrace_select_backend(tool, measurement, verdicts, requested):
    """Pick the backend for a run: return the name of one whose verdict is ok,
    or None to let the next implementation (finally the built-in preference
    order) decide.  `verdicts` maps backend name -> core.backend.Verdict;
    `requested` is the --backend value ("auto" or a name)."""
