"""Running a stream of TraceEvents through the ftrace backend's bulk pair
path (bulkpair.BulkPairer) as the live session runs it: the events laid out
in per-CPU ring-buffer pages by rawparse.PageBuilder (a few entries a page,
so that pages, laps and their watermarks matter), read in drain rounds
(readers.read_round) with the BulkPairer as the round's time order.  As the
live session lays them out: each event in a buffer of its own (one reader
per CPU and event, its cpu (CPU, event index)), or with per_event=False
both events in one buffer per CPU."""

import struct

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.bulkpair import BulkPairer, bulk_pairs
from kerntrace.backends.ftrace.plan import own_comm_field
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.readers import read_round
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core.semantics import IntervalEnd, Lost

HEADER_PAGE = known_formats.HEADER_PAGE["6.18"]
HEADER_EVENT = known_formats.HEADER_EVENT["6.18"]


class PageList(object):
    """A CPU's pages handed out as RawReader.read_pages() hands them out."""

    def __init__(self, cpu, pages):
        self.cpu = cpu
        self.pages = pages

    def read_pages(self, limit):
        out, self.pages = self.pages[:limit], self.pages[limit:]
        return out


def payload(resolved, ev, extra=None):
    """The event's record as the kernel writes it (its logical fields at
    their format fields; `extra`: more format fields, e.g. a cmd string)."""
    fields = dict((resolved.fields[n], v) for n, v in ev.fields.items() if n in resolved.fields)
    if own_comm_field(resolved):
        fields[own_comm_field(resolved)] = ev.comm
    fields.update(extra or {})
    return encode_payload(resolved.format, ev.tid, fields)


class BulkRun(object):
    """A BulkPairer over an Aggregator, fed TraceEvents.

    per_page  entries per page at most
    lap       pages per CPU per drain lap
    extra     f(TraceEvent) -> extra format fields (or None)
    per_event one buffer per event (the session's plan.event_instances)"""

    def __init__(self, measurement, plan, per_page=3, lap=1, extra=None, max_pending=None,
                 per_event=True):
        why = bulk_pairs(measurement, plan)
        if why is not None:
            raise ValueError(why)
        self.plan = plan
        self.by_name = dict((r.logical.name, r) for r in plan.events)
        formats = dict((r.format.id, r.format) for r in plan.events)
        self.decoder = RawDecoder(HEADER_PAGE, HEADER_EVENT, formats)
        kw = {} if max_pending is None else {"max_pending": max_pending}
        self.aggregator = Aggregator(measurement, plan, tasks=TaskInfo(proc_root=None), **kw)
        self.pairer = BulkPairer(measurement, plan, self.decoder, self.aggregator)
        self.per_page = per_page
        self.per_event = per_event
        self.index = dict((r.logical.name, i) for i, r in enumerate(plan.events))
        self.lap = lap
        self.extra = extra or (lambda ev: None)
        self.builders = {}
        self.pages = {}
        self.lost = 0

    def add(self, ev, lost_before=0):
        r = self.by_name.get(ev.name)
        if r is None:
            return
        key = (ev.cpu, self.index[ev.name]) if self.per_event else ev.cpu
        pb = self.builders.get(key)
        data = payload(r, ev, self.extra(ev))
        if pb is None or len(pb.pending) >= self.per_page or not pb.add(data, ev.ts):
            self._close(key)
            pb = self.builders[key] = PageBuilder(HEADER_PAGE, start_ts=ev.ts)
            pb.pending = []
            pb.add(data, ev.ts)
        pb.pending.append(ev)

    def _close(self, cpu):
        pb = self.builders.pop(cpu, None)
        if pb is not None:
            self.pages.setdefault(cpu, []).append(pb.page())

    def drain(self):
        """Every page so far read as the session reads them; returns the
        losses the pages reported."""
        for cpu in list(self.builders):
            self._close(cpu)
        readers = [PageList(cpu, self.pages.pop(cpu)) for cpu in sorted(self.pages)]
        lost = [0]

        def feed(page, cpu):
            n = self.pairer.feed_page(page, cpu)
            lost[0] += 1 if n is None else n
        while read_round(readers, feed, self.pairer, lap=self.lap):
            pass
        self.pairer.flush()
        return lost[0]

    def run(self, stream):
        """The Reports of a stream (Lost and IntervalEnd as the reference
        evaluator takes them)."""
        reports = []
        for item in stream:
            if isinstance(item, IntervalEnd):
                self.drain()
                reports.append(self.aggregator.collect())
            elif isinstance(item, Lost):
                self.drain()
                self.aggregator.feed_lost(item.n)
            else:
                self.add(item)
        self.drain()
        reports.append(self.aggregator.collect())
        return reports


def lost_page(resolved, ev, lost):
    """One page holding `ev`, flagged as following `lost` lost events."""
    pb = PageBuilder(HEADER_PAGE)
    pb.add(payload(resolved, ev), ev.ts)
    return pb.page(lost=lost)


def page_commit(page):
    return struct.unpack_from("<I", page, 8)[0]
