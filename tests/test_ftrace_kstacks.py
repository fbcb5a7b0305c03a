"""Kernel stacks on the ftrace backend (tpoint -s): kernel_stack records
built from this machine's format file, decoded from ring-buffer pages,
named from a kallsyms text and attached to the record of the event before
them on the same CPU; what the backend plans on each kernel era."""

import os
import struct

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.kstacks import (UNKNOWN, KernelSymbols, StackFormatError,
                                               StackLayout, stack_sink)
from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.tasks import TaskInfo
from kerntrace.core.model import KSTACK, Event, Field, Filter, Measurement, Records, Tracepoint
from kerntrace.core.tracefs import parse_format

from test_ftrace_era_tools import host_of, run  # noqa: F401

HEADER_PAGE = known_formats.HEADER_PAGE["6.18"]
HEADER_EVENT = known_formats.HEADER_EVENT["6.18"]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "formats")
# verbatim from a 6.18 kernel's tracefs (events/<system>/<event>/format)
STACK_TEXT = open(os.path.join(DATA, "linux-6.18-ftrace-kernel_stack.format")).read()
STACK = parse_format(STACK_TEXT, "ftrace")
GETPPID = parse_format(open(os.path.join(DATA, "linux-6.18-syscalls-sys_enter_getppid.format")).read(),
                       "syscalls")

KALLSYMS = ("ffffffff81001000 T do_syscall_64\n"
            "ffffffff81001400 t syscall_trace_enter\n"
            "ffffffff81002000 D some_data\n"
            "ffffffff81003000 T entry_SYSCALL_64_after_hwframe\n")
DO_SYSCALL = 0xffffffff81001000
TRACE_ENTER = 0xffffffff81001400
ENTRY = 0xffffffff81003000


def stack_entry(fmt, tid, addrs, size=None, word=8):
    """A kernel_stack payload as the kernel writes it: the entry holds as
    many addresses as the stack has (caller[] is declared with 8)."""
    head = bytearray(encode_payload(fmt, tid, {"size": len(addrs) if size is None else size}))
    at = fmt.field("caller").offset
    body = b"".join(struct.pack("<Q" if word == 8 else "<I", a) for a in addrs)
    return bytes(head[:at]) + body


