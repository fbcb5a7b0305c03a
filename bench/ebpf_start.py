#!/usr/bin/env python3
"""Start time and memory of kerntrace's eBPF backend, next to the same tool
written by hand in bcc and in bpftrace, measured in the same run (run on
demand, as root; not a test).

Each tool is launched as a user launches it and timed from the spawn to its
banner ("Tracing ..." for kerntrace and the bcc tool, bpftrace's
"Attaching N probes..."), then left tracing for a moment and stopped with
Ctrl-C.  Peak RSS is the tool's VmHWM just before the Ctrl-C.  The tools run
in turn, round after round, so a busy moment of the machine hits them all:

    kerntrace   kerntrace iolatency --backend ebpf (the installed console
                script next to this Python); with the compile cache, its
                first run (cache emptied before it) and later runs are
                reported apart
    bcc         HAND_WRITTEN_BCC below, the same block I/O latency
                histogram a bcc user would write, run by the distribution's
                python3 as bcc's own tools are
    bpftrace    BPFTRACE_PROGRAM below (it prints its banner before it
                attaches, so it is ahead by its attach time)
    ftrace      kerntrace iolatency --backend ftrace, for reference

Printed: per tool the median, min and max over the rounds of the time to
the banner and of the peak RSS; kerntrace's ratios to the bcc tool (goals:
start <= 1.0x, RSS <= 1.0x); the load average before and after, and how
much CPU everything else used meanwhile (a busy machine makes every number
larger and noisier).

    sudo .venv/bin/python bench/ebpf_start.py [--rounds 7]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HAND_WRITTEN_BCC = r'''
import sys
from bcc import BPF

PROGRAM = """
struct key_t { u64 dev; u64 sector; };
BPF_HASH(start, struct key_t, u64, 10240);
BPF_HISTOGRAM(dist);

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct key_t k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    u64 ts = bpf_ktime_get_ns();
    start.update(&k, &ts);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct key_t k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    u64 *tsp = start.lookup(&k);
    if (tsp == 0)
        return 0;
    dist.increment(bpf_log2l((bpf_ktime_get_ns() - *tsp) / 1000));
    start.delete(&k);
    return 0;
}
"""

b = BPF(text=PROGRAM)
print("Tracing block device I/O... Hit Ctrl-C to end.", flush=True)
try:
    sys.stdin.read()
except KeyboardInterrupt:
    pass
b["dist"].print_log2_hist("usecs")
'''

BPFTRACE_PROGRAM = (
    "tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = nsecs; } "
    "tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ { "
    "@usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000); "
    "delete(@start[args->dev, args->sector]); }")

SYSTEM_PYTHON = "/usr/bin/python3"
# The cache directory of the eBPF backend's compiled programs (as root).
CACHE_ENV = "KERNTRACE_BPF_CACHE"


# ---------------------------------------------------------------------------
def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (IOError, OSError):
        pass
    return 0


def busy_cpu_seconds():
    """CPU seconds all CPUs spent not idle, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / float(os.sysconf("SC_CLK_TCK"))


