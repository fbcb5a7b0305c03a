"""Console scripts: `kerntrace` and one per built-in tool (setup.cfg
[options.entry_points]).

Ctrl-C while Python is still importing kerntrace would print a
KeyboardInterrupt traceback from whatever module was loading.  Nothing is
traced yet then, so each entry point first makes the stop signals end the
process quietly (status 130), imports, and only then hands the signals to
the CLI's own handling.
"""

import os
import signal

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
    import sys
    sys.exit(_cli().main())


def tpcount():
    _cli().tool_main("tpcount")


def iolatency():
    _cli().tool_main("iolatency")


def biolatency():
    _cli().tool_main("biolatency")


def biosnoop():
    _cli().tool_main("biosnoop")


def iosnoop():
    _cli().tool_main("iosnoop")


def bitesize():
    _cli().tool_main("bitesize")


def opensnoop():
    _cli().tool_main("opensnoop")


def as_invoked():
    """Entry point of the single-file build (kerntrace.pyz, see
    scripts/build-zipapp): it acts as the command it is invoked as, so a
    symlink or copy named iolatency is iolatency.  A name starting with
    "kerntrace" (kerntrace, kerntrace.pyz) is the kerntrace command; any
    other is taken as a tool's name."""
    import sys
    name = os.path.basename(sys.argv[0])
    if name.endswith(".pyz"):
        name = name[:-len(".pyz")]
    if name.startswith("kerntrace"):
        kerntrace()
    _cli().tool_main(name)
