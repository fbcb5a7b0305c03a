"""Reading an ftrace buffer without blocking, and counting what it lost.

RawReader reads one CPU's binary trace_pipe_raw a sub-buffer page at a time
(O_NONBLOCK: EAGAIN means empty); TextReader reads the text trace_pipe of
all CPUs, split into lines.  read_round() drains the per-CPU readers in
laps, handing the pages to a decoder and, where events must be in time
order, ending each lap in the timeorder.TimeOrder.  LossCounter accounts
the events the kernel dropped, from two views of the same losses.
Nothing here sleeps in the kernel.
"""

import errno
import os
import re
import time

from kerntrace.core import tracefs

from .rawparse import RawFormatError, parse_header_page
from .textlines import CHUNK_BYTES, LineSplitter

# Pages read per CPU per drain round, so wait() returns on time under load.
MAX_PAGES_PER_ROUND = 256
# When the CPUs' events are merged (TimeOrder), a round reads them in laps
# of lap_pages() pages per CPU and merges after each lap, so the events held
# back for ordering are about one lap's: a thousand or so stay in the CPU
# cache, where a whole round's tens of thousands made the merged raw path
# about 30% slower (bench/ftrace_throughput.py).  Every lap reads every CPU
# and an idle one costs a few microseconds, so laps grow with the CPUs.
MIN_LAP_PAGES = 8

_STAT = re.compile(r"^\s*(overrun|commit overrun|dropped events)\s*:\s*(\d+)", re.M)
_ENTRIES = re.compile(r"^entries\s*:\s*(\d+)", re.M)