def children_cpu_seconds():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_to_banner(argv, banner, env=None, stdin=None, settle=0.3, timeout=60):
    """(seconds from spawn to the banner line, peak RSS in kB) of one run."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env)
    try:
        seen = b""
        while banner not in seen:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("%s ended before its banner: %r" % (argv[0], seen[-200:]))
            seen += chunk
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("%s: no banner in %d s" % (argv[0], timeout))
        elapsed = time.monotonic() - t0
        time.sleep(settle)
        rss = vm_hwm_kb(p.pid)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    return elapsed, rss


def kerntrace_command():
    here = os.path.dirname(os.path.abspath(sys.executable))
    path = os.path.join(here, "kerntrace")
    return [path] if os.path.exists(path) else [sys.executable, "-m", "kerntrace.core"]


def spread(values, fmt):
    if not values:
        return "-"
    return (fmt + " (" + fmt + " - " + fmt + ")") % (statistics.median(values), min(values),
                                                      max(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="runs of each tool (median reported)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    env = dict(os.environ)
    # Installed Python files are byte-compiled (pip does it): measure that.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    work = tempfile.mkdtemp(prefix="kerntrace-bench-")
    cache_dir = os.path.join(work, "cache")
    os.mkdir(cache_dir, 0o700)
    env[CACHE_ENV] = cache_dir
    nocache = dict(env, **{CACHE_ENV: "off"})
    kt = kerntrace_command()
    subprocess.call(kt + ["iolatency", "--print-program"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, env=env)  # writes kerntrace's .pyc files
    tools = [
        ("kerntrace (no cache)", lambda: time_to_banner(
            kt + ["iolatency", "--backend", "ebpf"], b"Tracing", env=nocache)),
        ("kerntrace (cold cache)", lambda: (_empty(cache_dir), time_to_banner(
            kt + ["iolatency", "--backend", "ebpf"], b"Tracing", env=env))[1]),
        ("kerntrace (warm cache)", lambda: time_to_banner(
            kt + ["iolatency", "--backend", "ebpf"], b"Tracing", env=env)),
    ]
    if os.path.exists(SYSTEM_PYTHON):
        script = os.path.join(work, "iolatency_bcc.py")
        with open(script, "w") as f:
            f.write(HAND_WRITTEN_BCC)
        tools.append(("bcc", lambda: time_to_banner(
            [SYSTEM_PYTHON, script], b"Tracing", env=env, stdin=subprocess.PIPE)))
    if shutil.which("bpftrace"):
        tools.append(("bpftrace", lambda: time_to_banner(
            ["bpftrace", "-e", BPFTRACE_PROGRAM], b"Attaching", env=env)))
    tools.append(("ftrace", lambda: time_to_banner(
        kt + ["iolatency", "--backend", "ftrace"], b"Tracing", env=env)))

    starts = dict((name, []) for name, _ in tools)
    rss = dict((name, []) for name, _ in tools)
    load_before = os.getloadavg()
    busy0, kids0, wall0 = busy_cpu_seconds(), children_cpu_seconds(), time.monotonic()
    try:
        for r in range(args.rounds):
            for name, run in tools:
                t, kb = run()
                starts[name].append(t)
                rss[name].append(kb / 1024.0)
            sys.stderr.write("round %d/%d done\n" % (r + 1, args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - wall0
    others = max(0.0, busy_cpu_seconds() - busy0 - (children_cpu_seconds() - kids0))
    load_after = os.getloadavg()

    print("\nkerntrace iolatency and its peers: %d rounds; median (min - max)\n" % args.rounds)
    print("%-24s %28s %28s" % ("tool", "spawn -> banner", "peak RSS"))
    for name, _ in tools:
        print("%-24s %28s %28s" % (name, spread(starts[name], "%.3f s"),
                                   spread(rss[name], "%.0f MB")))
    if "bcc" in starts:
        bcc_t, bcc_m = statistics.median(starts["bcc"]), statistics.median(rss["bcc"])
        print("\nagainst the hand-written bcc tool (goals: start <= 1.00x, RSS <= 1.00x):")
        for name, _ in tools:
            if name.startswith("kerntrace"):
                t = statistics.median(starts[name]) / bcc_t
                m = statistics.median(rss[name]) / bcc_m
                print("  %-24s start %.2fx %-4s RSS %.2fx %s" % (
                    name, t, "ok" if t <= 1.0 else "OVER", m, "ok" if m <= 1.0 else "OVER"))
    ncpu = os.cpu_count() or 1
    busy = load_before[0] > 0.5 * ncpu or others > 0.25 * wall
    print("\nmachine: %d CPUs; load average %.2f before, %.2f after; everything else used "
          "%.1f CPU-s in %.0f s%s" % (ncpu, load_before[0], load_after[0], others, wall,
                                      " -- BUSY: numbers are inflated and noisy" if busy
                                      else ""))
    return 0


def _empty(d):
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))


if __name__ == "__main__":
    sys.exit(main())
