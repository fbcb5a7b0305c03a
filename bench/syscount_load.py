#!/usr/bin/env python3
"""syscount under a heavy system call load, side by side with the tools it
succeeds (run on demand, as root; not a test).

Workload: a small C program (PACED_C) that prints its pid, waits for a line
on stdin, then makes RATE*SECONDS getppid() calls paced at RATE per second
(default 1,000,000/s for 5 s; when it falls behind it catches up without
sleeping) and prints its elapsed wall and CPU nanoseconds.

Tracers, one at a time over the same workload, each counting every system
call of the host (no pid filter: what a user runs):

    none              no tracing: the workload's own cost per call
    kerntrace-ebpf    syscount --backend ebpf --json -T 100000
    kerntrace-ftrace  syscount --backend ftrace --json -T 100000
    bcc               syscount-bpfcc -T 100000
    bpftrace          tracepoint:raw_syscalls:sys_exit { @[args->id] = count(); }
    perf-tools -c     perf-tools' syscount -c (perf stat of syscalls:sys_enter_*:
                      in-kernel counters, per syscall)
    perf-tools        perf-tools' syscount (perf record of every sys_enter_*
                      event to perf.data, then perf script | awk, per process)

Each tracer runs in a cgroup of its own (cgroup v2 cpu.stat, or v1
cpuacct.usage), entered before it execs, so its whole process tree is
measured (bcc's python, perf and its awk, bpftrace).  The workload is
released once the tracer says it is tracing; tracer CPU is counted from the
release until the tracer has printed its results and exited (its start-up
is not counted).  Work done inside the kernel on the workload's behalf (a BPF
program, writing a ring buffer event) is charged to the workload: it is the
slowdown.

Printed per tracer: the getppid() calls counted (expected: RATE*SECONDS),
all events counted, events lost (as the tool reports them), tracer CPU ns per
event, the workload's CPU ns per call and its slowdown against no tracing,
and all the CPU tracing cost per workload call wherever it was paid (the
tracer's, plus the workload's extra); then the ratios the issue sets goals for: kerntrace-ebpf / bcc (<= 1.05),
perf-tools / kerntrace-ftrace (>= 3).

    sudo .venv/bin/python bench/syscount_load.py [--rate 1000000] [--seconds 5]
        [--only kerntrace-ebpf,bcc,...] [--warmup 15] [--rounds 3]
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PACED_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv)
{
    long rate = atol(argv[1]);
    long total = atol(argv[2]);
    char line[16];
    struct timespec a, now;
    struct rusage ru;
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &a);
    long step = rate / 1000 > 0 ? rate / 1000 : 1;
    for (long i = 0; i < total; i++) {
        if (i % step == 0) {
            for (;;) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((ns(now) - ns(a)) * (double)rate / 1e9 >= i)
                    break;
                struct timespec nap = {0, 100000};
                nanosleep(&nap, NULL);
            }
        }
        syscall(SYS_getppid);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    getrusage(RUSAGE_SELF, &ru);
    printf("%lld %lld\n", ns(now) - ns(a),
           (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL);
    return 0;
}
"""

GETPPID = 110 if os.uname()[4] == "x86_64" else 173

BPFTRACE = ('BEGIN { printf("READY\\n"); } '
            'tracepoint:raw_syscalls:sys_exit { @[args->id] = count(); }')


# ---------------------------------------------------------------------------
# cgroups: one per tracer, its whole process tree inside from its exec on.

