"""The shared scenario table (tests/scenarios.py), run against every
implementation of the model:

  reference  core.semantics.evaluate, the specification
  ftrace     the ftrace backend's Aggregator, fed RawEvents as its
             decoders make them (plan resolved against Linux 6.18 formats)
  ftrace bulk  its bulk pair path (bulkpair.py), fed the events as
             ring-buffer pages (tests/bulkpages.py), where it applies
  ebpf       the eBPF backend's generated C, compiled with the host C
             compiler against a small bcc runtime (maps as arrays, a
             settable clock, pid, cpu and comm) and run on the events as
             tracepoint records; its maps are read and cleared at each
             interval boundary, as the session's collect() does
  ebpf live  the same program loaded into this kernel by bcc, its
             handlers run on the events by BPF_PROG_TEST_RUN (marked live
             and ebpf: skipped with the probed reason where the host
             cannot)

Each must give, per interval, the data, unmatched and lost counts the
scenario expects.
"""

import ctypes
import os
import struct
import sys

import pytest

from kerntrace.backends.ebpf import cfilters, codegen, sysbpf
from kerntrace.core import known_formats
from kerntrace.backends.ftrace.aggregate import Aggregator
from kerntrace.backends.ftrace.plan import Plan, RawEvent, ResolvedEvent, own_comm_field
from kerntrace.backends.ftrace.replay import resolve_fields
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core import results
from kerntrace.core.model import EVENT_NAME
from kerntrace.core.semantics import IntervalEnd, Lost, evaluate

from bulkpages import BulkRun
from kerntrace.backends.ftrace.bulkpair import bulk_pairs
from scenarios import SCENARIOS
from test_ebpf_codegen import CC, RUN_HEADER, compile_c, make_plan, tracepoint_struct


# ---------------------------------------------------------------------------
# What is compared: plain data, so that a difference reads well.
def comparable(report):
    d = report.data
    if isinstance(d, results.HistogramSet):
        data = dict((k, (dict((i, n) for i, n in h.buckets.items() if n), h.total))
                    for k, h in d.histograms.items() if h.count)
    elif isinstance(d, results.CountSet):
        data = dict((k, n) for k, n in d.counts.items() if n)
    else:
        assert all(type(r) is results.Record for r in d)
        data = [r.fields for r in d]
    return (data, report.unmatched, report.lost, report.dropped_starts)


def expected(scenario):
    return [(i.data, i.unmatched, i.lost, i.dropped_starts) for i in scenario.expect]


# ---------------------------------------------------------------------------
# ftrace: the Aggregator
def ftrace_plan(measurement):
    events = []
    for ev in measurement.events:
        probe = ev.probes[0]
        fmt = known_formats.event_format("6.18", probe.category, probe.name)
        fields, missing = resolve_fields(ev, [fmt])
        assert not missing
        events.append(ResolvedEvent(ev, probe, probe.category, probe.name, fmt, fields))
    return Plan(events)


class ScenarioTasks(TaskInfo):
    """The scenario's uids where the backend would read /proc."""

    def __init__(self, **kw):
        TaskInfo.__init__(self, **kw)
        self.uids = {}

    def uid(self, tid):
        return self.uids.get(tid)


def run_ftrace(measurement, stream):
    plan = ftrace_plan(measurement)
    tasks = ScenarioTasks(proc_root=None)
    agg = Aggregator(measurement, plan, tasks=tasks)
    by_name = dict((r.logical.name, r) for r in plan.events)
    reports = []
    for item in stream:
        if isinstance(item, IntervalEnd):
            reports.append(agg.collect())
        elif isinstance(item, Lost):
            agg.feed_lost(item.n)
        else:
            r = by_name[item.name]
            tasks.uids[item.tid] = item.uid
            fields = dict((r.fields[n], v) for n, v in item.fields.items() if n in r.fields)
            if own_comm_field(r):
                fields[own_comm_field(r)] = item.comm     # the record's own copy
            agg.feed(RawEvent(r.system, r.event, item.ts, item.tid, item.cpu, comm=item.comm,
                              tgid=item.pid, fields=fields))
    reports.append(agg.collect())
    return reports


# ---------------------------------------------------------------------------
# eBPF: the generated C on the host, in test_ebpf_codegen's bcc runtime


def _c_int(v):
    return "(%dLL)" % v if v < 0 else "%dULL" % v


def _c_str(s):
    assert all(c.isalnum() or c in "/:._- " for c in s), s
    return '"%s"' % s


