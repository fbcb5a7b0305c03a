#!/usr/bin/env python3
"""Block I/O tracers measured live, side by side, on the same workload
(issue 14).  Run on demand, as root; not a test.  Needs fio, losetup and a
cgroup2 mount; perf-tools-unstable, bcc and bpftrace for their columns
(scripts/provision-test-host installs them; a missing one is skipped and
said).

    sudo .venv/bin/python bench/block_live.py [--only iolatency,max,snoop,start]
        [--reps 3] [--ios 160000] [--iops 20000]

Workload: fio, 4 KiB O_DIRECT random reads (psync, one job) on a loop
device whose backing file is in /dev/shm (no disk underneath: the rate is
the block layer's and the tracer's), paced at --iops with --ios I/Os in
all.  The device is the bench's own; every tracer is filtered to it, so
the expected count is exactly the I/Os fio reports.

Tracers, one at a time over the same workload, repeated --reps times in
turn (so a busy spell of the shared machine hits all of them alike):

  iolatency   kerntrace iolatency --backend ftrace; perf-tools iolatency
              (iolatency-perf, run in a private mount namespace that shows
              tracefs at /sys/kernel/debug/tracing, where it looks);
              kerntrace iolatency --backend ebpf; bpftrace (a latency
              histogram keyed like the others).
  max         fio unpaced (--max-ios I/Os): untraced, then kerntrace
              iolatency on ftrace: the highest rate this machine sustains
              and whether every I/O was counted.
  snoop       record tools, output to a file: kerntrace biosnoop (ftrace,
              ebpf), kerntrace iosnoop (ftrace), a hand-written bcc
              ring-buffer snoop printing biosnoop's fields (HAND_BCC
              below), perf-tools iosnoop; at --iops, then at
              --snoop-iops (50k) for losses.
  start       kerntrace iolatency --backend ftrace: wall time from launch
              to the banner and peak RSS, --start-reps times.

Tracer CPU is user + system of the tracer's whole process tree (its own
cgroup v2, entered before exec: bash, cat and awk of perf-tools; bcc's
python; kerntrace), counted from the workload's release (tracer ready)
until it has printed and exited after SIGINT: start-up is not counted
(the start section measures it).  Work the kernel does in the traced task
(a BPF program, writing the ring buffer) is not the tracer's.

Printed: per tracer the median CPU seconds and the spread (min-max),
microseconds per I/O, I/Os counted (every repetition) and losses reported;
the load (1-min load average, CPUs kept busy by others during the run,
other pytest processes); and the goals' ratios:

  kerntrace-ftrace / perf-tools iolatency CPU   <= 0.25, every I/O counted
  max rate: counted == I/Os, 0 lost
  record tools: kerntrace per-event CPU / hand-written bcc <= 1.0, per
  backend; 0 lost at --snoop-iops
  start: banner <= 0.15 s, RSS <= 25 MB

A goal judged on a busy machine (others keeping > 0.5 CPU busy) says so.
Exit 0 (2 when the bench cannot run).
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

GOAL_IOLATENCY_RATIO = 0.25
GOAL_SNOOP_RATIO = 1.0
GOAL_START_S = 0.15
GOAL_START_RSS_MB = 25.0
BUSY_OTHERS = 0.5       # CPUs kept busy by others above which a run is "busy"

# perf-tools looks for tracing under debugfs only: show it tracefs there in
# a mount namespace of its own (nothing changes for the rest of the host).
PERF_TOOLS_NS = ("mount -t tmpfs none /sys/kernel/debug && mkdir /sys/kernel/debug/tracing"
                 " && mount --bind {root} /sys/kernel/debug/tracing && exec \"$@\"")

BPFTRACE_HIST = r"""
tracepoint:block:block_rq_issue /args->dev == DEVT/ { @start[args->dev, args->sector] = nsecs; }
tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ {
    @usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000);
    @n = count();
    delete(@start[args->dev, args->sector]);
}
"""

# A hand-written bcc snoop of biosnoop's fields, the way one writes it
# today: start in a hash map, a ring buffer record per completion, one
# formatted line per record.
HAND_BCC_C = r"""
struct key_t { u64 dev; u64 sector; };      /* no padding: all of it is hashed */
struct start_t { u64 ts; u32 pid; u32 bytes; char comm[16]; };
struct rec_t { u64 ts; u64 delta; u64 sector; u32 dev; u32 pid; u32 bytes; char rwbs[8];
               char comm[16]; };
