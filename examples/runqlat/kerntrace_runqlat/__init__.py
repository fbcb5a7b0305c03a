"""kerntrace-runqlat: a kerntrace tool plugin (entry-point group
kerntrace.plugins, see setup.cfg)."""

from .kerntrace_api import KERNTRACE_API_VERSION, hookimpl
from .runqlat import RunqLat

__all__ = ["KERNTRACE_API_VERSION", "kerntrace_tools"]


@hookimpl
def kerntrace_tools():
    """The tools this plugin adds to kerntrace."""
    return [RunqLat()]