def _dump(prog):
    """C that prints the interval's maps and stats, then clears them."""
    lines = ["static void kt_dump(void)", "{", "    int i;"]
    if prog.kind in ("histogram", "count"):
        m = codegen.HIST_MAP if prog.kind == "histogram" else codegen.COUNT_MAP
        tag = "H " if prog.kind == "histogram" else "C "
        lines += ["    for (i = 0; i < KT_SLOTS; i++) {",
                  "        if (!%s_u[i]) continue;" % m,
                  '        kt_hex("%s", &%s_k[i], sizeof(%s_k[i]));' % (tag, m, m),
                  '        kt_hex(" ", &%s_v[i], sizeof(%s_v[i]));' % (m, m),
                  '        printf("\\n");',
                  "        %s_u[i] = 0;" % m,
                  "    }"]
    s = codegen.STATS_MAP
    lines += ['    printf("S %%llu %%llu %%llu\\n", %s_v[%d], %s_v[%d], %s_v[%d]);'
              % (s, codegen.STAT_UNMATCHED, s, codegen.STAT_LOST, s, codegen.STAT_DROPPED_STARTS),
              "    memset(%s_v, 0, sizeof(%s_v));" % (s, s),
              '    printf("E\\n");', "}"]
    return "\n".join(lines)


def _call(att, ev):
    """C statements that run event `ev` through its handler."""
    pe = att.event
    out = ["kt_test_now = %s;" % _c_int(ev.ts),
           "kt_test_pid_tgid = (%s << 32) | %s;" % (_c_int(ev.pid), _c_int(ev.tid)),
           "kt_test_cpu = %d;" % ev.cpu,
           # gid (the high half) 4242: a program reading it as the uid would show it
           "kt_test_uid_gid = (4242ULL << 32) | %s;" % _c_int(ev.uid),
           "memset(kt_test_comm, 0, sizeof(kt_test_comm));",
           "strncpy(kt_test_comm, %s, 15);" % _c_str(ev.comm)]
    if att.raw:
        out.append("{ struct bpf_raw_tracepoint_args a; %s(&a); }" % att.fn_name)
        return out
    p = pe.probe
    sets = []
    for name, value in sorted(ev.fields.items()):
        fs = pe.fields.get(name)
        if fs is None:
            continue
        assert fs.kind in ("tp", "tp_array"), fs
        if fs.kind == "tp":
            sets.append("a.%s = %s;" % (fs.member, _c_int(value)))
        else:
            sets.append("strncpy(a.%s, %s, sizeof(a.%s) - 1);" % (fs.member, _c_str(value),
                                                                  fs.member))
    out.append("{ struct tracepoint__%s__%s a; memset(&a, 0, sizeof(a)); %s %s(&a); }"
               % (p.category, p.name, " ".join(sets), att.fn_name))
    return out


def run_ebpf(tmp_path, measurement, stream):
    plan = make_plan(measurement)
    prog = codegen.generate(measurement, plan)
    atts = dict((a.event.name, a) for a in prog.attachments)
    body = []
    for item in stream:
        if isinstance(item, IntervalEnd):
            body.append("kt_dump();")
        elif isinstance(item, Lost):
            raise AssertionError("no input losses in a BPF program")
        elif item.name in atts:
            body += _call(atts[item.name], item)
    body.append("kt_dump();")
    structs = sorted(set(tracepoint_struct(e.probes[0].category, e.probes[0].name)
                         for e in measurement.events))
    text = (RUN_HEADER + "\n".join(structs) + "\n" + prog.text + "\n" + _dump(prog)
            + "\nint main(void)\n{\n    " + "\n    ".join(body) + "\n    return 0;\n}\n")
    words = compile_c(tmp_path, text, run_input="", name="scenario")
    return _reports(prog, measurement, words)


def _reports(prog, measurement, words):
    """The Reports the harness printed, decoded as the eBPF session does."""
    agg = measurement.aggregate
    reports, data = [], None
    it = iter(words)

    def key_tuple(raw):
        fields = prog.key_layout.decode(raw)
        if EVENT_NAME in fields:
            fields[EVENT_NAME] = prog.event_names[fields[EVENT_NAME]]
        return fields, tuple(fields[k] for k in prog.key_names)

    for w in it:
        if data is None:
            data = {"histogram": results.HistogramSet(prog.key_names),
                    "count": results.CountSet(prog.key_names)}.get(prog.kind, [])
        if w == "R":
            rec = prog.record_layout.decode(bytes.fromhex(next(it)))
            ts = rec.pop("kt_ts")
            if EVENT_NAME in rec:
                for name in prog.absent.get(rec[EVENT_NAME], ()):
                    rec[name] = None
                rec[EVENT_NAME] = prog.event_names[rec[EVENT_NAME]]
            data.append(results.Record(ts, rec))
        elif w == "H":
            fields, k = key_tuple(bytes.fromhex(next(it)))
            val = prog.value_layout.decode(bytes.fromhex(next(it)))
            h = data.histograms.setdefault(k, results.Histogram(agg.scale, agg.unit, agg.step))
            h.add(fields["kt_slot"], 0, val["count"])
            h.total += val["sum"]
        elif w == "C":
            _fields, k = key_tuple(bytes.fromhex(next(it)))
            data.counts[k] = data.counts.get(k, 0) + int.from_bytes(
                bytes.fromhex(next(it))[:8], sys.byteorder)
        elif w == "S":
            unmatched, lost, dropped = (int(next(it)) for _ in range(3))
            reports.append(results.Report(data, lost=lost, unmatched=unmatched,
                                          dropped_starts=dropped))
        elif w == "E":
            data = None
        else:
            raise AssertionError("harness printed %r" % w)
    return reports


