#!/usr/bin/env python3
"""How fast the ftrace backend turns kernel output into a latency histogram.

Run on demand (not a test):

    .venv/bin/python bench/ftrace_throughput.py [--events 2000000]

It generates N block events (N/2 I/Os: block_rq_issue + block_rq_complete)
laid out by this machine's real format files (the 6.18 files of
known_formats when tracefs is not readable), once as trace_pipe_raw pages
(built with rawparse's encoder) and once as trace text, and times,
single-threaded:

  raw path    pages -> RawDecoder -> Aggregator (iolatency's measurement),
              and the same with the pages split per CPU and merged back into
              time order by the live session's own round/merge code, as
              LiveSession runs iolatency's pairs
  text path   lines -> TextDecoder -> Aggregator
  awk         perf-tools' iolatency awk program, extracted at run time from
              /usr/sbin/iolatency-perf and run as iolatency runs it, fed the
              same events as text (in the pre-6.11 layout it can parse)

and prints events/s for each, the ratios, and whether the three histograms
agree.  Exit status 0.
"""

import argparse
import os
import platform
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.backends.ftrace.textparse import TextDecoder
from kerntrace.core import tracefs
from kerntrace.core.model import (LATENCY, POW2_MS, STR, Event, Field, Filter, Histogram,
                                  Measurement, Pair, Tracepoint)

IOLATENCY = "/usr/sbin/iolatency-perf"
DEV = (254 << 20) | 0
MS = 1000000
HEADER_618 = ("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
              "#              | |         |   |||||     |         |\n")


