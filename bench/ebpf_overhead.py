#!/usr/bin/env python3
"""Overhead of kerntrace's eBPF backend, next to the same measurement written
by hand in bcc and in bpftrace (run on demand, as root; not a test).

Workload: a compiled C loop of getppid() system calls, timed inside the
program (many events per second, so the cost per event shows).  Measured
in rounds, each tracer in its own process (so its peak RSS is its own):

    none        no tracing
    kerntrace   core.model Count of syscalls:sys_enter_getppid per pid,
                through EbpfBackend (check -> open -> start)
    bcc         the same count written by hand (HAND_WRITTEN_BCC below)
    bpftrace    tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }

Printed, as median (min-max) over the rounds: calls/s; slowdown vs the
hand-written bcc program and vs bpftrace (goal <= 1.05); time from the
tracer's first import to "attached" (kerntrace: imports, check(), start();
bcc: import of bcc, compile and attach of the hand-written program;
bpftrace: spawn to "Attaching"); peak RSS (VmHWM) of each tracer process;
the load average and the CPU everything else used meanwhile.  kerntrace
uses a compiled-object cache of this run: round 1 compiles, later rounds
load.

    sudo .venv/bin/python bench/ebpf_overhead.py [--iterations N] [--rounds R]
"""

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"""

# What a bcc user would write for "count getppid() calls per process".
HAND_WRITTEN_BCC = r"""
BPF_HASH(counts, u32, u64, 10240);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    counts.increment(pid);
    return 0;
}
"""

BPFTRACE_PROGRAM = "tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }"


def vm_hwm_kb(pid="self"):
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (IOError, OSError):
        pass
    return 0


# ---------------------------------------------------------------------------
# Child processes: one tracer each.  Protocol on stdout:
#   "attached <seconds to attach> <seconds of start() alone>"
# then, after a line on stdin naming the workload pid:
#   "done <events counted for that pid> <VmHWM kB>"
def child_kerntrace():
    # (bcc is imported by check() only when the program is not in the
    # compiled-object cache: that import is part of kerntrace's start.)
    t0 = time.monotonic()
    from kerntrace.backends.ebpf.backend import EbpfBackend
    from kerntrace.core.backend import RunOptions
    from kerntrace.core.host import Host
    from kerntrace.core.model import Count, Event, Measurement, SyscallEntry
    m = Measurement([Event("getppid", SyscallEntry("getppid"))], Count(keys=("pid",)))
    be = EbpfBackend()
    v = be.check(m, Host(), RunOptions(tool="bench"))
    if not v.ok:
        sys.exit("kerntrace cannot run: %s" % "; ".join(v.reasons))
    s = be.open(m, v, RunOptions(tool="bench"))
    t1 = time.monotonic()
    s.start()
    t2 = time.monotonic()
    print("attached %.3f %.3f" % (t2 - t0, t2 - t1), flush=True)
    try:
        pid = int(sys.stdin.readline())
        counts = s.collect().data.counts
        print("done %d %d" % (counts.get((pid,), 0), vm_hwm_kb()), flush=True)
    finally:
        s.close()


def child_bcc():
    t0 = time.monotonic()
    from kerntrace.backends.ebpf import bccfind
    bcc = bccfind.import_bcc()
    b = bcc.BPF(text=HAND_WRITTEN_BCC.encode())   # TRACEPOINT_PROBE attaches itself
    t1 = time.monotonic()
    print("attached %.3f %.3f" % (t1 - t0, t1 - t0), flush=True)
    try:
        pid = int(sys.stdin.readline())
        n = 0
        for k, v in b[b"counts"].items():
            if k.value == pid:
                n = v.value
        print("done %d %d" % (n, vm_hwm_kb()), flush=True)
    finally:
        b.cleanup()


# ---------------------------------------------------------------------------
class Tracer(object):
    """A running tracer process for one mode."""

    def __init__(self, mode):
        self.mode = mode
        self.t_attach = self.t_start = None
        self.count = None
        self.rss_kb = None
        t0 = time.monotonic()
        if mode == "bpftrace":
            self.p = subprocess.Popen(["bpftrace", "-e", BPFTRACE_PROGRAM],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      preexec_fn=_raise_memlock)
            line = self.p.stdout.readline().decode()
            if not line.startswith("Attaching"):
                raise RuntimeError("bpftrace did not attach: %r" % line)
            # bpftrace prints "Attaching" just before it attaches.
            time.sleep(0.2)
            self.t_attach = self.t_start = time.monotonic() - t0
        else:
            self.p = subprocess.Popen([sys.executable, __file__, "--child", mode],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            parts = self.p.stdout.readline().decode().split()
            if not parts or parts[0] != "attached":
                raise RuntimeError("%s did not attach" % mode)
            self.t_attach, self.t_start = float(parts[1]), float(parts[2])

    def finish(self, workload_pid):
        if self.mode == "bpftrace":
            self.rss_kb = vm_hwm_kb(self.p.pid)
            self.p.send_signal(signal.SIGINT)
            out = self.p.communicate(timeout=30)[0].decode()
            for line in out.splitlines():
                if line.startswith("@[%d]:" % workload_pid):
                    self.count = int(line.split(":")[1])
            return
        self.p.stdin.write(b"%d\n" % workload_pid)
        self.p.stdin.flush()
        parts = self.p.stdout.readline().decode().split()
        self.p.wait(timeout=30)
        if parts and parts[0] == "done":
            self.count, self.rss_kb = int(parts[1]), int(parts[2])


def _raise_memlock():
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def build_workload(d):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("needs a C compiler for the workload")
    src = os.path.join(d, "getppid_loop.c")
    exe = os.path.join(d, "getppid_loop")
    with open(src, "w") as f:
        f.write(WORKLOAD_C)
    subprocess.check_call([cc, "-O2", "-o", exe, src])
    return exe


def run_workload(exe, n):
    p = subprocess.Popen([exe, str(n)], stdout=subprocess.PIPE)
    out = p.communicate()[0]
    return p.pid, n / (int(out) / 1e9)


def busy_cpu_seconds():
    """CPU seconds all CPUs spent not idle, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy
    return (sum(fields[:3]) + sum(fields[5:8])) / float(os.sysconf("SC_CLK_TCK"))


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def spread(values, fmt):
    """median (min - max)"""
    if not values:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values),
                                                    max(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=2000000, help="getppid() calls per run")
    ap.add_argument("--rounds", type=int, default=5, help="runs per mode (median reported)")
    ap.add_argument("--child", choices=("kerntrace", "bcc"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        {"kerntrace": child_kerntrace, "bcc": child_bcc}[args.child]()
        return 0
    if os.geteuid() != 0:
        sys.exit("run as root")
    modes = ["none", "kerntrace", "bcc"] + (["bpftrace"] if shutil.which("bpftrace") else [])
    d = tempfile.mkdtemp(prefix="kerntrace-bench-")
    # kerntrace's compiled-object cache of this run only: the first round
    # compiles, the later ones load the compiled program.
    cache = os.path.join(d, "cache")
    os.mkdir(cache, 0o700)
    os.environ["KERNTRACE_BPF_CACHE"] = cache
    load_before = os.getloadavg()
    busy0, kids0, wall0 = busy_cpu_seconds(), children_cpu_seconds(), time.monotonic()
    try:
        exe = build_workload(d)
        run_workload(exe, args.iterations // 10)          # warm up
        rates = {m: [] for m in modes}
        attach = {m: [] for m in modes}
        start_only = {m: [] for m in modes}
        rss = {m: [] for m in modes}
        for r in range(args.rounds):
            for mode in modes:
                tracer = Tracer(mode) if mode != "none" else None
                pid, rate = run_workload(exe, args.iterations)
                rates[mode].append(rate)
                if tracer:
                    tracer.finish(pid)
                    attach[mode].append(tracer.t_attach)
                    start_only[mode].append(tracer.t_start)
                    if tracer.rss_kb:
                        rss[mode].append(tracer.rss_kb / 1024.0)
                    if tracer.count != args.iterations:
                        print("warning: %s counted %s of %d calls" % (mode, tracer.count,
                                                                      args.iterations))
            sys.stderr.write("round %d/%d done\n" % (r + 1, args.rounds))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    wall = time.monotonic() - wall0
    others = max(0.0, busy_cpu_seconds() - busy0 - (children_cpu_seconds() - kids0))
    load_after = os.getloadavg()

    med = {m: statistics.median(v) for m, v in rates.items()}
    print("\nworkload: %d getppid() calls, %d rounds; median (min-max)\n"
          % (args.iterations, args.rounds))
    print("%-10s %30s %9s %9s %26s %18s" % ("mode", "calls/s", "vs none", "vs bcc",
                                            "start -> attached", "peak RSS"))
    for m in modes:
        print("%-10s %30s %8.2fx %8.3fx %26s %18s" % (
            m, spread([x / 1e6 for x in rates[m]], "%.2fM"), med["none"] / med[m],
            med["bcc"] / med[m], spread(attach[m], "%.2f s"), spread(rss[m], "%.0f MB")))
    if start_only["kerntrace"]:
        print("\nkerntrace start() alone: %s; first round compiled (%.2f s to attached), "
              "later rounds loaded the cached program"
              % (spread(start_only["kerntrace"], "%.3f s"), attach["kerntrace"][0]))
    for peer in ("bcc", "bpftrace"):
        if peer in med:
            slow = med[peer] / med["kerntrace"]
            print("kerntrace slowdown vs %s: %.3f (goal <= 1.05): %s"
                  % (peer if peer == "bpftrace" else "hand-written bcc", slow,
                     "ok" if slow <= 1.05 else "OVER"))
    ncpu = os.cpu_count() or 1
    busy = load_before[0] > 0.5 * ncpu or others > 0.25 * wall
    print("\nmachine: %d CPUs; load average %.2f before, %.2f after; everything else used "
          "%.1f CPU-s in %.0f s%s" % (ncpu, load_before[0], load_after[0], others, wall,
                                      " -- BUSY: numbers are inflated and noisy" if busy
                                      else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
