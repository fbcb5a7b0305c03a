"""The shared scenario table: event streams with the results the model
(core/semantics.py) says they give, written once.

tests/test_scenarios.py runs every scenario through the reference
evaluator, the ftrace backend's Aggregator and the eBPF backend's
generated C (compiled with the host C compiler against a small bcc
runtime): a scenario added here is checked everywhere.

A scenario is a Measurement, a stream (TraceEvents, Lost, IntervalEnd)
and per interval the expected data, unmatched and lost counts.  The
events are block tracepoints as Linux 6.18 describes them (their format
files are in the ftrace backend's corpus, which both backends' tests
resolve against).
"""

from kerntrace.core.model import (EVENT_NAME, LATENCY, LINEAR, LOG2, POW2_MS, QUEUED, STR,
                                  Count, Event, Field, Filter, Histogram, Measurement, Pair,
                                  Records, Tracepoint)
from kerntrace.core.semantics import IntervalEnd, Lost, TraceEvent

DEV = (7 << 20) | 3
OTHER_DEV = (8 << 20) | 16
MS = 1000000
FLUSH = (1 << 64) - 1


class Interval(object):
    """What one interval must report.  data: list of record field dicts,
    {key tuple: count}, or {key tuple: ({bucket: count}, sum)};
    dropped_starts: starts of a nested pair beyond its depth."""

    def __init__(self, data, unmatched=0, lost=0, dropped_starts=0):
        self.data = data
        self.unmatched = unmatched
        self.lost = lost
        self.dropped_starts = dropped_starts


class Scenario(object):
    """not_in: {implementation name: why the scenario does not apply}."""

    def __init__(self, name, measurement, stream, expect, not_in=None):
        self.name = name
        self.measurement = measurement
        self.stream = list(stream)
        self.expect = list(expect)
        self.not_in = dict(not_in or {})

    def __repr__(self):
        return self.name


# A BPF program runs for every event the kernel delivers; what it loses is
# its own output, reported by the reader (not a hole in its input).
NO_INPUT_LOSS = {"ebpf": "a BPF program sees every event: no losses in its input"}


# ---------------------------------------------------------------------------
# Events
def _fields(kw, names):
    return dict((n, kw.pop(n)) for n in names if n in kw)


def _ctx(kw, comm, pid, tid, cpu):
    return dict(cpu=kw.pop("cpu", cpu), pid=kw.pop("pid", pid), tid=kw.pop("tid", tid),
                comm=kw.pop("comm", comm), uid=kw.pop("uid", 0))


def request(name, ts, sector, dev=DEV, rwbs="W", nbytes=4096, **kw):
    """A request start (insert or issue) by dd (pid 4000, tid 4011)."""
    ctx = _ctx(kw, "dd", 4000, 4011, 0)
    fields = {"dev": dev, "sector": sector, "bytes": nbytes, "rwbs": rwbs,
              "nr_sector": kw.pop("nr_sector", nbytes // 512)}
    assert not kw, kw
    return TraceEvent(name, ts, fields=fields, **ctx)


def insert(ts, sector, **kw):
    return request("insert", ts, sector, **kw)


def issue(ts, sector, **kw):
    return request("issue", ts, sector, **kw)


def done(ts, sector, dev=DEV, rwbs="W", error=0, **kw):
    """A completion, in interrupt context."""
    ctx = _ctx(kw, "swapper/0", 0, 0, 0)
    fields = {"dev": dev, "sector": sector, "rwbs": rwbs, "error": error,
              "nr_sector": kw.pop("nr_sector", 8)}
    assert not kw, kw
    return TraceEvent("done", ts, fields=fields, **ctx)


def _start_fields():
    return [Field("dev"), Field("sector"), Field("nr_sector"), Field("bytes"),
            Field("rwbs", STR)]


def insert_event():
    return Event("insert", Tracepoint("block", "block_rq_insert"), fields=_start_fields())


def issue_event():
    return Event("issue", Tracepoint("block", "block_rq_issue"), fields=_start_fields())


def done_event():
    return Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("nr_sector"), Field("rwbs", STR),
                         Field("error", sources=("error", "errors"))])


