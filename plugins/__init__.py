"""Built-in tool plugins.  They register through the same hook third-party
plugins use (kerntrace_tools)."""

from kerntrace.core.hookspecs import hookimpl


@hookimpl
def kerntrace_tools():
    from . import tpcount
    from . import biolatency, biosnoop, bitesize, iolatency, iosnoop
    from . import opensnoop
    tools = [tpcount.TpCount(),
             iolatency.IoLatency(), biolatency.BioLatency(), biosnoop.BioSnoop(),
             iosnoop.IoSnoop(), bitesize.BiteSize(), opensnoop.OpenSnoop()]
    return tools
