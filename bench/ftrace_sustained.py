#!/usr/bin/env python3
"""Does the ftrace backend keep up with a sustained event rate without
losing events?  (Issue 3, performance: no event lost at 200,000 events/s
for 10 s.)  Run on demand, as root, on a live kernel; not a test.

    .venv/bin/python bench/ftrace_sustained.py [--rate 200000,400000,800000]
        [--seconds 10] [--backend ftrace,ebpf] [--buffer-kb KB]

Workload: a small C program (PACED_C below, compiled with cc into a temp
dir) that prints its PID, waits for a line on stdin, then makes exactly
rate*seconds getppid() system calls, paced with clock_gettime so call i is
not made before start + i/rate (checked every millisecond's worth of calls;
when it falls behind it catches up without sleeping).  Each call fires
syscalls:sys_enter_getppid once.

Tracer: the real command line, as a user runs it, in a subprocess:

    kerntrace tpcount --backend B -p PID -i SECONDS+MARGIN -c 1 \
        syscalls:sys_enter_getppid

The workload is released only once the tool's banner is on stderr (tracing
is live).  The count is read from the tool's table and the losses from its
"WARNING: N events lost" line: the same Report.lost the --json "lost" field
carries.  (--json prints no banner, so a --json run cannot be told apart
from one still starting; the table is the only output that says "live".)

Printed per run: target and achieved rate, worst lag behind the pacing
schedule, events expected (calls made), counted, lost; for ftrace the
instance's per-CPU buffer size and its peak unread backlog (per_cpu/cpu*/
stats "bytes", sampled every 50 ms: how close the run came to overwriting;
--backlog prints the total every 0.5 s); CPU seconds of the kerntrace
process before the release ("start": Python start-up, the eBPF compile)
and while tracing (the rest, idle end of the interval included), also per
event; the workload's CPU ns per call (the tracing cost paid in the traced
process); the load on the machine (1-min load average at the start;
"others": CPUs kept busy by everything else while the workload ran, from
/proc/stat; other pytest processes); PASS/FAIL: counted == expected and
lost == 0.

The rate ladder of a backend stops at its first run that loses events.
The criterion line judges the ftrace run at 200,000/s: PASS needs no loss,
an exact count, >= 10 s and an achieved rate within 2% of the target.
Exit status 0 when the criterion passed or was not run, 1 when it failed,
2 when the bench could not run (not root, no cc, no kerntrace).

After each run the bench checks that no instance named after the kerntrace
process is left in tracefs.
"""

import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TRACEPOINT = "syscalls:sys_enter_getppid"
BANNER = "Tracing 1 tracepoint"
CRITERION_RATE = 200000
CRITERION_SECONDS = 10.0
# An achieved rate this close to the target counts as the target.
RATE_TOLERANCE = 0.02

PACED_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* argv: rate (calls/s), seconds.  Prints its PID, waits for a line on stdin,
   then makes rate*seconds getppid() system calls, call i not before
   start + i/rate.  Prints: calls made, elapsed ns, worst lag behind the
   schedule in ns. */
int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    double rate = atof(argv[1]), secs = atof(argv[2]);
    long n = (long)(rate * secs + 0.5);
    long batch = (long)(rate / 1000.0);     /* one millisecond's worth */
    long long start, lag = 0;
    char go[8];

    if (batch < 1)
        batch = 1;
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    start = now_ns();
    for (long i = 0; i < n;) {
        long long due = start + (long long)((double)i * 1e9 / rate), t = now_ns();
        if (t < due) {
            struct timespec ts = { due / 1000000000LL, due % 1000000000LL };
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else if (t - due > lag) {
            lag = t - due;
        }
        long end = i + batch < n ? i + batch : n;
        for (; i < end; i++)
            syscall(SYS_getppid);
    }
    printf("%ld %lld %lld\n", n, now_ns() - start, lag);
    fflush(stdout);
    return 0;
}
"""


# ---------------------------------------------------------------------------
# The machine

def kerntrace_command():
    exe = os.path.join(REPO, ".venv", "bin", "kerntrace")
    if os.access(exe, os.X_OK):
        return [exe]
    found = shutil.which("kerntrace")
    return [found] if found else None


def tracefs_root():
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(p, "instances")) or os.path.isdir(os.path.join(p, "events")):
            return p
    return None


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except (IOError, OSError):
        return "?"


def other_processes(word):
    """PIDs (not ours) whose command line mentions `word`: other engineers'
    test runs sharing the 2 CPUs."""
    me = {os.getpid(), os.getppid()}
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in me:
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (IOError, OSError):
            continue
        if word in cmd and "ftrace_sustained" not in cmd:
            found.append(int(d))
    return found


def busy_cpu_seconds():
    """CPU seconds spent not idle, all CPUs together, since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    return (sum(v[:8]) - v[3] - v[4]) / float(os.sysconf("SC_CLK_TCK"))