BPF_HASH(start, struct key_t, struct start_t, 65536);
BPF_RINGBUF_OUTPUT(recs, 1024);
BPF_ARRAY(lost, u64, 1);

TRACEPOINT_PROBE(block, block_rq_issue) {
    if (args->dev != DEVT)
        return 0;
    struct key_t k = {.dev = args->dev, .sector = args->sector};
    struct start_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.pid = bpf_get_current_pid_tgid() >> 32;
    s.bytes = args->bytes;
    bpf_get_current_comm(&s.comm, sizeof(s.comm));
    start.update(&k, &s);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete) {
    if (args->dev != DEVT)
        return 0;
    struct key_t k = {.dev = args->dev, .sector = args->sector};
    struct start_t *s = start.lookup(&k);
    if (!s)
        return 0;
    struct rec_t *r = recs.ringbuf_reserve(sizeof(struct rec_t));
    if (!r) {
        int zero = 0;
        lost.atomic_increment(zero);
        start.delete(&k);
        return 0;
    }
    r->ts = bpf_ktime_get_ns();
    r->delta = r->ts - s->ts;
    r->sector = args->sector;
    r->dev = args->dev;
    r->pid = s->pid;
    r->bytes = s->bytes;
    __builtin_memcpy(r->comm, s->comm, sizeof(r->comm));
    bpf_probe_read_kernel(r->rwbs, sizeof(r->rwbs), args->rwbs);
    recs.ringbuf_submit(r, 0);
    start.delete(&k);
    return 0;
}
"""

HAND_BCC_PY = r"""
import sys
from bcc import BPF
devt, disk = int(sys.argv[1]), sys.argv[2]
b = BPF(text=sys.argv[3].replace("DEVT", str(devt)))
out = sys.stdout
first = [None]
def on_rec(ctx, data, size):
    r = b["recs"].event(data)
    if first[0] is None:
        first[0] = r.ts
    rw = r.rwbs.decode("ascii", "replace")
    out.write("%-11.6f %-14.14s %-7d %-9s %-1s %-10d %-7d %7.2f\n" % (
        (r.ts - first[0]) / 1e9, r.comm.decode("utf-8", "replace"), r.pid, disk,
        "W" if "W" in rw else "R", r.sector, r.bytes, r.delta / 1e6))
b["recs"].open_ring_buffer(on_rec)
out.write("%-11s %-14s %-7s %-9s %-1s %-10s %-7s %7s\n" % (
    "TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES", "LAT(ms)"))
out.flush()
sys.stderr.write("Tracing block I/O... Hit Ctrl-C to end.\n")
sys.stderr.flush()
try:
    while True:
        b.ring_buffer_poll()
except KeyboardInterrupt:
    b.ring_buffer_consume()
    out.flush()
    sys.stderr.write("lost %d\n" % b["lost"][0].value)
"""


# ---------------------------------------------------------------------------
# The machine
def kerntrace_command():
    exe = os.path.join(REPO, ".venv", "bin", "kerntrace")
    if os.access(exe, os.X_OK):
        return exe
    return shutil.which("kerntrace")


def tracefs_root():
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(p, "events")):
            return p
    return None


def mount_point(fstype):
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == fstype:
                return parts[1]
    return None


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def busy_cpu_seconds():
    """CPU seconds not idle, all CPUs, since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / float(os.sysconf("SC_CLK_TCK"))


def pytest_processes():
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if b"pytest" in f.read():
                        n += 1
            except (IOError, OSError):
                pass
    return n


