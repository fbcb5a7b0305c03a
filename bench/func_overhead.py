#!/usr/bin/env python3
"""Overhead of funccount and funclatency on a user function, side by side
with bcc's own tools and bpftrace (run on demand, as root; not a test).

Workload: a compiled C loop calling a noinline function N times as fast
as it can, timed inside the program.  Each tracer runs as its command
line would, started before the workload and stopped with Ctrl-C after it:

    none                   no tracing
    funccount/ebpf|ftrace  kerntrace funccount --backend B BIN:kt_hot
    funclatency/ebpf|ftrace kerntrace funclatency --backend B BIN:kt_hot
    bcc-funccount/-funclatency   /usr/sbin/*-bpfcc (where they attach)
    bpftrace-count/-latency      the same in bpftrace

Printed per tracer: the workload's median calls/s over the rounds, the
slowdown against no tracing and against bcc's tool (goal for eBPF: within
5% of bcc), and what the tracer counted (funccount must count every call;
the ftrace backend reports every loss on stderr, shown here).

    sudo .venv/bin/python bench/func_overhead.py [--calls N] [--rounds R]
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

WORKLOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) long kt_hot(long i)
{
    __asm__ volatile("" ::: "memory");
    return i + 1;
}

int main(int argc, char **argv)
{
    long n = atol(argv[1]), sum = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        sum += kt_hot(i);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %ld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL
           + (b.tv_nsec - a.tv_nsec), sum);
    return 0;
}
"""

KERNTRACE = [sys.executable, "-m", "kerntrace.core"]


def build(tmp):
    src, exe = os.path.join(tmp, "hot.c"), os.path.join(tmp, "kerntrace_hot")
    with open(src, "w") as f:
        f.write(WORKLOAD_C)
    subprocess.check_call(["cc", "-O2", "-o", exe, src])
    return exe


def tracers(exe):
    spec = exe + ":kt_hot"
    out = []
    for b in ("ebpf", "ftrace"):
        out.append(("funccount/" + b, KERNTRACE + ["funccount", "--backend", b, spec],
                    "Tracing 1 functions", "stderr"))
        out.append(("funclatency/" + b, KERNTRACE + ["funclatency", "--backend", b, spec],
                    "Tracing 1 functions", "stderr"))
    for tool in ("funccount", "funclatency"):
        path = shutil.which(tool + "-bpfcc")
        if path:
            out.append(("bcc-" + tool, [path, spec], "Tracing 1 functions", "stdout"))
    bt = shutil.which("bpftrace")
    if bt:
        ready = 'BEGIN { printf("kerntrace-ready\\n"); } '
        out.append(("bpftrace-count", [bt, "-e", ready + "uprobe:%s { @n = count(); }" % spec],
                    "kerntrace-ready", "stdout"))
        out.append(("bpftrace-latency",
                    [bt, "-e", ready + "uprobe:%s { @s[tid] = nsecs; } uretprobe:%s /@s[tid]/ "
                     "{ @ns = hist(nsecs - @s[tid]); delete(@s[tid]); }" % (spec, spec)],
                    "kerntrace-ready", "stdout"))
    return out


def run_workload(exe, calls):
    out = subprocess.check_output([exe, str(calls)], universal_newlines=True)
    return calls / (int(out.split()[0]) / 1e9)


def traced(exe, calls, argv, banner, stream):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    pipe = p.stderr if stream == "stderr" else p.stdout
    seen = []
    while True:
        line = pipe.readline()
        if not line:
            p.wait()
            return None, "did not start: %s" % " ".join(seen + [p.stderr.read()]).strip()[:200]
        seen.append(line.strip())
        if banner in line:
            break
    try:
        rate = run_workload(exe, calls)
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    text = "\n".join(seen) + out + err
    counted = re.findall(r"^(?:kt_hot\s+|@n: )(\d+)$", text, re.M)
    lost = re.findall(r"WARNING: (\d+) events lost", text)
    note = "counted %s" % (counted[-1] if counted else "-")
    if lost:
        note += ", lost %d (reported)" % sum(int(x) for x in lost)
    return rate, note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("func_overhead: needs root")
    tmp = tempfile.mkdtemp(prefix="kerntrace-bench-")
    exe = build(tmp)
    results = {"none": ([run_workload(exe, args.calls) for _ in range(args.rounds)], "")}
    for name, argv, banner, stream in tracers(exe):
        rates, note = [], ""
        for _ in range(args.rounds):
            rate, note = traced(exe, args.calls, argv, banner, stream)
            if rate is None:
                break
            rates.append(rate)
        results[name] = (rates, note)
    base = statistics.median(results["none"][0])
    print("%-20s %14s %10s %10s  %s" % ("TRACER", "CALLS/S", "SLOWDOWN", "VS BCC", "NOTE"))
    for name, (rates, note) in results.items():
        if not rates:
            print("%-20s %14s %10s %10s  %s" % (name, "-", "-", "-", note))
            continue
        med = statistics.median(rates)
        tool = "funccount" if "count" in name else "funclatency"
        bcc = results.get("bcc-" + tool, ([], ""))[0]
        vs = "%.2fx" % (statistics.median(bcc) / med) if bcc and name != "none" else "-"
        print("%-20s %14.0f %9.2fx %10s  %s" % (name, med, base / med, vs, note))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