def wait_idle(limit_s):
    """Wait up to limit_s for no pytest to be running; returns seconds waited."""
    t0 = time.time()
    while limit_s > 0 and other_processes("pytest") and time.time() - t0 < limit_s:
        time.sleep(2)
    return time.time() - t0


def cpu_seconds(pid):
    """utime + stime of a live (or not yet reaped) process, in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (IOError, OSError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    # Fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def build_workload(tmpdir):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src = os.path.join(tmpdir, "paced.c")
    exe = os.path.join(tmpdir, "kerntrace_paced")
    with open(src, "w") as f:
        f.write(PACED_C)
    subprocess.check_call([cc, "-O2", "-o", exe, src])
    return exe


# ---------------------------------------------------------------------------
# Watching the instance's buffer while a run goes on

class BacklogSampler(object):
    """Samples the unread bytes of every CPU buffer of the kerntrace
    process's instance (per_cpu/cpuN/stats "bytes") every `period` s and
    keeps the peak: how much of the buffer the reader let fill up."""

    def __init__(self, root, tracer_pid, period=0.05):
        self.root = root
        self.prefix = "kerntrace-%d-" % tracer_pid
        self.period = period
        self.instance = None
        self.buffer_kb = None
        self.subbuf_kb = None
        self.peak = 0
        self.history = []       # (seconds since start, unread bytes over all CPUs)
        self._stop = threading.Event()
        self._thread = None

    def find_instance(self):
        d = os.path.join(self.root, "instances")
        try:
            names = [n for n in os.listdir(d) if n.startswith(self.prefix)]
        except OSError:
            return None
        if names:
            self.instance = os.path.join(d, names[0])
            self.buffer_kb = _read(os.path.join(self.instance, "buffer_size_kb"))
            self.subbuf_kb = _read(os.path.join(self.instance, "buffer_subbuf_size_kb"))
        return self.instance

    def start(self):
        if self.find_instance():
            self._thread = threading.Thread(target=self._run)
            self._thread.daemon = True
            self._thread.start()

    def _run(self):
        per_cpu = os.path.join(self.instance, "per_cpu")
        try:
            stats = [os.path.join(per_cpu, c, "stats") for c in os.listdir(per_cpu)]
        except OSError:
            return
        t0 = time.time()
        while not self._stop.wait(self.period):
            total = 0
            for path in stats:
                m = re.search(r"^bytes:\s*(\d+)", _read(path) or "", re.M)
                if m:
                    total += int(m.group(1))
                    self.peak = max(self.peak, int(m.group(1)))
            self.history.append((time.time() - t0, total))

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def leftover_instances(root, tracer_pid):
    try:
        return [n for n in os.listdir(os.path.join(root, "instances"))
                if n.startswith("kerntrace-%d-" % tracer_pid)]
    except OSError:
        return []


# ---------------------------------------------------------------------------
# One run

class Run(object):
    def __init__(self, backend, rate, seconds):
        self.backend = backend
        self.rate = rate
        self.seconds = seconds
        self.expected = None
        self.elapsed = None
        self.max_lag = None
        self.counted = None
        self.lost = None
        self.tracer_cpu = None
        self.workload_cpu = None
        self.buffer_kb = None
        self.peak_backlog = None
        self.load = None
        self.pytests = 0
        self.others = None
        self.startup_cpu = None
        self.history = []
        self.error = None
        self.overran = False
        self.leftovers = []

    @property
    def achieved(self):
        if self.expected and self.elapsed:
            return self.expected / self.elapsed
        return None

    @property
    def ok(self):
        return (self.error is None and not self.overran and self.lost == 0
                and self.counted == self.expected)


def _wait_reaped(pid, timeout):
    """os.wait4 with a timeout: (exit status, rusage), or None on timeout."""
    end = time.time() + timeout
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return status, usage
        if time.time() > end:
            return None
        time.sleep(0.02)


def run_once(args, exe, backend, rate, root):
    run = Run(backend, rate, args.seconds)
    run.load = loadavg()
    run.pytests = len(other_processes("pytest"))
    interval = args.seconds + max(args.margin, 0.5 * args.seconds)
    work = subprocess.Popen([exe, str(rate), str(args.seconds)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    wpid = int(work.stdout.readline())
    cmd = args.kerntrace + ["tpcount", "--backend", backend, "-p", str(wpid),
                            "-i", "%g" % interval, "-c", "1"]
    if args.buffer_kb and backend == "ftrace":
        cmd += ["--buffer-kb", str(args.buffer_kb)]
    cmd.append(TRACEPOINT)
    env = dict(os.environ, KERNTRACE_DISABLE_PLUGINS="1")
    tracer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    sampler = None
    stderr = b""
    try:
        stderr = _read_until(tracer, BANNER.encode(), 120)
        if BANNER.encode() not in stderr:
            run.error = "no banner: %s" % _last_line(stderr)
            return run
        if backend == "ftrace":
            sampler = BacklogSampler(root, tracer.pid)
            sampler.start()
            run.buffer_kb = sampler.buffer_kb
        cpu_at_release = cpu_seconds(tracer.pid) or 0.0
        run.startup_cpu = cpu_at_release
        busy_at_release, wall_at_release = busy_cpu_seconds(), time.time()
        work.stdin.write(b"go\n")
        work.stdin.flush()
        line = work.stdout.readline().split()
        reaped = _wait_reaped(wpid, 10)
        if reaped is None:
            run.error = "workload did not end"
            return run
        wstatus, wusage = reaped
        work.returncode = os.waitstatus_to_exitcode(wstatus)
        run.workload_cpu = wusage.ru_utime + wusage.ru_stime
        # CPUs kept busy meanwhile by everything but the workload and the
        # tracer (other engineers' runs, this bench's sampler, the kernel).
        tracer_cpu = (cpu_seconds(tracer.pid) or cpu_at_release) - cpu_at_release
        run.others = max(0.0, busy_cpu_seconds() - busy_at_release - run.workload_cpu
                         - tracer_cpu) / max(1e-3, time.time() - wall_at_release)
        if len(line) == 3:
            run.expected, ns, lag = (int(x) for x in line)
            run.elapsed, run.max_lag = ns / 1e9, lag / 1e9
        else:
            run.error = "workload failed (status %d)" % wstatus
        # Still tracing when the workload is done?  Else the interval ended
        # before it and the count is short for a reason other than losses.
        run.overran = not _alive(tracer.pid)
        # The tool prints once its interval ends; keep its pipes drained.
        out, err = _communicate_and_time(tracer, interval + 60, run, cpu_at_release)
        stderr += err
        if sampler is not None:
            sampler.stop()
            run.peak_backlog = sampler.peak
            run.history = sampler.history
        if run.error is None and tracer.returncode != 0:
            run.error = "kerntrace exit %s: %s" % (tracer.returncode, _last_line(stderr))
        counts = re.findall(r"^%s\s+(\d+)$" % re.escape(TRACEPOINT), out.decode(), re.M)
        run.counted = sum(int(c) for c in counts)
        run.lost = sum(int(n) for n in re.findall(r"WARNING: (\d+) events lost",
                                                  stderr.decode()))
        return run
    finally:
        if sampler is not None:
            sampler.stop()
        for p in (work, tracer):
            if p.returncode is None and p.poll() is None:
                p.send_signal(signal.SIGINT if p is tracer else signal.SIGKILL)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        run.leftovers = leftover_instances(root, tracer.pid) if root else []


def _alive(pid):
    """Running (not exited)?  Read from /proc so nothing reaps it."""
    stat = _read("/proc/%d/stat" % pid)
    return bool(stat) and stat[stat.rindex(")") + 2:][:1] != "Z"


def _read_until(p, needle, timeout):
    """Read p's stderr until `needle` (or EOF / timeout); returns what was read."""
    buf = b""
    end = time.time() + timeout
    fd = p.stderr.fileno()
    while needle not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        elif p.poll() is not None:
            break
    return buf