class CpuGroup(object):
    """A cgroup v2 of its own for one process tree: usage() in seconds
    (user, system), also after its processes exited."""

    def __init__(self, base, name):
        self.path = os.path.join(base, "kerntrace-bench-%d-%s" % (os.getpid(), name))
        os.mkdir(self.path)

    def enter(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0\n")

    def usage(self):
        got = {}
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                got[k] = int(v) / 1e6
        return got.get("user_usec", 0.0), got.get("system_usec", 0.0)

    def remove(self):
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


class LoopDevice(object):
    """A loop device on a file in /dev/shm, the bench's own."""

    def __init__(self, size_mb=256):
        self.dir = tempfile.mkdtemp(prefix="kerntrace-bench-", dir="/dev/shm")
        img = os.path.join(self.dir, "disk.img")
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        self.size_mb = size_mb
        self.path = subprocess.check_output(["losetup", "-f", "--show", img]).decode().strip()
        st = os.stat(self.path)
        self.major, self.minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.devt = (self.major << 20) | self.minor      # the kernel's dev_t in tracepoints
        self.name = os.path.basename(self.path)

    def remove(self):
        subprocess.call(["losetup", "-d", self.path])
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Tracers
class Tracer(object):
    """name, argv, ready: text on stdout or stderr once tracing;
    count(out, err) -> I/Os counted; lost(out, err) -> events reported lost."""

    def __init__(self, name, argv, ready, count, lost=None, needs=None, env=None):
        self.name = name
        self.env = env
        self.argv = argv
        self.ready = ready
        self.count = count
        self.lost = lost or (lambda out, err: 0)
        self.needs = needs


def hist_rows(out, err):
    """I/Os in perf-tools-style histograms (every one printed)."""
    return sum(int(n) for n in re.findall(r"^\s*\d+ -> \d+\s*: (\d+)", out, re.M))


def kerntrace_lost(out, err):
    return sum(int(n) for n in re.findall(r"(\d+) events? (?:were )?lost", err))


def snoop_rows(out, err):
    """Rows of a snoop table: lines ending in a latency (all of these
    tools print it last; headers and banners do not end in a number)."""
    n = 0
    for line in out.splitlines():
        last = line.rsplit(None, 1)[-1:]
        if last:
            try:
                float(last[0])
                n += 1
            except ValueError:
                pass
    return n


def bpftrace_count(out, err):
    m = re.search(r"^@n: (\d+)", out, re.M)
    return int(m.group(1)) if m else 0


def hand_bcc_lost(out, err):
    m = re.search(r"^lost (\d+)", err, re.M)
    return int(m.group(1)) if m else 0


class TopLevelState(object):
    """What a perf-tools script leaves in the top-level buffer when it is
    killed (it did not end on SIGINT): the events it enabled, their
    filters and its lock.  Noted before the run, put back after a kill."""

    LOCK = "/var/tmp/.ftrace-lock"

    def __init__(self, root):
        self.root = root
        self.events = set(self._set_events())

    def _set_events(self):
        with open(os.path.join(self.root, "set_event")) as f:
            return [line.strip() for line in f if line.strip()]

    def restore(self):
        for ev in self._set_events():
            if ev in self.events or ":" not in ev:
                continue
            d = os.path.join(self.root, "events", *ev.split(":", 1))
            for name, value in (("enable", "0"), ("filter", "0")):
                try:
                    with open(os.path.join(d, name), "w") as f:
                        f.write(value + "\n")
                except OSError:
                    pass
        try:
            with open(self.LOCK) as f:
                pid = int(f.read().strip() or 0)
            os.kill(pid, 0)
        except (OSError, ValueError):
            # (its owner is gone: the script that was killed)
            try:
                os.unlink(self.LOCK)
            except OSError:
                pass


def perf_tools(root, script):
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            PERF_TOOLS_NS.format(root=root), "perf-tools", script]


