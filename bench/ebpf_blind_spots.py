#!/usr/bin/env python3
"""Which block completions does the eBPF backend never see, and in what
context?  (Issue 8, item 1: counted + lost short of the device's count.)
Run on demand, as root; not a test.

    .venv/bin/python bench/ebpf_blind_spots.py [--runs N] [--ios 20000]
        [--depth 16] [--until-short]

Per run, on a loop device of our own (backing file in /dev/shm, direct I/O):
  - `iolatency --backend ebpf -d MAJ,MIN --json 1000` (one interval, ended
    with Ctrl-C after the workload): counted, lost, unmatched;
  - the device's own count (/sys/block/<loop>/stat, reads completed);
  - a private tracefs instance recording block_rq_issue/complete of the
    device (trace_clock mono, so its times compare with bpf_ktime_get_ns);
  - a bcc witness: a tracepoint and a raw tracepoint program counting every
    block_rq_complete, and raw tracepoint programs on irq:softirq_entry/exit
    sending their times (and the device's completions) to a perf buffer,
    with the kernel's recursion_misses of each witness program.
A completion tracefs recorded that the witness did not count is a blind
spot: printed with the task and context flags tracefs recorded for it,
and what any of the witness programs saw on that CPU around it.
"""

import argparse
import collections
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time

# The same bench folder: its run helpers.
from ebpf_misses import fio, json_totals, reads_completed, wait_for_text
from loopinstance import loop_device, private_instance, trace_device, write

TOOL = os.path.join(os.path.dirname(sys.executable), "iolatency")
INSTANCE = "kerntrace-bench-blind-%d" % os.getpid()
KIND_SOFTIRQ_ENTRY, KIND_SOFTIRQ_EXIT, KIND_COMPLETE = 1, 2, 3

WITNESS_C = r"""
struct kt_rec { u64 ts; u64 cpu; u64 kind; u64 arg; };
BPF_PERF_OUTPUT(recs);
BPF_ARRAY(counts, u64, 3);       /* 0: tp, device; 1: raw, all; 2: tp, all */

static __always_inline void kt_count(int i)
{
    u64 *c = counts.lookup(&i);
    if (c)
        __sync_fetch_and_add(c, 1);
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    kt_count(2);
    if (args->dev != DEVT)
        return 0;
    kt_count(0);
    struct kt_rec r = {bpf_ktime_get_ns(), bpf_get_smp_processor_id(), 3, args->sector};
    recs.perf_submit(args, &r, sizeof(r));
    return 0;
}

RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    kt_count(1);
    return 0;
}

RAW_TRACEPOINT_PROBE(softirq_entry)
{
    struct kt_rec r = {bpf_ktime_get_ns(), bpf_get_smp_processor_id(), 1, ctx->args[0]};
    recs.perf_submit(ctx, &r, sizeof(r));
    return 0;
}

RAW_TRACEPOINT_PROBE(softirq_exit)
{
    struct kt_rec r = {bpf_ktime_get_ns(), bpf_get_smp_processor_id(), 2, ctx->args[0]};
    recs.perf_submit(ctx, &r, sizeof(r));
    return 0;
}
"""

# tracefs text: "  comm-pid  [cpu] flags  ts: event: maj,min rwbs ... sector + n ..."
LINE = re.compile(r"^\s*(.*?)-(\d+)\s+\[(\d+)\]\s+(\S+)\s+([\d.]+): (\w+): "
                  r"\d+,\d+ \S+ .*?(\d+) \+ \d+")


def witness(bcc, devt):
    b = bcc.BPF(text=WITNESS_C.replace("DEVT", str(devt)).encode())
    recs = []

    def on_rec(cpu, data, size):
        recs.append(tuple(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint64 * 4)).contents))

    lost = [0]

    def on_lost(n):
        lost[0] += n
    b["recs"].open_perf_buffer(on_rec, page_cnt=2048, lost_cb=on_lost)
    return b, recs, lost


def parse_trace(path):
    completions = []          # (ts, cpu, comm, flags, sector)
    issues = 0
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            if m.group(6) == "block_rq_issue":
                issues += 1
            elif m.group(6) == "block_rq_complete":
                completions.append((float(m.group(5)), int(m.group(3)), m.group(1).strip(),
                                    m.group(4), int(m.group(7))))
    return issues, completions