def pair(aggregate, filters=(), carry=("comm", "pid", "bytes"), shared=None):
    """issue -> done by (dev, sector)."""
    return Measurement([issue_event(), done_event()], aggregate, filters=list(filters),
                       pair=Pair("issue", "done", key=("dev", "sector"), carry=carry,
                                 shared=shared))


def queued(aggregate, filters=(), carry=("comm", "pid", "bytes"), shared=None):
    """insert -> issue (the mark) -> done, as biosnoop -Q declares it."""
    return Measurement([insert_event(), issue_event(), done_event()], aggregate,
                       filters=list(filters),
                       pair=Pair("insert", "done", key=("dev", "sector"), carry=carry,
                                 mark="issue", shared=shared))


def plain(aggregate, filters=()):
    return Measurement([issue_event()], aggregate, filters=list(filters))


POW2 = Histogram(LATENCY, scale=POW2_MS)
QUEUE_RECORD = Records(fields=("comm", "pid", "sector", "bytes", QUEUED, LATENCY))
LAT_RECORD = Records(fields=("sector", LATENCY))


def q(comm, sector, nbytes, queue, latency, pid=4000):
    """An expected QUEUE_RECORD row."""
    return {"comm": comm, "pid": pid, "sector": sector, "bytes": nbytes, QUEUED: queue,
            LATENCY: latency}


def lat(sector, latency):
    return {"sector": sector, LATENCY: latency}


SCENARIOS = []


def scenario(*args, **kw):
    SCENARIOS.append(Scenario(*args, **kw))


# ---------------------------------------------------------------------------
# Pairing
scenario("pairs survive interval boundaries", pair(POW2),
         [issue(1000, 8), IntervalEnd(), done(1000 + 3 * MS, 8)],
         [Interval({}), Interval({(): ({2: 1}, 3 * MS)})])

scenario("unmatched ends are counted per interval", pair(POW2),
         [done(5, 8), done(6, 16), IntervalEnd()],
         [Interval({}, unmatched=2), Interval({})])

scenario("a negative latency (clock skew) counts as 0",
         pair(Histogram(LATENCY, scale=LOG2, unit="nsecs")),
         [issue(5000, 8, cpu=1), done(4000, 8)],
         [Interval({(): ({1: 1}, 0)})])

scenario("a reused key replaces the pending start", pair(Records(fields=(LATENCY, "bytes"))),
         [issue(1000, 8, nbytes=512), issue(2000, 8), done(2500, 8), done(2600, 8)],
         [Interval([{LATENCY: 500, "bytes": 4096}], unmatched=1)])

scenario("an end its filters reject retires its start",
         pair(LAT_RECORD, filters=[Filter("error", "==", 0, events=("done",))]),
         [issue(1000, 8), done(2000, 8, error=-5), done(3000, 8)],
         [Interval([], unmatched=1)])

scenario("a pair yields the end's fields and the start's carried ones",
         pair(Records(fields=("ts", "comm", "pid", "dev", "sector", "bytes", "rwbs", "cpu",
                              LATENCY, EVENT_NAME))),
         [issue(1000, 8, cpu=1, rwbs="WS"), done(2500, 8, rwbs="WS", cpu=0)],
         [Interval([{"ts": 2500, "comm": "dd", "pid": 4000, "dev": DEV, "sector": 8,
                     "bytes": 4096, "rwbs": "WS", "cpu": 0, LATENCY: 1500,
                     EVENT_NAME: "done"}])])

scenario("a device filter on every event keeps the other device out",
         pair(POW2, filters=[Filter("dev", "==", DEV)]),
         [issue(0, 8, dev=OTHER_DEV), issue(0, 8), done(MS, 8, dev=OTHER_DEV), done(MS, 8),
          done(2 * MS, 16, dev=OTHER_DEV)],
         [Interval({(): ({0: 1}, MS)})])

scenario("a key filter on the start alone decides for its end",
         # the end of another device's start is not the tool's: not unmatched
         pair(LAT_RECORD, filters=[Filter("dev", "==", DEV, events=("issue",))]),
         [issue(100, 8, dev=OTHER_DEV), done(200, 8, dev=OTHER_DEV),
          done(300, 16, dev=OTHER_DEV), issue(400, 24), done(450, 24), done(500, 32)],
         [Interval([lat(24, 50)], unmatched=1)])