@pytest.fixture
def symbols(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    return KernelSymbols(str(path))


def getppid_measurement(filters=()):
    return Measurement([Event("e", Tracepoint("syscalls", "sys_enter_getppid"),
                              fields=[Field("__syscall_nr")])],
                       Records(("tid", "cpu", "__syscall_nr", KSTACK)), filters=filters)


def test_each_stack_goes_to_the_record_of_the_event_before_it(symbols):
    from kerntrace.backends.ftrace.aggregate import Aggregator
    m = getppid_measurement([Filter("tid", "==", 100)])
    ev = m.events[0]
    plan = Plan([ResolvedEvent(ev, ev.probes[0], "syscalls", "sys_enter_getppid", GETPPID,
                               {"__syscall_nr": "__syscall_nr"})])
    agg = Aggregator(m, plan, tasks=TaskInfo(proc_root=None))
    dec = RawDecoder(HEADER_PAGE, HEADER_EVENT, {GETPPID.id: GETPPID})
    binding = dec.compile_sinks(agg.raw_sinks(dec.formats_by_id))
    layout = StackLayout(STACK)
    binding[layout.id] = stack_sink(layout, symbols, agg.attach_stack)
    deep = [TRACE_ENTER + 0x10, DO_SYSCALL + 0x5e] * 5 + [ENTRY + 0x76]   # 11 > caller[8]
    pages = {0: PageBuilder(HEADER_PAGE), 1: PageBuilder(HEADER_PAGE)}
    pages[0].add(encode_payload(GETPPID, 100, {"__syscall_nr": 110}), 1000)
    pages[1].add(encode_payload(GETPPID, 100, {"__syscall_nr": 110}), 1001)
    pages[0].add(stack_entry(STACK, 100, [DO_SYSCALL + 8, ENTRY + 0x76]), 1002)
    pages[1].add(stack_entry(STACK, 100, deep), 1003)
    # another thread's event is filtered out: its stack is nobody's
    pages[0].add(encode_payload(GETPPID, 200, {"__syscall_nr": 110}), 1004)
    pages[0].add(stack_entry(STACK, 200, [ENTRY]), 1005)
    # an event whose stack the kernel could not write keeps none
    pages[0].add(encode_payload(GETPPID, 100, {"__syscall_nr": 110}), 1006)
    # a stack another thread wrote is not this event's
    pages[1].add(encode_payload(GETPPID, 100, {"__syscall_nr": 110}), 1007)
    pages[1].add(stack_entry(STACK, 999, [ENTRY]), 1008)
    for cpu, pb in pages.items():
        assert dec.decode_page_into(pb.page(), cpu, binding) == (5 if cpu == 0 else 4, 0)
    assert dec.unknown == 0 and dec.malformed == 0
    rows = [(r["cpu"], r.ts, r.get(KSTACK)) for r in agg.collect().data]
    assert rows == [
        (0, 1000, ("do_syscall_64", "entry_SYSCALL_64_after_hwframe")),
        (0, 1006, None),
        (1, 1001, ("syscall_trace_enter", "do_syscall_64") * 5
         + ("entry_SYSCALL_64_after_hwframe",)),
        (1, 1007, None),
    ]


def test_size_bounds_the_frames_and_the_entry_bounds_size():
    layout = StackLayout(STACK)
    data = stack_entry(STACK, 7, [1, 2, 3, 4], size=2)
    assert layout.decode(data, 0, len(data)) == (7, (1, 2))
    # a size larger than the entry (a corrupt record) reads what is there
    data = stack_entry(STACK, 7, [1, 2, 3], size=1000)
    assert layout.decode(data, 0, len(data)) == (7, (1, 2, 3))


def test_an_old_kernels_ulong_max_ends_the_stack():
    # before "tracing: Remove the ULONG_MAX stack trace hackery" (v5.2)
    layout = StackLayout(STACK)
    data = stack_entry(STACK, 7, [5, 6, 0xffffffffffffffff, 0, 0], size=5)
    assert layout.decode(data, 0, len(data)) == (7, (5, 6))


def test_a_32_bit_kernels_words():
    text = STACK_TEXT.replace(
        "caller[8];\toffset:16;\tsize:64;", "caller[8];\toffset:12;\tsize:32;")
    fmt = parse_format(text, "ftrace")
    layout = StackLayout(fmt)
    data = stack_entry(fmt, 9, [0xc1000010, 0xc1000020], word=4)
    assert layout.decode(data, 0, len(data)) == (9, (0xc1000010, 0xc1000020))


def test_a_format_without_size_is_refused():
    # (kernel_stack had only caller[] in 2.6 era kernels)
    text = "\n".join(l for l in STACK_TEXT.splitlines() if "int size;" not in l)
    with pytest.raises(StackFormatError, match="no size"):
        StackLayout(parse_format(text, "ftrace"))


def test_addresses_named_as_bccs_ksym(symbols):
    assert symbols.names([DO_SYSCALL, DO_SYSCALL + 0x3ff, TRACE_ENTER, ENTRY + 0x5000]) == (
        "do_syscall_64", "do_syscall_64", "syscall_trace_enter",
        "entry_SYSCALL_64_after_hwframe")
    # below every symbol, and 0 (what kallsyms shows without root)
    assert symbols.names([0x1000, 0]) == (UNKNOWN, UNKNOWN)
    # data symbols are not functions: an address there is the text before
    assert symbols.name(0xffffffff81002010) == "syscall_trace_enter"


def test_without_kallsyms_every_frame_is_unknown(tmp_path):
    assert KernelSymbols(str(tmp_path / "none")).names([DO_SYSCALL]) == (UNKNOWN,)


# ---------------------------------------------------------------------------
# what the backend plans, per era
def with_kernel_stack_format(tracefs):
    path = os.path.join(tracefs.root, "events", "ftrace", "kernel_stack", "format")
    tracefs.fs.create_file(path, contents=STACK_TEXT)


def test_the_run_sets_options_stacktrace_in_its_own_instance(host_of, fs):  # noqa: F811
    with_kernel_stack_format(host_of("6.11", "raw"))
    rc, out, err = run("tpoint", ["--print-program", "-s", "syscalls:sys_enter_getppid"])
    assert rc == 0, err
    writes = [l for l in out.splitlines() if "stacktrace" in l]
    assert len(writes) == 1 and "/instances/" in writes[0], out
    assert writes[0].startswith("echo '1' > ") and writes[0].endswith("/options/stacktrace")
    assert "trigger" not in out


def test_without_the_kernel_stack_format_stacks_are_refused_saying_why(host_of, fs):  # noqa: F811
    host_of("3.10", "raw")
    rc, out, err = run("tpoint", ["-s", "-d", "0.1", "syscalls:sys_enter_getppid"])
    assert rc != 0 and out == ""
    assert "kernel stacks: no ftrace/kernel_stack event format" in err, err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------
# the text path (trace_pipe, replay): the kernel names the frames itself
GETPPID_LINES = [
    "          caller-100     [000] ..... 12.000001: sys_getppid()",
    "          caller-100     [000] ..... 12.000002: <stack trace>",
    " => syscall_trace_enter+0x1a/0x1f0",
    " => do_syscall_64",
    " => 0xffffffffc0a01234",
    " => entry_SYSCALL_64_after_hwframe <ffffffff81003000>",
    "          caller-200     [001] ..... 12.000003: sys_getppid()",
    "          caller-100     [000] ..... 12.000004: sys_getppid()",
    "          caller-200     [001] ..... 12.000005: <stack trace>",
    " => do_syscall_64",
]


def test_text_stack_lines_fill_the_stack_of_the_line_before():
    from kerntrace.backends.ftrace.textparse import KernelStackText, TextDecoder
    dec = TextDecoder({("syscalls", "sys_enter_getppid"): GETPPID}, stacks=True)
    items = [dec.decode(l) for l in GETPPID_LINES]
    stacks = [i for i in items if isinstance(i, KernelStackText)]
    assert [(s.cpu, s.frames) for s in stacks] == [
        (0, ["syscall_trace_enter", "do_syscall_64", "[unknown]",
             "entry_SYSCALL_64_after_hwframe"]),
        (1, ["do_syscall_64"])]
    assert sum(1 for i in items if i is not None and not isinstance(i, KernelStackText)) == 3
    # without stacks asked for, the lines are not events
    plain = TextDecoder({("syscalls", "sys_enter_getppid"): GETPPID})
    assert [plain.decode(l) for l in GETPPID_LINES[1:6]] == [None] * 5


def test_text_path_kernel_takes_stacks_through_the_same_option(host_of, fs):  # noqa: F811
    host_of("6.11", "text")
    rc, out, err = run("tpoint", ["--print-program", "-s", "syscalls:sys_enter_getppid"])
    assert rc == 0, err
    assert [l for l in out.splitlines() if l.endswith("/options/stacktrace")], out
    assert "trace_pipe" in out


# (block_rq_issue lines of a 5.15 kernel: a syscall line prints no
# __syscall_nr for tpoint to show, a 6.11 block line no ioprio)
ISSUE_LINES = [
    "              dd-4011    [000] d..1.  1000.000000: block_rq_issue: 202,1 R 4096 () "
    "2048 + 8 [dd]",
    "              dd-4011    [000] d..1.  1000.000001: <stack trace>",
    " => blk_mq_flush_plug_list+0x1a/0x1f0",
    " => submit_bio_noacct",
    "              dd-4011    [001] d..1.  1000.010000: block_rq_issue: 202,1 W 8192 () "
    "4096 + 16 [dd]",
    "           blkid-900     [000] d..1.  1000.020100: block_rq_issue: 202,1 R 4096 () "
    "8 + 8 [blkid]",
    "           blkid-900     [001] d..1.  1000.020101: <stack trace>",
    " => blkdev_read_iter",
]


def test_replay_of_a_trace_with_stacks_prints_them(host_of, fs):  # noqa: F811
    host_of("5.15", "text")
    fs.create_file("/home/u/stacks.trace",
                   contents="# tracer: nop\n#\n" + "\n".join(ISSUE_LINES) + "\n")
    rc, out, err = run("tpoint", ["-s", "block:block_rq_issue"],
                       input_file="/home/u/stacks.trace")
    assert rc == 0, err
    lines = out.splitlines()
    heads = [i for i, l in enumerate(lines) if l.endswith("<stack trace>")]
    assert len(heads) == 3, out
    assert lines[heads[0] + 1:heads[0] + 3] == [" => blk_mq_flush_plug_list",
                                                " => submit_bio_noacct"]
    # dd's second I/O on CPU 1 had no stack; blkid's stack on CPU 1 is not
    # its own event's (that was on CPU 0): neither is given to the other
    assert lines[heads[1] + 1] == " => [stack not taken]", out
    assert lines[heads[2] + 1] == " => [stack not taken]", out
    assert "blkdev_read_iter" not in out


def test_replay_of_a_trace_without_stacks_refuses_saying_why(host_of, fs):  # noqa: F811
    host_of("5.15", "text")
    fs.create_file("/home/u/plain.trace",
                   contents="# tracer: nop\n#\n" + ISSUE_LINES[0] + "\n")
    rc, out, err = run("tpoint", ["-s", "block:block_rq_issue"],
                       input_file="/home/u/plain.trace")
    assert rc != 0 and out == ""
    assert "holds no kernel stacks" in err and len(err.strip().splitlines()) == 1, err
