#!/usr/bin/env python3
"""tpcount on the ftrace backend under the highest tracepoint rate this
machine makes, beside perf-tools' tpoint text pipeline (run on demand, as
root; not a test).

Workload: bench/syscount_load.py's paced C program making N getppid()
calls as fast as it can (the pace set far above what it reaches), pinned
to one CPU; the tracer pinned to another, each in a cgroup of its own
(its whole process tree's CPU from the workload's release until it has
printed its counts and exited).  Tracers, one at a time:

    kerntrace  tpcount --backend ftrace --json syscalls:sys_enter_getppid
               (counted per trace_pipe_raw page: pagecount.py)
    tpoint     perf-tools' tpoint syscalls:sys_enter_getppid | wc -l
               (the kernel formats every event as text in trace_pipe)

Printed (medians over the rounds, with their range): events counted (all
of the host's getppid() calls: the workload's N and the rare others), lost
as the tool reports them, the event rate reached (over the run, and the
best one-second interval tpcount reported), tracer CPU ns per event,
and the events one core of the tracer handles per second at that cost
(1e9 / ns per event): the issue's goal is >= 2M/s on one core without
loss.  The machine's load average says whether other work ran.

    sudo .venv/bin/python bench/tpcount_live.py [--calls 4000000] [--rounds 3]
        [--workers 2]   (several workload processes: a higher event rate, the
                         tracer sharing the CPUs with them)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from syscount_load import CpuGroup, build, read_until  # noqa: E402

TRACEPOINT = "syscalls:sys_enter_getppid"


LOCK = "/var/tmp/.ftrace-lock"


def lock_holder():
    """The perf-tools lock's live holder ("PID n: command"), or None."""
    try:
        with open(LOCK) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "PID %d: %s" % (pid, f.read().replace(b"\0", b" ").decode()[:80])
    except (IOError, OSError, ValueError, IndexError):
        return None


def kerntrace_cmd():
    return [sys.executable, "-m", "kerntrace.core", "tpcount", "--backend", "ftrace",
            "--json", "-i", "1", TRACEPOINT]


def parse_kerntrace(out):
    counted = lost = 0
    for line in out.splitlines():
        rep = json.loads(line)
        counted += sum(c["count"] for c in rep["counts"])
        lost += rep.get("lost") or 0
    return counted, lost