# ---------------------------------------------------------------------------
# Pairs with a mark: insert -> issue -> done
scenario("a mark splits queue time from latency", queued(QUEUE_RECORD),
         [insert(1000, 8), issue(1000 + 2 * MS, 8, comm="kworker/0:1H", pid=50, tid=50),
          done(1000 + 5 * MS, 8)],
         [Interval([q("dd", 8, 4096, 2 * MS, 3 * MS)])])

scenario("a mark without a start starts the pair, with no queue time", queued(QUEUE_RECORD),
         [issue(1000, 16, comm="kworker/1:1H", pid=60, tid=60, nbytes=8192), done(1700, 16)],
         [Interval([q("kworker/1:1H", 16, 8192, 0, 700, pid=60)])])

scenario("a start without a mark is measured from the start", queued(QUEUE_RECORD),
         [insert(1000, 24), done(1900, 24)],
         [Interval([q("dd", 24, 4096, 0, 900)])])

scenario("queued pairs survive interval boundaries", queued(QUEUE_RECORD),
         [insert(1000, 8), IntervalEnd(), issue(4000, 8, comm="other"), issue(5000, 32),
          IntervalEnd(), done(10000, 8), done(10500, 32), done(11000, 40)],
         [Interval([]), Interval([]),
          Interval([q("dd", 8, 4096, 3000, 6000), q("dd", 32, 4096, 0, 5500)], unmatched=1)])

scenario("a later mark replaces an earlier one", queued(QUEUE_RECORD),
         [insert(1000, 8), issue(2000, 8), issue(5000, 8), done(6000, 8)],
         [Interval([q("dd", 8, 4096, 4000, 1000)])])

scenario("a new start forgets the old mark", queued(QUEUE_RECORD),
         [insert(1000, 8), issue(2000, 8), insert(3000, 8, nbytes=512), done(3500, 8)],
         [Interval([q("dd", 8, 512, 0, 500)])])

scenario("a negative queue time (clock skew) counts as 0", queued(QUEUE_RECORD),
         [insert(5000, 8, cpu=1), issue(4000, 8), done(4500, 8)],
         [Interval([q("dd", 8, 4096, 0, 500)])])

scenario("a mark's filters apply to the mark",
         # the key filter drops the other device; a filter on the mark's own
         # field ends its pair (the end is dropped, not unmatched)
         queued(QUEUE_RECORD, filters=[Filter("dev", "==", DEV),
                                       Filter("rwbs", "!=", "WM", events=("issue",))]),
         [issue(10, 8, dev=OTHER_DEV), done(20, 8, dev=OTHER_DEV),
          insert(100, 16), issue(150, 16, rwbs="WM"), done(300, 16),
          insert(400, 24), issue(450, 24), done(600, 24),
          issue(700, 32, rwbs="WM"), done(800, 32)],
         [Interval([q("dd", 24, 4096, 50, 150)])])

scenario("a key filter on the mark alone ends the pair of a rejected mark",
         queued(QUEUE_RECORD, filters=[Filter("dev", "==", DEV, events=("issue",))]),
         [insert(100, 8, dev=OTHER_DEV), issue(200, 8, dev=OTHER_DEV),
          done(300, 8, dev=OTHER_DEV), insert(400, 8), issue(450, 8), done(500, 8)],
         [Interval([q("dd", 8, 4096, 50, 50)])])

scenario("a key filter on the start alone, with a mark, silences the start's end",
         # not a pair filter (the mark may start the pair for any device):
         # the rejected start takes its key, its end is dropped
         queued(QUEUE_RECORD, filters=[Filter("dev", "==", DEV, events=("insert",))]),
         [insert(100, 8, dev=OTHER_DEV), done(200, 8, dev=OTHER_DEV),
          insert(300, 16, dev=OTHER_DEV), issue(350, 16, dev=OTHER_DEV),
          done(400, 16, dev=OTHER_DEV), done(500, 24, dev=OTHER_DEV)],
         [Interval([q("dd", 16, 4096, 0, 50)], unmatched=1)])

