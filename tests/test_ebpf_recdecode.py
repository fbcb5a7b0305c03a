"""The batch decoder of buffer records (backends/ebpf/recdecode.py) gives
exactly the Records the reference decoder (Layout.decode) gives, for every
built-in tool's record layout and for hand-made ones; and the ring buffer's
reader is woken once per batch, not per record."""

import random

import pytest

from kerntrace.backends.ebpf import codegen, recdecode
from kerntrace.backends.ebpf.layout import S64, STRING, U64, Layout, Member
from kerntrace.core.errors import UsageError
from kerntrace.core.model import EVENT_NAME, KSTACK
from kerntrace.core.pluginhost import PluginHost
from kerntrace.core.results import Record

from test_ebpf_codegen import make_plan


def reference(layout, raw, named=lambda f: f):
    """The decode the session did per record before the batch decoder."""
    fields = layout.decode(raw)
    ts = fields.pop("kt_ts")
    return Record(ts, named(fields))


def random_record(layout, rng):
    """Bytes of a record: random integers, strings of random bytes with or
    without a NUL (invalid UTF-8 included) and junk after it."""
    out = b""
    for m in layout.members:
        if m.kind == STRING:
            text = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, m.size + 1)))
            if len(text) < m.size:
                text += b"\0" + bytes(rng.randrange(256) for _ in range(m.size - len(text) - 1))
            out += text[:m.size]
        else:
            out += rng.getrandbits(64).to_bytes(8, "little")
    return out + bytes(layout.size - len(out))


# Tools whose records need arguments.
ARGS = {"tpoint": ["block:block_rq_issue"], "argdist": ["-C", "t:block:block_rq_issue():u32:args->bytes"]}


def record_layouts():
    """(tool, record layout) of every built-in records tool's default
    eBPF program on the fake host."""
    out = []
    for name, tool in sorted(PluginHost(load_third_party=False).tools().items()):
        try:
            m = tool.measurement(tool.parse_args(ARGS.get(name, [])))
        except UsageError:          # a tool that needs arguments (funccount's pattern)
            continue
        if m.aggregate.kind != "records":
            continue
        try:
            plan = make_plan(m, output="ringbuf")
        except AssertionError:      # an event the fake host cannot resolve
            continue
        out.append((name, codegen.generate(m, plan).record_layout))
    return out


LAYOUTS = record_layouts()


def test_the_builtin_record_tools_are_covered():
    names = [n for n, _ in LAYOUTS]
    # (the fake host has no syscall or sched tracepoints: execsnoop's big
    # record has its own test below)
    for tool in ("biosnoop", "iosnoop", "opensnoop", "tpoint"):
        assert tool in names


@pytest.mark.parametrize("tool, layout", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_batch_decoder_equals_reference_for_every_record_tool(tool, layout):
    rng = random.Random(tool)
    raws = [random_record(layout, rng) for _ in range(200)]
    records, short = recdecode.compile_decoder(layout)(raws)
    assert short == 0
    want = [reference(layout, r) for r in raws]
    assert records == want
    # the same field order (JSON lines print them in it)
    assert [list(r.fields) for r in records] == [list(w.fields) for w in want]


def test_named_fields_and_short_records():
    layout = Layout("kt_record", [Member("kt_ts", "kt_ts", U64),
                                  Member(EVENT_NAME, "f_ev", U64),
                                  Member(KSTACK, "f_ks", S64),
                                  Member("ret", "f_ret", S64),
                                  Member("comm", "f_comm", STRING, 16),
                                  Member("path", "f_path", STRING, 5)])

    def named(fields):
        fields[EVENT_NAME] = {0: "enter", 1: "exit"}.get(fields[EVENT_NAME], "?")
        fields[KSTACK] = ("f%d" % fields[KSTACK],) if fields[KSTACK] >= 0 else ()
        return fields

    rng = random.Random(1)
    raws = [random_record(layout, rng) for _ in range(100)]
    raws.insert(3, raws[0][:layout.size - 1])          # short: lost, not decoded
    raws.append(raws[1] + b"more")                      # longer: its struct is read
    records, short = recdecode.compile_decoder(layout, named)(raws)
    assert short == 1
    assert records == [reference(layout, r, named) for r in raws if len(r) >= layout.size]
    assert records[-1] == records[1]
    assert any(r["ret"] < 0 for r in records)


def test_big_string_records():
    # execsnoop's shape: argv as one long string member after the integers
    layout = Layout("kt_record", [Member("kt_ts", "kt_ts", U64), Member("pid", "f_pid", U64),
                                  Member("ret", "f_ret", S64), Member("comm", "f_comm", STRING, 16),
                                  Member("args", "f_args", STRING, 2048)])
    rng = random.Random(2)
    raws = [random_record(layout, rng) for _ in range(50)]
    assert recdecode.compile_decoder(layout)(raws) == ([reference(layout, r) for r in raws], 0)


def test_a_layout_without_its_timestamp_is_refused():
    with pytest.raises(ValueError):
        recdecode.compile_decoder(Layout("x", [Member("a", "f_a", U64)]))


@pytest.mark.parametrize("record_size, pages, every", [
    (88, 512, 4096),        # biosnoop: 96 bytes a record, 21845 fit; a quarter, to a power of 2
    (88, 128, 1024),
    (5000, 1, 1),           # a record bigger than the buffer's quarter: every one wakes
    (8, 1, 64),             # 16 bytes: 256 fit
])
def test_reader_wakes_once_per_quarter_of_the_ring_buffer(record_size, pages, every):
    assert codegen.wakeup_every(record_size, pages, page_size=4096) == every


def test_records_program_submits_with_batched_wakeups():
    tools = PluginHost(load_third_party=False).tools()
    t = tools["biosnoop"]
    m = t.measurement(t.parse_args([]))
    text = codegen.generate(m, make_plan(m, output="ringbuf"), ringbuf_pages=512).text
    every = codegen.wakeup_every(codegen.generate(m, make_plan(m, output="ringbuf"))
                                 .record_layout.size, 512)
    assert "ringbuf_output(r, sizeof(*r), kt_wakeup_flags())" in text
    assert "(c & (%d - 1)) == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP" % every in text
    perf = codegen.generate(m, make_plan(m, output="perf")).text
    assert "kt_wakeup_flags" not in perf
