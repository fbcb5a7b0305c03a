"""Every stop signal ends a record (event stream) tool promptly, mid-stream,
under heavy I/O, on both backends: status 0, the partial output on stdout,
no traceback.

A signal that lands while bcc is calling back into Python for a record
used to be printed by ctypes ("Exception ignored on calling ctypes
callback function") and swallowed, and the tool kept running.  Records
arrive thousands of times a second here (two `dd oflag=direct bs=512`
loops on our own loop device), so a signal sent at a random moment often
lands in a callback; many runs, each signalled at a random moment after
its first record, make a regression show.
"""

import os
import random
import signal
import subprocess
import threading
import time

import pytest

import clirun
import kernstate
import workloads
from kerntrace.core.model import LATENCY, Records
from kerntrace.core.stopsignals import SignalsAsStop, Stop
from test_ebpf_live import Run, block_pair, devt

BACKENDS = [pytest.param("ftrace", marks=pytest.mark.live),
            pytest.param("ebpf", marks=[pytest.mark.live, pytest.mark.ebpf])]
# Tools started at once per round, and rounds per backend (the eBPF window
# is the one that used to lose signals: more runs there).
AT_ONCE = 3
ROUNDS = {"ftrace": 1, "ebpf": 3}
# Writers per backend.  On ftrace, more than the tool can decode and print
# (a flood: the kernel drops events): the stop must still be prompt (the
# last drain once read the refilling buffer for seconds).
WRITERS = {"ftrace": 6, "ebpf": 2}
# Seconds a tool may take from the signal to its exit (detaching included).
PROMPT_S = 5.0
# How long after its first record a tool is signalled: a random moment.
MAX_DELAY_S = 0.4
# Lines before the first record: biosnoop prints its header; iosnoop a
# "Tracing ..." line and its header.
PREAMBLE = {"biosnoop": 1, "iosnoop": 2}


class Streaming(object):
    """A tool run as a user would, its output read as it comes (so a full
    pipe never stalls it)."""

    def __init__(self, argv):
        self.argv = argv
        self.p = clirun.start(argv)
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._read, args=(self.p.stdout, self.out)),
                        threading.Thread(target=self._read, args=(self.p.stderr, self.err))]
        for t in self.readers:
            t.daemon = True
            t.start()

    @staticmethod
    def _read(stream, into):
        for line in iter(stream.readline, ""):
            into.append(line)

    def wait_for_lines(self, n, timeout=60):
        end = time.time() + timeout
        while len(self.out) < n:
            if self.p.poll() is not None or time.time() > end:
                raise AssertionError("%s printed %d lines, not %d (rc=%r): %s" % (
                    " ".join(self.argv), len(self.out), n, self.p.poll(),
                    "".join(self.out[-5:] + self.err)))
            time.sleep(0.02)

    def stop(self, signum):
        """Send signum; returns (status, seconds to exit) -- status None if
        it did not exit within PROMPT_S (it is then killed)."""
        sent = time.monotonic()
        self.p.send_signal(signum)
        try:
            self.p.wait(timeout=PROMPT_S)
            status = self.p.returncode
        except subprocess.TimeoutExpired:
            status = None
        took = time.monotonic() - sent
        self.kill()
        return status, took

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for t in self.readers:
            t.join(10)


class HeavyIO(object):
    """Endless loops of 512-byte direct writes to `dev`."""

    def __init__(self, dev, loops=2):
        loop = ("while :; do dd if=/dev/zero of=%s bs=512 count=2000 seek=%d oflag=direct "
                "status=none || exit; done")
        self.shells = [subprocess.Popen(["sh", "-c", loop % (dev, 100000 * i)])
                       for i in range(loops)]

    def stop(self):
        for p in self.shells:
            p.kill()
        for p in self.shells:
            p.wait()


