"""readers.WatermarkWait: the session's sleep between reads of an
aggregate's buffers (a poll() until buffer_percent), on pipes standing in
for trace_pipe_raw (their poll() says readable once written)."""

import os
import time

import pytest

from kerntrace.backends.ftrace.readers import WatermarkWait


class Reader(object):
    def __init__(self, fd):
        self.fd = fd


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def buffer_dir(tmp_path, percent):
    if percent is not None:
        (tmp_path / "buffer_percent").write_text(percent + "\n")
    return str(tmp_path)


@pytest.mark.parametrize("percent", [None, "0"])
def test_without_a_watermark_it_polls(tmp_path, pipe, percent):
    w = WatermarkWait([Reader(pipe[0])], buffer_dir(tmp_path, percent), 0.01)
    assert not w.active
    t0 = time.monotonic()
    w.idle(10 ** 9, time.monotonic)         # a run without an interval
    assert 0.005 < time.monotonic() - t0 < 0.5


def test_a_ready_buffer_ends_the_sleep_after_the_floor(tmp_path, pipe):
    w = WatermarkWait([Reader(pipe[0])], buffer_dir(tmp_path, "50"), 0.05)
    assert w.active
    os.write(pipe[1], b"x")
    t0 = time.monotonic()
    w.idle(10 ** 9, time.monotonic)         # (poll() takes an int: no overflow)
    assert 0.04 < time.monotonic() - t0 < 0.5


def test_nothing_to_read_sleeps_until_the_deadline(tmp_path, pipe):
    w = WatermarkWait([Reader(pipe[0])], buffer_dir(tmp_path, "50"), 0.01)
    t0 = time.monotonic()
    w.idle(0.2, time.monotonic)
    assert 0.15 < time.monotonic() - t0 < 0.9
