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
