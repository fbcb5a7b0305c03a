#!/usr/bin/env python3
"""opensnoop under a heavy open() load (run on demand, as root; not a test).

A compiled C workload opens and closes one uniquely named file at a target
rate (default 200,000 opens/s) for a few seconds, with open() through the C
library (what opensnoop's uprobes and the syscall tracepoints both see).
One tracer at a time, each in rounds, side by side in one run:

    none             no tracing (the baseline)
    kerntrace-ebpf   kerntrace opensnoop --backend ebpf
    bcc              opensnoop-bpfcc (where it runs: it needs kprobes or fentry)
    bpftrace         sys_enter_openat/sys_exit_openat printing one line per open
    kerntrace-ftrace kerntrace opensnoop --backend ftrace
    ftrace-awk       perf-tools' text pipeline on the same events kerntrace's
                     ftrace backend uses on this host (a uprobe on the C
                     library's open() fetching the path, plus
                     syscalls:sys_exit_openat, in a tracefs instance), read
                     from trace_pipe by awk pairing them per pid, as
                     perf-tools' opensnoop does with its getname kprobe
    floor-read       the floor of kerntrace's Python route on the same
    floor-walk       instance as ftrace-awk (bench/opensnoop_floor.py):
    floor-decode     reading the pages only; and walking their entries;
                     and decoding the fields opensnoop reads; no time
                     ordering, pairing or printing (EVENTS% is then the
                     entries read per open: every one is read)

Measured per tracer:
    events    lines the tracer printed for the workload's file, of the opens
              made (missing = lost); "reported" = losses the tracer itself
              reported on stderr
    cpu/ev    the tracer's CPU time (every process of its tree: it runs in a
              cgroup of its own; cgroup v2 cpu.stat, else v1 cpuacct) per
              open made, in microseconds; cpu/line: per line it printed
              (higher where it lost events)
    slowdown  the workload's CPU time per open (its own cgroup: the probe
              and buffer costs the kernel charges to the opening task)
              against the untraced baseline, and the open rate it reached

Goals (issue 10): kerntrace's eBPF tool no costlier than bcc's (cpu/ev
ratio <= 1.05), kerntrace's ftrace tool at least 3x lower cpu/ev than the
text pipeline, every loss reported.

    sudo .venv/bin/python bench/opensnoop_load.py [--rate 200000] [--seconds 4]
         [--rounds 2] [--only kerntrace-ftrace,ftrace-awk] [--filtered]
         [--kerntrace "PYTHON -m kerntrace.core"]

Where the missing lines go (MISSING against REPORTED).  Unfiltered, every
tracer also traces the rest of the machine: REPORTED counts the losses of
every process's opens, so it is no exact account of the workload's.  With
--filtered the kerntrace tracers trace the workload's file only (the
FILENAME operand, applied in the kernel): then every open is a line or a
loss.  The eBPF backend pairs in the kernel, one record per open, so
MISSING == REPORTED.  The ftrace backend counts what the ring buffer lost,
in events: an open is two (the path's uprobe hit and the syscall's
return), and losing either loses the open, so REPORTED is between MISSING
and twice it.  (Measured at 50,000 and 200,000 opens as fast as possible,
-p PID or --filtered: nothing unaccounted on either backend.)
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORKLOAD_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *path = argv[1];
    long rate = atol(argv[2]);
    double seconds = atof(argv[3]);
    long n = 0, total = (long)(rate * seconds);
    char go[4];
    printf("%d\n", getpid());
    fflush(stdout);
    if (read(0, go, sizeof(go)) <= 0)
        return 1;
    long long start = now_ns();
    while (n < total) {
        /* pace in batches of 64, sleeping (not spinning, so the task's
           CPU time is its opens'): never faster than `rate` opens/s */
        long long due = start + (long long)(n * (1e9 / rate));
        if (now_ns() < due) {
            struct timespec t = { due / 1000000000LL, due % 1000000000LL };
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        }
        for (int i = 0; i < 64 && n < total; i++, n++) {
            int fd = open(path, O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    }
    printf("%ld %lld\n", n, now_ns() - start);
    return 0;
}
"""

# One line per open, as bcc's opensnoop.bt prints them (the path kept at
# entry, printed at return).
BPFTRACE = r"""
BEGIN { printf("ready\n"); }
tracepoint:syscalls:sys_enter_openat { @path[tid] = args->filename; }
tracepoint:syscalls:sys_exit_openat /@path[tid]/ {
    printf("%-6d %-16s %4d %s\n", pid, comm, args->ret, str(@path[tid]));
    delete(@path[tid]);
}
END { clear(@path); }
"""

