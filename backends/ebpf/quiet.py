"""Keeping what libbcc prints away from the user.

libbcc (C++) and LLVM write straight to file descriptors 1 and 2, past
Python's sys.stdout and sys.stderr: clang diagnostics on fd 2, and "Unable
to find kernel headers ..." on fd 1 (std::cout), where it would become a
line of the tool's output and break --json and --prometheus.  Around every
bcc call that may print, both descriptors point at one temporary file; a
capability probe stays silent and turns that text into a one-line reason, a
failing session start reports its first error line.
"""

import ctypes
import os
import sys
import tempfile

from kerntrace.core.stopsignals import SignalsDeferred

# What libbcc prints when no headers tree (nor the kernel's built-in
# headers archive) has what it needs; see headers.py.
BCC_NO_HEADERS = "Unable to find kernel headers"
NO_HEADERS = "bcc found no kernel headers it can use"

_libc = []


def _flush_c_stdio():
    """fflush(NULL): C stdio buffers (std::cout writes through stdout's) go
    to the descriptor they were meant for before it is switched."""
    try:
        if not _libc:
            _libc.append(ctypes.CDLL(None))
        _libc[0].fflush(None)
    except (OSError, AttributeError):
        pass


def _flush_python():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, IOError, OSError):
            pass


class CapturedOutput(object):
    """with CapturedOutput() as cap: ...; then cap.text, everything written
    to fds 1 and 2 meanwhile.  Stop signals are deferred inside, so a Stop
    can never find fd 1 still pointing at the capture (a partial interval
    printed into a temporary file)."""

    _FDS = (1, 2)

    def __init__(self):
        self.text = ""
        self._saved = {}
        self._tmp = None
        self._deferred = SignalsDeferred()

    def __enter__(self):
        self._deferred.__enter__()
        try:
            _flush_python()
            _flush_c_stdio()
            self._tmp = tempfile.TemporaryFile()
            for fd in self._FDS:
                try:
                    self._saved[fd] = os.dup(fd)
                except OSError:         # fd closed: keep it closed afterwards
                    self._saved[fd] = None
                os.dup2(self._tmp.fileno(), fd)
        except OSError:
            self._restore()
            self._close_tmp()
        except BaseException:
            self._restore()
            self._close_tmp()
            self._deferred.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._saved:
                _flush_python()
                _flush_c_stdio()
                self._restore()
                try:
                    self._tmp.seek(0)
                    self.text = self._tmp.read().decode("utf-8", "replace")
                except (IOError, OSError, AttributeError):
                    self.text = ""
            self._close_tmp()
        finally:
            self._deferred.__exit__(None, None, None)
        return False

    def _restore(self):
        for fd, saved in self._saved.items():
            try:
                if saved is None:
                    os.close(fd)
                else:
                    os.dup2(saved, fd)
                    os.close(saved)
            except OSError:
                pass
        self._saved = {}

    def _close_tmp(self):
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None


def first_error(text, default=""):
    """The most telling line of libbcc's output: the first compiler
    'error:', a missing-headers message (in our words), else the last
    non-empty line."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in lines:
        if "error:" in l:
            return l
    for l in lines:
        if BCC_NO_HEADERS in l:
            return NO_HEADERS
    return lines[-1] if lines else default