def _communicate_and_time(p, timeout, run, cpu_at_release):
    """Read p's stdout and stderr to EOF, then reap it with wait4 so its own
    CPU time is known (not mixed with the workload's)."""
    out, err = [], []
    fds = {p.stdout.fileno(): out, p.stderr.fileno(): err}
    end = time.time() + timeout
    while fds and time.time() < end:
        r, _, _ = select.select(list(fds), [], [], 0.5)
        for fd in r:
            chunk = os.read(fd, 65536)
            if chunk:
                fds[fd].append(chunk)
            else:
                del fds[fd]
    got = _wait_reaped(p.pid, max(1.0, end - time.time()))
    if got is None:
        run.error = "kerntrace did not end"
        return b"".join(out), b"".join(err)
    status, usage = got
    p.returncode = os.waitstatus_to_exitcode(status)
    run.tracer_cpu = usage.ru_utime + usage.ru_stime - cpu_at_release
    return b"".join(out), b"".join(err)


def _last_line(data):
    lines = [l for l in data.decode("utf-8", "replace").splitlines() if l.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


# ---------------------------------------------------------------------------
# Report

COLUMNS = ("backend", "target/s", "achieved/s", "lag ms", "expected", "counted", "lost",
           "buf KB/cpu", "peak unread", "start CPU s", "tracer CPU s", "us/event", "wl ns/call",
           "load", "others", "pytest", "result")


def row(r):
    def num(v, fmt="%d"):
        return "-" if v is None else fmt % v
    per_event = (r.tracer_cpu * 1e6 / r.expected) if r.tracer_cpu is not None and r.expected else None
    per_call = (r.workload_cpu * 1e9 / r.expected) if r.workload_cpu is not None and r.expected else None
    if r.peak_backlog is not None and r.buffer_kb and r.buffer_kb.isdigit():
        peak = "%.1f%%" % (100.0 * r.peak_backlog / (int(r.buffer_kb) * 1024))
    else:
        peak = "-"
    if r.error:
        result = "ERROR"
    elif r.overran:
        result = "INCOMPLETE"
    else:
        result = "PASS" if r.ok else "FAIL"
    return (r.backend, num(r.rate), num(r.achieved), num(r.max_lag and r.max_lag * 1e3, "%.1f"),
            num(r.expected), num(r.counted), num(r.lost), r.buffer_kb or "-", peak,
            num(r.startup_cpu, "%.2f"), num(r.tracer_cpu, "%.2f"), num(per_event, "%.2f"), num(per_call, "%.0f"),
            r.load, num(r.others, "%.2f"), str(r.pytests), result)


def print_table(runs):
    rows = [COLUMNS] + [row(r) for r in runs]
    widths = [max(len(x[i]) for x in rows) for i in range(len(COLUMNS))]
    for x in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(x, widths))))
    for r in runs:
        if r.error:
            print("  %s %d/s: %s" % (r.backend, r.rate, r.error))
        if r.overran:
            print("  %s %d/s: the workload ran past the tracing interval (achieved %s/s): "
                  "raise --margin" % (r.backend, r.rate, "%d" % r.achieved if r.achieved else "?"))
        if r.leftovers:
            print("  %s %d/s: LEFT IN TRACEFS: %s" % (r.backend, r.rate, ", ".join(r.leftovers)))


