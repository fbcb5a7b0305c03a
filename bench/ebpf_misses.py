#!/usr/bin/env python3
"""How many block I/Os does iolatency miss at queue depth, and does it say
so?  (Issue 8, item 1: BPF programs the kernel skips because another BPF
program is running on the same CPU.)  Run on demand, as root; not a test.

    .venv/bin/python bench/ebpf_misses.py [--runs N] [--ios 2000] [--depth 16]
        [--backend ebpf,ftrace] [--second-tracer none,bpftrace]
        [--programs raw,tracepoint]

Workload: fio (libaio, random 4 KiB reads, O_DIRECT, iodepth --depth) doing
--ios reads on a loop device of our own (direct I/O to its backing file, so
completions arrive in softirq while the next requests are issued).  The
I/Os the device really completed are read from /sys/block/<loop>/stat
(reads completed), so merges cannot skew the expected count.

Tracer: `iolatency --backend B -d MAJ,MIN --json` in a subprocess, stopped
with Ctrl-C after the workload; counted = the sum of its histogram counts,
lost = the sum of its "lost" fields.  With --second-tracer bpftrace, the
one-liner `tracepoint:block:block_rq_complete { @ = count(); }` runs
alongside (another BPF program on the same tracepoint); with spin, a bcc
program that spins 50 us in block_rq_issue/complete of our device.
KT_DIR=/dev/shm puts the loop's backing file on a tmpfs (default: the
temp dir), KT_DIO=off turns the loop's direct I/O off.

--programs (eBPF only): raw = what kerntrace chooses (block handlers as raw
tracepoint programs reading struct request at BTF offsets, where the
kernel's BTF allows); tracepoint = the format-file tracepoint programs it
used before (crawblock.reads_for patched out in the tool's process), to
measure before and after on the same kernel.

Measured (Linux 6.18, 2 vCPUs, loop device, fio randread 4 KiB depth 16;
counted/lost per run; ftrace counted every I/O in every run):
  --ios 2000, backing file in /dev/shm, 4 runs each
    programs    second tracer   counted (lost)
    raw         none/bpftrace/spin   2000 (0) in all 12 runs
    tracepoint  none            2000 (0) x4
    tracepoint  bpftrace        2000 (1), 2000 (0) x3
    tracepoint  spin            1994 (6), 1995 (12), 1979 (21), 1993 (8)
  --ios 20000, KT_DIR=/dev/shm, 3 runs each
    raw         bpftrace        20000 (0) x3
    raw         spin            19999 (1), 19984 (16), 19984 (16)
    tracepoint  bpftrace        20000 (0) x3
    tracepoint  spin            19933 (67), 19923 (81), 19902 (99)
  before raw programs had sentinels (perfhook.py), same --ios 20000 runs:
    raw         spin            20000 (0), 19984 (0) SHORT, 20000 (0)
(lost of tracepoint programs counts every skipped run of the program,
other devices' too, so counted + lost may exceed expected; raw programs'
lost is what the kernel ran no BPF program for on this device,
bench/ebpf_raw_blind.py.)

Printed per run: expected, counted, lost, counted + lost, unmatched.
The kernel cannot tell which event it skipped: lost includes skipped
events of other devices, so counted + lost may exceed expected.
"""

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(os.path.dirname(sys.executable), "iolatency")
DIRECT_IO = os.environ.get("KT_DIO", "on")
BPFTRACE_PROGRAM = "tracepoint:block:block_rq_complete { @ = count(); }"
# --second-tracer spin: a bcc program spinning 50 us in each block
# tracepoint of our device (what tests/test_skipped_runs_live.py provokes).
SPINNER_C = r"""
static __always_inline int kt_spin(u64 dev)
{
    if (dev != DEVT)
        return 0;
    u64 t0 = bpf_ktime_get_ns();
    for (int i = 0; i < 4000; i++)
        if (bpf_ktime_get_ns() - t0 > 50000)
            break;
    return 0;
}
TRACEPOINT_PROBE(block, block_rq_issue) { return kt_spin(args->dev); }
TRACEPOINT_PROBE(block, block_rq_complete) { return kt_spin(args->dev); }
"""
# Waits for the signal itself (sigwait): whatever handlers importing bcc
# installs, SIGINT or SIGTERM ends it and detaches its program.
SPINNER_PY = """
import signal, sys
stop = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, stop)
from kerntrace.backends.ebpf import bccfind
b = bccfind.import_bcc().BPF(text=sys.argv[1].encode())
print("ready", flush=True)
signal.sigwait(stop)
b.cleanup()
"""