def run_one(name, exe, calls, cpus, workdir, workers=1):
    ncpu = os.cpu_count() or 1
    ws = []
    for i in range(workers):
        cpu = cpus[0] if workers == 1 else i % ncpu
        w = subprocess.Popen(["taskset", "-c", str(cpu), exe, str(calls * 100),
                              str(calls // workers)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        int(w.stdout.readline())
        ws.append(w)
    group = CpuGroup("kerntrace-bench-%d-%s" % (os.getpid(), name))
    p = None
    try:
        # one workload: the tracer on a CPU of its own; several: anywhere
        pin = ["taskset", "-c", str(cpus[1])] if workers == 1 else []
        if name == "kerntrace":
            p = subprocess.Popen(pin + kerntrace_cmd(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, preexec_fn=group.enter,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
            read_until(p.stderr, "Tracing", p)
        else:
            # wc ignores the Ctrl-C that ends tpoint, and prints the count
            # tpoint reads /sys/kernel/debug/tracing: debugfs is mounted in
            # a mount namespace of its own (gone with it, nothing left)
            script = ("mountpoint -q /sys/kernel/debug || mount -t debugfs none "
                      "/sys/kernel/debug; %s %s | (trap '' INT; wc -l)"
                      % (shutil.which("tpoint-perf"), TRACEPOINT))
            p = subprocess.Popen(pin + ["unshare", "-m", "--propagation", "private",
                                        "sh", "-c", script],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 preexec_fn=lambda: (os.setsid(), group.enter()), cwd=workdir)
            time.sleep(3)
        cpu0 = group.cpu_ns()
        t0 = time.time()
        for w in ws:
            w.stdin.write(b"go\n")
            w.stdin.flush()
        for w in ws:
            w.stdout.readline()
            w.wait()
        wall = int((time.time() - t0) * 1e9)
        time.sleep(1.5)
        if name == "kerntrace":
            p.send_signal(signal.SIGINT)
        else:
            os.killpg(p.pid, signal.SIGINT)
        out, _err = p.communicate(timeout=600)
        tcpu = group.cpu_ns() - cpu0
        out = out.decode(errors="replace")
        peak = None
        if name == "kerntrace":
            counted, lost = parse_kerntrace(out)
            peak = max([sum(c["count"] for c in json.loads(line)["counts"])
                        / json.loads(line)["seconds"] for line in out.splitlines()] or [0])
        else:
            # the banner line is counted too; tpoint reports no losses
            counted, lost = int(out.split()[-1]) - 1, None
        return {"counted": counted, "lost": lost, "wall": wall, "tcpu": tcpu, "peak": peak}
    finally:
        for proc in ws + [p]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        group.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=4000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="kerntrace,tpoint")
    ap.add_argument("--workers", type=int, default=1,
                    help="workload processes (one per CPU in turn; above 1 the tracer "
                         "shares the CPUs with them)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    ncpu = os.cpu_count() or 1
    cpus = (0, 1 if ncpu > 1 else 0)
    names = [n for n in ("kerntrace", "tpoint") if not a.only or n in a.only.split(",")]
    if "tpoint" in names and not shutil.which("tpoint-perf"):
        print("tpoint-perf not installed: perf-tools' tpoint left out")
        names.remove("tpoint")
    holder = lock_holder()
    if "tpoint" in names and holder:
        print("perf-tools' tpoint left out: the top-level buffer is in use (%s held by %s)"
              % (LOCK, holder))
        names.remove("tpoint")
    load0 = os.getloadavg()[0]
    results = dict((n, []) for n in names)
    with tempfile.TemporaryDirectory(prefix="kerntrace-bench-") as workdir:
        exe = build(workdir)
        for _ in range(a.rounds):
            for n in names:
                results[n].append(run_one(n, exe, a.calls, cpus, workdir, a.workers))
    print("workload: %d getppid() calls as fast as %s; %d rounds; load average %.2f "
          "before, %.2f after (%d CPUs: above ~%d other work ran)"
          % (a.calls, "one CPU makes them, tracer on CPU %d" % cpus[1] if a.workers == 1
             else "%d processes make them, tracer anywhere" % a.workers, a.rounds, load0,
             os.getloadavg()[0], ncpu, ncpu // 2))
    print("%-10s %10s %8s %11s %11s %12s %18s" % ("TRACER", "COUNTED", "LOST", "EVENTS/s",
                                                  "PEAK 1s", "CPU ns/evt",
                                                  "events/s per core"))
    per_event = {}
    for n, runs in results.items():
        ns = [r["tcpu"] / max(1, r["counted"]) for r in runs]
        rate = [r["counted"] * 1e9 / r["wall"] for r in runs]
        med = statistics.median(ns)
        per_event[n] = med
        lost = [r["lost"] for r in runs]
        peaks = [r["peak"] for r in runs if r["peak"] is not None]
        print("%-10s %10d %8s %11.0f %11s %12.1f %18.0f   (ns/evt %.1f-%.1f)"
              % (n, statistics.median([r["counted"] for r in runs]),
                 "?" if None in lost else max(lost), statistics.median(rate),
                 "%.0f" % max(peaks) if peaks else "-", med, 1e9 / med, min(ns), max(ns)))
    if "kerntrace" in per_event and "tpoint" in per_event:
        print("tpoint / kerntrace: tracer CPU per event %.1f"
              % (per_event["tpoint"] / per_event["kerntrace"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