def print_backlog(r, step=0.5):
    """Unread KB in the instance (all CPUs), every `step` s of the run."""
    marks, next_t = [], 0.0
    for t, b in r.history:
        if t >= next_t:
            marks.append("%.1fs:%dK" % (t, b // 1024))
            next_t = t + step
    print("    unread: " + " ".join(marks))


def criterion(runs):
    """None if not run, else (passed, why)."""
    for r in runs:
        if r.backend == "ftrace" and r.rate == CRITERION_RATE and r.seconds >= CRITERION_SECONDS:
            if not r.ok:
                return False, ("lost %s, counted %s of %s%s" % (r.lost, r.counted, r.expected,
                                                                ": " + r.error if r.error else ""))
            if r.achieved < CRITERION_RATE * (1 - RATE_TOLERANCE):
                return False, "the workload reached only %d/s" % r.achieved
            return True, "%d events at %d/s, none lost" % (r.expected, r.achieved)
    return None


# ---------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", default="200000,400000,800000",
                   help="target events/s, comma-separated ladder (default %(default)s); "
                        "a backend's ladder stops at its first loss")
    p.add_argument("--seconds", type=float, default=CRITERION_SECONDS,
                   help="duration of each run (default %(default)g)")
    p.add_argument("--backend", default="ftrace,ebpf",
                   help="comma-separated backends (default %(default)s)")
    p.add_argument("--buffer-kb", type=int,
                   help="ftrace per-CPU buffer, passed to kerntrace (default: the backend's)")
    p.add_argument("--margin", type=float, default=3.0,
                   help="tracing interval beyond --seconds (at least half of --seconds; "
                        "default %(default)g)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each run wait up to S seconds for no pytest to be running")
    p.add_argument("--backlog", action="store_true",
                   help="print the ftrace instance's unread KB every 0.5 s of each run")
    args = p.parse_args(argv)
    try:
        args.rates = [int(float(x)) for x in args.rate.split(",") if x.strip()]
    except ValueError:
        p.error("--rate: numbers separated by commas")
    if not args.rates or min(args.rates) <= 0 or args.seconds <= 0:
        p.error("--rate and --seconds must be positive")
    args.backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if any(b not in ("ftrace", "ebpf") for b in args.backends):
        p.error("--backend: ftrace and/or ebpf")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.stderr.write("ftrace_sustained: needs root (live tracing)\n")
        return 2
    args.kerntrace = kerntrace_command()
    if not args.kerntrace:
        sys.stderr.write("ftrace_sustained: no kerntrace command (.venv/bin/kerntrace)\n")
        return 2
    root = tracefs_root()
    before = sorted(os.listdir(os.path.join(root, "instances"))) if root else []
    tmpdir = tempfile.mkdtemp(prefix="kerntrace-bench-")
    try:
        exe = build_workload(tmpdir)
        if exe is None:
            sys.stderr.write("ftrace_sustained: no C compiler (cc) for the workload\n")
            return 2
        print("kerntrace sustained-rate bench: %s, %g s per run, %d CPUs, Linux %s"
              % (TRACEPOINT, args.seconds, os.cpu_count() or 0, os.uname().release))
        runs = []
        for backend in args.backends:
            for rate in args.rates:
                waited = wait_idle(args.wait_idle)
                if waited >= 1:
                    print("  (waited %.0f s for other pytest runs to end)" % waited)
                r = run_once(args, exe, backend, rate, root)
                runs.append(r)
                print("  %s %d/s: %s" % (backend, rate, row(r)[-1]))
                if args.backlog and r.history:
                    print_backlog(r)
                sys.stdout.flush()
                if r.error or r.lost:
                    break
        print()
        print_table(runs)
        after = sorted(os.listdir(os.path.join(root, "instances"))) if root else []
        print()
        print("tracefs instances before: %s; after: %s" % (before or "none", after or "none"))
        verdict = criterion(runs)
        if verdict is None:
            print("criterion (ftrace, %d/s for %g s, no event lost): not run"
                  % (CRITERION_RATE, CRITERION_SECONDS))
            return 0
        print("criterion (ftrace, %d/s for %g s, no event lost): %s (%s)"
              % (CRITERION_RATE, CRITERION_SECONDS, "PASS" if verdict[0] else "FAIL", verdict[1]))
        return 0 if verdict[0] else 1
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
