"""argdist live, on both backends at once and beside bpftrace run at the
same time, over workloads with a known distribution:

  * a program calling malloc() with known sizes a known number of times
    (uprobes on the C library, filtered to that process);
  * direct writes of known sizes to a loop device of our own
    (block:block_rq_issue, filtered to that device).

Each tool reports once, at Ctrl-C, after the workload ended, so the single
report holds every event whatever the machine's speed."""

import re
import select
import shutil
import signal
import subprocess
import time

import pytest

import clirun
import kernstate
import workloads

# size -> calls; each is one malloc() of that size (and a free()).
MALLOCS = {16: 100, 1000: 50, 5000: 10}
# log2 slots of those sizes: [16, 31], [512, 1023], [4096, 8191]
MALLOC_HISTOGRAM = {"16 -> 31": 100, "512 -> 1023": 50, "4096 -> 8191": 10}

# No stdio after start-up: the only malloc() calls once released are ours.
_MALLOC_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (write(1, buf, len) != len || read(0, buf, 1) != 1)
        return 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        long size = atol(argv[i]), n = atol(argv[i + 1]);
        for (long j = 0; j < n; j++) {
            void *volatile p = malloc(size);
            free(p);
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def malloc_exe(tmp_path_factory):
    exe = workloads.compile_c(tmp_path_factory.mktemp("malloc"), "kerntrace_mallocs",
                              _MALLOC_SRC)
    if exe is None:
        pytest.skip("no C compiler to build the malloc workload")
    return exe


class Mallocs(workloads.Caller):
    """A process that, when released, calls malloc(size) n times per
    (size, n) of `sizes`."""

    def __init__(self, exe, sizes):
        argv = [exe] + [str(x) for size, n in sorted(sizes.items()) for x in (size, n)]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())

    def libc(self):
        with open("/proc/%d/maps" % self.pid) as f:
            for line in f:
                path = line.split()[-1]
                if re.search(r"/libc[.-][^/]*\.so|/libc\.so", path):
                    return path
        pytest.skip("the workload maps no C library")


def backends():
    return ([] if kernstate.ebpf_skip_reason() else ["ebpf"]) + ["ftrace"]