def iolatency_tracers(kt, root, dev, base=None, seconds=None):
    """seconds: how long a run's workload takes, about: perf-tools'
    iolatency is told to end after it (its Ctrl-C trap keeps its interval
    loop going on bash 5: it would never end)."""
    majmin = "%d,%d" % (dev.major, dev.minor)
    pt_count = ["1", str(int(seconds) + 4)] if seconds else []
    extra = []
    if base:
        # the same tool from another checkout (a directory holding it as
        # kerntrace/), for before/after numbers in one run
        extra.append(Tracer("kerntrace-ftrace-base",
                            [kt, "iolatency", "--backend", "ftrace", "-d", majmin],
                            "Tracing block I/O", hist_rows, kerntrace_lost,
                            env={"PYTHONPATH": base}))
    return extra + [
        Tracer("kerntrace-ftrace", [kt, "iolatency", "--backend", "ftrace", "-d", majmin],
               "Tracing block I/O", hist_rows, kerntrace_lost),
        Tracer("perf-tools", perf_tools(root, "iolatency-perf") + ["-d", majmin] + pt_count,
               "Tracing block I/O", hist_rows, needs="iolatency-perf"),
        Tracer("kerntrace-ebpf", [kt, "iolatency", "--backend", "ebpf", "-d", majmin],
               "Tracing block I/O", hist_rows, kerntrace_lost),
        Tracer("bpftrace", ["bpftrace", "-e", BPFTRACE_HIST.replace("DEVT", str(dev.devt))],
               "Attaching", bpftrace_count, needs="bpftrace"),
    ]


def snoop_tracers(kt, root, dev):
    majmin = "%d,%d" % (dev.major, dev.minor)
    return [
        Tracer("kt-biosnoop-ftrace", [kt, "biosnoop", "--backend", "ftrace", "-d", dev.name],
               "TIME(s)", snoop_rows, kerntrace_lost),
        Tracer("kt-biosnoop-ebpf", [kt, "biosnoop", "--backend", "ebpf", "-d", dev.name],
               "TIME(s)", snoop_rows, kerntrace_lost),
        Tracer("kt-iosnoop-ftrace", [kt, "iosnoop", "--backend", "ftrace", "-d", majmin],
               "Tracing block I/O", snoop_rows, kerntrace_lost),
        Tracer("bcc-ringbuf", [_python_with_bcc(), "-c",
                               HAND_BCC_PY, str(dev.devt), dev.name, HAND_BCC_C],
               "Tracing block I/O", snoop_rows, hand_bcc_lost),
        Tracer("perf-tools-iosnoop", perf_tools(root, "iosnoop-perf") + ["-d", majmin],
               "Tracing block I/O", snoop_rows, needs="iosnoop-perf"),
    ]