def skip_unless_backend_runs(tool, backend, dev):
    """Skip when eBPF cannot run here for a host reason (no bcc, no usable
    kernel headers); anything else fails the test."""
    rc, out, err = clirun.run([tool, "--backend", backend, "--print-program", "-d", dev])
    if rc == 0:
        return
    assert "Traceback" not in err, err
    host_reason = kernstate.ebpf_skip_reason() or ("headers" in err and err.strip())
    assert backend == "ebpf" and host_reason, "the %s backend failed: %s" % (backend, err)
    pytest.skip("the %s backend cannot run here: %s" % (backend, host_reason))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tool, disk_arg", [("biosnoop", "name"), ("iosnoop", "majmin")])
def test_every_stop_signal_ends_a_streaming_tool_promptly(tool, disk_arg, backend):
    with workloads.loop_device() as (path, major, minor):
        dev = path.rsplit("/", 1)[1] if disk_arg == "name" else "%d,%d" % (major, minor)
        skip_unless_backend_runs(tool, backend, dev)
        runs = AT_ONCE * ROUNDS[backend]
        signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP] * (runs // 3 + 1)
        random.shuffle(signals)
        failures, latencies = [], []
        load = HeavyIO(path, WRITERS[backend])
        try:
            for _ in range(ROUNDS[backend]):
                tools = [Streaming([tool, "--backend", backend, "-d", dev])
                         for _ in range(AT_ONCE)]
                try:
                    for t in tools:
                        t.wait_for_lines(PREAMBLE[tool] + 1)
                    moments = sorted((random.uniform(0, MAX_DELAY_S), i)
                                     for i in range(len(tools)))
                    t0 = time.monotonic()
                    for at, i in moments:
                        time.sleep(max(0.0, t0 + at - time.monotonic()))
                        signum = signals.pop()
                        seen = len(tools[i].out)
                        status, took = tools[i].stop(signum)
                        latencies.append(took)
                        out, err = "".join(tools[i].out), "".join(tools[i].err)
                        problem = None
                        if status is None:
                            problem = "still running %.1f s after the signal" % PROMPT_S
                        elif status != 0:
                            problem = "exit status %d" % status
                        elif "Traceback" in err or "Exception" in err:
                            problem = "a traceback on stderr"
                        elif len(tools[i].out) < seen or not out.endswith("\n"):
                            problem = "the partial output was cut"
                        if problem:
                            failures.append("%s after %s: %s\nstderr: %s" % (
                                " ".join(tools[i].argv), signal.Signals(signum).name,
                                problem, err[-2000:]))
                finally:
                    for t in tools:
                        t.kill()
        finally:
            load.stop()
    assert not failures, "%d of %d runs failed:\n%s" % (len(failures), runs,
                                                        "\n".join(failures))
    assert max(latencies) < PROMPT_S


@pytest.mark.live
@pytest.mark.ebpf
@pytest.mark.parametrize("output", ["ringbuf", "perf"])
def test_a_signal_during_the_buffer_poll_stops_the_session(output, capfd):
    """In process, both record buffers bcc offers: SIGINT at a random moment
    while the session polls under heavy I/O raises Stop from wait() or
    collect() at once, every time; ctypes never prints it."""
    stops, slowest = 0, 0.0
    with workloads.loop_device() as (path, major, minor):
        load = HeavyIO(path)
        try:
            m = block_pair(Records(("bytes", LATENCY)), devt(major, minor))
            with Run(m, output=output) as run, SignalsAsStop():
                for _ in range(30):
                    at = time.monotonic() + random.uniform(0, 0.3)
                    kill = threading.Timer(at - time.monotonic(), os.kill,
                                           (os.getpid(), signal.SIGINT))
                    kill.start()
                    try:
                        while time.monotonic() < at + 2.0:
                            run.session.wait(0.1)
                            run.session.collect()
                    except Stop:
                        stops += 1
                        slowest = max(slowest, time.monotonic() - at)
                    finally:
                        kill.join()
        finally:
            load.stop()
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err, err
    # (Under pytest a swallowed one shows as a missing stop, not on stderr.)
    assert stops == 30 and slowest < 1.0, (stops, slowest)
