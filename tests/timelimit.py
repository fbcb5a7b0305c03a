"""A time bound for tests of work that must not hang (decoders fed
pathological input): fails the test instead of hanging the suite."""

import signal
from contextlib import contextmanager


@contextmanager
def alarm(seconds):
    """Fail (not hang) when the body runs longer than `seconds`: a generous
    bound the linear code meets a hundred times over, and a quadratic one
    (82 s for 100 KB of header) misses by far."""
    def expired(_sig, _frame):
        raise AssertionError("still running after %d s" % seconds)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
