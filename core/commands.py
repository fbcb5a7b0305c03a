"""Console scripts, one per built-in tool (setup.cfg [options.entry_points])."""

from .cli import tool_main


def tpcount():
    tool_main("tpcount")


def iolatency():
    tool_main("iolatency")


def biolatency():
    tool_main("biolatency")


def biosnoop():
    tool_main("biosnoop")


def iosnoop():
    tool_main("iosnoop")


def bitesize():
    tool_main("bitesize")
