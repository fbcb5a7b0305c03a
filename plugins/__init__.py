"""Built-in tool plugins.  They register through the same hook third-party
plugins use (kerntrace_tools)."""

from kerntrace.core.hookspecs import hookimpl


@hookimpl
def kerntrace_tools():
    from . import tpcount
    tools = [tpcount.TpCount()]
    return tools