def _python_with_bcc():
    """The distro's python (bcc's module is a distro package), else ours."""
    for python in ("/usr/bin/python3", sys.executable):
        if os.access(python, os.X_OK) and subprocess.call(
                [python, "-c", "import bcc"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL) == 0:
            return python
    return "python3"


# ---------------------------------------------------------------------------
class Result(object):
    def __init__(self, tracer):
        self.tracer = tracer
        self.cpu = None             # (user, system) seconds
        self.ios = None             # I/Os fio made
        self.iops = None
        self.counted = None
        self.lost = None
        self.load = None
        self.others = None
        self.pytests = None
        self.error = None

    @property
    def cpu_total(self):
        return None if self.cpu is None else self.cpu[0] + self.cpu[1]


def fio_argv(dev, ios, iops):
    argv = ["fio", "--name=kerntrace-bench", "--filename=" + dev.path, "--rw=randread",
            "--bs=4k", "--direct=1", "--ioengine=psync", "--number_ios=%d" % ios,
            "--size=%dM" % (dev.size_mb - 16), "--io_size=%dk" % (ios * 4),
            "--output-format=json"]
    if iops:
        argv.append("--rate_iops=%d" % iops)
    return argv


def run_fio(argv, group=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=group.enter if group else None)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError("fio failed: %s" % err.decode(errors="replace").strip()[-200:])
    text = out.decode("utf-8", "replace")
    job = json.loads(text[text.find("{"):])["jobs"][0]      # (fio may warn before it)
    return job["read"]["total_ios"], job["read"]["iops"]


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def run_traced(tracer, dev, ios, iops, cgroot, tmpdir, ready_timeout=60):
    """One run of `tracer` over the workload; a Result."""
    r = Result(tracer)
    r.load = loadavg()
    r.pytests = pytest_processes()
    group = CpuGroup(cgroot, tracer.name)
    out_path = os.path.join(tmpdir, tracer.name + ".out")
    err_path = os.path.join(tmpdir, tracer.name + ".err")
    top = TopLevelState(tracefs_root()) if tracer.argv[0] == "unshare" else None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(tracer.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=dict(os.environ, **(tracer.env or {})), preexec_fn=lambda: (os.setsid(), group.enter()))
    try:
        end = time.time() + ready_timeout
        while time.time() < end and p.poll() is None:
            if tracer.ready in _read(out_path) or tracer.ready in _read(err_path):
                break
            time.sleep(0.02)
        else:
            r.error = "not ready: %s" % (_read(err_path).strip().splitlines() or ["exited"])[-1]
            return r
        time.sleep(0.3)     # the last attach steps after the banner
        u0 = group.usage()
        busy0, wall0 = busy_cpu_seconds(), time.time()
        fio_group = CpuGroup(cgroot, "fio")
        try:
            r.ios, r.iops = run_fio(fio_argv(dev, ios, iops), fio_group)
            fio_cpu = sum(fio_group.usage())
        finally:
            fio_group.remove()
        wall = time.time() - wall0
        busy_tracer = sum(group.usage()) - sum(u0)
        r.others = max(0.0, busy_cpu_seconds() - busy0 - fio_cpu - busy_tracer) / wall
        time.sleep(1.0)     # the tracer's last reads
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            r.error = "did not end on SIGINT"
            if top is not None:
                top.restore()
        u1 = group.usage()
        r.cpu = (u1[0] - u0[0], u1[1] - u0[1])
        o, e = _read(out_path), _read(err_path)
        r.counted = tracer.count(o, e)
        r.lost = tracer.lost(o, e)
        return r
    finally:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                if top is not None:
                    top.restore()
        group.remove()


# ---------------------------------------------------------------------------
# Report
def median(xs):
    return statistics.median(xs) if xs else None


def summarize(results):
    """tracer name -> dict of medians and spreads over its repetitions."""
    by = {}
    for r in results:
        by.setdefault(r.tracer.name, []).append(r)
    out = {}
    for name, rs in by.items():
        good = [r for r in rs if r.error is None]
        cpus = [r.cpu_total for r in good]
        per_io = [r.cpu_total * 1e6 / r.ios for r in good if r.ios]
        out[name] = {
            "runs": rs, "cpu": median(cpus), "cpu_min": min(cpus) if cpus else None,
            "cpu_max": max(cpus) if cpus else None, "per_io": median(per_io),
            "user": median([r.cpu[0] for r in good]), "sys": median([r.cpu[1] for r in good]),
            "exact": bool(good) and all(r.counted == r.ios for r in good),
            "errors": [r.error for r in rs if r.error],
        }
    return out


def print_runs(results):
    cols = ("tracer", "I/Os", "IOPS", "counted", "lost", "user s", "sys s", "CPU s", "us/IO",
            "load", "others", "pytest")
    rows = [cols]
    for r in results:
        if r.error:
            rows.append((r.tracer.name, "-", "-", "-", "-", "-", "-", "-", "-", "%.1f" % r.load,
                         "-", str(r.pytests)))
            continue
        rows.append((r.tracer.name, str(r.ios), "%.0f" % r.iops, str(r.counted), str(r.lost),
                     "%.3f" % r.cpu[0], "%.3f" % r.cpu[1], "%.3f" % r.cpu_total,
                     "%.2f" % (r.cpu_total * 1e6 / r.ios), "%.1f" % r.load,
                     "%.2f" % r.others, str(r.pytests)))
    widths = [max(len(x[i]) for x in rows) for i in range(len(cols))]
    for x in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(x, widths))))
    for r in results:
        if r.error:
            print("  %s: %s" % (r.tracer.name, r.error))


