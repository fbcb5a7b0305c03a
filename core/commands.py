"""Console scripts: `kerntrace`, and `tool` for every tool's own command
(setup.cfg [options.entry_points]: `iolatency = kerntrace.core.commands:tool`;
a third-party tool's package may do the same).

Ctrl-C while Python is still importing kerntrace would print a
KeyboardInterrupt traceback from whatever module was loading.  Nothing is
traced yet then, so each entry point first makes the stop signals end the
process quietly (status 130), imports, and only then hands the signals to
the CLI's own handling.
"""

import os
import signal
import sys

from .stopsignals import STOP_SIGNALS     # (imports nothing but signal)


def _exit_interrupted(_signum, _frame):
    os._exit(130)


def _cli():
    saved = {s: signal.signal(s, _exit_interrupted) for s in STOP_SIGNALS}
    from . import cli
    for s, h in saved.items():
        signal.signal(s, h)
    return cli


def kerntrace():
    sys.exit(_cli().main())


def invoked_name():
    """The name this process was invoked as: the script's file name, less
    a .pyz suffix."""
    name = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    if name.endswith(".pyz"):
        name = name[:-len(".pyz")]
    return name


def tool():
    """Entry point of every tool's console script: runs the tool named like
    the script (a script `iolatency` is `kerntrace iolatency`)."""
    _cli().tool_main(invoked_name())


def as_invoked():
    """Entry point of the single-file build (kerntrace.pyz, see
    scripts/build-zipapp): it acts as the command it is invoked as, so a
    symlink or copy named iolatency is iolatency.  A name starting with
    "kerntrace" (kerntrace, kerntrace.pyz) is the kerntrace command; any
    other is taken as a tool's name."""
    if invoked_name().startswith("kerntrace"):
        kerntrace()
    tool()