scenario("a start its filters reject silences its end",
         # iosnoop -p: the pid filter is on the start only.  Another
         # process's I/O is neither reported nor unmatched; an end whose
         # start was never seen still is unmatched.
         queued(QUEUE_RECORD, filters=[Filter("pid", "==", 77, events=("insert",))]),
         [insert(100, 8, pid=77, tid=77), insert(110, 16, pid=78, tid=78),
          done(200, 8), done(210, 16), done(220, 24)],
         [Interval([q("dd", 8, 4096, 0, 100, pid=77)], unmatched=1)])

scenario("a rejected start's mark starts the pair",
         queued(QUEUE_RECORD, filters=[Filter("pid", "==", 77, events=("insert",))]),
         [insert(100, 8, pid=78, tid=78), issue(150, 8, pid=79, tid=79, comm="kworker"),
          done(400, 8)],
         [Interval([q("kworker", 8, 4096, 0, 250, pid=79)])])

scenario("a queued-time histogram", queued(Histogram(QUEUED, scale=LOG2, unit="nsecs")),
         [insert(100, 24), insert(101, 32), issue(200, 32), done(300, 32), done(400, 24)],
         [Interval({(): ({7: 1, 1: 1}, 99)})])

# ---------------------------------------------------------------------------
# Shared keys: every flush of a device has the all-ones sector.
scenario("one flush at a time is measured", pair(LAT_RECORD, shared={"sector": FLUSH}),
         [issue(100, FLUSH, nbytes=0), done(150, FLUSH), issue(200, FLUSH, nbytes=0),
          done(260, FLUSH)],
         [Interval([lat(FLUSH, 50), lat(FLUSH, 60)])])

for _n in (2, 3):
    scenario("%d overlapping flushes are never paired" % _n,
             pair(LAT_RECORD, shared={"sector": FLUSH}),
             [issue(100 + i, FLUSH, nbytes=0) for i in range(_n)]
             + [issue(105, 8), done(110, 8)]
             + [done(200 + i, FLUSH) for i in range(_n)]
             + [IntervalEnd(), issue(300, FLUSH, nbytes=0), done(340, FLUSH)],
             [Interval([lat(8, 5)], unmatched=_n), Interval([lat(FLUSH, 40)])])

scenario("overlapping flushes with queue marks",
         queued(LAT_RECORD, shared={"sector": FLUSH}),
         [insert(100, FLUSH, nbytes=0), insert(101, FLUSH, nbytes=0),
          issue(110, FLUSH, nbytes=0), issue(111, FLUSH, nbytes=0),
          done(200, FLUSH), done(201, FLUSH), insert(300, FLUSH, nbytes=0),
          issue(310, FLUSH, nbytes=0), done(350, FLUSH)],
         [Interval([lat(FLUSH, 40)], unmatched=2)])

scenario("a rejected flush still makes the key shared",
         # iosnoop -p: another process's flush and ours overlap; the first
         # completion could be either's
         pair(LAT_RECORD, shared={"sector": FLUSH},
              filters=[Filter("pid", "==", 77, events=("issue",))]),
         [issue(100, FLUSH, nbytes=0, pid=78, tid=78), issue(101, FLUSH, nbytes=0, pid=77, tid=77),
          done(150, FLUSH), done(160, FLUSH), issue(200, FLUSH, nbytes=0, pid=77, tid=77),
          done(230, FLUSH)],
         [Interval([lat(FLUSH, 30)], unmatched=2)])

scenario("an end its filters reject uses up one of a shared key's ends",
         pair(LAT_RECORD, shared={"sector": FLUSH},
              filters=[Filter("error", "==", 0, events=("done",))]),
         [issue(100, FLUSH, nbytes=0), issue(101, FLUSH, nbytes=0), done(150, FLUSH, error=-5),
          done(160, FLUSH), issue(200, FLUSH, nbytes=0), done(230, FLUSH)],
         [Interval([lat(FLUSH, 30)], unmatched=1)])

scenario("lost events release a shared key", pair(LAT_RECORD, shared={"sector": FLUSH}),
         [issue(100, FLUSH, nbytes=0), issue(101, FLUSH, nbytes=0), Lost(5),
          issue(300, FLUSH, nbytes=0), done(330, FLUSH), Lost(None)],
         [Interval([lat(FLUSH, 30)], lost=6)], not_in=NO_INPUT_LOSS)

