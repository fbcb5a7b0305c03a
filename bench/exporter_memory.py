#!/usr/bin/env python3
"""Does an exporter's memory stay flat over hours?  (Issue 13: RSS after
1 h vs after 1 min, and per distinct label value.)  Run on demand, as root,
on a live kernel; not a test.

    .venv/bin/python bench/exporter_memory.py [--duration 3600] [--first 60]
        [--rate 20] [--backend ftrace] [--max-series 1000]

Exporter: the real command line, in a subprocess, in exporter mode with
one label value per process (the worst case for cardinality):

    kerntrace tpcount --backend B -i 1 --by pid --prometheus-file TMP/kt.prom \
        --prometheus-max-series M sched:sched_process_exec

Workload: `rate` short-lived processes a second (/bin/true), each exec a
new pid, i.e. a new label value, until the label limit folds the rest into
pid="other".  Every `--sample` seconds the bench prints the exporter's
VmRSS (/proc/PID/status), the series in its textfile and
kerntrace_folded_series_total; at the end RSS at `--first` seconds vs at
the end, and the RSS growth per distinct label value while the series
count grew (before the limit).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time



def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def textfile_stats(path):
    """(series of the counter family, folded series total) in the file."""
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError):
        return 0, 0
    series = len(re.findall(r"^kerntrace_tracepoint_hits_total\{", text, re.M))
    folded = re.search(r"^kerntrace_folded_series_total\{[^}]*\} (\d+)", text, re.M)
    return series, int(folded.group(1)) if folded else 0


def spawn(rate, until):
    """/bin/true `rate` times a second until time `until`."""
    step = 1.0 / rate
    nxt = time.time()
    while time.time() < until:
        subprocess.call(["/bin/true"])
        nxt += step
        delay = nxt - time.time()
        if delay > 0:
            time.sleep(delay)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument("--first", type=float, default=60.0,
                   help="the early RSS sample, seconds (default 60)")
    p.add_argument("--sample", type=float, default=30.0, help="print every S seconds")
    p.add_argument("--rate", type=float, default=20.0, help="new processes per second")
    p.add_argument("--backend", default="ftrace")
    p.add_argument("--max-series", type=int, default=1000)
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("exporter_memory: run as root")
    # SIGTERM (timeout, kill) ends the bench through `finally`: the
    # exporter is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = tempfile.mkdtemp(prefix="kerntrace-bench-")
    textfile = os.path.join(tmp, "kt.prom")
    env = dict(os.environ)
    tool = subprocess.Popen(
        [sys.executable, "-m", "kerntrace.core", "tpcount", "--backend", a.backend, "-i", "1",
         "--by", "pid", "--prometheus-file", textfile, "--prometheus-max-series",
         str(a.max_series), "sched:sched_process_exec"],
        stderr=subprocess.PIPE, universal_newlines=True, env=env)
    try:
        banner = tool.stderr.readline()
        if "Tracing with" not in banner:
            sys.exit("exporter_memory: the exporter did not start: %s" % banner.strip())
        t0 = time.time()
        rows = []
        print("%8s %10s %8s %8s" % ("seconds", "RSS kB", "series", "folded"))
        while True:
            now = time.time() - t0
            if now >= a.duration:
                break
            nxt = min(a.duration, (len(rows) + 1) * a.sample)
            if (not rows or rows[-1][0] < a.first) and a.first <= nxt:
                nxt = a.first
            spawn(a.rate, t0 + nxt)
            series, folded = textfile_stats(textfile)
            row = (time.time() - t0, rss_kb(tool.pid), series, folded)
            rows.append(row)
            print("%8.0f %10d %8d %8d" % row)
            sys.stdout.flush()
        first = min(rows, key=lambda r: abs(r[0] - a.first))
        last = rows[-1]
        print("RSS at %.0f s: %d kB; at %.0f s: %d kB (%+d kB, %+.1f%%)"
              % (first[0], first[1], last[0], last[1], last[1] - first[1],
                 100.0 * (last[1] - first[1]) / first[1]))
        # From the first sample to the first one at the limit (the "other"
        # series makes it max_series + 1): RSS growth per new label value.
        at_limit = [r for r in rows if r[2] > a.max_series][:1]
        growing = rows[:1] + (at_limit or rows[-1:])
        if growing[-1][2] > growing[0][2]:
            per = (growing[-1][1] - growing[0][1]) * 1024.0 / (growing[-1][2] - growing[0][2])
            print("RSS per distinct label value (series %d -> %d): %.0f bytes"
                  % (growing[0][2], growing[-1][2], per))
        capped = [r for r in rows if r[2] > a.max_series]
        if len(capped) >= 2:
            print("after the limit (%d series, %d folded): RSS %d -> %d kB"
                  % (capped[-1][2], capped[-1][3], capped[0][1], capped[-1][1]))
    finally:
        tool.send_signal(signal.SIGTERM)
        tool.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
