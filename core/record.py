"""`kerntrace record`: a tool's events, traced on this host for a duration
or until Ctrl-C, written to one file with the format files of the events
(core/recording.py documents the file).  `<tool> --input FILE` replays it,
here or on any other host.

    kerntrace record [-o FILE] [-d SECONDS] [--buffer-kb KB] TOOL [TOOL ARGS]

The tool's arguments choose its events and filters as for a live run; its
intervals and output options do not matter here (the replay chooses them).
"""

import argparse
import time

from . import __version__
from .backend import RunOptions
from .errors import KerntraceError, Unsupported, UsageError
from .host import Host
from .recording import header_text, probe_meta
from .stopsignals import SignalsAsStop, SignalsIgnored, Stop
from .tool import buffer_kb
from .variants import choose, variants

DEFAULT_OUTPUT = "kerntrace.rec"
# How often the trace is copied from the kernel to the file.
PUMP_S = 0.2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser():
    p = _Parser(prog="kerntrace record", description=(
        "Trace a tool's events on this host into one file that carries their format "
        "files; replay it anywhere with `kerntrace TOOL --input FILE`."))
    p.add_argument("-o", "--output", metavar="FILE", default=DEFAULT_OUTPUT,
                   help="where to write the recording (default: %(default)s)")
    p.add_argument("-d", "--duration", metavar="SECONDS", type=_seconds,
                   help="stop after this long (default: at Ctrl-C or SIGTERM)")
    p.add_argument("--buffer-kb", type=buffer_kb, metavar="KB",
                   help="per-CPU size of the ftrace buffer")
    p.add_argument("tool", help="the tool whose events to record (kerntrace list)")
    p.add_argument("tool_args", nargs=argparse.REMAINDER,
                   help="the tool's arguments (its events' filters, e.g. -d DEVICE)")
    return p


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds: %r" % text)
    if not 0 < value <= 366 * 86400:
        raise argparse.ArgumentTypeError("must be between 0 and a year of seconds: %r" % text)
    return value


def record(plugins, argv, err):
    """Run `kerntrace record argv`; the exit status.  Raises KerntraceError
    (one line for the user)."""
    opts = parser().parse_args(argv)
    tools = plugins.tools()
    if opts.tool not in tools:
        raise UsageError("unknown tool %r (kerntrace list shows the installed ones)" % opts.tool)
    tool = tools[opts.tool]
    try:
        args = tool.parse_args(opts.tool_args, prog="kerntrace record %s" % tool.name)
        listed = variants(tool, args)
    except KerntraceError as e:
        # the tool's own words for its command line (perf-tools' usage ...)
        from .cli import _fail
        return _fail(tool, err, e)
    if getattr(args, "input_file", None):
        raise UsageError("record traces this host; --input replays a recording instead")
    backends = [b for b in plugins.backends() if b.records]
    if not backends:
        raise Unsupported("no installed backend can record")
    host = Host(stderr=err)
    from .runner import cleanup_stale
    cleanup_stale(plugins.backends(), host, err)
    options = RunOptions(tool=tool.name, buffer_kb=opts.buffer_kb, stderr=err)
    measurement = listed[0].measurement
    if len(listed) > 1:
        # The first variant (core/variants.py) the recording backend can run.
        measurement = choose(tool, args, backends[:1], host, backends[0].name,
                             listed=listed).measurement
    session = backends[0].open_recording(measurement, host, options)
    meta = {"kerntrace": __version__, "release": host.kernel_release,
            "hostname": host.hostname, "tool": tool.name, "args": opts.tool_args,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = None
    with SignalsAsStop():
        try:
            try:
                session.__enter__()
                clock, formats, header_page, header_event = session.header()
                meta["clock"] = clock
                meta.update(probe_meta(session.probes()))
                out = _create(opts.output)
                out.write(header_text(meta, formats, header_page, header_event).encode("utf-8"))
                err.write("kerntrace: recording %s to %s; %s\n" % (
                    _names(formats), opts.output,
                    "for %g s" % opts.duration if opts.duration else "Ctrl-C to stop"))
                err.flush()
                end = time.monotonic() + opts.duration if opts.duration else None
                while end is None or time.monotonic() < end:
                    left = PUMP_S if end is None else min(PUMP_S, end - time.monotonic())
                    session.pump(out, left)
            except Stop:
                if out is None:
                    return 0        # stopped before anything was recorded
            try:
                # what the buffer holds at the stop goes in the file too
                session.stop_recording()
                session.drain(out)
            except Stop:
                pass                # a second signal: leave it unread
        except (IOError, OSError) as e:
            raise KerntraceError("recording to %s failed: %s" % (opts.output, e.strerror or e))
        finally:
            with SignalsIgnored():
                session.close()
                if out is not None:
                    out.close()
    err.write("kerntrace: recorded %d trace lines to %s\n" % (session.lines, opts.output))
    return 1 if session.unrestored else 0


def _names(formats):
    return ", ".join("%s:%s" % (system, event) for system, event, _ in formats)


def _create(path):
    try:
        return open(path, "wb")
    except (IOError, OSError) as e:
        raise KerntraceError("cannot write %s: %s" % (path, e.strerror or e))