# perf-tools opensnoop's awk, for this host's events: the uprobe line
# carries path="...", the sys_openat return line the descriptor.
AWK = r"""
$1 != "#" {
    split($0, line, "-"); sub(/^[ \t\r\n]+/, "", line[1]); comm = line[1]
    sub(/ .*$/, "", line[2]); pid = line[2]
}
$1 != "#" && /path="/ {
    match($0, /path="[^"]*"/); lastfile[pid] = substr($0, RSTART + 6, RLENGTH - 7)
}
$1 != "#" && /sys_openat ->/ {
    filename = lastfile[pid]
    if (!filename) next
    delete lastfile[pid]
    rval = $NF
    if (rval ~ /0xfffff/) rval = -1
    printf "%-16.16s %-6s %4s %s\n", comm, pid, rval, filename
    fflush()
}
$0 ~ /LOST.*EVENTS/ { print "WARNING: " $0 > "/dev/stderr" }
"""

FLOORS = ("floor-read", "floor-walk", "floor-decode")
TRACERS = ("none", "kerntrace-ebpf", "bcc", "bpftrace", "kerntrace-ftrace", "ftrace-awk") + FLOORS
FLOOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opensnoop_floor.py")


# ---------------------------------------------------------------------------
# CPU time of a process tree: a cgroup of its own
class CpuGroup(object):
    """A cgroup for one process tree; usage() is its CPU seconds so far
    (also after the processes exited)."""

    made = 0

    def __init__(self, name):
        self.v2 = _mount_point("cgroup2")
        self.v1 = None if self.v2 else _mount_point("cgroup", option="cpuacct")
        base = self.v2 or self.v1
        if base is None:
            raise SystemExit("no cgroup2 and no cgroup v1 cpuacct mount: cannot measure CPU")
        # numbered: a group whose last process is slow to go (removed by a
        # later remove() retry, or left to the next run) never blocks the next
        CpuGroup.made += 1
        self.path = os.path.join(base, "kerntrace-bench-%d-%d-%s"
                                 % (os.getpid(), CpuGroup.made, name))
        os.mkdir(self.path)

    def enter(self):
        """For preexec_fn: move the calling (child) process in."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0\n" if self.v2 else "%d\n" % os.getpid())

    def usage(self):
        if self.v2:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
            return 0.0
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)      # its last processes are still exiting


def _mount_point(fstype, option=None):
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ, opts = line.split()[:4]
            if typ == fstype and (option is None or option in opts.split(",")):
                return mnt
    return None


# ---------------------------------------------------------------------------
# The text pipeline's tracefs set-up (what kerntrace's ftrace backend does
# here, by hand) and removal
class TextPipeline(object):
    def __init__(self, root):
        from kerntrace.backends.ftrace import probes
        self.root = root
        self.group = "ktbench_%d" % os.getpid()
        self.instance = os.path.join(root, "instances", "ktbench-%d" % os.getpid())
        libc = probes.resolve_library("c")
        offset = probes.resolve_symbol(libc, "open")
        self.defs = ["p:%s/open %s:0x%x path=+0(%%di):ustring" % (self.group, libc, offset)]

    def set_up(self):
        os.mkdir(self.instance)
        try:
            for d in self.defs:
                _write(os.path.join(self.root, "uprobe_events"), d + "\n", append=True)
            _write(os.path.join(self.instance, "buffer_size_kb"), "8192\n")
            for ev in ("%s/open" % self.group, "syscalls/sys_exit_openat"):
                _write(os.path.join(self.instance, "events", ev, "enable"), "1\n")
        except Exception:
            self.tear_down()
            raise

    def floor_command(self, mode):
        """The floor of the Python route, on this instance's pages."""
        return [sys.executable, FLOOR_SCRIPT, mode, self.root, self.instance,
                "%s/open=path" % self.group, "syscalls/sys_exit_openat=ret"]

    def command(self):
        return "cat %s | awk %s" % (shlex.quote(os.path.join(self.instance, "trace_pipe")),
                                   shlex.quote(AWK))

    def tear_down(self):
        for ev in ("%s/open" % self.group, "syscalls/sys_exit_openat"):
            try:
                _write(os.path.join(self.instance, "events", ev, "enable"), "0\n")
            except (IOError, OSError):
                pass
        for _ in range(50):
            try:
                if os.path.isdir(self.instance):
                    os.rmdir(self.instance)
                break
            except OSError:
                time.sleep(0.1)
        try:
            _write(os.path.join(self.root, "uprobe_events"), "-:%s/open\n" % self.group,
                   append=True)
        except (IOError, OSError):
            pass