class RawReader(object):
    """per_cpu/cpuN/trace_pipe_raw of one CPU, non-blocking.  `cpu` is what
    read_round() hands on with its pages: the CPU number, or where a run
    reads several buffers (CPU, buffer index)."""

    def __init__(self, cpu, path, page_size):
        self.cpu = cpu
        self.path = path
        self.page_size = page_size
        self.fd = None

    def open(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read_pages(self, limit):
        pages = []
        while len(pages) < limit:
            try:
                data = os.read(self.fd, self.page_size)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            pages.append(data)
        return pages

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class TextReader(object):
    """trace_pipe of the buffer (all CPUs), non-blocking, split in lines."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        # lines longer than the kernel prints are dropped as they arrive
        self.splitter = LineSplitter()

    def open(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read_lines(self, limit):
        lines = []
        for _ in range(limit):
            try:
                data = os.read(self.fd, CHUNK_BYTES)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            lines.extend(p.decode("utf-8", "replace") for p in self.splitter.feed(data))
        return lines

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class LossCounter(object):
    """Events lost per interval.  Two views of the same losses: the per-CPU
    `stats` counters (overrun, commit overrun, dropped events) and the
    markers the readers see (raw pages' missed-events flag, text
    `[LOST N EVENTS]` lines).  They count the same events, so per CPU the
    larger of the two is taken, never the sum; and since one view may show
    a loss an interval before the other (the counter when it happens, the
    marker when the page after it is read), the larger is taken of their
    totals since the start, each interval reporting its growth."""

    def __init__(self, stats_paths):
        self.stats_paths = dict(stats_paths)     # cpu -> path
        self.base = {cpu: self._read(p) for cpu, p in self.stats_paths.items()}
        self.markers = {}       # cpu -> markers' total since the start
        self.reported = {}      # cpu -> losses reported so far

    @staticmethod
    def _read(path):
        text = tracefs.read_text(path) or ""
        return sum(int(m.group(2)) for m in _STAT.finditer(text))

    def marker(self, cpu, count):
        # "[LOST EVENTS]" without a number: at least one.
        self.markers[cpu] = self.markers.get(cpu, 0) + (count if count else 1)

    def take(self):
        total = 0
        cpus = set(self.stats_paths) | set(self.markers)
        for cpu in cpus:
            counted = 0
            if cpu in self.stats_paths:
                counted = max(0, self._read(self.stats_paths[cpu]) - self.base.get(cpu, 0))
            lost = max(counted, self.markers.get(cpu, 0))
            total += max(0, lost - self.reported.get(cpu, 0))
            self.reported[cpu] = max(lost, self.reported.get(cpu, 0))
        return total

    def unread(self):
        """Events still in the buffers (stats' `entries`)."""
        total = 0
        for path in self.stats_paths.values():
            m = _ENTRIES.search(tracefs.read_text(path) or "")
            total += int(m.group(1)) if m else 0
        return total


def lap_pages(ncpus):
    """Pages per CPU in one lap of a merged drain round."""
    return max(MIN_LAP_PAGES, min(MAX_PAGES_PER_ROUND, 4 * ncpus))


def read_round(readers, feed, order=None, lap=None):
    """One drain round over per-CPU raw readers (RawReader or anything with
    .cpu and .read_pages(limit)): up to MAX_PAGES_PER_ROUND pages of each
    CPU, feed(page, cpu) for each page.  With a TimeOrder the round goes in
    laps of `lap` pages per CPU (default lap_pages()), each one ending with
    order.end_round(), or order.flush() when it found nothing; a CPU that
    fills its lap is marked truncated.  Returns the number of pages read."""
    if order is None:
        lap = MAX_PAGES_PER_ROUND
    elif lap is None:
        lap = lap_pages(len(readers))
    budget = MAX_PAGES_PER_ROUND
    total = 0
    while budget > 0:
        size = min(lap, budget)
        budget -= size
        got = 0
        unfinished = False
        for r in readers:
            pages = r.read_pages(size)
            for page in pages:
                feed(page, r.cpu)
            if len(pages) >= size:
                unfinished = True
                if order is not None:
                    order.truncated(r.cpu)
            got += len(pages)
        total += got
        if order is not None:
            if got:
                order.end_round()
            else:
                order.flush()
        if not unfinished:
            break
    return total


def cpus(buffer_path):
    """The CPU numbers of a buffer's per_cpu/ directories."""
    d = os.path.join(buffer_path, "per_cpu")
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())


def read_page_size(buffer_path, header_page):
    """Bytes per trace_pipe_raw read: the sub-buffer size where it is
    configurable, else the data page the events/header_page text
    describes, else the system page size."""
    # Since the Linux patch "tracing: Update subbuffer with kilobytes not page
    # order" (Dec 2023) buffer_subbuf_size_kb gives sub-buffers beyond a page.
    text = tracefs.read_text(os.path.join(buffer_path, "buffer_subbuf_size_kb"))
    if text and text.strip().isdigit():
        return int(text.strip()) * 1024
    try:
        return parse_header_page(header_page).page_size
    except RawFormatError:
        return os.sysconf("SC_PAGE_SIZE")


# The longest a watermark wait sleeps at once.
MAX_IDLE_S = 1.0


class WatermarkWait(object):
    """Sleeping until the per-CPU buffers hold enough to read, instead of
    waking every `floor` seconds to find out.

    A poll() on trace_pipe_raw returns once that CPU's buffer is
    buffer_percent full (Since Linux commit 03329f993978 ("tracing: Add
    tracefs file buffer_percent") (v5.1) the file; since "tracing/ring-
    buffer: Have polling block on watermark" (v6.1) poll() honours it: before
    it returns as soon as the buffer is not empty).  Either way wake-ups
    stay at least `floor` apart, so a kernel whose poll() does not wait
    costs what polling costs.  None of it where the buffer has no
    buffer_percent, or 0 (poll() would return on every event)."""

    def __init__(self, readers, buffer_path, floor):
        self.floor = floor
        self.poller = None
        if not readers:
            return
        text = tracefs.read_text(os.path.join(buffer_path, "buffer_percent"))
        if not (text and text.strip().isdigit() and int(text.strip()) > 0):
            return
        import select
        if not hasattr(select, "poll"):
            return
        self.poller = select.poll()
        for r in readers:
            self.poller.register(r.fd, select.POLLIN)

    @property
    def active(self):
        return self.poller is not None

    def idle(self, remaining, now):
        """Sleep at most `remaining` seconds: until a buffer reaches its
        watermark (not before `floor`), or `floor` without a watermark."""
        if self.poller is None:
            time.sleep(min(self.floor, remaining))
            return
        start = now()
        # (a run without an interval waits "forever": poll() takes an int)
        self.poller.poll(max(0, int(min(remaining, MAX_IDLE_S) * 1000)))
        slept = now() - start
        if slept < self.floor and slept < remaining:
            time.sleep(min(self.floor, remaining) - slept)
