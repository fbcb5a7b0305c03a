"""Command line: `kerntrace <tool> [args]`, `kerntrace list`,
`kerntrace doctor [--json]`, `kerntrace cleanup`, and a console script per
tool (`iolatency [args]`, see core/commands.py)."""

import os
import sys
import traceback

from . import __version__
from .errors import InvalidSpec, KerntraceError, UsageError, one_line
from .host import Host
from .pluginhost import BUILTIN_PREFIX, PluginHost

USAGE = """usage: kerntrace [--no-plugins] <command> [args]

commands:
  <tool> [args]     run a tool (kerntrace list shows them; <tool> -h for help)
  record [-o FILE] [-d SECONDS] <tool> [args]
                    trace a tool's events into FILE (with their format files);
                    replay it anywhere with <tool> --input FILE
  merge [--json] [--per-host] [TOOL OPTION...] FILE...
                    combine one tool's --json output from many hosts into one
                    histogram or count table (a fleet view)
  schema            print the JSON Schema of --json output (docs/json.md)
  list              list installed tools
  doctor [--json]   what this host can trace, and which backend runs each tool
  cleanup           remove tracing state left by kerntrace runs that were killed
  version           print the version

Third-party plugins load from the entry-point group 'kerntrace.plugins';
disable them with --no-plugins or KERNTRACE_DISABLE_PLUGINS=1 (or =name,...).
"""


def _plugins(no_plugins, err, tool=None):
    return PluginHost(load_third_party=not no_plugins, warn=err, tool=tool)


def _error(err, prefix, e):
    for line in (str(e) or type(e).__name__).splitlines() or [""]:
        err.write("%s: %s\n" % (prefix, line) if prefix else line + "\n")


def run_tool(name, argv, no_plugins=False, out=None, err=None, prog=None):
    """Run tool `name` with argv; return the exit status.  Never raises for
    user-facing failures: prints one line on stderr instead."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        plugins = _plugins(no_plugins, err, tool=name)
        tools = plugins.tools()
        if name not in tools:
            err.write("kerntrace: unknown tool %r (kerntrace list shows the installed ones)\n" % name)
            return 2
        tool = tools[name]
        try:
            args = tool.parse_args(argv, prog=prog or name)
        except KerntraceError as e:
            return _fail(tool, err, e)
        from .runner import run
        try:
            show = getattr(tool, "show", None)
            status = show(args, out, err) if show is not None else None
            if status is not None:
                return status
            return run(tool, args, plugins, out=out, err=err)
        except KerntraceError as e:
            return _fail(tool, err, e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except InvalidSpec as e:
        err.write("kerntrace: tool %r is broken: %s\n" % (name, e))
        return 1
    except Exception as e:  # never a traceback for the user
        if os.environ.get("KERNTRACE_DEBUG"):
            traceback.print_exc(file=err)
        err.write("%s: internal error: %s: %s (KERNTRACE_DEBUG=1 shows the traceback)\n"
                  % (name, type(e).__name__, one_line(e, "")))
        return 1


def _fail(tool, err, e):
    fmt = getattr(tool, "format_error", None)
    lines = fmt(e) if fmt else None
    if lines is None:
        lines = ["%s: %s" % (tool.name, one_line(e))]
    for line in lines:
        err.write(line + "\n")
    return getattr(tool, "exit_status_for", lambda e: e.exit_status)(e)


def cmd_list(plugins, out):
    tools = plugins.tools()
    width = max([len(n) for n in tools] + [4])
    for name in sorted(tools):
        origin = plugins.tool_origin(name)
        origin = "" if origin.startswith(BUILTIN_PREFIX) else "  [%s]" % origin
        out.write("%-*s  %s%s\n" % (width, name, tools[name].summary, origin))
    return 0


def cmd_cleanup(plugins, out, err):
    host = Host(stderr=err)
    if not host.is_root():
        err.write("kerntrace: cleanup must be run as root\n")
        return 1
    removed, problems, notes = [], [], []
    for b in plugins.backends():
        removed.extend(b.cleanup_stale(host, stderr=None, problems=problems, notes=notes))
    for line in removed:
        out.write("removed %s\n" % line)
    for line in problems + notes:
        err.write("kerntrace: %s\n" % line)
    if not removed and not problems:
        out.write("nothing to clean up\n")
    return 1 if problems else 0


def _quiet_epipe(fn):
    """A closed stdout pipe (`| head`) ends the command quietly."""
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except BrokenPipeError:
            from .runner import silence_stdout
            silence_stdout()
            return 0
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


@_quiet_epipe
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    no_plugins = False
    while argv and argv[0] == "--no-plugins":
        no_plugins = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help", "help"):
        (out if argv else err).write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd in ("version", "--version"):
        out.write("kerntrace %s\n" % __version__)
        return 0
    if cmd in ("list", "doctor", "cleanup", "record", "merge", "schema"):
        try:
            return _run_command(cmd, rest, no_plugins, out, err)
        except BrokenPipeError:
            raise
        except KerntraceError as e:
            _error(err, "kerntrace", e)
            return e.exit_status
        except Exception as e:
            if os.environ.get("KERNTRACE_DEBUG"):
                traceback.print_exc(file=err)
            err.write("kerntrace: internal error: %s: %s\n" % (type(e).__name__, e))
            return 1
    return run_tool(cmd, rest, no_plugins=no_plugins, out=out, err=err, prog=cmd)


def _run_command(cmd, rest, no_plugins, out, err):
    plugins = _plugins(no_plugins, err)
    if cmd == "list":
        return cmd_list(plugins, out)
    if cmd == "cleanup":
        return cmd_cleanup(plugins, out, err)
    if cmd == "record":
        from .record import record
        return record(plugins, rest, err)
    if cmd == "merge":
        from .merge import merge
        return merge(plugins, rest, out, err)
    if cmd == "schema":
        if rest:
            raise UsageError("schema takes no arguments")
        from .output.jsonlines import schema_text
        out.write(schema_text())
        return 0
    from .doctor import doctor
    return doctor(plugins, rest, out, err)


@_quiet_epipe
def _tool_main(name):
    argv = sys.argv[1:]
    no_plugins = "--no-plugins" in argv
    argv = [a for a in argv if a != "--no-plugins"]
    return run_tool(name, argv, no_plugins=no_plugins, prog=name)


def tool_main(name):
    """Run tool `name` as its own command (`iolatency [args]`) and exit."""
    sys.exit(_tool_main(name))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