def print_summary(summary, order):
    print("  %-20s %10s %19s %8s %s" % ("tracer", "median CPU", "spread (min-max)", "us/IO",
                                        "every I/O counted"))
    for name in order:
        s = summary.get(name)
        if s is None or s["cpu"] is None:
            continue
        print("  %-20s %9.3fs %8.3f - %7.3fs %8.2f %s" % (
            name, s["cpu"], s["cpu_min"], s["cpu_max"], s["per_io"],
            "yes" if s["exact"] else "NO (%s)" % ", ".join(
                "%s/%s" % (r.counted, r.ios) for r in s["runs"] if r.error is None)))


def busy_note(results):
    busy = [r for r in results if r.others is not None and r.others > BUSY_OTHERS]
    if busy:
        return (" (machine busy in %d of %d runs: others kept up to %.1f CPUs busy)"
                % (len(busy), len(results), max(r.others for r in busy)))
    return ""


def wanted(args, tracer):
    if args.tracers and tracer.name not in args.tracers:
        return False
    return available(tracer)


def available(tracer):
    if tracer.needs and not shutil.which(tracer.needs):
        print("  %s: skipped (%s not installed)" % (tracer.name, tracer.needs))
        return False
    return True


def section_iolatency(args, ctx):
    print("\n== iolatency: %d I/Os at %d IOPS, %d repetitions ==" % (args.ios, args.iops, args.reps))
    seconds = float(args.ios) / args.iops if args.iops else None
    tracers = [t for t in iolatency_tracers(ctx["kt"], ctx["root"], ctx["dev"], args.base,
                                            seconds) if wanted(args, t)]
    results = []
    for rep in range(args.reps):
        for t in tracers:
            r = run_traced(t, ctx["dev"], args.ios, args.iops, ctx["cgroot"], ctx["tmp"])
            results.append(r)
            print("  rep %d %-18s %s" % (rep + 1, t.name, _brief(r)))
            sys.stdout.flush()
    print()
    print_runs(results)
    print()
    s = summarize(results)
    print_summary(s, [t.name for t in tracers])
    kt, pt = s.get("kerntrace-ftrace"), s.get("perf-tools")
    if kt and pt and kt["cpu"] and pt["cpu"]:
        ratio = kt["cpu"] / pt["cpu"]
        met = ratio <= GOAL_IOLATENCY_RATIO and kt["exact"]
        print("\n  GOAL kerntrace-ftrace / perf-tools iolatency CPU: %.3f (goal <= %.2f, "
              "every I/O counted: %s): %s%s" % (ratio, GOAL_IOLATENCY_RATIO,
                                               "yes" if kt["exact"] else "no",
                                               "MET" if met else "NOT MET", busy_note(results)))
    for name in ("kerntrace-ftrace-base", "kerntrace-ebpf", "bpftrace"):
        if kt and s.get(name) and s[name]["cpu"]:
            print("  kerntrace-ftrace / %s CPU: %.1f" % (name, kt["cpu"] / s[name]["cpu"]))


def section_max(args, ctx):
    print("\n== highest rate: %d I/Os unpaced ==" % args.max_ios)
    dev = ctx["dev"]
    results = []
    for rep in range(args.max_reps):
        ios, iops = run_fio(fio_argv(dev, args.max_ios, 0))
        print("  rep %d untraced: %d I/Os at %.0f IOPS" % (rep + 1, ios, iops))
        t = iolatency_tracers(ctx["kt"], ctx["root"], dev)[0]
        r = run_traced(t, dev, args.max_ios, 0, ctx["cgroot"], ctx["tmp"])
        results.append(r)
        print("  rep %d %-18s %s (%.0f%% of the untraced rate)"
              % (rep + 1, t.name, _brief(r), 100.0 * (r.iops or 0) / iops))
    exact = all(r.error is None and r.counted == r.ios and r.lost == 0 for r in results)
    print("\n  GOAL max rate, kerntrace-ftrace counts every I/O (0 lost): %s%s"
          % ("MET" if exact else "NOT MET", busy_note(results)))