# iolatency with the raw block reads turned off (--programs tracepoint).
TRACEPOINT_ONLY_PY = """
import sys
from kerntrace.backends.ebpf import crawblock
from kerntrace.core import commands
crawblock.reads_for = lambda *args, **kwargs: {}
sys.argv[0] = "iolatency"
commands.tool()
"""


def reads_completed(dev):
    with open("/sys/block/%s/stat" % os.path.basename(dev)) as f:
        return int(f.read().split()[0])


def json_totals(out):
    """(counted, lost, unmatched) over iolatency --json output (bytes)."""
    counted = lost = unmatched = 0
    for line in out.decode().splitlines():
        obj = json.loads(line)
        lost += obj.get("lost", 0)
        unmatched += obj.get("unmatched", 0)
        counted += sum(h["count"] for h in obj.get("histograms", []))
    return counted, lost, unmatched


def wait_for_text(proc, stream, text, timeout=60):
    fd = getattr(proc, stream).fileno()
    data = b""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            if text.encode() in data:
                return data
        elif proc.poll() is not None:
            break
    raise RuntimeError("%s: no %r (stderr so far: %r)" % (proc.args, text, data))


def fio(dev, ios, depth):
    subprocess.check_call(["fio", "--name=kt-misses", "--filename=" + dev, "--rw=randread",
                           "--bs=4k", "--direct=1", "--ioengine=libaio",
                           "--iodepth=%d" % depth, "--size=%dk" % (4 * ios),
                           "--output=/dev/null"])


def second_tracer(kind, devt):
    if kind == "none":
        return None
    if kind == "bpftrace":
        bt = subprocess.Popen(["bpftrace", "-e", BPFTRACE_PROGRAM], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        wait_for_text(bt, "stdout", "Attaching")
    else:
        bt = subprocess.Popen([sys.executable, "-c", SPINNER_PY,
                               SPINNER_C.replace("DEVT", str(devt))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_text(bt, "stdout", "ready")
    time.sleep(0.5)
    return bt


def one_run(dev, majmin, backend, ios, depth, second, interval, programs="raw"):
    st = os.stat(dev)
    bt = second_tracer(second, (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev))
    cmd = [TOOL] if programs == "raw" else [sys.executable, "-c", TRACEPOINT_ONLY_PY]
    try:
        tool = subprocess.Popen(cmd + ["--backend", backend, "-d", majmin, "--json",
                                       str(interval)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_text(tool, "stderr", "Ctrl-C to end.")
        before = reads_completed(dev)
        fio(dev, ios, depth)
        expected = reads_completed(dev) - before
        time.sleep(0.5)
        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=60)
    finally:
        if bt is not None:
            bt.send_signal(signal.SIGINT)
            bt.communicate(timeout=60)
    counted, lost, unmatched = json_totals(out)
    if tool.returncode != 0:
        raise RuntimeError("iolatency exited %d: %s" % (tool.returncode, err.decode()))
    return expected, counted, lost, unmatched


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ios", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--interval", type=int, default=1, help="iolatency's interval, s")
    ap.add_argument("--backend", default="ebpf,ftrace")
    ap.add_argument("--second-tracer", default="none,bpftrace",
                    help="comma-separated: none, bpftrace, spin")
    ap.add_argument("--programs", default="raw,tracepoint",
                    help="eBPF block programs, comma-separated: raw, tracepoint")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="kerntrace-bench-misses-", dir=os.environ.get("KT_DIR"))
    img = os.path.join(d, "disk.img")
    with open(img, "wb") as f:
        f.truncate(max(64 << 20, 8 * 4096 * args.ios))
    dev = subprocess.check_output(["losetup", "--find", "--show", "--direct-io=" + DIRECT_IO,
                                   img]).decode().strip()
    try:
        st = os.stat(dev)
        majmin = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        print("%-8s %-10s %-9s %4s %9s %8s %5s %14s %9s" % (
            "backend", "programs", "second", "run", "expected", "counted", "lost",
            "counted+lost", "unmatched"))
        for backend in args.backend.split(","):
            kinds = args.programs.split(",") if backend == "ebpf" else ["-"]
            for programs in kinds:
                for second in args.second_tracer.split(","):
                    for i in range(args.runs):
                        e, c, l, u = one_run(dev, majmin, backend, args.ios, args.depth,
                                             second, args.interval, programs)
                        print("%-8s %-10s %-9s %4d %9d %8d %5d %14d %9d%s"
                              % (backend, programs, second, i, e, c, l, c + l, u,
                                 "   SHORT: unreported loss" if c + l < e else ""))
                        sys.stdout.flush()
    finally:
        subprocess.call(["losetup", "-d", dev])
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
