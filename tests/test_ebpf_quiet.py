"""What libbcc writes on file descriptors 1 and 2 is captured, C stdio
buffers included, and both descriptors are back before a stop signal is
handled."""

import ctypes
import os
import signal

import pytest

from kerntrace.backends.ebpf.quiet import NO_HEADERS, CapturedOutput, first_error
from kerntrace.core.stopsignals import SignalsAsStop, Stop


def test_c_stdio_and_raw_writes_are_captured_and_the_fds_restored(capfd):
    libc = ctypes.CDLL(None)
    with CapturedOutput() as cap:
        # Like libbcc's std::cout: buffered in C stdio (fd 1 is no terminal).
        libc.printf(b"Unable to find kernel headers. Try rebuilding kernel\n")
        os.write(2, b"chdir(/nowhere): No such file or directory\n")
    os.write(1, b"the tool's output\n")
    libc.fflush(None)
    out, err = capfd.readouterr()
    assert out == "the tool's output\n" and err == ""
    assert "Unable to find kernel headers" in cap.text and "chdir(/nowhere)" in cap.text
    assert first_error(cap.text) == NO_HEADERS


def test_a_stop_signal_inside_is_raised_with_the_fds_back(capfd):
    with SignalsAsStop():
        with pytest.raises(Stop):
            with CapturedOutput():
                os.kill(os.getpid(), signal.SIGTERM)
                os.write(1, b"captured\n")
            raise AssertionError("not reached: the deferred signal stops first")
        os.write(1, b"partial output\n")
    out, _ = capfd.readouterr()
    assert out == "partial output\n"