def section_snoop(args, ctx):
    dev = ctx["dev"]
    tracers = [t for t in snoop_tracers(ctx["kt"], ctx["root"], dev) if wanted(args, t)]
    print("\n== record tools, output to a file: %d I/Os at %d IOPS, %d repetitions =="
          % (args.ios, args.iops, args.reps))
    results = []
    for rep in range(args.reps):
        for t in tracers:
            r = run_traced(t, dev, args.ios, args.iops, ctx["cgroot"], ctx["tmp"])
            results.append(r)
            print("  rep %d %-18s %s" % (rep + 1, t.name, _brief(r)))
            sys.stdout.flush()
    print()
    print_runs(results)
    print()
    s = summarize(results)
    print_summary(s, [t.name for t in tracers])
    ref = s.get("bcc-ringbuf")
    if ref and ref["cpu"]:
        for name in ("kt-biosnoop-ftrace", "kt-iosnoop-ftrace", "kt-biosnoop-ebpf"):
            if s.get(name) and s[name]["cpu"]:
                ratio = s[name]["per_io"] / ref["per_io"]
                print("  GOAL %s / hand-written bcc per-event CPU: %.2f (goal <= %.2f): %s%s"
                      % (name, ratio, GOAL_SNOOP_RATIO,
                         "MET" if ratio <= GOAL_SNOOP_RATIO else "NOT MET", busy_note(results)))
    print("\n== record tools at %d IOPS (%d I/Os), output to a file: losses =="
          % (args.snoop_iops, args.snoop_ios))
    fast = []
    for t in tracers:
        r = run_traced(t, dev, args.snoop_ios, args.snoop_iops, ctx["cgroot"], ctx["tmp"])
        fast.append(r)
        print("  %-18s %s" % (t.name, _brief(r)))
    for r in fast:
        if r.tracer.name.startswith("kt-"):
            ok = r.error is None and r.counted == r.ios and not r.lost
            print("  GOAL %s no loss at %.0f IOPS: %s (%s of %s, %s lost)%s"
                  % (r.tracer.name, r.iops or 0, "MET" if ok else "NOT MET", r.counted, r.ios,
                     r.lost, busy_note([r])))


def _proc_status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        pass
    return None


def _proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (IOError, OSError, ValueError, IndexError):
        return None