# ---------------------------------------------------------------------------
# Derived fields (model.Field if_zero and override), in biosnoop's own
# measurement (-Q: insert -> issue -> done)
def _biosnoop(queue):
    from kerntrace.plugins import biosnoop
    tool = biosnoop.BioSnoop()
    return tool.measurement(tool.parse_args(["-Q"] if queue else []))


def _row(comm, sector, nbytes, latency, queue, rwbs="W"):
    row = {"comm": comm, "pid": 4000, "dev": DEV, "rwbs": rwbs, "sector": sector,
           "bytes": nbytes, "error": 0, LATENCY: latency}
    if queue:
        row[QUEUED] = 0
    return row


for _queue in (False, True):
    scenario("biosnoop%s: sizes from sectors, flush keys" % (" -Q" if _queue else ""),
             # a request recorded with 0 bytes (up to v4.10) is nr_sector *
             # 512; a flush whose start shows sector 0 pairs with its all-ones
             # completion; a real I/O at sector 0 stays at sector 0
             _biosnoop(_queue),
             [request("start", 1000, 2048, nbytes=0, nr_sector=8), done(3000, 2048),
              request("start", 4000, 0, rwbs="FF", nbytes=0, nr_sector=0, comm="jbd2"),
              request("start", 4100, 0, rwbs="R", nbytes=4096), done(4500, 0, rwbs="R"),
              done(4900, FLUSH, rwbs="FF")],
             [Interval([_row("dd", 2048, 4096, 2000, _queue),
                        _row("dd", 0, 4096, 400, _queue, rwbs="R"),
                        _row("jbd2", FLUSH, 0, 900, _queue, rwbs="FF")])])

# ---------------------------------------------------------------------------
# Filters on single events
for _op, _value, _passing in [("==", 4096, [4096]), ("!=", 4096, [512, 65536]),
                              ("<", 4096, [512]), ("<=", 4096, [512, 4096]),
                              (">", 4096, [65536]), (">=", 4096, [4096, 65536]),
                              # a bit mask: any of its bits set
                              ("&", 512 | 4096, [512, 4096]), ("&", 1 << 16, [65536]),
                              ("&", 1, [])]:
    scenario("integer filter bytes %s %d" % (_op, _value),
             plain(Count(keys=("bytes",)), filters=[Filter("bytes", _op, _value)]),
             [issue(i, i, nbytes=b) for i, b in enumerate((512, 4096, 65536))],
             [Interval(dict(((b,), 1) for b in _passing))])

_RWBS = ("W", "WS", "R", "RA", "FWS")
for _op, _value, _passing in [("==", "WS", ["WS"]), ("!=", "WS", ["FWS", "R", "RA", "W"]),
                              ("glob", "*R*", ["R", "RA"]), ("glob", "W*", ["W", "WS"]),
                              ("glob", "*S", ["FWS", "WS"]), ("glob", "RA", ["RA"]),
                              ("glob", "*", list(_RWBS))]:
    scenario("string filter rwbs %s %r" % (_op, _value),
             plain(Count(keys=("rwbs",)), filters=[Filter("rwbs", _op, _value)]),
             [issue(i, i, rwbs=r) for i, r in enumerate(_RWBS)],
             [Interval(dict(((r,), 1) for r in _passing))])

for _flt, _want in [(Filter("pid", "==", 4000), 2), (Filter("tid", "==", 4011), 1),
                    (Filter("cpu", ">=", 1), 1), (Filter("comm", "glob", "d*"), 2),
                    (Filter("comm", "==", "cat"), 1), (Filter("uid", "==", 1000), 2),
                    (Filter("uid", "!=", 0), 2), (Filter("uid", "<", 1000), 1)]:
    scenario("context filter %s %s %r" % (_flt.field, _flt.op, _flt.value),
             plain(Count(), filters=[_flt]),
             [issue(0, 0, tid=4011, cpu=0, uid=1000), issue(1, 1, tid=4012, cpu=1, uid=1000),
              issue(2, 2, pid=77, tid=77, cpu=0, comm="cat")],
             [Interval({(): _want})])

