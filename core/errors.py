"""Errors a user sees as one line on stderr (never a traceback)."""


def one_line(exc, default=None):
    """An exception as one line: the first line of its message, else
    `default` (its type's name when None)."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default


def shown(text):
    """A user's string safe to repeat in a one-line message: what is not
    printable becomes "?", and at most 64 characters of it."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text[:64] + ("..." if len(text) > 64 else "")


class KerntraceError(Exception):
    """A runtime failure explained in one line; exit status 1."""

    exit_status = 1


class UsageError(KerntraceError):
    """Bad command line or bad user value; exit status 2."""

    exit_status = 2


class OptionError(UsageError):
    """A bad value of one of kerntrace's own options (--backend, --buffer-kb,
    --prometheus-file, ...): exit status 2 on every tool.  The perf-tools
    drop-ins keep perf-tools' statuses for perf-tools' options only; these
    options exist in kerntrace alone, so nothing expects another status."""


class Unsupported(KerntraceError):
    """This host (or backend) cannot run the measurement; says what is missing."""


class InvalidSpec(Exception):
    """A tool plugin declared an inconsistent measurement (a programming error
    in the plugin, reported as a broken plugin rather than a user error)."""


# Specific failures a drop-in tool may need to word its own way (iolatency
# prints perf-tools' ERROR lines for these).
class TracingUnavailable(Unsupported):
    """tracefs missing, not mounted and not mountable, or not accessible."""


class LockHeld(KerntraceError):
    """The perf-tools ftrace lock is held by a live process."""

    def __init__(self, message, pid=None, path=None):
        KerntraceError.__init__(self, message)
        self.pid = pid
        self.path = path


class FilterError(KerntraceError):
    """The kernel rejected a filter we wrote."""


class EnableError(KerntraceError):
    """An event or probe could not be enabled/attached."""
