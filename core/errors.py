"""Errors a user sees as one line on stderr (never a traceback)."""


class KerntraceError(Exception):
    """A runtime failure explained in one line; exit status 1."""

    exit_status = 1


class UsageError(KerntraceError):
    """Bad command line or bad user value; exit status 2."""

    exit_status = 2


class Unsupported(KerntraceError):
    """This host (or backend) cannot run the measurement; says what is missing."""


class InvalidSpec(Exception):
    """A tool plugin declared an inconsistent measurement (a programming error
    in the plugin, reported as a broken plugin rather than a user error)."""
