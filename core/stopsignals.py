"""The stop signals (SIGINT, SIGTERM, SIGHUP) and the ways a run treats
them: as a Stop exception, latched (raised once a C library's callbacks are
done), deferred, or ignored.

A run must leave the kernel as it found it whenever a signal lands, so the
steps that create kernel state (a bcc compile that attaches, an instance
being built) defer the signals until the object that can undo the state
exists, and the restore itself ignores them.
"""

import signal
import sys


class Stop(BaseException):
    """A signal asked us to stop (BaseException so no `except Exception`
    in a printer or backend swallows it)."""

    def __init__(self, signum):
        BaseException.__init__(self, signum)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


class _Latch(object):
    depth = 0           # nesting of SignalsLatched blocks
    pending = None      # the first stop signal that arrived inside them


_latch = _Latch()


def _raise_stop(signum, _frame):
    if _latch.depth:
        # Python runs this handler in whatever frame is current: inside a
        # callback from C (bcc's buffer polls) a raise would unwind through
        # bcc's and ctypes' frames, which print it and swallow it.
        if _latch.pending is None:
            _latch.pending = signum
        return
    raise Stop(signum)


class _Handlers(object):
    handler = None

    def __enter__(self):
        self.saved = {s: signal.signal(s, self.handler) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)
        return False


def raise_pending():
    """Raise Stop for a stop signal noted but not yet raised (latched, or
    swallowed where Python ignores exceptions); a no-op otherwise.  Called
    where a run waits, so such a signal still stops it promptly."""
    if _latch.depth == 0 and _latch.pending is not None:
        signum, _latch.pending = _latch.pending, None
        raise Stop(signum)


def _note_swallowed_stop(unraisable, chain):
    """sys.unraisablehook: Python ignores (and prints) an exception raised
    in a finalizer, a weakref or gc callback; the stop signal whose handler
    happened to run there is noted instead, for raise_pending()."""
    if isinstance(unraisable.exc_value, Stop):
        if _latch.pending is None:
            _latch.pending = unraisable.exc_value.signum
        return
    chain(unraisable)


class SignalsAsStop(_Handlers):
    """Inside: a stop signal raises Stop.  One whose Stop Python swallows
    (the handler ran inside a finalizer or gc callback: "Exception ignored
    in ...") is raised again by the next raise_pending() or latched poll
    (sys.unraisablehook exists since Python 3.8; before, such a signal is
    lost and a second one is needed)."""
    handler = staticmethod(_raise_stop)

    def __enter__(self):
        self.saved_hook = getattr(sys, "unraisablehook", None)
        if self.saved_hook is not None:
            chain = self.saved_hook
            sys.unraisablehook = lambda u: _note_swallowed_stop(u, chain)  # novm (only where it exists)
        return _Handlers.__enter__(self)

    def __exit__(self, *exc):
        _Handlers.__exit__(self, *exc)
        if self.saved_hook is not None:
            sys.unraisablehook = self.saved_hook  # novm
        return False


class SignalsLatched(object):
    """Inside (a C library calling back into Python): SignalsAsStop's
    handler only notes a stop signal; leaving the block raises Stop for it.
    Keep the block short (a bounded poll) so the stop is prompt."""

    def __enter__(self):
        _latch.depth += 1
        return self

    def __exit__(self, exc_type, _exc, _tb):
        _latch.depth -= 1
        if _latch.depth == 0 and _latch.pending is not None:
            signum, _latch.pending = _latch.pending, None
            if exc_type is None:
                raise Stop(signum)
        return False


class SignalsIgnored(_Handlers):
    """Inside: stop signals are ignored (while restoring kernel state)."""
    handler = signal.SIG_IGN


class SignalsDeferred(object):
    """Block the stop signals in this thread; one that arrives meanwhile is
    delivered (and the current handler runs) as soon as the block is
    lifted, i.e. when the with-block ends."""

    def __enter__(self):
        self.saved = None
        if hasattr(signal, "pthread_sigmask"):
            try:
                self.saved = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            except (OSError, ValueError):
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.saved)
        return False