scenario("records of fields only some events declare: None in the others'",
         Measurement([issue_event(), done_event()],
                     Records((EVENT_NAME, "sector", "bytes", "error", "rwbs"))),
         [issue(0, 8, nbytes=512), done(10, 8, error=-5), issue(20, 16, rwbs="R")],
         [Interval([{EVENT_NAME: "issue", "sector": 8, "bytes": 512, "error": None,
                     "rwbs": "W"},
                    {EVENT_NAME: "done", "sector": 8, "bytes": None, "error": -5, "rwbs": "W"},
                    {EVENT_NAME: "issue", "sector": 16, "bytes": 4096, "error": None,
                     "rwbs": "R"}])])

scenario("records of the task's real uid",
         plain(Records(("comm", "uid"))),
         [issue(0, 0, uid=1000), issue(1, 1, pid=77, tid=77, comm="cat", uid=65534),
          issue(2, 2, comm="root", uid=0)],
         [Interval([{"comm": "dd", "uid": 1000}, {"comm": "cat", "uid": 65534},
                    {"comm": "root", "uid": 0}])])

# ---------------------------------------------------------------------------
# Histograms: the buckets of core.buckets, the sum of the values bucketed
_LATS = [0, 1, 2, 3, 999999, MS, MS + 1, 2 * MS, 2 * MS + 1, 4 * MS, 7 * MS + 3, 2 ** 40]


