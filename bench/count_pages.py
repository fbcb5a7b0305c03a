#!/usr/bin/env python3
"""How fast the ftrace backend counts plain events from trace_pipe_raw pages
(run on demand, not a test).

    .venv/bin/python bench/count_pages.py [--events 2000000] [--repeats 5]

Builds pages as the kernel writes them (this machine's format files, or the
6.18 files of known_formats) for two plain counts and times, on one core,
the two ways the raw path can count them:

  tpcount   one tracepoint (raw_syscalls:sys_exit) counted per event name
  syscount  raw_syscalls:sys_exit counted per syscall id (a mix of 12 ids),
            without the tracer's own thread (its tid filter: rows per thread)

  decode    RawDecoder.decode_page_into() into the Aggregator's handlers
            (one call per event: what runs for pairs and records)
  pages     pagecount.PageCounter (rows tallied per page, one handler call
            per distinct row)

and prints events/s (median and spread over the repeats), the speed-up,
whether both give the same counts, and the machine's load average (other
work on the machine slows every figure alike).  The goal (issue 14):
tpcount >= 2M events/s on one core.
"""

import argparse
import os
import random
import statistics
import sys
import time

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.pagecount import page_counter
from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core import tracefs
from kerntrace.core.model import EVENT_NAME, Count, Event, Field, Filter, Measurement, Tracepoint

SYSCALLS = (110, 0, 1, 3, 257, 9, 11, 39, 202, 232, 7, 16)
TRACER_PID = 999999


def load_formats():
    root = tracefs.TRACEFS if os.path.isdir(os.path.join(tracefs.TRACEFS, "events")) else None
    if root:
        fmt = tracefs.read_format(root, "raw_syscalls", "sys_exit")
        hp = tracefs.read_text(os.path.join(root, "events", "header_page"))
        he = tracefs.read_text(os.path.join(root, "events", "header_event"))
        if fmt and hp and he:
            return "live format files in %s" % root, fmt, hp, he
    return ("known_formats 6.18",
            known_formats.event_format("6.18", "raw_syscalls", "sys_exit"),
            known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"])


def build_pages(n, fmt, hp, mix, seed=1):
    """Pages of n sys_exit events 300 ns apart.  mix "bursts": threads take
    turns of 64 calls of two syscalls (as a loop of read/write does);
    "random": every event of a random thread and syscall (the worst case:
    ~36 distinct rows a page)."""
    rnd = random.Random(seed)
    pages = []
    pb = None
    ts = 10 ** 12
    payloads = {}
    burst = None
    for i in range(n):
        ts += 300
        if mix == "random":
            key = (rnd.choice(SYSCALLS), rnd.choice((4011, 4012, TRACER_PID)))
        else:
            if i % 64 == 0:
                burst = (rnd.sample(SYSCALLS, 2), rnd.choice((4011, 4012, TRACER_PID)))
            key = (burst[0][i & 1], burst[1])
        p = payloads.get(key)
        if p is None:
            p = payloads[key] = encode_payload(fmt, key[1], {"id": key[0], "ret": 0})
        if pb is None or not pb.add(p, ts):
            if pb is not None:
                pages.append(pb.page())
            pb = PageBuilder(hp)
            pb.add(p, ts)
    pages.append(pb.page())
    return pages


def measurements():
    exit_ev = Event("sys_exit", Tracepoint("raw_syscalls", "sys_exit"),
                    fields=[Field("id"), Field("ret")])
    return {
        "tpcount": Measurement([exit_ev], Count(keys=(EVENT_NAME,))),
        "syscount": Measurement([exit_ev], Count(keys=("id",)),
                                filters=[Filter("tid", "!=", TRACER_PID)]),
    }


def make(m, fmt, hp, he):
    ev = m.events[0]
    plan = Plan([ResolvedEvent(ev, ev.probes[0], fmt.system, fmt.name, fmt,
                               {"id": "id", "ret": "ret"})],
                header_page=hp, header_event=he)
    # thread ids are their own process ids here (no /proc lookups)
    tasks = TaskInfo(proc_root=None)
    tasks.tgid = lambda tid: tid
    dec = RawDecoder(hp, he, {fmt.id: fmt})
    agg = Aggregator(m, plan, tasks=tasks)
    return plan, dec, agg


def run_decode(m, fmt, hp, he, pages):
    _plan, dec, agg = make(m, fmt, hp, he)
    binding = dec.compile_sinks(agg.raw_sinks(dec.formats_by_id))
    t0 = time.perf_counter()
    for data in pages:
        dec.decode_page_into(data, 0, binding)
    elapsed = time.perf_counter() - t0
    return elapsed, dict(agg.collect().data.counts)


def run_pages(m, fmt, hp, he, pages):
    plan, dec, agg = make(m, fmt, hp, he)
    pc, why = page_counter(m, plan, dec, agg)
    if pc is None:
        raise SystemExit("not countable per page: %s" % why)
    t0 = time.perf_counter()
    for data in pages:
        pc.count_page(data, 0)
    elapsed = time.perf_counter() - t0
    return elapsed, dict(agg.collect().data.counts), pc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    where, fmt, hp, he = load_formats()
    print("formats: %s; %d events per run; load average before: %s"
          % (where, args.events, " ".join("%.2f" % x for x in os.getloadavg())))
    ok = True
    cases = [("tpcount", "bursts"), ("syscount", "bursts"), ("syscount", "random")]
    built = {}
    for name, mix in cases:
        m = measurements()[name]
        pages = built.get(mix) or built.setdefault(mix, build_pages(args.events, fmt, hp, mix))
        name = "%s/%s" % (name, mix)
        dec_t, pag_t = [], []
        for _ in range(args.repeats):
            t, want = run_decode(m, fmt, hp, he, pages)
            dec_t.append(t)
            t, got, pc = run_pages(m, fmt, hp, he, pages)
            pag_t.append(t)
            same = got == want
            ok = ok and same
        for label, ts in (("decode", dec_t), ("pages", pag_t)):
            rates = [args.events / t / 1e6 for t in ts]
            print("%-16s %-7s %6.2f M events/s (median; %.2f-%.2f over %d)"
                  % (name, label, statistics.median(rates), min(rates), max(rates), len(rates)))
        print("%-16s pages/decode %.1fx, counts %s (%d uniform, %d walked pages)"
              % (name, statistics.median(dec_t) / statistics.median(pag_t),
                 "agree" if same else "DIFFER", pc.uniform_pages, pc.walked_pages))
    print("load average after: %s (2 cores; above ~1 other work shared the CPU)"
          % " ".join("%.2f" % x for x in os.getloadavg()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
