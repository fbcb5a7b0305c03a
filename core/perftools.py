"""perf-tools command lines and ERROR lines, for drop-in tools (iolatency,
iosnoop, and any plugin's).

perf-tools are bash scripts that parse options with getopts: bundled flags
(-QT), option values attached or separate (-d202,1 or -d 202,1), options
end at the first operand or "--".  -h and unknown options print the usage
text on stderr and exit 0.  Errors print perf-tools' ERROR lines and exit 1.

kerntrace's own long options (--backend, --json, ...) are accepted anywhere
on the same command line.  A bad value of one of them exits 2, as on every
other tool (core.errors.OptionError): perf-tools has no such options, so no
script expects perf-tools' status for them.
"""

import re
import textwrap

from .errors import KerntraceError, LockHeld, OptionError, TracingUnavailable, UsageError
from .tool import ArgumentParser, add_common_arguments


def _common_options():
    """kerntrace's common options, exactly as every other tool takes them."""
    parser = ArgumentParser(add_help=False)
    add_common_arguments(parser)
    return parser


_COMMON = _common_options()


def _long_options_help():
    lines = ["", "kerntrace options (anywhere on the command line):"]
    for action in _COMMON._actions:
        flag = action.option_strings[0]
        if action.nargs != 0:
            flag += " " + (action.metavar or action.dest.upper())
        lines.extend(textwrap.wrap(action.help, 80, initial_indent="    %-27s " % flag,
                                   subsequent_indent=" " * 32))
    lines.append("    %-27s %s" % ("--help", "this usage message and these options"))
    return "\n".join(lines) + "\n"


LONG_OPTIONS_HELP = _long_options_help()

_NEGATIVE_NUMBER = re.compile(r"^-\d+(\.\d*)?$|^-\.\d+$")


class UsageShown(KerntraceError):
    """-h, --help or an unknown option: the tool's usage text goes to stderr
    and the exit status is 0, as perf-tools' usage() does.  `reason` is the
    line bash's getopts prints first ("illegal option -- x"), None for -h."""

    exit_status = 0

    def __init__(self, text, reason=None):
        KerntraceError.__init__(self, "usage")
        self.text = text
        self.reason = reason


def common_defaults():
    """A Namespace with kerntrace's common options at their defaults."""
    return _COMMON.parse_args([])


def getopts(argv, optstring, usage):
    """Parse argv like bash getopts with `optstring` ("d:hi:QT": a colon
    after a letter means it takes a value).

    Returns (options, operands, namespace): options is a list of
    (letter, value-or-None) in order, operands the remaining arguments, and
    namespace a Namespace holding kerntrace's long options.  Raises
    UsageShown for -h, --help, unknown options and missing values, and
    OptionError for values a long option cannot take."""
    takes_value = set()
    letters = set()
    for i, c in enumerate(optstring):
        if c == ":":
            continue
        letters.add(c)
        if optstring[i + 1:i + 2] == ":":
            takes_value.add(c)
    ns = common_defaults()
    options = []
    operands = []
    i = 0
    in_options = True
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if arg.startswith("--"):
            i = _long_option(arg, argv, i, ns, usage)
            continue
        if in_options and arg.startswith("-") and len(arg) > 1:
            if _NEGATIVE_NUMBER.match(arg):
                # getopts calls "-1" an unknown option: the usage, exit 0.
                # Say plainly what was wrong with it.
                raise UsageShown(usage, "%s: a negative number is not a valid interval, "
                                        "duration or count" % arg)
            j = 1
            while j < len(arg):
                c = arg[j]
                if c == "h":
                    raise UsageShown(usage)
                if c not in letters:
                    raise UsageShown(usage, "illegal option -- %s" % c)
                if c in takes_value:
                    value = arg[j + 1:]
                    if not value:
                        if i >= len(argv):
                            raise UsageShown(usage, "option requires an argument -- %s" % c)
                        value = argv[i]
                        i += 1
                    options.append((c, value))
                    break
                options.append((c, None))
                j += 1
            continue
        # getopts stops at the first operand; long options still count.
        in_options = False
        operands.append(arg)
    return options, operands, ns


def parse_options(argv, usage, values=(), flags=()):
    """A perf-tools command line whose letters are declared by meaning:
    values ((letter, name), ...) take an argument, flags ((letter, name),
    ...) are switches, -h is the usage.  Returns (namespace, operands): the
    namespace has kerntrace's long options and every declared name (None /
    False when not given; a repeated option keeps its last value)."""
    values, flags = dict(values), dict(flags)
    optstring = "h" + "".join(c + ":" for c in sorted(values)) + "".join(sorted(flags))
    options, operands, ns = getopts(list(argv), optstring, usage)
    for name in values.values():
        setattr(ns, name, None)
    for name in flags.values():
        setattr(ns, name, False)
    for letter, value in options:
        if letter in values:
            setattr(ns, values[letter], value)
        else:
            setattr(ns, flags[letter], True)
    return ns, operands


def _long_option(arg, argv, i, ns, usage):
    """Parse one kerntrace long option (and its value) into ns with the
    common parser, so types and checks are the other tools' own."""
    name, eq, value = arg[2:].partition("=")
    if name == "help":
        raise UsageShown(usage + LONG_OPTIONS_HELP)
    action = _COMMON._option_string_actions.get("--" + name)
    if action is None:
        # Not one of ours: bash's getopts reads "--bogus" as option "-".
        raise UsageShown(usage, "illegal option -- -")
    words = [arg]
    if action.nargs != 0 and not eq:
        if i >= len(argv):
            raise OptionError("option --%s needs a value" % name)
        words.append(argv[i])
        i += 1
    try:
        parsed = _COMMON.parse_args(words)
    except OptionError:
        raise
    except UsageError as e:
        raise OptionError(str(e))
    setattr(ns, action.dest, getattr(parsed, action.dest))
    return i


def perf_tools_error_lines(exc):
    """perf-tools' own ERROR wording for the failures every perf-tools
    script words alike, else None (the default one line).  A tool adds its
    own (a filter or an event it could not set) before calling this."""
    if isinstance(exc, UsageShown):
        usage = exc.text.rstrip("\n").split("\n")
        if exc.reason is None:
            return usage
        # bash's getopts names the script first: "<tool>: illegal option -- x"
        return ["%s: %s" % (usage[0].split()[1], exc.reason)] + usage
    if isinstance(exc, TracingUnavailable):
        return ["ERROR: accessing tracing. Root user? Kernel has FTRACE?",
                "    debugfs mounted? (mount -t debugfs debugfs /sys/kernel/debug)"]
    if isinstance(exc, LockHeld):
        return ["ERROR: ftrace may be in use by PID %s %s"
                % (exc.pid if exc.pid is not None else "?", exc.path)]
    return None


def perf_tools_exit_status(exc):
    """perf-tools exit 0 after printing the usage, 1 for every error; a bad
    value of one of kerntrace's own options exits 2 as on every tool."""
    if isinstance(exc, UsageShown):
        return 0
    if isinstance(exc, OptionError):
        return exc.exit_status
    return 1
