"""Capturing what libbcc writes to file descriptor 2.

libbcc (C++) prints clang diagnostics and "Unable to find kernel headers"
straight to fd 2, past Python's sys.stderr.  A capability probe must stay
silent and turn that text into a one-line reason; a failing session start
reports its first error line.
"""

import os
import sys
import tempfile


class CapturedStderr(object):
    """with CapturedStderr() as cap: ...; then cap.text"""

    def __init__(self):
        self.text = ""
        self._saved = None
        self._tmp = None

    def __enter__(self):
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, IOError, OSError):
            pass
        try:
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except OSError:
            self._close_tmp()
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
            try:
                self._tmp.seek(0)
                self.text = self._tmp.read().decode("utf-8", "replace")
            except (IOError, OSError):
                self.text = ""
        self._close_tmp()
        return False

    def _close_tmp(self):
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None


def first_error(text, default=""):
    """The most telling line of libbcc's output: the first compiler
    'error:', a missing-headers message, else the last non-empty line."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in lines:
        if "error:" in l:
            return l
    for l in lines:
        if "kernel headers" in l:
            return l
    return lines[-1] if lines else default
