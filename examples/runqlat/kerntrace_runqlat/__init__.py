"""kerntrace-runqlat: a kerntrace tool plugin (entry-point group
kerntrace.plugins, see setup.cfg)."""

from .kerntrace_api import hookimpl, tool_main
from .runqlat import RunqLat


@hookimpl
def kerntrace_tools():
    """The tools this plugin adds to kerntrace."""
    return [RunqLat()]


def main():
    """The `runqlat` console script: the same as `kerntrace runqlat`."""
    tool_main(RunqLat.name)