def one_run(bcc, dev, devt, ios, depth, inst, max_timeline=80):
    from kerntrace.backends.ebpf import progstats
    trace_device(inst, devt)
    b, recs, recs_lost = witness(bcc, devt)
    tool = perf = None
    try:
        if shutil.which("perf"):
            perf = subprocess.Popen(["perf", "stat", "-x,", "-a", "-e", "block:block_rq_complete",
                                     "--filter", "dev == %d" % devt],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1)

        tool = subprocess.Popen([TOOL, "--backend", "ebpf", "-d", "%d,%d" % (devt >> 20,
                                 devt & 0xfffff), "--json", "1000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_text(tool, "stderr", "Ctrl-C")
        before = reads_completed(dev)
        fio(dev, ios, depth)
        expected = reads_completed(dev) - before
        for _ in range(10):
            b.perf_buffer_poll(100)
        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=60)
        write(os.path.join(inst, "tracing_on"), "0")
        perf_count = None
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            text = perf.communicate(timeout=60)[1].decode()
            m = re.search(r"^(\d+),[^,]*,block:block_rq_complete", text, re.M)
            perf_count = int(m.group(1)) if m else None
        counted, lost, unmatched = json_totals(out)
        counts = [b["counts"][b["counts"].Key(i)].value for i in range(3)]
        misses = dict((name.decode(), progstats.prog_info_misses(fn.fd)[0])
                      for name, fn in b.funcs.items())
    finally:
        for p in (tool, perf):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        b.cleanup()
    issues, completions = parse_trace(os.path.join(inst, "trace"))
    trace_device(inst, devt, on=False)
    write(os.path.join(inst, "trace"), "")
    write(os.path.join(inst, "tracing_on"), "1")

    print("device %d  iolatency counted %d lost %d unmatched %d  short %d"
          % (expected, counted, lost, unmatched, expected - counted - lost - unmatched))
    print("  tracefs: %d issues, %d completions; witness: tp %d (device), tp %d / raw %d "
          "(all devices), recursion_misses %s, perf records lost %d"
          % (issues, len(completions), counts[0], counts[2], counts[1], misses, recs_lost[0]))
    seen = collections.Counter(r[3] for r in recs if r[2] == KIND_COMPLETE)
    by_context = collections.Counter((c[2], c[3]) for c in completions)
    blind = []
    for c in completions:
        if seen[c[4]] > 0:
            seen[c[4]] -= 1
        else:
            blind.append(c)
    blind_context = collections.Counter((c[2], c[3]) for c in blind)
    skipped = misses.get("tracepoint__block__block_rq_complete") or 0
    print("  perf: completions that reached the perf hook with no BPF program run: %s"
          % ("(no perf)" if perf_count is None else perf_count))
    print("  completions the witness did not see: %d (the kernel counted %d skips of its "
          "tracepoint program: %d unexplained)" % (len(blind), skipped, len(blind) - skipped))
    for (comm, flags), n in sorted(blind_context.items(), key=lambda x: -x[1]):
        print("    %-20s %-6s %5d of %d completions in this context"
              % (comm, flags, n, by_context[(comm, flags)]))
    for cpu in sorted(set(c[1] for c in blind)):
        t0 = min(c[0] for c in blind if c[1] == cpu)
        t1 = max(c[0] for c in blind if c[1] == cpu)
        near = [r for r in recs if r[1] == cpu and t0 - 0.0005 <= r[0] / 1e9 <= t1 + 0.0005]
        print("  cpu %d: blind from %.6f to %.6f; witness records on that cpu within 0.5 ms: "
              "%d, inside the span: %d" % (cpu, t0, t1, len(near),
                                           sum(1 for r in near if t0 <= r[0] / 1e9 <= t1)))
        # one timeline: what tracefs recorded unseen (T) and what the witness saw (W)
        names = {KIND_SOFTIRQ_ENTRY: "softirq_entry vec", KIND_SOFTIRQ_EXIT: "softirq_exit vec",
                 KIND_COMPLETE: "complete sector"}
        lines = [(c[0], "T %-16s %s  unseen complete sector %d" % (c[2], c[3], c[4]))
                 for c in blind if c[1] == cpu]
        lines += [(r[0] / 1e9, "W %s %d" % (names[r[2]], r[3])) for r in near]
        for ts, text in sorted(lines)[:max_timeline]:
            print("    %.6f %s" % (ts, text))
    sys.stdout.flush()
    return expected - counted - lost - unmatched


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--ios", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--until-short", action="store_true", help="stop after the first short run")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from kerntrace.backends.ebpf import bccfind
    bcc = bccfind.import_bcc()
    with loop_device(4096 * args.ios + (1 << 20), "kerntrace-bench-blind-") as (dev, devt), \
            private_instance(INSTANCE, 32768) as inst:
        for i in range(args.runs):
            print("run %d" % i)
            if one_run(bcc, dev, devt, args.ios, args.depth, inst) > 0 and args.until_short:
                break


if __name__ == "__main__":
    main()
