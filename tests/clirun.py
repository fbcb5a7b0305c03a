"""Run the kerntrace command line as a user would, in a subprocess."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys

import pytest

KERNTRACE = [sys.executable, "-m", "kerntrace.core"]


def env():
    e = dict(os.environ)
    e.setdefault("KERNTRACE_DISABLE_PLUGINS", "1")
    return e


def run(args, timeout=120, **kw):
    p = subprocess.run(KERNTRACE + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout, env=env(), **kw)
    return p.returncode, p.stdout, p.stderr


def finish_interrupted(p, grace=30):
    """(stdout, stderr) of `p`, already sent SIGINT: waits `grace` seconds,
    then sends SIGTERM, then SIGKILL.  A reference tool that hangs on its way
    out (bpftrace 0.17 did not exit within 60 s of SIGINT on a CI machine
    after printing every line, twice: execsnoop's and funccount's USDT
    tests) still gives what it printed; a kerntrace run ended this way
    fails on its return code.  If its pipes stay open after it is gone (a
    process it left holds them), what was read so far is returned."""
    for then in (signal.SIGTERM, signal.SIGKILL, None):
        try:
            return p.communicate(timeout=grace)
        except subprocess.TimeoutExpired as e:
            if then is None:
                return tuple(_text(p, x) for x in (e.output, e.stderr))
            if p.poll() is None:
                p.send_signal(then)
            grace = 10


def _text(p, data):
    """Output a timed-out communicate() kept (bytes), as p's streams give it."""
    if data is None:
        return "" if p.universal_newlines else b""
    return data.decode(errors="replace") if p.universal_newlines and \
        isinstance(data, bytes) else data


def start(args, **kw):
    """Start a tool; returns the Popen (text mode, pipes)."""
    return subprocess.Popen(KERNTRACE + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, env=env(), **kw)


def wait_for_text(stream, needle, p, timeout=180):
    """What `stream` (p's stdout or stderr) printed up to and with the line
    holding `needle`, read straight from the descriptor: reading through
    the file's buffer would leave a line that arrived in the same chunk as
    the one before it unseen while select() waits."""
    import select
    import time
    fd = stream.fileno()
    text = ""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            text += chunk
            if needle in text and text.endswith("\n"):
                return text
        elif p.poll() is not None:
            break
    raise AssertionError("no %r; got %r (rc=%r)" % (needle, text, p.poll()))


def wait_for_stderr_line(p, needle, timeout=60):
    """Read p's stderr until a line containing needle (the tool's banner:
    printed once tracing is live).  Returns the lines read, the one with
    needle last."""
    lines = wait_for_text(p.stderr, needle, p, timeout).splitlines(True)
    while needle not in lines[-1]:
        lines.pop()
    return lines


class Run(object):
    """A tool started before a workload and stopped with Ctrl-C (SIGINT)
    after it exited: its final report covers all of it.  `reference`: a
    reference tool (bpftrace) given as a whole argv, its banner on stdout;
    otherwise a kerntrace command line, its banner on stderr."""

    def __init__(self, argv, banner, reference=False):
        self.reference = reference
        if reference:
            # bpftrace: its banner on stdout, warnings on stderr
            self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      universal_newlines=True)
            line = self.p.stdout.readline()
            while line.startswith("Attaching"):
                line = self.p.stdout.readline()
            if banner not in line:
                self.p.kill()
                raise AssertionError("%s did not start: %r %r" % (argv[0], line,
                                                                  self.p.communicate()[1]))
        else:
            self.p = start(argv)
            wait_for_stderr_line(self.p, banner)

    def stop(self):
        """What it printed on stdout (stderr in .err); a kerntrace run must
        have exited with status 0."""
        self.p.send_signal(signal.SIGINT)
        if self.reference:
            # bpftrace can hang on its way out after printing its maps: the
            # maps it printed are what the tests compare
            out, self.err = finish_interrupted(self.p)
            return out
        out, self.err = self.p.communicate(timeout=60)
        assert self.p.returncode == 0, self.err
        return out


@contextlib.contextmanager
def running(runs):
    """Start a Run of each (argv, banner, reference) in `runs`, in order;
    yields the list of them.  On the way out, also when a start or the test
    failed, each one still running is stopped with Ctrl-C: a clean stop
    leaves nothing behind in the kernel."""
    started = []
    try:
        for argv, banner, reference in runs:
            started.append(Run(argv, banner, reference))
        yield started
    finally:
        for r in started:
            if r.p.poll() is None:
                r.p.send_signal(signal.SIGINT)
                r.p.communicate(timeout=60)


def trace_around(tracers, workload, settle=0.5):
    """Start `tracers` [(name, argv, stream, banner)] at once (a kerntrace
    command line is KERNTRACE + its arguments), wait until each printed its
    banner on `stream` ("stdout" or "stderr"), run workload() once all of
    them trace, let the last events in for `settle` s, stop them all with
    Ctrl-C (finish_interrupted); (what workload() returned, {name:
    (stdout, stderr, returncode)}), the text up to the banner included.  A
    tracer still running when this fails is killed."""
    import time
    environ = dict(env(), PYTHONUNBUFFERED="1")
    procs = []
    try:
        for name, argv, stream, banner in tracers:
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=environ)
            procs.append((name, p, stream, banner))
        early = {}
        for name, p, stream, banner in procs:
            early[name] = wait_for_text(getattr(p, stream), banner, p)
        result = workload()
        time.sleep(settle)
        for _name, p, _stream, _banner in procs:
            p.send_signal(signal.SIGINT)
        out = {}
        for name, p, stream, _banner in procs:
            stdout, stderr = (data.decode(errors="replace") for data in finish_interrupted(p))
            if stream == "stdout":
                stdout = early[name] + stdout
            else:
                stderr = early[name] + stderr
            out[name] = (stdout, stderr, p.returncode)
        return result, out
    finally:
        for _name, p, _stream, _banner in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def record_around(path, argv, release, settle=0.5):
    """`kerntrace record -o path ARGV...` around a workload: starts the
    recorder, calls release() (the workload's exit status, 0 wanted) once it
    records, lets the last events in, stops it with Ctrl-C; its stderr."""
    import time
    p = start(["record", "-o", str(path)] + list(argv))
    try:
        wait_for_stderr_line(p, "kerntrace: recording ")
        assert release() == 0
        time.sleep(settle)
    finally:
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return err


def run_as_nobody(args, timeout=120):
    """Run the command line as an unprivileged user (setpriv, as root);
    skips, saying why, where this host or this Python cannot."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a command as an unprivileged user")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run(nobody + ["-c", "pass"], cwd="/", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    if probe.returncode != 0:     # e.g. a Python built under a home only root may enter
        pytest.skip("this Python cannot run as an unprivileged user: %s"
                    % (probe.stdout.strip().splitlines() or ["status %d" % probe.returncode])[-1])
    p = subprocess.run(nobody + ["-m", "kerntrace.core"] + list(args), cwd="/", env=env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr
