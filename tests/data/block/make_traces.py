#!/usr/bin/env python3
"""Generate the fake block I/O traces the block tool tests replay.

Each trace is an ftrace `trace` text file, as a user would save with
`cat /sys/kernel/tracing/trace > file`, in one kernel era's line layout,
built from I/O with known latencies so the expected histograms are exact.
Deterministic (fixed seeds): re-running rewrites identical files.

    python3 tests/data/block/make_traces.py      # rewrites the *.trace files

Eras:
  4x     4.x kernels (4.19): 4 flag characters, no I/O-priority token,
         byte counts recorded (v4.11+), a flush at all-ones on both sides
  618    6.11+ kernels (this machine's 6.18): 5 flag characters and the
         `class,hint,level` I/O-priority token before the bracket; a flush
         issued at sector 0, completed at all-ones
  618tgid  as 618, with options/record-tgid's (TGID) column
"""

import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
FLUSH_SECTOR = (1 << 64) - 1

HEADERS = {
    "4x": """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                              _-----=> irqs-off
#                             / _----=> need-resched
#                            | / _---=> hardirq/softirq
#                            || / _--=> preempt-depth
#                            ||| /     delay
#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION
#              | |       |   ||||       |         |
""",
    "618": """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
""",
    "618tgid": """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                                          _-----=> irqs-off/BH-disabled
#                                         / _----=> need-resched
#                                        | / _---=> hardirq/softirq
#                                        || / _--=> preempt-depth
#                                        ||| / _-=> migrate-disable
#                                        |||| /     delay
#           TASK-PID       TGID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |           |        |   |||||     |         |
""",
}


class Trace(object):
    """Collects events, writes them sorted by time in one era's layout."""

    def __init__(self, era):
        self.era = era
        self.lines = []     # (ts_us, seq, text)

    def _context(self, comm, pid, cpu, irq, ts_us):
        sec, usec = divmod(ts_us, 1000000)
        if self.era == "4x":
            flags = "d.h." if irq else "d..."
            return "%16s-%-5d [%03d] %s %5d.%06d: " % (comm, pid, cpu, flags, sec, usec)
        flags = "d.h1." if irq else "d..1."
        if self.era == "618tgid":
            return "%16s-%-7d (%7s) [%03d] %s %5d.%06d: " % (comm, pid, pid if pid else "-------",
                                                             cpu, flags, sec, usec)
        return "%16s-%-7d [%03d] %s %5d.%06d: " % (comm, pid, cpu, flags, sec, usec)

    def _ioprio(self):
        return " be,0,4" if self.era != "4x" else ""

    def start(self, event, ts_us, cpu, comm, pid, dev, rwbs, nbytes, sector):
        major, minor = dev
        if sector == FLUSH_SECTOR and self.era != "4x":
            # Since Linux commit 0803de78049f ("blktrace: Show requests without
            # sector") issue/insert print a flush at sector 0; its completion
            # still prints all-ones.
            sector = 0
        text = "%s%s: %d,%d %s %d () %d + %d%s [%s]" % (
            self._context(comm, pid, cpu, False, ts_us), event, major, minor, rwbs, nbytes,
            sector, nbytes // 512, self._ioprio(), comm)
        self.lines.append((ts_us, len(self.lines), text))

    def complete(self, ts_us, cpu, dev, rwbs, sector, nr_sector, error=0):
        major, minor = dev
        text = "%sblock_rq_complete: %d,%d %s () %d + %d%s [%d]" % (
            self._context("<idle>", 0, cpu, True, ts_us), major, minor, rwbs, sector,
            nr_sector, self._ioprio(), error)
        self.lines.append((ts_us, len(self.lines), text))

    def io(self, t_us, lat_us, dev=(202, 1), rwbs="R", nbytes=4096, sector=0, comm="dd",
           pid=4242, cpu=0, queue_us=None):
        """One request: (insert at t_us, issue queue_us later,) completion
        lat_us after the start the tool measures from."""
        issue_at = t_us
        if queue_us is not None:
            self.start("block_rq_insert", t_us, cpu, comm, pid, dev, rwbs, nbytes, sector)
            issue_at = t_us + queue_us
        self.start("block_rq_issue", issue_at, cpu, comm, pid, dev, rwbs, nbytes, sector)
        self.complete(t_us + lat_us, 1 - cpu, dev, rwbs, sector, nbytes // 512)

    def write(self, name):
        self.lines.sort()
        path = os.path.join(HERE, name)
        with open(path, "w") as f:
            f.write(HEADERS[self.era].format(n=len(self.lines)))
            for _ts, _seq, text in self.lines:
                f.write(text + "\n")
        return path


# Latency ranges (us) well inside each perf-tools row (0->1, 1->2, 2->4 ...
# ms), so no float rounding in any implementation can move an I/O.
def row_latency(rng, row):
    if row == 0:
        return rng.randint(50, 950)
    low, high = 1000 << (row - 1), 1000 << row
    return rng.randint(low + 50, high - 50)


def golden_1(era="4x", name="iolatency_golden1_4x.trace"):
    """iolatency-compat.md's first example: rows 4381, 9, 5, 0, 1 in one
    second (I/O 200 us apart, all complete within the second)."""
    rng = random.Random(1)
    rows = [0] * 4381 + [1] * 9 + [2] * 5 + [4] * 1
    rng.shuffle(rows)
    tr = Trace(era)
    t0 = 5000000000
    for i, row in enumerate(rows):
        tr.io(t0 + 100 + i * 200, row_latency(rng, row), rwbs="WS" if i % 4 == 0 else "R",
              sector=1000000 + 8 * i, cpu=i % 2, comm="fio", pid=3100 + i % 4)
    return tr.write(name)


def golden_2(era="4x", name="iolatency_golden2_queue_4x.trace"):
    """iolatency-compat.md's -Q example: rows 1913, 438, 100, 145, 43, 43, 1
    from block_rq_insert; each request is issued 30 us after its insert."""
    rng = random.Random(2)
    rows = [0] * 1913 + [1] * 438 + [2] * 100 + [3] * 145 + [4] * 43 + [5] * 43 + [6] * 1
    rng.shuffle(rows)
    tr = Trace(era)
    t0 = 7000000000
    for i, row in enumerate(rows):
        tr.io(t0 + 100 + i * 320, row_latency(rng, row) + 30, queue_us=30,
              sector=2000000 + 8 * i, cpu=i % 2, comm="tar", pid=5150)
    return tr.write(name)


def queue_depth_4(era, name):
    """120 reads issued 4 at a time (queue depth 4) on 254,0 in one second:
    per batch latencies 300, 600, 1500 and 2500 us, so rows 0->1: 60,
    1->2: 30, 2->4: 30.  Overlapping I/O is what perf-tools mis-pairs when
    the line ends with an I/O-priority token."""
    tr = Trace(era)
    t0 = 9000000000
    for batch in range(30):
        t = t0 + 100 + batch * 20000
        for j, lat in enumerate((300, 600, 1500, 2500)):
            tr.io(t + j * 10, lat, dev=(254, 0), sector=500000 + 64 * (4 * batch + j),
                  nbytes=32768, comm="postgres", pid=880, cpu=j % 2)
    return tr.write(name)


def mixed_618tgid(name="block_mixed_618tgid.trace"):
    """A 6.18 trace with record-tgid and task names with spaces and dashes,
    two disks, reads and writes, a flush, and a completion whose start was
    never traced (it began before tracing):

      254,0  reads   10 x 300 us  comm "my app"        pid 700
      254,0  writes  5 x 3000 us  comm "jbd2/vda1-8"     pid 81 (rwbs WS)
      254,16 reads   7 x 1500 us  comm "dd"            pid 900
      254,0  flush   1 x 700 us   (FF, 0 bytes; issued at sector 0,
                                   completed at sector -1)     pid 81
      254,0  a completion at sector 42 with no start
    """
    tr = Trace("618tgid")
    t = 12000000000 + 100
    for i in range(10):
        tr.io(t + i * 10000, 300, dev=(254, 0), rwbs="R", sector=800 + 8 * i, comm="my app",
              pid=700)
    for i in range(5):
        tr.io(t + 200000 + i * 10000, 3000, dev=(254, 0), rwbs="WS", sector=90000 + 16 * i,
              nbytes=8192, comm="jbd2/vda1-8", pid=81, cpu=1)
    for i in range(7):
        tr.io(t + 400000 + i * 10000, 1500, dev=(254, 16), rwbs="R", sector=64 * i,
              nbytes=65536, comm="dd", pid=900)
    tr.start("block_rq_issue", t + 600000, 0, "jbd2/vda1-8", 81, (254, 0), "FF",
             0, FLUSH_SECTOR)
    tr.complete(t + 600700, 1, (254, 0), "FF", FLUSH_SECTOR, 0)
    tr.complete(t + 5, 1, (254, 0), "R", 42, 8)
    return tr.write(name)


def boundary_4x(name="iolatency_boundary_4x.trace"):
    """Three seconds on 202,1 (t0 = 3000 s): one 500 us read in each second,
    and one 1500 us read issued 200 us before the end of second 0 (so it
    completes in second 1), which perf-tools drops and kerntrace counts in
    the interval it completes in:
      interval 0: 1 x 0->1          interval 1: 1 x 0->1, 1 x 1->2
      interval 2: 1 x 0->1"""
    tr = Trace("4x")
    t0 = 3000000000
    for sec in range(3):
        tr.io(t0 + sec * 1000000 + 300000, 500, sector=100 + sec * 8)
    tr.io(t0 + 1000000 - 200, 1500, sector=900)
    # A marker event at the very start pins interval 0 to t0.
    return tr.write(name)


def main():
    for path in (golden_1(), golden_2(), queue_depth_4("4x", "qd4_4x.trace"),
                 queue_depth_4("618", "qd4_618.trace"), mixed_618tgid(), boundary_4x()):
        print(path)


if __name__ == "__main__":
    main()