def section_start(args, ctx):
    print("\n== ftrace start: kerntrace iolatency --backend ftrace, %d runs ==" % args.start_reps)
    times, rss, cpus, loads = [], [], [], []
    for _ in range(args.start_reps):
        loads.append(loadavg())
        t0 = time.monotonic()
        p = subprocess.Popen([ctx["kt"], "iolatency", "--backend", "ftrace", "3600"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        line = p.stdout.readline()
        banner = time.monotonic() - t0
        # CPU to the banner (less sensitive to a busy machine than the wall
        # time), and the peak RSS of the process itself: VmHWM belongs to
        # the program exec'd (wait4's ru_maxrss would count the forked
        # copy of this bench before the exec)
        cpu = _proc_cpu_s(p.pid)
        time.sleep(0.3)
        hwm = _proc_status_kb(p.pid, "VmHWM")
        p.send_signal(signal.SIGINT)
        p.communicate()
        if b"Tracing" not in line or hwm is None:
            print("  no banner: %r" % line)
            continue
        times.append(banner)
        cpus.append(cpu)
        rss.append(hwm / 1024.0)
        time.sleep(0.2)
    if not times:
        return
    print("  to banner: median %.3f s (min %.3f, max %.3f); CPU to banner: median %.3f s; "
          "peak RSS: median %.1f MB (max %.1f)"
          % (median(times), min(times), max(times), median(cpus), median(rss), max(rss)))
    met_t, met_r = median(times) <= GOAL_START_S, max(rss) <= GOAL_START_RSS_MB
    print("  GOAL start <= %.2f s: %s; RSS <= %.0f MB: %s (load %.1f-%.1f)"
          % (GOAL_START_S, "MET" if met_t else "NOT MET", GOAL_START_RSS_MB,
             "MET" if met_r else "NOT MET", min(loads), max(loads)))


def _brief(r):
    if r.error:
        return "ERROR: %s" % r.error
    return ("%d/%d counted, %s lost, CPU %.3f s (%.2f us/IO), %.0f IOPS, load %.1f, others %.2f"
            % (r.counted, r.ios, r.lost, r.cpu_total, r.cpu_total * 1e6 / r.ios, r.iops,
               r.load, r.others))


SECTIONS = {"iolatency": section_iolatency, "max": section_max, "snoop": section_snoop,
            "start": section_start}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="iolatency,max,snoop,start",
                   help="sections, comma-separated (default %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default %(default)s)")
    p.add_argument("--ios", type=int, default=160000, help="I/Os per run (default %(default)s)")
    p.add_argument("--iops", type=int, default=20000, help="paced rate (default %(default)s)")
    p.add_argument("--max-ios", type=int, default=1000000,
                   help="I/Os of an unpaced run (default %(default)s)")
    p.add_argument("--max-reps", type=int, default=2, help="default %(default)s")
    p.add_argument("--snoop-iops", type=int, default=50000, help="default %(default)s")
    p.add_argument("--snoop-ios", type=int, default=300000, help="default %(default)s")
    p.add_argument("--start-reps", type=int, default=7, help="default %(default)s")
    p.add_argument("--tracers", default="",
                   help="only these tracers (names as printed), comma-separated")
    p.add_argument("--base", metavar="DIR",
                   help="also run kerntrace-ftrace from DIR/kerntrace (PYTHONPATH=DIR): "
                        "another checkout, for before/after")
    args = p.parse_args(argv)
    args.tracers = [t.strip() for t in args.tracers.split(",") if t.strip()]
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        p.error("--only: unknown section %s (sections: %s)" % (", ".join(bad), ", ".join(SECTIONS)))
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.stderr.write("block_live: needs root (live tracing)\n")
        return 2
    for tool in ("fio", "losetup", "unshare"):
        if not shutil.which(tool):
            sys.stderr.write("block_live: needs %s (scripts/provision-test-host)\n" % tool)
            return 2
    kt = kerntrace_command()
    cgroot = mount_point("cgroup2")
    root = tracefs_root()
    if not kt or not cgroot or not root:
        sys.stderr.write("block_live: needs kerntrace (.venv/bin/kerntrace), a cgroup2 mount "
                         "and tracefs\n")
        return 2
    # perf-tools' scripts set the top-level buffer_size_kb and leave it so:
    # the bench puts it back (the kernel as found)
    buffer_kb_path = os.path.join(root, "buffer_size_kb")
    with open(buffer_kb_path) as f:
        buffer_kb = f.read().strip()
    dev = LoopDevice()
    tmp = tempfile.mkdtemp(prefix="kerntrace-bench-")
    try:
        ctx = {"kt": kt, "root": root, "dev": dev, "cgroot": cgroot, "tmp": tmp}
        print("kerntrace block I/O bench: %s (%d:%d) on /dev/shm, %d CPUs, Linux %s, load %.2f"
              % (dev.path, dev.major, dev.minor, os.cpu_count() or 0, os.uname().release,
                 loadavg()))
        print("  load: 1-min load average; others: CPUs kept busy by everything but the "
              "tracer and fio during the run")
        for s in args.sections:
            SECTIONS[s](args, ctx)
            sys.stdout.flush()
        return 0
    finally:
        dev.remove()
        shutil.rmtree(tmp, ignore_errors=True)
        with open(buffer_kb_path, "w") as f:
            f.write(buffer_kb + "\n")


if __name__ == "__main__":
    sys.exit(main())
