"""Putting events read from the per-CPU buffers back in timestamp order.

needs_time_order() says when a measurement needs it; TimeOrder holds the
events of each drain lap (readers.read_round) and releases, in order, those
no later read can precede.
"""

import itertools
import operator


def needs_time_order(measurement):
    """Must events reach the aggregator in timestamp order across CPUs?

    A Pair must see a start before its end, and one key's events in the
    order they happened, whichever CPU logged them.  Records are printed in
    the order the aggregator makes them: timestamp order, as perf-tools'
    trace_pipe and our text path print them (bcc prints per-CPU perf
    buffers in arrival order, which no user relies on; a TIME(s) column
    counted from the first row must not go backwards).  Histograms and
    counts of single events are sums: any order gives the same result, so
    they skip the merge."""
    return measurement.pair is not None or measurement.aggregate.kind == "records"


# Held events are (handler, ts, cpu, values): sorted by ts, released as
# handler(ts, cpu, values).
_TS = operator.itemgetter(1)


class TimeOrder(object):
    """Puts events read from the per-CPU buffers back in timestamp order
    before they reach the aggregator (which pairs starts with ends in the
    order it sees them: an I/O issued on CPU 1 and completed on CPU 0 must
    not arrive completion first just because CPU 0 was read first).

    A round (in the session, one lap of read_round()) reads every CPU
    once.  An event read in round R-1 was committed before round R began,
    and so was every event with a smaller timestamp (they happened before
    it); round R reads every CPU after that, so once round R is over,
    everything up to the watermark, the largest timestamp read in rounds
    <= R-1, is known and is released in order.  A CPU whose round stopped at the page limit bounds
    the release by the last timestamp read from it (the rest of that CPU is
    newer), and such a round raises the watermark no further than that.

    Each CPU's buffer is already in timestamp order, so a round leaves one
    sorted run per CPU next to the sorted events held back from earlier
    rounds.  end_round() merges those runs (list.sort finds the sorted runs
    and merges them in C, in time linear in the events for a few CPUs) and
    releases the prefix up to the limit.  Ties keep the order in which the
    runs were read (the sort is stable)."""

    def __init__(self):
        self.pending = []           # held back, sorted by ts after each round
        self.watermark = None       # max ts read in completed earlier rounds
        self._runs = {}             # cpu -> this round's events, in read order
        self._truncated = set()

    def _run(self, cpu):
        run = self._runs.get(cpu)
        if run is None:
            run = self._runs[cpu] = []
        return run

    def sink(self, handler, cpu=None):
        """A decoder callback(ts, cpu, values) that holds the event for
        ordering.  With `cpu` it appends straight to that CPU's run (one
        sink per CPU and event, the fast way); without, it looks the run up
        by the event's cpu."""
        if cpu is not None:
            append = self._run(cpu).append

            def hold(ts, cpu, values):
                append((handler, ts, cpu, values))
            return hold
        run_of = self._run

        def hold_any(ts, cpu, values):
            run_of(cpu).append((handler, ts, cpu, values))
        return hold_any

    def bindings(self, decoder, sinks, cpus):
        """{cpu: decoder binding} that hold the aggregator's sinks
        ({event id: (names, handler)}) in this order's per-CPU runs."""
        return {cpu: decoder.compile_sinks({ev_id: (names, self.sink(handler, cpu))
                                            for ev_id, (names, handler) in sinks.items()})
                for cpu in cpus}

    def holder(self, cpu):
        """The `hold` for RawDecoder.decode_page_into() of events read from
        `cpu`: appends them to its run (the fast way: no sink call)."""
        return self._run(cpu).append

    def truncated(self, cpu):
        """This round stopped reading `cpu` before its buffer was empty."""
        self._truncated.add(cpu)

    def end_round(self):
        """Release what is now known to be complete; returns the count."""
        top = None          # the largest last ts of this round's runs
        cut = None          # the smallest last ts of a CPU left unfinished
        pending = self.pending
        for cpu, run in self._runs.items():
            if not run:
                continue
            last = run[-1][1]
            if cpu in self._truncated and (cut is None or last < cut):
                cut = last
            if top is None or last > top:
                top = last
            pending += run
            del run[:]
        return release_round(self, cut, top)

    def flush(self):
        """Everything has been read (a round found nothing): release all."""
        pending = self.pending
        for run in self._runs.values():
            pending += run
            del run[:]
        self._truncated.clear()
        return self._release(None)

    def _release(self, limit):
        """Deliver the held events with ts <= limit (None: all), in order."""
        pending = self.pending
        if not pending:
            return 0
        pending.sort(key=_TS)
        if limit is None or pending[-1][1] <= limit:
            self.pending = []
            _deliver(pending)
            return len(pending)
        count = _count_upto(pending, limit)
        try:
            _deliver(itertools.islice(pending, count))
        finally:
            # off the queue whatever a handler does: never delivered twice
            del pending[:count]
        return count


def _count_upto(items, limit):
    """How many of the ts-sorted items have ts <= limit (a bisection by
    hand: bisect's key= needs Python 3.10)."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid][1] <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _deliver(items):
    for handler, ts, cpu, values in items:
        handler(ts, cpu, values)


def release_round(order, cut, top):
    """The end of a read round, for TimeOrder and the bulk pairer alike:
    release what every CPU has passed (the last round's watermark, or
    `cut`, the earliest last time of a CPU left unfinished), then raise
    the watermark to `top`, the latest time read.  `order` has
    `watermark`, `_truncated` and `_release(limit)`; returns what
    `_release` returns."""
    limit = order.watermark
    if cut is not None and (limit is None or cut < limit):
        limit = cut
    n = order._release(limit) if limit is not None else 0
    if top is not None:
        # A round that left a CPU unfinished still raises the watermark
        # (up to what it read of that CPU): otherwise a CPU that keeps
        # the reader busy would hold every event back until it calms.
        if cut is not None and cut < top:
            top = cut
        if order.watermark is None or top > order.watermark:
            order.watermark = top
    order._truncated.clear()
    return n
