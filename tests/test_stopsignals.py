"""A stop signal inside SignalsLatched (a C library calling back into
Python) is noted, never raised there, and raised when the block ends."""

import os
import signal

import pytest

from kerntrace.core.stopsignals import SignalsAsStop, SignalsLatched, Stop


def callback_work():
    """Stands for a ctypes callback: the signal is handled while it runs."""
    os.kill(os.getpid(), signal.SIGINT)
    return sum(range(1000))     # Python runs pending handlers between bytecodes


def test_a_signal_in_a_callback_is_raised_after_the_block():
    finished = []
    with SignalsAsStop():
        with pytest.raises(Stop) as stop:
            with SignalsLatched():
                callback_work()
                finished.append(True)
    assert finished and stop.value.signum == signal.SIGINT


def test_the_first_of_several_signals_is_raised_once():
    with SignalsAsStop():
        with pytest.raises(Stop) as stop:
            with SignalsLatched():
                os.kill(os.getpid(), signal.SIGTERM)
                with SignalsLatched():
                    callback_work()
        assert stop.value.signum == signal.SIGTERM
        with SignalsLatched():      # nothing left pending
            pass


def test_outside_the_block_a_signal_raises_at_once():
    with SignalsAsStop():
        with pytest.raises(Stop):
            callback_work()
            raise AssertionError("not reached")


class _SignalsWhileFinalized(object):
    def __del__(self):
        # The handler runs here, where Python ignores what it raises.
        callback_work()


@pytest.mark.skipif(not hasattr(__import__("sys"), "unraisablehook"),
                    reason="Python < 3.8 has no sys.unraisablehook to see a swallowed Stop")
def test_a_stop_swallowed_in_a_finalizer_is_raised_at_the_next_wait(capfd):
    """A signal whose handler runs in a finalizer or gc callback (its Stop
    only printed as "Exception ignored") still stops the run: the next
    raise_pending() (the runner's wait loop; a latched poll's end) raises it."""
    from kerntrace.core.stopsignals import raise_pending
    with SignalsAsStop():
        obj = _SignalsWhileFinalized()
        del obj                     # finalized here: the Stop is swallowed
        with pytest.raises(Stop) as stop:
            raise_pending()
        assert stop.value.signum == signal.SIGINT
        raise_pending()             # raised once, nothing left pending
        with SignalsLatched():
            pass
    assert "Exception ignored" not in capfd.readouterr().err