def _hist_of(scale, divisor, step, values):
    from kerntrace.core.buckets import bucket_index
    out = {}
    for v in values:
        i = bucket_index(scale, v // divisor, step)
        out[i] = out.get(i, 0) + 1
    return out, sum(v // divisor for v in values)


for _spec in (Histogram(LATENCY, scale=LOG2, unit="nsecs"),
              Histogram(LATENCY, scale=LINEAR, step=250000),
              Histogram(LATENCY, scale=POW2_MS)):
    _stream = []
    for _i, _lat in enumerate(_LATS):
        _stream += [issue(10 + _i, _i * 8), done(10 + _i + _lat, _i * 8)]
    _stream.sort(key=lambda e: e.ts)
    scenario("latency histogram, %s scale" % _spec.scale, pair(_spec), _stream,
             [Interval({(): _hist_of(_spec.scale, _spec.divisor, _spec.step, _LATS)})])

scenario("pow2ms rows: exactly 1 ms and 2 ms are upper bounds", pair(POW2),
         sorted([e for i, l in enumerate([MS, 2 * MS, MS + 1000, 0, 500 * 1000])
                 for e in (issue(0, i), done(l, i))], key=lambda e: e.ts),
         [Interval({(): ({0: 3, 1: 2}, 4 * MS + 501000)})])

scenario("a field's histogram with a divisor, keyed",
         plain(Histogram("bytes", scale=LOG2, unit="kbytes", divisor=1024, keys=("rwbs",))),
         [issue(i, i, rwbs=r, nbytes=b)
          for i, (r, b) in enumerate([("W", 4096), ("W", 4096), ("R", 65536), ("R", 512)])],
         [Interval({("W",): ({3: 2}, 8), ("R",): ({7: 1, 1: 1}, 64)})])

scenario("a latency histogram keyed by the carried comm",
         pair(Histogram(LATENCY, scale=LOG2, unit="usecs", keys=("comm",))),
         [issue(0, 8), issue(0, 16, comm="cat"), done(3000, 8), done(9000, 16)],
         [Interval({("dd",): ({2: 1}, 3), ("cat",): ({4: 1}, 9)})])

scenario("a linear histogram of a field",
         plain(Histogram("bytes", scale=LINEAR, step=4096, unit="bytes")),
         [issue(i, i, nbytes=b) for i, b in enumerate([0, 4095, 4096, 8191, 65536])],
         [Interval({(): ({0: 2, 1: 2, 16: 1}, 81918)})])

# ---------------------------------------------------------------------------
# Nested pairs (Pair.nested): a function entered again on its thread before
# it returns (recursion).  issue stands for the entry and done, here run by
# the same thread, for the return: the key is the thread.
def nested(depth, filters=()):
    return Measurement([issue_event(), done_event()],
                       Records(fields=("tid", "sector", LATENCY)), filters=list(filters),
                       pair=Pair("issue", "done", key=("tid",), nested=depth))


def ret(ts, sector, tid=4011, pid=4000):
    return done(ts, sector, tid=tid, pid=pid, comm="dd")


def call(tid, sector, latency):
    return {"tid": tid, "sector": sector, LATENCY: latency}


scenario("nested pair: each return pairs with its thread's innermost entry",
         nested(8),
         [issue(0, 8), issue(10, 16), issue(15, 99, tid=4012), issue(20, 24), ret(25, 24),
          ret(40, 16), ret(50, 99, tid=4012), IntervalEnd(), ret(100, 8)],
         [Interval([call(4011, 24, 5), call(4011, 16, 30), call(4012, 99, 35)]),
          Interval([call(4011, 8, 100)])])

scenario("nested pair: without nesting the newer entry replaces the older",
         Measurement([issue_event(), done_event()], Records(fields=("sector", LATENCY)),
                     pair=Pair("issue", "done", key=("tid",))),
         [issue(0, 8), issue(10, 16), ret(40, 16), ret(100, 8)],
         [Interval([{"sector": 16, LATENCY: 30}], unmatched=1)])

scenario("nested pair: entries beyond the depth are dropped, their returns unmatched",
         nested(2),
         [issue(0, 8), issue(10, 16), issue(20, 24), issue(30, 32), ret(35, 32), ret(40, 24),
          ret(60, 16), ret(100, 8), ret(110, 0)],
         [Interval([call(4011, 16, 50), call(4011, 8, 100)], unmatched=3, dropped_starts=2)])

scenario("nested pair: a rejected inner entry drops its own return only",
         nested(8, filters=[Filter("bytes", ">=", 4096)]),
         [issue(0, 8), issue(10, 16, nbytes=512), ret(20, 16), ret(50, 8)],
         [Interval([call(4011, 8, 50)])])

scenario("nested pair: a key filter drops another process's entries and returns",
         nested(8, filters=[Filter("pid", "==", 4000)]),
         [issue(0, 8), issue(5, 16, pid=77, tid=77), ret(9, 16, tid=77, pid=77), ret(10, 8)],
         [Interval([call(4011, 8, 10)])])


# Pair.abandon: block_rq_insert stands for the thread's exit (key tid).
def abandoned(depth=None, filters=()):
    return Measurement([issue_event(), done_event(), insert_event()],
                       Records(fields=("tid", "sector", LATENCY)), filters=list(filters),
                       pair=Pair("issue", "done", key=("tid",), nested=depth,
                                 abandon="insert"))


scenario("abandon: a thread's exit gives up its pending calls, counted as dropped",
         abandoned(8),
         [issue(0, 8), issue(10, 16), issue(12, 99, tid=4012), insert(20, 0), ret(30, 16),
          ret(40, 99, tid=4012), insert(50, 0, tid=4012)],
         [Interval([call(4012, 99, 28)], unmatched=1, dropped_starts=2)])

scenario("abandon: without nesting the one pending call is given up",
         abandoned(),
         [issue(0, 8), insert(5, 0), issue(10, 16), ret(20, 16), insert(30, 0), ret(40, 8)],
         [Interval([call(4011, 16, 10)], unmatched=1, dropped_starts=1)])

scenario("abandon: a rejected or too deep call is not counted again",
         abandoned(1, filters=[Filter("bytes", ">=", 4096)]),
         [issue(0, 8, nbytes=512), insert(5, 0), issue(10, 16), issue(11, 24), insert(20, 0)],
         [Interval([], dropped_starts=2)])


scenario("a pair's minimum latency keeps only the slow pairs, its own included",
         Measurement([issue_event(), done_event()], Records(fields=("sector", LATENCY)),
                     pair=Pair("issue", "done", key=("tid",), nested=4, min_latency=30)),
         [issue(0, 8), issue(10, 16), ret(39, 16), ret(40, 8), issue(50, 24), ret(80, 24),
          ret(81, 32)],
         [Interval([{"sector": 8, LATENCY: 40}, {"sector": 24, LATENCY: 30}], unmatched=1)])


# ---------------------------------------------------------------------------
# Counts and records
scenario("counts per logical event and comm",
         Measurement([issue_event(), done_event()], Count(keys=(EVENT_NAME, "comm"))),
         [issue(0, 8), issue(1, 16), done(2, 8), IntervalEnd()],
         [Interval({("issue", "dd"): 2, ("done", "swapper/0"): 1}), Interval({})])

scenario("pairs counted per carried comm", pair(Count(keys=("comm",))),
         [issue(0, 8), issue(1, 16, comm="cat"), done(5, 8), done(6, 16), done(7, 24)],
         [Interval({("dd",): 1, ("cat",): 1}, unmatched=1)])

scenario("records stream and reset", plain(Records(fields=("ts", "tid", "sector", "comm"))),
         [issue(10, 8), issue(20, 16), IntervalEnd()],
         [Interval([{"ts": 10, "tid": 4011, "sector": 8, "comm": "dd"},
                    {"ts": 20, "tid": 4011, "sector": 16, "comm": "dd"}]), Interval([])])

scenario("lost events are reported per interval", pair(POW2),
         [Lost(5), Lost(None), Lost(0), IntervalEnd()],
         [Interval({}, lost=6), Interval({})], not_in=NO_INPUT_LOSS)


# ---------------------------------------------------------------------------
# iolatency's pair (nothing carried): what the ftrace backend's bulk pair
# path (bulkpair.py) decides with dicts and sets, and what it hands to the
# handlers, at the edges of both
def io(filters=(), shared=None, aggregate=POW2):
    return pair(aggregate, filters=filters, carry=(), shared=shared)


scenario("a sector read again pairs each read with its own start", io(),
         [issue(100, 8), done(200, 8, cpu=1), issue(300, 8, cpu=1), done(500, 8),
          issue(600, 8), done(900, 8), issue(1000, 16), done(1000 + 3 * MS, 16)],
         [Interval({(): ({0: 3, 2: 1}, 100 + 200 + 300 + 3 * MS)})])

scenario("a requeued start replaces the pending one, in flight or not", io(),
         [issue(100, 8), IntervalEnd(), issue(200, 8), issue(250, 8), done(400, 8),
          done(450, 8)],
         [Interval({}), Interval({(): ({0: 1}, 150)}, unmatched=1)])

scenario("ends without their start, starts waiting across intervals", io(),
         [done(50, 16), issue(100, 24, cpu=1), issue(110, 32), done(150, 32, cpu=1),
          IntervalEnd(), done(100 + 5 * MS, 24), done(6 * MS, 40), IntervalEnd()],
         [Interval({(): ({0: 1}, 40)}, unmatched=1),
          Interval({(): ({3: 1}, 5 * MS)}, unmatched=1), Interval({})])

scenario("flushes in flight together are not measured, the other I/O is",
         io(shared={"sector": FLUSH}),
         [issue(100, FLUSH, nbytes=0), issue(110, 8), issue(120, FLUSH, nbytes=0, cpu=1),
          done(150, FLUSH), done(160, 8, cpu=1), done(170, FLUSH), issue(200, FLUSH, nbytes=0),
          done(260, FLUSH)],
         [Interval({(): ({0: 2}, 50 + 60)}, unmatched=2)])

scenario("a loss forgets the flushes in flight", io(shared={"sector": FLUSH}),
         [issue(100, FLUSH, nbytes=0), issue(105, FLUSH, nbytes=0), issue(106, 8), Lost(3),
          done(200, FLUSH), done(206, 8)],
         [Interval({(): ({0: 1}, 100)}, unmatched=1, lost=3)], not_in=NO_INPUT_LOSS)

scenario("another disk's I/O is not traced, its ends not unmatched",
         io(filters=[Filter("dev", "==", DEV)]),
         [issue(100, 8, dev=OTHER_DEV), issue(110, 8), done(150, 8, dev=OTHER_DEV),
          done(170, 8), done(180, 16, dev=OTHER_DEV)],
         [Interval({(): ({0: 1}, 60)})])

scenario("microsecond log2 rows of one batch's pairs",
         io(aggregate=Histogram(LATENCY, scale=LOG2, unit="usecs", divisor=1000)),
         [issue(0, 8), issue(10, 16), done(999, 8), done(1010, 16, cpu=1), issue(2000, 24),
          done(2000 + 70000, 24), issue(80000, 32), done(80000 + 1000, 32)],
         [Interval({(): ({1: 3, 7: 1}, 0 + 1 + 70 + 1)})])