# ---------------------------------------------------------------------------
# eBPF live: the generated program loaded into this kernel by bcc, each
# handler run on the scenario's events by BPF_PROG_TEST_RUN.  Tracepoint
# programs cannot be test-run, so each handler is loaded as a raw
# tracepoint program reading the same record (the tracepoint's format
# layout) from its context.  The clock and task context come from a map
# the test fills per event instead of the helpers (the kernel would give
# the test's own); everything else (maps, helpers, verifier, perf buffer)
# is the kernel's.
BPF_PROG_TEST_RUN = 10
RAW_TP_CTX_MAX = 96        # MAX_BPF_FUNC_ARGS * sizeof(u64): a raw tracepoint's context

TEST_CONTEXT = r"""
struct kt_test_ctx { u64 now; u64 pid_tgid; u64 cpu; char comm[16]; u64 uid_gid; };
BPF_ARRAY(kt_test, struct kt_test_ctx, 1);
static __always_inline struct kt_test_ctx *kt_test_get(void)
{
    int z = 0;
    return kt_test.lookup(&z);
}
static __always_inline u64 kt_test_now(void)
{
    struct kt_test_ctx *c = kt_test_get();
    return c ? c->now : 0;
}
static __always_inline u64 kt_test_pid_tgid(void)
{
    struct kt_test_ctx *c = kt_test_get();
    return c ? c->pid_tgid : 0;
}
static __always_inline u64 kt_test_uid_gid(void)
{
    struct kt_test_ctx *c = kt_test_get();
    return c ? c->uid_gid : 0;
}
static __always_inline u32 kt_test_cpu(void)
{
    struct kt_test_ctx *c = kt_test_get();
    return c ? c->cpu : 0;
}
static __always_inline int kt_test_comm(void *dst, u32 size)
{
    struct kt_test_ctx *c = kt_test_get();
    if (!c)
        return -1;
    return bpf_probe_read_kernel(dst, 16, c->comm);
}
"""

_CONTEXT_HELPERS = (("bpf_ktime_get_ns()", "kt_test_now()"),
                    ("bpf_get_current_pid_tgid()", "kt_test_pid_tgid()"),
                    ("bpf_get_smp_processor_id()", "kt_test_cpu()"),
                    ("bpf_get_current_uid_gid()", "kt_test_uid_gid()"),
                    ("bpf_get_current_comm(", "kt_test_comm("))


def with_test_context(text):
    for helper, ours in _CONTEXT_HELPERS:
        text = text.replace(helper, ours)
    head = text.index("\n\n")
    return text[:head] + "\n" + TEST_CONTEXT + text[head:]


def prog_test_run(fd, ctx):
    buf = ctypes.create_string_buffer(bytes(ctx), len(ctx))
    attr = struct.pack("<IIIIQQIIIIQQIII", fd, 0, 0, 0, 0, 0, 0, 0, len(ctx), 0,
                       ctypes.addressof(buf), 0, 0, 0, 0)
    res, err = sysbpf.bpf(BPF_PROG_TEST_RUN, attr + b"\0" * (80 - len(attr)))
    assert res == 0, "BPF_PROG_TEST_RUN: %s" % sysbpf.errname(err)


_LIVE_FORMATS = {}


def live_format(category, name):
    if (category, name) not in _LIVE_FORMATS:
        from kerntrace.core.host import Host
        _LIVE_FORMATS[(category, name)] = Host().event_format(category, name)
    return _LIVE_FORMATS[(category, name)]


