#!/usr/bin/env python3
"""Does --input stay bounded in time and memory whatever the file holds?
(Issue 8, item 7.)  Run on demand; not a test (the tests check the same
cases structurally, under generous alarms, at sizes that fit a test run).

    .venv/bin/python bench/input_bounds.py [--keep DIR]

Each case writes a file into a temp dir and runs the real command line on
it, as a user would:

    kerntrace iolatency --input FILE 1

and prints the wall time, the peak memory of the kerntrace process (its
rusage, from wait4) and the size of what it printed.  The cases and what
the code before the bounds did with them:

    spaces-100k   a 100 KB line of blanks ending in "-1 [0]"    82 s
    spaces-1m     the same, 1 MB                                ~2 h
    payload-256k  block_rq_issue whose payload repeats its own
                  separators to 256 KB (three %s strings)       hours
    sparse-1g     a 1 GB sparse file, no newline                2.1 GB of memory
    starts-2m     2M block_rq_issue lines, no completion        197 s
    jump          4 lines, 10^12 s of trace time apart          endless output
    rec-header    a recording whose header is at its 8 MB bound:
                  ~1000 format sections of ~8 KB (refused at the end)
    rec-printfmt  a recording carrying block_rq_issue with a 60 KB
                  print fmt of odd conversions, then 200k trace lines
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ISSUE = ("          dd-4011    [001] ..... %d.%06d: block_rq_issue: "
         "254,0 W 4096 () %d + 8 be,0,4 [dd]\n")
DONE = ("      <idle>-0       [001] ..s1. %d.%06d: block_rq_complete: "
        "254,0 W () %d + 8 be,0,4 [0]\n")


def write_spaces(path, size):
    with open(path, "w") as f:
        f.write(" " * size + "-1 [0]\n")


def write_payload(path):
    unit = "R 1 () 1 + 1 be,0,4 ["
    with open(path, "w") as f:
        f.write("          dd-4011    [001] ..... 1.000000: block_rq_issue: 254,0 "
                + unit * (256 * 1024 // len(unit) - 4) + "\n")


def write_sparse(path):
    with open(path, "wb") as f:
        f.truncate(1 << 30)


def write_starts(path, n=2000000):
    with open(path, "w") as f:
        for i in range(n):
            f.write(ISSUE % (1 + i // 1000000, i % 1000000, 8 * i))


def write_jump(path):
    with open(path, "w") as f:
        f.write(ISSUE % (1, 0, 8) + DONE % (1, 500, 8)
                + ISSUE % (10 ** 12, 0, 16) + DONE % (10 ** 12 + 5, 0, 16))


def write_rec_header(path):
    from kerntrace.core.recording import MAX_HEADER_BYTES
    body = "name: e%d\nformat:\n" + ("\tfield:int f%d;\toffset:8;\tsize:4;\tsigned:1;\n" * 200)
    with open(path, "w") as f:
        f.write("kerntrace-recording 1\n")
        size, i = 0, 0
        while size <= MAX_HEADER_BYTES:
            text = body.replace("%d", str(i))
            f.write("format s e%d %d\n%s" % (i, text.count("\n"), text))
            size += len(text)
            i += 1
        f.write("trace\n")


def write_rec_printfmt(path, n=200000):
    from kerntrace.core import known_formats
    from kerntrace.core.recording import header_text
    issue = known_formats.FORMATS["6.18"][("block", "block_rq_issue")]
    done = known_formats.FORMATS["6.18"][("block", "block_rq_complete")]
    odd = issue.replace('print fmt: "', 'print fmt: "' + "%s%d(%llu + " * 5000)
    with open(path, "w") as f:
        f.write(header_text({"tool": "iolatency"}, [("block", "block_rq_issue", odd),
                                                    ("block", "block_rq_complete", done)]))
        for i in range(n // 2):
            f.write(ISSUE % (1 + i // 1000000, i % 1000000, 8 * i))
            f.write(DONE % (1 + i // 1000000, i % 1000000 + 1, 8 * i))


CASES = [("spaces-100k", lambda p: write_spaces(p, 100 * 1024)),
         ("spaces-1m", lambda p: write_spaces(p, 1 << 20)),
         ("payload-256k", write_payload),
         ("sparse-1g", write_sparse),
         ("starts-2m", write_starts),
         ("jump", write_jump),
         ("rec-header", write_rec_header),
         ("rec-printfmt", write_rec_printfmt)]


def run(path, timeout):
    """(seconds, CPU seconds, peak RSS in MB, bytes printed, exit status)
    of one run."""
    out = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "kerntrace.core", "iolatency", "--input", path,
                          "1"], stdout=out, stderr=subprocess.DEVNULL)
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            status = "timeout"
            break
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    out.seek(0, os.SEEK_END)
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, out.tell(),
            status)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="write the files here and keep them")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    ap.add_argument("--cases", default=",".join(c for c, _w in CASES),
                    help="comma-separated, of: %(default)s")
    args = ap.parse_args()
    directory = args.keep or tempfile.mkdtemp(prefix="kerntrace-bench-input-")
    os.makedirs(directory, exist_ok=True)
    try:
        print("%-13s %9s %9s %9s %11s  %s" % ("case", "seconds", "CPU s", "peak MB", "printed B",
                                              "status"))
        for name, write in CASES:
            if name not in args.cases.split(","):
                continue
            path = os.path.join(directory, name + ".trace")
            write(path)
            seconds, cpu, peak, printed, status = run(path, args.timeout)
            print("%-13s %9.2f %9.2f %9.1f %11d  %s" % (name, seconds, cpu, peak, printed,
                                                        status))
            sys.stdout.flush()
            if not args.keep:
                os.unlink(path)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