class Bpftrace(object):
    """bpftrace running `program`, live once its BEGIN probe has printed."""

    def __init__(self, program):
        bpftrace = shutil.which("bpftrace")
        if not bpftrace:
            pytest.skip("bpftrace is not installed")
        self.p = subprocess.Popen(
            ["bash", "-c", 'ulimit -l unlimited; exec "$0" -e "$1"', bpftrace,
             'BEGIN { printf("kerntrace-ready\\n"); } ' + program],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        end = time.time() + 90
        while time.time() < end:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                line = self.p.stdout.readline()
                if not line or "kerntrace-ready" in line:
                    break
            elif self.p.poll() is not None:
                break
        else:
            line = ""
        if "kerntrace-ready" not in (line or ""):
            self.p.kill()
            pytest.skip("bpftrace cannot run here: %s" % self.p.communicate()[1].strip())

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        return clirun.finish_interrupted(self.p)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def map_counts(out):
    """bpftrace's `@[key]: count` lines."""
    return dict((int(k), int(v)) for k, v in re.findall(r"^@\[(-?\d+)\]: (\d+)$", out, re.M))


def run_tools(argvs, work):
    """Start each argdist command line, call work() once all of them trace
    (a status it returns must be 0), stop them with Ctrl-C: their reports,
    each run having exited 0 and lost nothing."""
    with clirun.running([(argv, "Tracing", False) for argv in argvs]) as runs:
        assert work() in (None, 0)
        time.sleep(0.5)      # the ftrace backend reads its buffers every few ms
        outs = [r.stop() for r in runs]
    for r in runs:
        assert "lost" not in r.err, r.err
    return outs


def count_rows(out, expr):
    return dict((int(v), int(c)) for c, v in
                re.findall(r"^\t(\d+)\s+%s = (-?\d+)$" % re.escape(expr), out, re.M))


def histogram_rows(out):
    return dict(("%s -> %s" % (lo, hi), int(n)) for lo, hi, n in
                re.findall(r"^\s*(\d+) -> (\d+)\s*: (\d+)\s+\|", out, re.M) if int(n))


# ---------------------------------------------------------------------------
@pytest.mark.live
def test_malloc_sizes_counted_exactly_on_both_backends_and_by_bpftrace(malloc_exe):
    w = Mallocs(malloc_exe, MALLOCS)
    bt = Bpftrace("uprobe:%s:malloc /pid == %d/ { @[arg0] = count(); }" % (w.libc(), w.pid))
    spec = "p:c:malloc(size_t size):size_t:size"
    with w, bt:
        outs = run_tools([["argdist", "--backend", b, "-p", str(w.pid), "-i", "3600",
                           "-C", spec] for b in backends()], w.release)
        bt_out, bt_err = bt.stop()
    for out in outs:
        assert out.splitlines()[1:3] == [spec, "\tCOUNT      EVENT"], out
        assert count_rows(out, "size") == MALLOCS, out
    assert len(set(o.split("\n", 1)[1] for o in outs)) == 1, outs
    assert map_counts(bt_out) == MALLOCS, bt_out + bt_err


@pytest.mark.live
def test_malloc_size_histogram_with_a_filter_on_both_backends(malloc_exe):
    w = Mallocs(malloc_exe, MALLOCS)
    bt = Bpftrace("uprobe:%s:malloc /pid == %d && arg0 >= 1000/ { @[arg0] = count(); }"
                  % (w.libc(), w.pid))
    with w, bt:
        outs = run_tools([["argdist", "--backend", b, "-p", str(w.pid), "-i", "3600", "-H",
                           "p:c:malloc(size_t size):size_t:size:size >= 1000#bytes"]
                          for b in backends()], w.release)
        bt_out, _ = bt.stop()
    expected = dict((k, v) for k, v in MALLOC_HISTOGRAM.items() if not k.startswith("16 "))
    for out in outs:
        assert out.splitlines()[1].split()[:2] == ["bytes", ":"], out
        assert histogram_rows(out) == expected, out
    assert sum(map_counts(bt_out).values()) == sum(expected.values())


@pytest.fixture
def disk():
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    with workloads.loop_device() as (path, major, minor):
        time.sleep(0.3)     # whatever the kernel reads from a new device
        yield path, (major << 20) | minor


# bytes per write -> writes
WRITES = {4096: 12, 65536: 3}


def write_known_sizes(path):
    seek = 0
    for bs, n in sorted(WRITES.items()):
        workloads.direct_writes(path, n, bs=bs, seek=seek // bs)
        seek += bs * n


@pytest.mark.live
def test_block_request_bytes_on_both_backends_and_by_bpftrace(disk):
    path, dev = disk
    bt = Bpftrace("tracepoint:block:block_rq_issue /args->dev == %d/ "
                  "{ @[args->bytes] = count(); }" % dev)
    spec = "t:block:block_rq_issue():u32:args->bytes:dev == %d" % dev
    with bt:
        outs = run_tools([["argdist", "--backend", b, "-i", "3600", "-C", spec]
                          for b in backends()]
                         + [["argdist", "--backend", b, "-i", "3600", "-H", spec]
                            for b in backends()], lambda: write_known_sizes(path))
        bt_out, _ = bt.stop()
    n = len(backends())
    for out in outs[:n]:
        assert count_rows(out, "args->bytes") == WRITES, out
    for out in outs[n:]:
        assert histogram_rows(out) == {"4096 -> 8191": 12, "65536 -> 131071": 3}, out
        assert out.splitlines()[1].split()[0] == "args->bytes"
    assert map_counts(bt_out) == WRITES, bt_out


@pytest.mark.live
def test_json_and_prometheus(malloc_exe):
    import json
    w = Mallocs(malloc_exe, {24: 7})
    with w:
        js, prom = run_tools([["argdist", "--backend", backends()[0], "-p", str(w.pid), "-i",
                               "3600", "--json", "-C", "p:c:malloc(size_t size):size_t:size"],
                              ["argdist", "--backend", "ftrace", "-p", str(w.pid), "-i", "3600",
                               "--prometheus", "-H", "p:c:malloc(size_t size):size_t:size"]],
                             w.release)
    (report,) = [json.loads(l) for l in js.splitlines() if l.strip()]
    assert report["tool"] == "argdist" and report["key_names"] == ["size"], report
    assert [(c["key"], c["count"]) for c in report["counts"]] == [({"size": 24}, 7)], report
    assert re.search(r'^kerntrace_argdist_size_bucket\{tool="argdist",le="31"\} 7$', prom,
                     re.M), prom


@pytest.mark.live
@pytest.mark.parametrize("argv, message", [
    (["-C", "p:c:no_such_function_here"], "no_such_function_here"),
    (["-C", "p:/no/such/binary:f"], "not found|no such|does not exist"),
    (["-C", "t:block:block_rq_issue():u32:bytes:dev == 1:traceoff"], "':' is not supported"),
    (["-C", "t:nope:nope():u32:x"], "not found"),
])
def test_bad_input_live_one_line_nothing_left(argv, message):
    rc, out, err = clirun.run(["argdist", "--backend", "ftrace"] + argv)
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and re.search(message, err), err


_CLOSER = """
import os, sys
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    try:
        os.close(987654)
    except OSError:
        pass
"""


@pytest.mark.live
def test_int_return_value_is_negative_on_both_backends_and_bpftrace():
    """close() of a bad fd returns the int -1: the low 32 bits of the
    register, sign-extended, as bcc's argdist reads an int."""
    import sys
    n = 6
    w = workloads.Caller.__new__(workloads.Caller)
    w.p = subprocess.Popen([sys.executable, "-c", _CLOSER, str(n)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
    w.pid = int(w.p.stdout.readline())
    libc = Mallocs.libc(w)
    bt = Bpftrace("uretprobe:%s:close /pid == %d && (int32)retval < 0/ "
                  "{ @[(int32)retval] = count(); }" % (libc, w.pid))
    with w, bt:
        outs = run_tools([["argdist", "--backend", b, "-p", str(w.pid), "-i", "3600", "-C",
                           spec] for b in backends()
                          for spec in ("r:c:close()", "r:c:close():int:$retval:$retval < 0")],
                         w.release)
        bt_out, _ = bt.stop()
    for i, out in enumerate(outs):
        rows = count_rows(out, "retval" if i % 2 == 0 else "$retval")
        assert rows.get(-1) == n and all(v >= 0 for v in rows if v != -1), out
    assert map_counts(bt_out) == {-1: n}, bt_out