# ---------------------------------------------------------------------------
def load_formats():
    """(where from, issue format, complete format, header_page, header_event)."""
    root = tracefs.TRACEFS if os.path.isdir(os.path.join(tracefs.TRACEFS, "events")) else None
    if root:
        fi = tracefs.read_format(root, "block", "block_rq_issue")
        fc = tracefs.read_format(root, "block", "block_rq_complete")
        hp = tracefs.read_text(os.path.join(root, "events", "header_page"))
        he = tracefs.read_text(os.path.join(root, "events", "header_event"))
        if fi and fc and hp and he:
            return ("live format files in %s (Linux %s)" % (root, platform.release()),
                    fi, fc, hp, he)
    return ("known_formats 6.18 (tracefs not readable here)",
            known_formats.event_format("6.18", "block", "block_rq_issue"),
            known_formats.event_format("6.18", "block", "block_rq_complete"),
            known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"])


def workload(n_events, seed=1):
    """Time-ordered (ts_ns, is_issue, sector, cpu, comm) for n_events/2 I/Os.
    Time stamps are whole microseconds so the text (microsecond) and raw
    (nanosecond) paths see the same latencies; latencies avoid exact
    power-of-two milliseconds, where awk's floating point may round either way."""
    rnd = random.Random(seed)
    events = []
    ts = 1000 * 10 ** 9
    for k in range(n_events // 2):
        ts += rnd.randint(1, 4) * 1000
        r = rnd.random()
        hi = 1000 if r < 0.7 else 4000 if r < 0.9 else 16000 if r < 0.98 else 64000
        lat_us = rnd.randint(20, hi)
        if lat_us % 1000 == 0:
            lat_us += 1
        comm = "dd" if k % 3 else "kworker/u8:3"
        events.append((ts, True, k * 8, k & 1, comm))
        events.append((ts + lat_us * 1000, False, k * 8, (k + 1) & 1, "<idle>"))
    events.sort(key=lambda e: e[0])
    return events


def build_pages(events, fi, fc, hp, per_cpu):
    """Ring-buffer pages as trace_pipe_raw hands them out: one list per CPU
    (per_cpu), or every event in one time-ordered stream on CPU 0."""
    tmpl = {}
    for comm in set(e[4] for e in events if e[1]):
        tmpl[comm] = encode_payload(fi, 4011, {"dev": DEV, "sector": 0, "nr_sector": 8,
                                               "bytes": 4096, "ioprio": 0x4004, "rwbs": "WS",
                                               "comm": comm, "cmd": ""})
    done = encode_payload(fc, 0, {"dev": DEV, "sector": 0, "nr_sector": 8, "error": 0,
                                  "ioprio": 0x4004, "rwbs": "WS", "cmd": ""})
    off_i, off_c = fi.field("sector").offset, fc.field("sector").offset
    builders = {}
    pages = {}
    for ts, is_issue, sector, cpu, comm in events:
        cpu = cpu if per_cpu else 0
        payload = bytearray(tmpl[comm] if is_issue else done)
        struct.pack_into("<Q", payload, off_i if is_issue else off_c, sector)
        pb = builders.get(cpu)
        if pb is None or not pb.add(bytes(payload), ts):
            if pb is not None:
                pages.setdefault(cpu, []).append(pb.page())
            pb = builders[cpu] = PageBuilder(hp)
            pb.add(bytes(payload), ts)
    for cpu, pb in builders.items():
        pages.setdefault(cpu, []).append(pb.page())
    return pages


def text_line(ev, ioprio):
    ts, is_issue, sector, cpu, comm = ev
    head = "%16s-%-7d [%03d] %s %5d.%06d: " % (comm, 4011 if is_issue else 0, cpu,
                                               "....." if is_issue else "..s1.",
                                               ts // 10 ** 9, ts // 1000 % 10 ** 6)
    prio = " be,0,4" if ioprio else ""
    if is_issue:
        return head + "block_rq_issue: 254,0 WS 4096 () %d + 8%s [%s]\n" % (sector, prio, comm)
    return head + "block_rq_complete: 254,0 WS () %d + 8%s [0]\n" % (sector, prio)


def write_text(path, events, ioprio, tail=""):
    with open(path, "w") as f:
        f.write("# tracer: nop\n#\n" + HEADER_618)
        for ev in events:
            f.write(text_line(ev, ioprio))
        f.write(tail)
    return os.path.getsize(path)


# ---------------------------------------------------------------------------
def measurement():
    """iolatency's: issue -> complete by (dev, sector), pow2 ms rows, one disk."""
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector")])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR)])
    return Measurement([issue, done], Histogram(LATENCY, scale=POW2_MS),
                       pair=Pair("issue", "done", key=("dev", "sector"),
                                 shared={"sector": (1 << 64) - 1}),   # flushes
                       filters=[Filter("dev", "==", DEV)])


def plan(m, fi, fc):
    i, d = m.events
    return Plan([ResolvedEvent(i, i.probes[0], "block", fi.name, fi, {"dev": "dev", "sector": "sector"}),
                 ResolvedEvent(d, d.probes[0], "block", fc.name, fc,
                               {"dev": "dev", "sector": "sector", "rwbs": "rwbs"})])


def rows(report):
    (h,) = report.data.histograms.values()
    return {i: c for i, c in h.buckets.items() if c}


def time_raw(m, p, stream, fi, fc, hp, he):
    """One time-ordered page stream straight into the aggregator."""
    dec = RawDecoder(hp, he, {fi.id: fi, fc.id: fc})
    agg = Aggregator(m, p, tasks=TaskInfo(proc_root=None))
    binding = dec.compile_sinks(agg.raw_sinks(dec.formats_by_id))
    t0 = time.perf_counter()
    n = 0
    for data in stream:
        n += dec.decode_page_into(data, 0, binding)[0]
    elapsed = time.perf_counter() - t0
    return n, elapsed, rows(agg.collect())


class PageList(object):
    """A CPU's pages handed out as RawReader.read_pages() hands them out."""

    def __init__(self, cpu, pages):
        self.cpu = cpu
        self.pages = pages
        self.next = 0

    def read_pages(self, limit):
        i = self.next
        self.next = min(len(self.pages), i + limit)
        return self.pages[i:self.next]


def time_raw_merged(m, p, per_cpu, fi, fc, hp, he):
    """Per-CPU pages read round by round and merged back into time order
    before the aggregator by the live session's own code: its TimeOrder,
    one decoder binding per CPU, and its drain round (readers.read_round)
    called until a round finds nothing, as LiveSession.wait() does."""
    try:
        from kerntrace.backends.ftrace.readers import read_round
        from kerntrace.backends.ftrace.timeorder import TimeOrder
    except ImportError as e:
        return None, "TimeOrder/read_round not available: %s" % e
    dec = RawDecoder(hp, he, {fi.id: fi, fc.id: fc})
    agg = Aggregator(m, p, tasks=TaskInfo(proc_root=None))
    order = TimeOrder()
    binding = dec.compile_sinks(agg.raw_sinks(dec.formats_by_id))
    holds = {cpu: order.holder(cpu) for cpu in per_cpu}
    readers = [PageList(cpu, per_cpu[cpu]) for cpu in sorted(per_cpu)]
    decode = dec.decode_page_into
    counted = [0]

    def feed(page, cpu):
        counted[0] += decode(page, cpu, binding, holds[cpu])[0]
    t0 = time.perf_counter()
    while read_round(readers, feed, order):
        pass
    elapsed = time.perf_counter() - t0
    return (counted[0], elapsed, rows(agg.collect())), None


def time_raw_decode_only(stream, fi, fc, hp, he):
    dec = RawDecoder(hp, he, {fi.id: fi, fc.id: fc})

    def nop(ts, cpu, v):
        pass
    binding = dec.compile_sinks({fi.id: (("dev", "sector"), nop),
                                 fc.id: (("dev", "sector"), nop)})
    t0 = time.perf_counter()
    n = 0
    for data in stream:
        n += dec.decode_page_into(data, 0, binding)[0]
    return n, time.perf_counter() - t0


def time_text(m, p, path, fi, fc):
    dec = TextDecoder({("block", fi.name): fi, ("block", fc.name): fc})
    agg = Aggregator(m, p, tasks=TaskInfo(proc_root=None))
    feed = agg.feed
    decode = dec.decode
    n = 0
    t0 = time.perf_counter()
    with open(path) as f:
        for line in f:
            r = decode(line)
            if type(r) is RawEvent:
                feed(r)
                n += 1
    elapsed = time.perf_counter() - t0
    return n, elapsed, rows(agg.collect())


# ---------------------------------------------------------------------------
def awk_program():
    """The awk program of perf-tools' iolatency: the quoted text after
    `$awk -v o=$offset ... '` up to the line holding the closing quote."""
    try:
        with open(IOLATENCY) as f:
            text = f.read()
    except (IOError, OSError) as e:
        return None, "cannot read %s: %s" % (IOLATENCY, e)
    m = re.search(r"^\$awk -v o=\$offset[^\n']*'(.*?)^'\s*$", text, re.S | re.M)
    if not m:
        return None, "the awk program was not found in %s" % IOLATENCY
    return m.group(1), None


def time_awk(program, path, interactive):
    """Run the awk program over the text file as iolatency does (-v o=1: the
    header has a flags column; b_start=block_rq_issue).  Returns (seconds,
    histogram rows, command description) or raises OSError."""
    mawk = shutil.which("mawk")
    if mawk:
        cmd = [mawk] + (["-W", "interactive"] if interactive else [])
    else:
        cmd = [shutil.which("awk") or "awk"]
    cmd += ["-v", "o=1", "-v", "opt_timestamp=0", "-v", "b_start=block_rq_issue", program]
    with open(path, "rb") as stdin:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        elapsed = time.perf_counter() - t0
    hist = {}
    for line in out.decode("utf-8", "replace").splitlines():
        mm = re.match(r"^\s*(\d+) -> (\d+)\s*: (\d+)", line)
        if mm and int(mm.group(3)):
            # row i holds (2^(i-1), 2^i] ms
            hist[int(mm.group(2)).bit_length() - 1] = int(mm.group(3))
    return elapsed, hist, " ".join(os.path.basename(c) if i == 0 else c
                                   for i, c in enumerate(cmd[:-1])) + " '<program>'"


def rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2000000, help="events (default 2000000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n_events = max(2, args.events - args.events % 2)
    out = sys.stdout

    where, fi, fc, hp, he = load_formats()
    out.write("kerntrace ftrace backend throughput: %d events (%d block I/Os), one thread, "
              "%s %s\n" % (n_events, n_events // 2, platform.python_implementation(),
                           platform.python_version()))
    out.write("formats: %s\n" % where)
    out.write("preparing events, pages and text ...\n")
    out.flush()
    events = workload(n_events, args.seed)
    stream = build_pages(events, fi, fc, hp, per_cpu=False)[0]
    per_cpu = build_pages(events, fi, fc, hp, per_cpu=True)
    tmp = tempfile.mkdtemp(prefix="kerntrace-bench-")
    try:
        text_path = os.path.join(tmp, "trace-6.18.txt")
        awk_path = os.path.join(tmp, "trace-pre-6.11.txt")
        text_bytes = write_text(text_path, events, ioprio=True)
        awk_bytes = write_text(awk_path, events, ioprio=False, tail="tick\n")
        del events
        m = measurement()
        p = plan(m, fi, fc)
        out.write("input: %d raw pages (%.1f MB); text %.1f MB (6.18 layout), %.1f MB for awk "
                  "(pre-6.11 layout, no ioprio token)\n\n"
                  % (len(stream), sum(map(len, stream)) / 1e6, text_bytes / 1e6,
                     awk_bytes / 1e6))

        n_dec, t_dec = time_raw_decode_only(stream, fi, fc, hp, he)
        n_raw, t_raw, h_raw = time_raw(m, p, stream, fi, fc, hp, he)
        del stream
        merged, why_not = time_raw_merged(m, p, per_cpu, fi, fc, hp, he)
        del per_cpu
        n_txt, t_txt, h_txt = time_text(m, p, text_path, fi, fc)
        r_raw, r_txt = rate(n_raw, t_raw), rate(n_txt, t_txt)
        line = "%-56s %10.0f events/s  (%.2f s)\n"
        out.write(line % ("raw path: pages -> decode -> aggregate", r_raw, t_raw))
        out.write(line % ("  decoding alone", rate(n_dec, t_dec), t_dec))
        if merged:
            n_mrg, t_mrg, h_mrg = merged
            out.write(line % ("  with the session's per-CPU time-order merge",
                              rate(n_mrg, t_mrg), t_mrg))
        else:
            out.write("  with the session's per-CPU merge: not run: %s\n" % why_not)
        out.write(line % ("text path: lines -> parse -> decode -> aggregate", r_txt, t_txt))

        program, why = awk_program()
        awk_results = []
        if program is None:
            out.write("perf-tools awk: not run: %s\n" % why)
        else:
            for interactive, label in ((True, "as iolatency runs it"), (False, "buffered")):
                try:
                    t_awk, h_awk, cmd = time_awk(program, awk_path, interactive)
                except OSError as e:
                    out.write("perf-tools awk (%s): not run: %s\n" % (label, e))
                    continue
                awk_results.append((label, rate(n_events, t_awk), h_awk, cmd))
                out.write(line % ("perf-tools iolatency awk, %s" % label,
                                  rate(n_events, t_awk), t_awk))
                out.write("    %s\n" % cmd)

        out.write("\nratios:\n")
        ratio = "  %-44s %6.2fx\n"
        out.write(ratio % ("raw / text", r_raw / r_txt))
        for label, r_awk, _h, _cmd in awk_results:
            out.write(ratio % ("raw / awk (%s)" % label, r_raw / r_awk))
            if merged:
                out.write(ratio % ("raw with merge / awk (%s)" % label,
                                   rate(n_mrg, t_mrg) / r_awk))
            out.write(ratio % ("text / awk (%s)" % label, r_txt / r_awk))
        out.write("\nresult check (I/Os per power-of-two ms row):\n")
        out.write("  raw          %s\n" % sorted(h_raw.items()))
        checks = [("text", h_txt)] + ([("raw merged", h_mrg)] if merged else [])
        checks += [("awk", h) for _l, _r, h, _c in awk_results[:1]]
        for name, h in checks:
            out.write("  %-12s %s\n" % (name, "same" if h == h_raw else
                                         "DIFFERENT: %s" % sorted(h.items())))
        goal = 1000000

        def verdict(r):
            return "met" if r >= goal else "not met on this run (%.0f%%)" % (100 * r / goal)
        out.write("\nraw path goal %d events/s: %s\n" % (goal, verdict(r_raw)))
        if merged:
            out.write("  as the live session runs pairs (with the merge): %s\n"
                      % verdict(rate(n_mrg, t_mrg)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