class CpuGroup(object):
    """A cgroup that only measures CPU time (v2 "cpu.stat" usage_usec, or
    v1 cpuacct.usage in ns); removed by close()."""

    def __init__(self, name):
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.path, self.v2 = os.path.join("/sys/fs/cgroup", name), True
        elif os.path.isdir("/sys/fs/cgroup/cpuacct"):
            self.path, self.v2 = os.path.join("/sys/fs/cgroup/cpuacct", name), False
        else:
            raise SystemExit("no cgroup CPU accounting here (cgroup v2, or v1 cpuacct)")
        os.mkdir(self.path)

    def enter(self):
        """preexec_fn: the child joins before it execs."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0\n")

    def cpu_ns(self):
        if self.v2:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) * 1000
            return 0
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read())

    def close(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        print("WARNING: could not remove cgroup %s" % self.path, file=sys.stderr)


# ---------------------------------------------------------------------------

def read_until(stream, needle, p, timeout=120):
    fd, text, end = stream.fileno(), "", time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            text += chunk
            if needle in text:
                return text
        elif p.poll() is not None:
            break
    raise RuntimeError("no %r from the tracer; got %r" % (needle, text[-500:]))


def kerntrace_cmd(backend):
    return ([sys.executable, "-m", "kerntrace.core", "syscount", "--backend", backend,
             "--json", "-T", "100000"], "stderr", "Tracing")


def parse_kerntrace(out, err):
    counts, lost = {}, 0
    for line in out.splitlines():
        rep = json.loads(line)
        lost += rep.get("lost", 0)
        for c in rep.get("counts", ()):
            counts[c["key"]["id"]] = counts.get(c["key"]["id"], 0) + c["count"]
    return counts.get(GETPPID, 0), sum(counts.values()), lost


def parse_name_rows(out, err, getppid="getppid"):
    rows = dict((m.group(1), int(m.group(2))) for m in
                re.finditer(r"^\s*(\S+)\s+(\d+)\s*$", out, re.M))
    return rows.get(getppid, 0), sum(rows.values()), None


def parse_bpftrace(out, err):
    rows = dict((int(m.group(1)), int(m.group(2)))
                for m in re.finditer(r"^@\[(-?\d+)\]: (\d+)$", out, re.M))
    return rows.get(GETPPID, 0), sum(rows.values()), None


def parse_perf_count(out, err):
    # syscount -c prints "SYSCALL COUNT" rows, names without sys_enter_
    return parse_name_rows(out + err, "")


def parse_perf_by_comm(out, err):
    rows = dict((m.group(1), int(m.group(2))) for m in
                re.finditer(r"^(\S+)\s+(\d+)\s*$", out, re.M))
    return rows.get("sk-getppid", 0), sum(rows.values()), None


def tracers(only, seconds, warmup):
    out = [("kerntrace-ebpf",) + kerntrace_cmd("ebpf") + (parse_kerntrace,),
           ("kerntrace-ftrace",) + kerntrace_cmd("ftrace") + (parse_kerntrace,)]
    bcc = shutil.which("syscount-bpfcc")
    if bcc:
        out.append(("bcc", [bcc, "-T", "100000"], "stdout", "Tracing", parse_name_rows))
    bt = shutil.which("bpftrace")
    if bt:
        out.append(("bpftrace", [bt, "-B", "line", "-e", BPFTRACE], "stdout", "READY",
                    parse_bpftrace))
    pt = shutil.which("syscount-perf") or shutil.which("syscount-perftools")
    if pt and shutil.which("perf"):
        # perf-tools ignores SIGINT itself (a terminal's Ctrl-C reaches perf
        # through the process group) and prints nothing when tracing
        # starts: it runs for a duration that spans the workload, which is
        # released after perf has had WARMUP seconds to open its events.
        d = "%d" % (warmup + seconds + 3)
        out.append(("perf-tools -c", [pt, "-c", "-d", d], None, warmup, parse_perf_count))
        out.append(("perf-tools", [pt, "-d", d], None, warmup, parse_perf_by_comm))
    return [t for t in out if not only or t[0] in only]


def run_one(name, argv, stream, ready, parse, exe, rate, total, workdir):
    w = subprocess.Popen([exe, str(rate), str(total)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    wpid = int(w.stdout.readline())
    group = p = None
    try:
        if argv is not None:
            group = CpuGroup("kerntrace-bench-%d-%s" % (os.getpid(), re.sub(r"\W", "", name)))
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            # perf record writes its data to stdout when stdout is a pipe:
            # perf-tools, which says nothing until the end, gets a file.
            stdout = subprocess.PIPE
            if stream is None:
                stdout = open(os.path.join(workdir, "stdout.txt"), "w+b")
            p = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE,
                                 preexec_fn=group.enter, cwd=workdir, env=env)
            if stream is None:
                time.sleep(ready)
            else:
                read_until(getattr(p, stream), ready, p)
            cpu0 = group.cpu_ns()
        w.stdin.write(b"go\n")
        w.stdin.flush()
        wall, wcpu = [int(x) for x in w.stdout.readline().split()]
        w.wait()
        result = {"name": name, "wall": wall, "wcpu": wcpu, "pid": wpid}
        if p is not None:
            time.sleep(0.5)
            if stream is not None:          # the others stop by themselves
                p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=1800)
            if stream is None:
                stdout.seek(0)
                out = stdout.read(1 << 20)
                stdout.close()
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
            result["tcpu"] = group.cpu_ns() - cpu0
            result["getppid"], result["events"], result["lost"] = parse(out, err)
            if not result["events"]:
                result["note"] = (err.strip().splitlines() or ["no output"])[-1][:100]
        return result
    finally:
        if w.poll() is None:
            w.kill()
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        if group is not None:
            group.close()


def median_result(runs):
    """One result of several rounds: the median of each figure."""
    out = dict(runs[0])
    for key in ("wall", "wcpu", "tcpu", "getppid", "events", "lost"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = sorted(values)[len(values) // 2]
    return out


def build(workdir):
    src = os.path.join(workdir, "paced.c")
    exe = os.path.join(workdir, "sk-getppid")
    with open(src, "w") as f:
        f.write(PACED_C)
    subprocess.check_call(["cc", "-O2", "-o", exe, src])
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=1000000, help="getppid() calls per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--only", help="comma-separated tracer names")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (medians printed)")
    ap.add_argument("--warmup", type=float, default=15.0,
                    help="seconds perf-tools gets to open its events before the workload "
                         "starts (it says nothing when ready; default 15)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    only = set(a.only.split(",")) if a.only else None
    total = int(a.rate * a.seconds)
    workdir = tempfile.mkdtemp(prefix="kerntrace-syscount-bench-")
    try:
        exe = build(workdir)
        rounds = {}
        # Rounds interleave the tracers, so a burst of load from elsewhere
        # on the host falls on all of them; each figure is the median.
        for _ in range(a.rounds):
            rounds.setdefault("none", []).append(
                run_one("none", None, None, None, None, exe, a.rate, total, workdir))
            for t in tracers(only, a.seconds, a.warmup):
                rounds.setdefault(t[0], []).append(
                    run_one(t[0], t[1], t[2], t[3], t[4], exe, a.rate, total, workdir))
        results = [median_result(runs) for runs in rounds.values()]
        base = results[0]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("workload: %d getppid() calls paced at %d/s (%.1f s); medians of %d rounds; "
          "load average %.2f" % (total, a.rate, a.seconds, a.rounds, os.getloadavg()[0]))
    print("%-17s %11s %11s %10s %10s %12s %11s %9s %10s" % (
        "TRACER", "GETPPID", "EVENTS", "LOST", "RATE/s", "CPU ns/evt", "WL ns/call",
        "SLOWDOWN", "ns/call"))
    by = {}
    for r in results:
        by[r["name"]] = r
        per_call = r["wcpu"] / float(total)
        slow = r["wcpu"] / float(base["wcpu"])
        if r["name"] == "none":
            print("%-17s %11s %11s %10s %10d %12s %11.1f %9.2f" % (
                "none", "-", "-", "-", total / (r["wall"] / 1e9), "-", per_call, 1.0))
            continue
        events = r["events"] + (r["lost"] or 0)
        r["per_event"] = r["tcpu"] / float(max(events, 1))
        r["slow"] = slow
        # what tracing costs per workload call, wherever it is paid: the
        # tracer's CPU plus the workload's extra CPU (probe, BPF program)
        r["total"] = (r["tcpu"] + r["wcpu"] - base["wcpu"]) / float(total)
        print("%-17s %11d %11d %10s %10d %12.1f %11.1f %9.2f %10.1f%s" % (
            r["name"], r["getppid"], r["events"], "?" if r["lost"] is None else r["lost"],
            total / (r["wall"] / 1e9), r["per_event"], per_call, slow, r["total"],
            ("  (%s)" % r["note"]) if r.get("note") else ""))
    print()
    if "kerntrace-ebpf" in by and "bcc" in by:
        k, b = by["kerntrace-ebpf"], by["bcc"]
        print("kerntrace-ebpf / bcc: tracer CPU per event %.2f, workload CPU %.2f, "
              "all tracing CPU per call %.2f (goal <= 1.05)"
              % (k["per_event"] / max(b["per_event"], 1e-9), k["wcpu"] / float(b["wcpu"]),
                 k["total"] / max(b["total"], 1e-9)))
    if "kerntrace-ebpf" in by and "bpftrace" in by:
        k, b = by["kerntrace-ebpf"], by["bpftrace"]
        print("kerntrace-ebpf / bpftrace: tracer CPU per event %.2f, workload CPU %.2f"
              % (k["per_event"] / max(b["per_event"], 1e-9), k["wcpu"] / float(b["wcpu"])))
    for other in ("perf-tools", "perf-tools -c"):
        if "kerntrace-ftrace" in by and other in by:
            k, p = by["kerntrace-ftrace"], by[other]
            print("%s / kerntrace-ftrace: tracer CPU per event %.2f (goal >= 3), "
                  "workload CPU %.2f, all tracing CPU per call %.2f"
                  % (other, p["per_event"] / max(k["per_event"], 1e-9),
                     p["wcpu"] / float(k["wcpu"]), p["total"] / max(k["total"], 1e-9)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
