"""Loading and unloading one bcc BPF object, quietly and signal-safely.

bcc's BPF() compiles, loads and may attach before it returns, and both it
and cleanup() open or close fds before recording that they did.  A Stop
(Ctrl-C) raised in between would leave an object half-built or
half-detached, and bcc's own atexit cleanup would then trip over closed
fds with a traceback.  So the stop signals are deferred across both, and
the atexit hook is dropped: whoever loads an object unloads it.
"""

import atexit

from kerntrace.core.errors import one_line
from kerntrace.core.stopsignals import SignalsDeferred

from .quiet import CapturedOutput, first_error


class LoadError(Exception):
    """bcc could not compile or load the program; str() is one line."""


def load(bcc_module, text):
    """A BPF object for C `text`.  Call with stop signals deferred by the
    caller when attaches follow, so a signal cannot land between them."""
    cap = CapturedOutput()
    with SignalsDeferred():
        try:
            with cap:
                b = bcc_module.BPF(text=text.encode())
        except Exception as e:
            raise LoadError(first_error(cap.text, one_line(e)))
        # Otherwise atexit would keep every object (maps and all) alive until
        # exit and run a second cleanup.
        try:
            atexit.unregister(b.cleanup)
        except Exception:  # pragma: no cover - Python without atexit.unregister
            pass
    return b


def unload(b):
    """Detach every probe and close every fd of `b`; the one-line errors
    (empty when all went well).  The fds are closed even if a detach fails."""
    errors = []
    with SignalsDeferred(), CapturedOutput():
        try:
            b.cleanup()
        except Exception as e:
            errors.append(one_line(e))
            try:
                b.close()
            except Exception:  # the fds are best effort once a detach failed
                pass
    return errors