def record_bytes(pe, ev):
    """The tracepoint record of `ev` as its format lays it out."""
    p = pe.probe
    fmt = live_format(p.category, p.name)      # what bcc builds the struct from
    ctx = bytearray(RAW_TP_CTX_MAX)
    for name, value in ev.fields.items():
        fs = pe.fields.get(name)
        if fs is None:
            continue
        f = fmt.field(fs.member)
        assert f.offset + f.size <= RAW_TP_CTX_MAX, f
        if fs.kind == "tp_array":
            data = value.encode()[:f.size - 1]
        else:
            data = (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little")
        ctx[f.offset:f.offset + len(data)] = data
    return ctx


def run_ebpf_live(measurement, stream):
    from kerntrace.backends.ebpf import bccfind, bpfobject
    bcc = bccfind.import_bcc()
    plan = make_plan(measurement)
    prog = codegen.generate(measurement, plan)
    b = bpfobject.load(bcc, with_test_context(prog.text))
    try:
        return _run_live(bcc, b, prog, measurement, stream)
    finally:
        assert bpfobject.unload(b) == []


def _run_live(bcc, b, prog, measurement, stream):
    fds = dict((a.event.name, (a, b.load_func(a.fn_name.encode(), bcc.BPF.RAW_TRACEPOINT).fd))
               for a in prog.attachments)
    context = b.get_table(b"kt_test")
    records = []
    if prog.kind == "records":
        b[codegen.EVENTS_MAP.encode()].open_perf_buffer(
            lambda _cpu, data, size: records.append(ctypes.string_at(data, size)))
    stats = b.get_table(codegen.STATS_MAP.encode())
    words, seen = [], [0, 0, 0]

    def dump():
        if prog.kind == "records":
            b.perf_buffer_poll(timeout=50)
            for raw in records:
                words.extend(["R", raw[:prog.record_layout.size].hex()])
            del records[:]
        else:
            table = b.get_table((codegen.HIST_MAP if prog.kind == "histogram"
                                 else codegen.COUNT_MAP).encode())
            for k, v in table.items():
                words.extend(["H" if prog.kind == "histogram" else "C", bytes(k).hex(),
                              bytes(v).hex()])
            table.clear()
        now = [sum(int(x) for x in stats.getvalue(stats.Key(i))) for i in range(3)]
        words.extend(["S"] + [str(n - s) for n, s in zip(now, seen)] + ["E"])
        seen[:] = now

    for item in stream:
        if isinstance(item, IntervalEnd):
            dump()
            continue
        if item.name not in fds:
            continue
        att, fd = fds[item.name]
        leaf = context.Leaf()
        leaf.now, leaf.pid_tgid, leaf.cpu = item.ts, (item.pid << 32) | item.tid, item.cpu
        leaf.comm = item.comm.encode()
        leaf.uid_gid = (4242 << 32) | item.uid
        context[context.Key(0)] = leaf
        prog_test_run(fd, bytearray(RAW_TP_CTX_MAX) if att.raw else record_bytes(att.event, item))
    dump()
    return _reports(prog, measurement, words)


# ---------------------------------------------------------------------------
IMPLEMENTATIONS = ["reference", "ftrace", "ftrace-bulk", "ebpf"]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(tmp_path, scenario, impl):
    if impl in scenario.not_in:
        pytest.skip(scenario.not_in[impl])
    m = scenario.measurement
    if impl == "reference":
        reports = evaluate(m, scenario.stream)
    elif impl == "ftrace":
        reports = run_ftrace(m, scenario.stream)
    elif impl == "ftrace-bulk":
        plan = ftrace_plan(m)
        why = bulk_pairs(m, plan)
        if why is not None:
            pytest.skip("the ftrace backend pairs it event by event: %s" % why)
        reports = BulkRun(m, plan).run(scenario.stream)
    else:
        if CC is None:
            pytest.skip("no host C compiler to run the generated C")
        reports = run_ebpf(tmp_path, m, scenario.stream)
    assert [comparable(r) for r in reports] == expected(scenario)


@pytest.mark.live
@pytest.mark.ebpf
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_on_the_live_kernel(scenario):
    if "ebpf" in scenario.not_in:
        pytest.skip(scenario.not_in["ebpf"])
    before = bpf_fds()
    reports = run_ebpf_live(scenario.measurement, scenario.stream)
    assert bpf_fds() == before          # programs and maps unloaded
    assert [comparable(r) for r in reports] == expected(scenario)


def bpf_fds():
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd).startswith("anon_inode:bpf"):
                out.add(fd)
        except OSError:
            pass
    return out


def test_the_table_covers_every_aggregate_and_pairing_rule():
    kinds = set(s.measurement.aggregate.kind for s in SCENARIOS)
    assert kinds == {"histogram", "count", "records"}
    assert any(s.measurement.pair and s.measurement.pair.mark for s in SCENARIOS)
    assert any(s.measurement.pair and s.measurement.pair.shared for s in SCENARIOS)
    assert any(any(isinstance(i, IntervalEnd) for i in s.stream) for s in SCENARIOS)
    assert len(set(s.name for s in SCENARIOS)) == len(SCENARIOS)


def test_int_literals_of_the_harness_are_cfilters():
    # the harness writes values as codegen writes constants
    for v in (0, 5, (1 << 64) - 1):
        assert _c_int(v) == cfilters.int_literal(v, False)