def _write(path, text, append=False):
    # os.open, not open(.., "a"): Python's append mode seeks, which tracefs
    # control files refuse (EINVAL).
    fd = os.open(path, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
class LineCounter(object):
    """Reads a stream to its end, counting lines that contain `needle`."""

    def __init__(self, stream, needle, ready=None):
        self.stream, self.needle, self.ready = stream, needle.encode(), ready
        self.count = 0
        self.text = []
        self.is_ready = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.daemon = True
        self.thread.start()

    def _run(self):
        for line in self.stream:
            if self.needle in line:
                self.count += 1
            else:
                self.text.append(line.decode("utf-8", "replace"))
                if self.ready is not None and self.ready.encode() in line:
                    self.is_ready.set()
        self.is_ready.set()


def tracer_command(name, args, pipeline, path=None):
    kt = shlex.split(args.kerntrace)
    only = [path] if args.filtered and path else []
    if name == "kerntrace-ebpf":
        return kt + ["opensnoop", "--backend", "ebpf"] + only, "stdout", "PATH"
    if name == "kerntrace-ftrace":
        return kt + ["opensnoop", "--backend", "ftrace"] + only, "stdout", "PATH"
    if name == "bcc":
        return [shutil.which("opensnoop-bpfcc") or "opensnoop-bpfcc"], "stdout", "PATH"
    if name == "bpftrace":
        return ["bpftrace", "-B", "line", "-e", BPFTRACE], "stdout", "ready"
    if name == "ftrace-awk":
        return ["sh", "-c", pipeline.command()], None, None
    if name in FLOORS:
        return pipeline.floor_command(name.split("-")[1]), "stdout", "ready"
    raise ValueError(name)


def one_run(name, args, exe, path, pipeline):
    """One tracer over one workload run: a dict of the measurements, or
    {"error": why} when the tracer cannot run here."""
    wl_group = CpuGroup("workload-%s" % name)
    tr_group = CpuGroup("tracer-%s" % name) if name != "none" else None
    tracer = counter = err_counter = None
    try:
        if name == "ftrace-awk" or name in FLOORS:
            pipeline.set_up()
        if tr_group is not None:
            argv, ready_stream, ready = tracer_command(name, args, pipeline, path)
            # its own process group (the pipeline's cat and awk are stopped
            # together, by the group's id) in its own cgroup
            tracer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL,
                                      preexec_fn=lambda: (os.setsid(), tr_group.enter()))
            counter = LineCounter(tracer.stdout, path, ready if ready_stream == "stdout" else None)
            err_counter = LineCounter(tracer.stderr, "\0never\0")
            if ready is not None:
                counter.is_ready.wait(120)
            else:
                time.sleep(1.0)          # cat is reading once it runs
            time.sleep(0.5)
            if tracer.poll() is not None:
                err_counter.thread.join(5)
                return {"error": (("".join(err_counter.text).strip().splitlines()
                                   or ["exited %d" % tracer.returncode])[-1])}
        wl = subprocess.Popen([exe, path, str(args.rate), str(args.seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              preexec_fn=wl_group.enter)
        wl.stdout.readline()
        wl.stdin.write(b"go\n")
        wl.stdin.flush()
        opens, elapsed_ns = (int(x) for x in wl.stdout.readline().split())
        wl.wait()
        result = {"opens": opens, "rate": opens / (elapsed_ns / 1e9),
                  "wl_cpu_us": wl_group.usage() * 1e6 / opens}
        if tracer is not None:
            # let it drain what it buffered, then stop it as a user would
            deadline = time.time() + 30
            last = -1
            while time.time() < deadline and counter.count != last:
                last = counter.count
                time.sleep(1.0)
            os.killpg(tracer.pid, signal.SIGINT)
            try:
                tracer.wait(60)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait()
            counter.thread.join(10)
            err_counter.thread.join(10)
            # bpftrace says "Lost N events" on stdout, the others on stderr
            errors = "".join(err_counter.text) + "".join(counter.text)
            if name in FLOORS:
                # no lines per open: the entries it read, every one
                m = re.search(r"floor \w+: (\d+) entries", "".join(counter.text))
                counter.count = int(m.group(1)) if m else 0
            result.update(events=counter.count, missing=opens - counter.count,
                          reported=_reported_losses(errors),
                          cpu_us=tr_group.usage() * 1e6 / opens,
                          cpu_us_printed=tr_group.usage() * 1e6 / max(counter.count, 1))
        return result
    finally:
        if tracer is not None and tracer.poll() is None:
            os.killpg(tracer.pid, signal.SIGKILL)
            tracer.wait()
        if name == "ftrace-awk" or name in FLOORS:
            pipeline.tear_down()
        wl_group.remove()
        if tr_group is not None:
            tr_group.remove()


def _reported_losses(text):
    n = 0
    # kerntrace, bpftrace, bcc, the kernel's text (perf-tools' WARNING lines)
    for pattern in (r"(\d+) events? lost", r"Lost (\d+) events",
                    r"Possibly lost (\d+) samples", r"LOST (\d+) EVENTS"):
        n += sum(int(m) for m in re.findall(pattern, text))
    return n


def build_workload(d):
    src = os.path.join(d, "opens.c")
    exe = os.path.join(d, "opens")
    with open(src, "w") as f:
        f.write(WORKLOAD_C)
    subprocess.check_call([shutil.which("cc") or "gcc", "-O2", "-o", exe, src])
    return exe


def tracefs_root():
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(root, "instances")):
            return root
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=int, default=200000, help="target opens per second")
    p.add_argument("--seconds", type=float, default=4.0, help="workload length")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", help="comma-separated tracers (%s)" % ",".join(TRACERS))
    p.add_argument("--filtered", action="store_true",
                   help="kerntrace tracers trace the workload's file only: every open is "
                        "a line or a reported loss")
    p.add_argument("--kerntrace", default="%s -m kerntrace.core" % sys.executable,
                   help="how to run kerntrace (default: this Python's)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    names = args.only.split(",") if args.only else list(TRACERS)
    root = tracefs_root()
    pipeline = TextPipeline(root) if root and set(names) & set(("ftrace-awk",) + FLOORS) \
        else None
    results = {n: [] for n in names}
    # A short path: bpftrace prints at most 64 bytes of a string.
    with tempfile.TemporaryDirectory(prefix="ktb") as d:
        exe = build_workload(d)
        path = os.path.join(d, "o%d" % os.getpid())
        open(path, "w").close()
        for r in range(args.rounds):
            for n in names:
                res = one_run(n, args, exe, path, pipeline)
                results[n].append(res)
                print("round %d %-16s %s" % (r + 1, n, res), file=sys.stderr)
    print_table(results, names)
    return 0


def _median(rows, key):
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def print_table(results, names):
    base = _median(results.get("none", []), "wl_cpu_us")
    print("%-17s %10s %9s %9s %9s %9s %10s %9s" % (
        "TRACER", "OPENS/S", "EVENTS%", "MISSING", "REPORTED", "CPU/EV us", "CPU/LINE us",
        "SLOWDOWN"))
    for n in names:
        rows = [r for r in results[n] if "error" not in r]
        if not rows:
            errs = [r["error"] for r in results[n] if "error" in r]
            print("%-17s cannot run here: %s" % (n, errs[0] if errs else "no result"))
            continue
        rate = _median(rows, "rate")
        wl = _median(rows, "wl_cpu_us")
        slow = "%.2fx" % (wl / base) if base and wl else "-"
        if n == "none":
            print("%-17s %10.0f %9s %9s %9s %9s %10s %9s" % (n, rate, "-", "-", "-", "-", "-",
                                                           "1.00x"))
            continue
        pct = 100.0 * _median(rows, "events") / _median(rows, "opens")
        if n in FLOORS:
            # EVENTS%: entries read per open; CPU/LINE: per entry read
            entries = _median(rows, "events")
            print("%-17s %10.0f %9s %9s %9s %9.2f %10s %9s" % (
                n, rate, "%.2f%%" % pct if entries else "-", "-", "-", _median(rows, "cpu_us"),
                "%.2f" % _median(rows, "cpu_us_printed") if entries else "-", slow))
            continue
        print("%-17s %10.0f %8.2f%% %9d %9d %9.2f %10.2f %9s" % (
            n, rate, pct, _median(rows, "missing"), _median(rows, "reported"),
            _median(rows, "cpu_us"), _median(rows, "cpu_us_printed"), slow))
    cpu = {n: _median([r for r in results[n] if "error" not in r], "cpu_us") for n in names}
    if cpu.get("kerntrace-ebpf") and cpu.get("bcc"):
        print("kerntrace-ebpf / bcc cpu per event: %.2f (goal <= 1.05)"
              % (cpu["kerntrace-ebpf"] / cpu["bcc"]))
    if cpu.get("kerntrace-ftrace") and cpu.get("ftrace-awk"):
        print("ftrace-awk / kerntrace-ftrace cpu per event: %.2f (goal >= 3)"
              % (cpu["ftrace-awk"] / cpu["kerntrace-ftrace"]))
    for n in FLOORS:
        if cpu.get(n) and cpu.get("ftrace-awk"):
            print("ftrace-awk / %s cpu per event: %.2f (the most the Python route could "
                  "reach doing no more than %s)" % (n, cpu["ftrace-awk"] / cpu[n], n[6:]))


if __name__ == "__main__":
    sys.exit(main())
