#!/usr/bin/env python3
"""Does `kerntrace merge` stream?  (Issue 13: a thousand hosts' files need
not fit in memory at once.)  Run on demand; not a test.

    .venv/bin/python bench/merge_memory.py [--hosts N ...] [--intervals N]

Makes one real --json file (biolatency -D replaying the stored 6.18 block
trace), then N host files from it, each `--intervals` copies of its lines
under the host's own name, and runs the real command line on them:

    kerntrace merge --per-host --json FILE...

printing wall time, peak memory of the merge process (its rusage, from
wait4) and the total input size.  Streaming shows as a peak that stays
flat while the input grows by orders of magnitude.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "tests", "data", "traces", "replay-block-6.18.txt")
KERNTRACE = [sys.executable, "-m", "kerntrace.core"]


def one_output():
    out = subprocess.check_output(KERNTRACE + ["biolatency", "-D", "--json", "--input", TRACE],
                                  stderr=subprocess.DEVNULL, universal_newlines=True)
    return [json.loads(line) for line in out.splitlines()]


def host_files(directory, objs, hosts, intervals):
    paths, size = [], 0
    for i in range(hosts):
        path = os.path.join(directory, "host%05d.json" % i)
        with open(path, "w") as f:
            for _ in range(intervals):
                for obj in objs:
                    f.write(json.dumps(dict(obj, host="host%05d" % i)) + "\n")
        size += os.path.getsize(path)
        paths.append(path)
    return paths, size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--intervals", type=int, default=60)
    opts = ap.parse_args()
    objs = one_output()
    print("%8s %10s %10s %10s" % ("hosts", "input MB", "wall s", "peak MB"))
    for n in opts.hosts:
        d = tempfile.mkdtemp(prefix="kerntrace-merge-bench.")
        try:
            paths, size = host_files(d, objs, n, opts.intervals)
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:    # the merge, as its own process, so its rusage is its own
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.execv(sys.executable, KERNTRACE + ["merge", "--per-host", "--json"] + paths)
            _, status, usage = os.wait4(pid, 0)
            wall = time.monotonic() - start
            if status != 0:
                raise SystemExit("merge of %d hosts failed (status %d)" % (n, status))
            print("%8d %10.1f %10.2f %10.1f" % (n, size / 1e6, wall, usage.ru_maxrss / 1024.0))
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    main()
