"""The eBPF backend's generated C, without a kernel.

  - every aggregate kind and probe type generates C that the host C
    compiler accepts (bcc's map and helper macros stubbed), with the map,
    pairing and output code a reader expects;
  - hostile filter values never reach codegen: core.model.Filter rejects
    them with a clear UsageError; accepted string values appear in the C
    only as byte comparisons;
  - the C string and integer filters equal Filter.matches(), for many
    values (compiled and run with the host C compiler).

What the programs compute is checked against the model by the shared
scenario table (test_scenarios.py); the bucket functions in C against
core.buckets by test_buckets.py.
"""

import shutil
import subprocess
import sys

import pytest

from kerntrace.backends.ebpf import cfilters, codegen
from kerntrace.core import known_formats
from kerntrace.backends.ebpf import plan as eplan
from kerntrace.backends.ebpf.layout import S64, STRING, U64, Layout, Member
from kerntrace.backends.ebpf.sysbpf import Answer
from kerntrace.core import tracefs
from kerntrace.core.errors import UsageError
from kerntrace.core.model import (EVENT_NAME, INT, LATENCY, LINEAR, POW2_MS, QUEUED, STR,
                                  USTR, Count, Event, Field, Filter, Histogram, Measurement, Pair,
                                  Records, SyscallEntry, SyscallExit, Tracepoint, UserFunction)

# Format files as Linux 6.18 prints them (this machine's, kept verbatim in
# the ftrace backend's corpus of known formats).
FORMATS = known_formats.FORMATS["6.18"]


class FakeHost(object):
    """Only what plan resolution asks a Host: tracepoint formats."""

    def event_format(self, category, name):
        text = FORMATS.get((category, name))
        return tracefs.parse_format(text, category) if text else None


class AllAttach(object):
    """Probe answers of a host where every probe type attaches."""

    def attach(self, kind):
        return Answer(True, "%s attaches" % kind)

    def kernel_function(self, name):
        return Answer(True, "%s traceable" % name)

    def fentry(self):
        return Answer(False, None)      # kprobes for kernel functions

    def raw_tracepoint(self, name):
        # as in the kernel: each syscalls:* event is made from raw_syscalls
        return Answer(not name.startswith(("sys_enter_", "sys_exit_")), name)


def make_plan(measurement, output="perf", helpers=None):
    host, probes = FakeHost(), AllAttach()
    events = []
    for i, ev in enumerate(measurement.events):
        probe = ev.probes[0]
        if isinstance(probe, UserFunction):
            fields, why = eplan._function_fields(ev, probe)
            assert why is None, why
            events.append(eplan.PlannedEvent(i, ev, probe, fields, target=probe.library))
        else:
            pe, why = eplan.resolve_event(i, ev, host, probes)
            assert pe is not None, why
            events.append(pe)
    return eplan.EbpfPlan(events, output=output, helpers=helpers)


def block(aggregate, filters=(), carry=("comm", "pid", "bytes")):
    issue = Event("issue", Tracepoint("block", "block_rq_issue"),
                  fields=[Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)])
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("errors", "error"))])
    return Measurement([issue, done], aggregate, pair=Pair("issue", "done", key=("dev", "sector"),
                                                            carry=carry),
                       filters=list(filters))


def queued_block(aggregate, filters=(), carry=("comm", "pid", "bytes")):
    """insert -> issue (the mark) -> completion, as biosnoop -Q declares it."""
    fields = [Field("dev"), Field("sector"), Field("bytes"), Field("rwbs", STR)]
    insert = Event("insert", Tracepoint("block", "block_rq_insert"), fields=list(fields))
    issue = Event("issue", Tracepoint("block", "block_rq_issue"), fields=list(fields))
    done = Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("sector"), Field("rwbs", STR),
                         Field("error", sources=("errors", "error"))])
    return Measurement([insert, issue, done], aggregate,
                       pair=Pair("insert", "done", key=("dev", "sector"), carry=carry,
                                 mark="issue"),
                       filters=list(filters))


def uprobe_pair(aggregate, filters=()):
    entry = Event("entry", UserFunction("/usr/bin/true", "kerntrace_work"),
                  fields=[Field("usec", sources=("arg0",))])
    ret = Event("ret", UserFunction("/usr/bin/true", "kerntrace_work", ret=True),
                fields=[Field("rv", sources=("retval",))])
    return Measurement([entry, ret], aggregate, pair=Pair("entry", "ret", key=("tid",),
                                                          carry=("usec",)),
                       filters=list(filters))


def openat(aggregate, filters=()):
    enter = Event("enter", SyscallEntry("openat"), fields=[Field("filename", USTR)])
    exit_ = Event("exit", SyscallExit("openat"), fields=[Field("ret")])
    return Measurement([enter, exit_], aggregate,
                       pair=Pair("enter", "exit", key=("tid",), carry=("filename",)),
                       filters=list(filters))


# ---------------------------------------------------------------------------
# Compiling generated C with the host compiler, bcc stubbed.
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no host C compiler to check the generated C")

STUB_HEADER = r"""
typedef unsigned long long u64; typedef long long s64;
typedef unsigned int u32; typedef int s32;
typedef unsigned short u16; typedef short s16;
typedef unsigned char u8; typedef signed char s8;
#define __always_inline inline __attribute__((always_inline))
#define BPF_HASH(n, k, v, sz) struct { v *(*lookup)(k *); int (*update)(k *, v *); \
    int (*insert)(k *, v *); int (*delete)(k *); } n
#define BPF_PERCPU_ARRAY(n, v, sz) struct { v *(*lookup)(u32 *); } n
#define BPF_PERF_OUTPUT(n) struct { int (*perf_submit)(void *, void *, u32); } n
#define BPF_RINGBUF_OUTPUT(n, p) struct { int (*ringbuf_output)(void *, u64, u64); } n
#define BPF_ARRAY(n, v, sz) struct { v *(*lookup)(u32 *); } n
enum { BPF_RB_NO_WAKEUP = 1, BPF_RB_FORCE_WAKEUP = 2 };
u64 bpf_ktime_get_ns(void);
u64 bpf_get_current_pid_tgid(void);
u32 bpf_get_smp_processor_id(void);
int bpf_get_current_comm(void *buf, u32 size);
int bpf_probe_read_kernel(void *dst, u32 size, const void *src);
int bpf_probe_read_kernel_str(void *dst, u32 size, const void *src);
int bpf_probe_read_user_str(void *dst, u32 size, const void *src);
int bpf_probe_read_user(void *dst, u32 size, const void *src);
int bpf_probe_read(void *dst, u32 size, const void *src);
int bpf_probe_read_str(void *dst, u32 size, const void *src);
struct pt_regs { u64 di, si, dx, cx, r8, r9, ax; };
struct bpf_raw_tracepoint_args { u64 args[0]; };
#define PT_REGS_PARM1(x) ((x)->di)
#define PT_REGS_PARM2(x) ((x)->si)
#define PT_REGS_PARM3(x) ((x)->dx)
#define PT_REGS_PARM4(x) ((x)->cx)
#define PT_REGS_PARM5(x) ((x)->r8)
#define PT_REGS_PARM6(x) ((x)->r9)
#define PT_REGS_RC(x) ((x)->ax)
"""

_INT_TYPES = {(1, False): "u8", (1, True): "s8", (2, False): "u16", (2, True): "s16",
              (4, False): "u32", (4, True): "s32", (8, False): "u64", (8, True): "s64"}


def tracepoint_struct(category, name):
    """The struct bcc generates for a tracepoint, from its format."""
    fmt = FakeHost().event_format(category, name)
    lines = ["struct tracepoint__%s__%s {" % (category, name), "    u64 __do_not_use__;"]
    for f in fmt.payload_fields():
        if f.data_loc:
            lines.append("    int data_loc_%s;" % f.name)
        elif f.array_len is not None:
            lines.append("    char %s[%d];" % (f.name, f.size))
        else:
            lines.append("    %s %s;" % (_INT_TYPES[(f.size, f.signed)], f.name))
    lines.append("};")
    return "\n".join(lines)


def compile_c(tmp_path, text, run_input=None, name="prog"):
    """Compile `text` (syntax check, or build and run with run_input)."""
    inc = tmp_path / "inc" / "uapi" / "linux"
    inc.mkdir(parents=True, exist_ok=True)
    (inc / "ptrace.h").write_text("")
    src = tmp_path / (name + ".c")
    src.write_text(text)
    flags = ["-I", str(tmp_path / "inc"), "-Werror=implicit-function-declaration",
             "-Werror=incompatible-pointer-types", "-Werror=int-conversion"]
    if run_input is None:
        r = subprocess.run([CC, "-fsyntax-only"] + flags + [str(src)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        assert r.returncode == 0, r.stderr + "\n" + text
        return None
    exe = tmp_path / name
    r = subprocess.run([CC, "-O1", "-o", str(exe)] + flags + [str(src)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], input=run_input, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, check=True)
    return out.stdout.split()


def syntax_check(tmp_path, program, measurement):
    structs = set()
    for ev in measurement.events:
        p = ev.probes[0]
        if isinstance(p, Tracepoint):
            structs.add(tracepoint_struct(p.category, p.name))
    compile_c(tmp_path, STUB_HEADER + "\n".join(sorted(structs)) + "\n" + program.text)


# ---------------------------------------------------------------------------
AGGREGATES = {
    "histogram": lambda: Histogram(LATENCY, unit="usecs", keys=("rwbs",)),
    "pow2ms": lambda: Histogram(LATENCY, scale=POW2_MS),
    "linear": lambda: Histogram("bytes", scale=LINEAR, step=4096, unit="bytes"),
    "count": lambda: Count(keys=("comm", EVENT_NAME)),
    "records": lambda: Records(fields=("ts", "comm", "pid", "dev", "sector", "bytes", "rwbs",
                                       LATENCY)),
}


@needs_cc
@pytest.mark.parametrize("kind", sorted(AGGREGATES))
@pytest.mark.parametrize("output", ["perf", "ringbuf"])
def test_block_pair_program_compiles_for_every_aggregate(tmp_path, kind, output):
    m = block(AGGREGATES[kind](), filters=[Filter("dev", "==", (7 << 20) | 3)])
    prog = codegen.generate(m, make_plan(m, output=output))
    t = prog.text
    assert "int kt_ev0_issue(struct tracepoint__block__block_rq_issue *args)" in t
    assert "int kt_ev1_done(struct tracepoint__block__block_rq_complete *args)" in t
    # pairing: start stored by key, end looks up + deletes, unmatched counted
    assert "BPF_HASH(kt_start, struct kt_pair_key, struct kt_pair_val" in t
    assert "kt_start.update(&kt_k, sv)" in t and "kt_start.delete(&kt_k)" in t
    assert "kt_stat(KT_UNMATCHED)" in t
    assert "u64 kt_from = sv->kt_ts;" in t
    # the dev filter is a key filter: tested early on both sides
    assert t.count("((u64)(f->f_dev) == 7340035ULL)") == 2
    # each handler reads only what it needs
    assert ("bpf_probe_read_kernel_str(f->f_rwbs, 11, args->rwbs);" in t) == (
        kind in ("histogram", "records"))
    assert [a.event.name for a in prog.attachments] == ["issue", "done"]
    if kind in ("histogram", "pow2ms", "linear"):
        assert "BPF_HASH(kt_hist, struct kt_hist_key, struct kt_hist_val" in t
        fn = {"histogram": "kt_log2_u(kt_v)", "pow2ms": "kt_pow2ms_u(kt_v)",
              "linear": "kt_linear_u(kt_v, 4096ULL)"}[kind]
        assert "kt_hk.kt_slot = %s;" % fn in t
        assert "__sync_fetch_and_add(&kt_h->sum, kt_v);" in t
        if kind == "histogram":
            assert "u64 kt_v = (u64)(kt_latency) / 1000ULL;" in t
        if kind == "pow2ms":
            assert "u64 kt_v = kt_latency;" in t     # pow2ms buckets nanoseconds
    elif kind == "count":
        assert "BPF_HASH(kt_counts, struct kt_count_key, u64" in t
        assert "kt_ck.f_event = 1ULL;" in t          # the end event's index
        assert prog.key_names == ("comm", "event")
    else:
        if output == "ringbuf":
            assert "BPF_RINGBUF_OUTPUT(kt_events" in t and "kt_events.ringbuf_output(r" in t
        else:
            assert "BPF_PERF_OUTPUT(kt_events);" in t and "kt_events.perf_submit(args, r" in t
        assert prog.output == output
    syntax_check(tmp_path, prog, m)


@needs_cc
def test_uprobe_pair_program(tmp_path):
    m = uprobe_pair(Histogram(LATENCY, unit="usecs"), filters=[Filter("pid", "==", 4242)])
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    assert "#include <uapi/linux/ptrace.h>" in t
    assert "int kt_ev0_entry(struct pt_regs *ctx)" in t and "int kt_ev1_ret(struct pt_regs *ctx)" in t
    assert "f->f_usec = PT_REGS_PARM1(ctx);" in t
    assert "f->f_tid = (u32)kt_pid_tgid;" in t
    # pid is decided by the tid key: filtered early on entry and return
    assert t.count("((u64)(f->f_pid) == 4242ULL)") == 2
    assert [a.kind for a in prog.attachments] == ["uprobe", "uretprobe"]
    syntax_check(tmp_path, prog, m)


@needs_cc
def test_syscall_pair_reads_user_string_and_defers_start_only_filter(tmp_path):
    m = openat(Records(fields=("pid", "filename", "ret", LATENCY)),
               filters=[Filter("filename", "glob", "*kerntrace-open*", type=USTR),
                        Filter("pid", "==", 99)])
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    assert "bpf_probe_read_user_str(f->f_filename, 128, (void *)args->filename);" in t
    # the filename filter only exists at the start: its outcome is stored
    # with the start (kt_drop) so the end is neither kept nor "unmatched"
    assert "sv->kt_drop = !(kt_match_1(f->f_filename));" in t
    assert "if (sv->kt_drop)" in t
    assert "f->f_ret = args->ret;" in t
    assert prog.record_layout.member("ret").kind == S64
    assert prog.record_layout.member("filename").kind == STRING
    syntax_check(tmp_path, prog, m)


@needs_cc
def test_single_event_count_and_data_loc_string(tmp_path):
    ev = Event("exec", Tracepoint("sched", "sched_process_exec"),
               fields=[Field("filename", STR), Field("old_pid")])
    m = Measurement([ev], Count(keys=("filename", "old_pid")),
                    filters=[Filter("comm", "glob", "kt*"), Filter("old_pid", ">", -5)])
    prog = codegen.generate(m, make_plan(m, helpers=eplan.LEGACY_HELPERS))
    t = prog.text
    assert "bpf_probe_read_str(f->f_filename, 128, (void *)args + (args->data_loc_filename " \
           "& 0xFFFF));" in t
    assert "((s64)(f->f_old_pid) > -5LL)" in t
    assert "kt_start" not in t
    syntax_check(tmp_path, prog, m)


@needs_cc
def test_unkeyed_count_of_several_events(tmp_path):
    evs = [Event("a", Tracepoint("block", "block_rq_issue")),
           Event("b", Tracepoint("block", "block_rq_complete"))]
    m = Measurement(evs, Count(keys=(EVENT_NAME,)))
    prog = codegen.generate(m, make_plan(m))
    assert "kt_ck.f_event = 0ULL;" in prog.text and "kt_ck.f_event = 1ULL;" in prog.text
    assert prog.event_names == {0: "a", 1: "b"}
    m2 = Measurement(evs, Count())
    prog2 = codegen.generate(m2, make_plan(m2))
    assert prog2.key_layout.member("kt_unused") is not None
    syntax_check(tmp_path, prog, m)
    syntax_check(tmp_path, prog2, m2)


def test_big_records_use_a_per_cpu_scratch_buffer():
    m = openat(Records(fields=("filename", "ret", "comm", "pid", LATENCY)))
    t = codegen.generate(m, make_plan(m)).text
    assert "BPF_PERCPU_ARRAY(kt_scratch_record, struct kt_record, 1);" in t
    assert "struct kt_record *r = kt_scratch_record.lookup(&r_zero);" in t


def test_layouts_have_no_interior_padding():
    lay = Layout("x", [Member("s", "f_s", STRING, 10), Member("a", "f_a", U64),
                       Member("b", "f_b", S64)])
    assert [m.name for m in lay.members] == ["a", "b", "s"]
    assert lay.size == 32       # 8 + 8 + 10, padded to 8
    data = (5).to_bytes(8, "little") + (-3).to_bytes(8, "little", signed=True) + \
        b"WS\0garbage!" + b"\0" * 5
    if sys.byteorder == "little":
        assert lay.decode(data) == {"a": 5, "b": -3, "s": "WS"}


# ---------------------------------------------------------------------------
# User input never reaches the C unvalidated.
@pytest.mark.parametrize("field, op, value", [
    ("comm", "==", "1; }"),
    ("comm", "==", 'a"b'),
    ("comm", "==", "a'b"),
    ("comm", "==", "x\ny"),
    ("comm", "==", "back\\slash"),
    ("comm", "==", "caf\u00e9"),
    ("comm", "==", "a" * 65),
    ("comm", "glob", "a*b"),
    ("comm", "glob", "[ab]*"),
    ("dev", "==", 1 << 64),
    ("dev", "==", -(1 << 63) - 1),
    ("dev", "==", "7"),
    ("dev", "==", 1.5),
    ("dev", "==", True),
])
def test_hostile_filter_values_are_rejected_before_codegen(field, op, value):
    with pytest.raises(UsageError) as e:
        Filter(field, op, value, type=STR if field == "comm" else INT)
    assert "\n" not in str(e.value)


def test_int_filter_with_a_string_value_is_rejected():
    with pytest.raises(UsageError):
        Filter("pid", "==", "1; }")


def test_accepted_string_values_appear_only_as_bytes():
    m = block(Count(keys=("rwbs",)), filters=[Filter("rwbs", "glob", "*Zq9x*"),
                                             Filter("comm", "==", "kt/x.y")])
    t = codegen.generate(m, make_plan(m)).text
    assert "Zq9x" not in t and "kt/x.y" not in t
    assert "s[%d] == %d && s[%d] == %d" % (0, ord("Z"), 1, ord("q")) in t


def test_int_literals():
    assert cfilters.int_literal(0, False) == "0ULL"
    assert cfilters.int_literal((1 << 64) - 1, False) == "18446744073709551615ULL"
    assert cfilters.int_literal(-(1 << 63), True) == "(-9223372036854775807LL - 1)"
    for bad in ((1 << 64, False), (-1, False), (1 << 63, True), ("1", False), (True, False)):
        with pytest.raises((ValueError, TypeError)):
            cfilters.int_literal(*bad)


U64_MAX = (1 << 64) - 1


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


# ---------------------------------------------------------------------------
# Filters: the generated C equals Filter.matches().
STRING_FILTERS = [("==", "WS"), ("!=", "WS"), ("==", ""), ("==", "R"), ("==", "0123456789"),
                  ("==", "01234567890"), ("glob", "*R*"), ("glob", "W*"), ("glob", "*S"),
                  ("glob", "*"), ("glob", "**"), ("glob", "*FWS*"), ("glob", "RA"),
                  ("glob", "*0123456789"), ("glob", "0123456789*"), ("glob", "*56*"),
                  ("glob", "*012345678901*"), ("glob", "*kerntrace-open-77*"),
                  ("glob", "*.txt"), ("glob", "/tmp/*"), ("==", "x" * 64)]
SAMPLES = ["", "R", "W", "WS", "RA", "FWS", "WFS", "RS", "SR", "WSR", "0123456789", "012345678",
           "123456789", "x56y", "RRRRRRRRR", "ws", "/tmp/kerntrace-open-77.txt",
           "/tmp/kerntrace-open-7.txt", "kerntrace-open-77", "x" * 130]


def _array(text, size):
    """A string as the generated readers leave it: zeroed buffer, string
    copied in (cut to size), so everything after the first NUL is NUL."""
    data = text.encode("ascii")[:size]
    return data + b"\0" * (size - len(data))


@needs_cc
@pytest.mark.parametrize("size", [1, 4, 10, 11, 16, 128])
def test_c_string_filters_equal_filter_matches(tmp_path, size):
    funcs, cases, want = [], [], []
    for i, (op, value) in enumerate(STRING_FILTERS):
        flt = Filter("rwbs", op, value, type=STR)
        funcs.append(cfilters.string_match_function("m%d" % i, flt, size))
        for text in SAMPLES:
            arr = _array(text, size)
            cases.append("%d %s" % (i, arr.hex()))
            want.append(int(flt.matches(arr.split(b"\0", 1)[0].decode())))
    dispatch = "\n".join("        case %d: r = %s; break;" % (
        i, cfilters.string_filter("m%d" % i, Filter("rwbs", op, v, type=STR), "s"))
        for i, (op, v) in enumerate(STRING_FILTERS))
    main = r"""
#include <stdio.h>
int main(void)
{
    int i, r = 0;
    char hex[%d], s[%d];
    while (scanf("%%d %%s", &i, hex) == 2) {
        for (int k = 0; k < %d; k++) { unsigned int b; sscanf(hex + 2 * k, "%%2x", &b); s[k] = (char)b; }
        switch (i) {
%s
        }
        printf("%%d\n", r);
    }
    return 0;
}
""" % (2 * size + 2, size, size, dispatch)
    got = compile_c(tmp_path, STUB_HEADER + "\n".join(funcs) + main, run_input="\n".join(cases)
                    + "\n", name="strfilt")
    assert len(got) == len(cases)
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if int(g) != w]
    assert not bad, bad[:10]


INT_FILTER_VALUES = [0, 1, 5, -1, -5, (1 << 63) - 1, -(1 << 63), 1 << 63, U64_MAX, 4096]


@needs_cc
def test_c_int_filters_equal_filter_matches(tmp_path):
    funcs, cases, want = [], [], []
    n = 0
    for signed in (False, True):
        for op in ("==", "!=", "<", "<=", ">", ">="):
            for fv in INT_FILTER_VALUES:
                flt = Filter("x", op, fv)
                expr = cfilters.int_filter("m", signed, flt)
                funcs.append("static int f%d(u64 raw) { %s m = raw; return %s; }"
                             % (n, "s64" if signed else "u64", expr))
                for raw in (0, 1, 4, 5, 6, 4096, U64_MAX, U64_MAX - 4, 1 << 63, (1 << 63) - 1):
                    actual = _signed(raw) if signed else raw
                    cases.append("%d %d" % (n, raw))
                    want.append(int(flt.matches(actual)))
                n += 1
    dispatch = "\n".join("        case %d: r = f%d(raw); break;" % (i, i) for i in range(n))
    main = r"""
#include <stdio.h>
int main(void)
{
    int i, r = 0;
    unsigned long long raw;
    while (scanf("%%d %%llu", &i, &raw) == 2) {
        switch (i) {
%s
        }
        printf("%%d\n", r);
    }
    return 0;
}
""" % dispatch
    got = compile_c(tmp_path, STUB_HEADER + "\n".join(funcs) + main,
                    run_input="\n".join(cases) + "\n", name="intfilt")
    assert len(got) == len(cases)
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if int(g) != w]
    assert not bad, bad[:10]


# ---------------------------------------------------------------------------
# Plan resolution: reasons, not crashes.
def test_field_sources_fall_back_in_order():
    m = block(Count())
    p = make_plan(m)
    assert p.event("done").fields["error"].member == "error"      # "errors" absent here
    assert p.event("issue").fields["rwbs"].kind == "tp_array"
    assert p.event("issue").fields["rwbs"].size == 11     # char[10] + a NUL for *_str reads


def test_unresolvable_events_give_reasons():
    host, probes = FakeHost(), AllAttach()
    ev = Event("x", Tracepoint("block", "no_such_event"), Tracepoint("block", "block_rq_issue"))
    pe, why = eplan.resolve_event(0, ev, host, probes)
    assert pe.probe == Tracepoint("block", "block_rq_issue")
    assert why == ["t:block:no_such_event: no tracepoint block:no_such_event"]
    ev = Event("y", Tracepoint("block", "block_rq_issue"), fields=[Field("nosuch")])
    pe, why = eplan.resolve_event(0, ev, host, probes)
    assert pe is None and "has no field nosuch" in why[0]
    ev = Event("z", Tracepoint("block", "block_rq_issue"), fields=[Field("rwbs")])   # INT wanted
    pe, why = eplan.resolve_event(0, ev, host, probes)
    assert pe is None and "is not an integer" in why[0]


def test_no_kprobes_is_an_answer():
    class NoKprobes(AllAttach):
        def attach(self, kind):
            if kind == "kprobe":
                return Answer(False, "kprobes not configured in this kernel")
            return AllAttach.attach(self, kind)
    from kerntrace.core.model import KernelFunction
    ev = Event("k", KernelFunction("vfs_read"), Tracepoint("syscalls", "sys_enter_openat"))
    pe, why = eplan.resolve_event(0, ev, FakeHost(), NoKprobes())
    assert pe.probe == Tracepoint("syscalls", "sys_enter_openat")
    ev = Event("k", KernelFunction("vfs_read"))
    pe, why = eplan.resolve_event(0, ev, FakeHost(), NoKprobes())
    assert pe is None and why == ["k:vfs_read: kprobes not configured in this kernel"]


def test_programs_over_the_stack_budget_are_refused(monkeypatch):
    # clang would end the whole process on a program over the BPF stack
    # limit, so codegen refuses it first (check() turns this into a reason).
    m = block(Count(keys=("comm", "rwbs")))
    codegen.generate(m, make_plan(m))
    monkeypatch.setattr(codegen, "STACK_BUDGET", 100)
    with pytest.raises(ValueError) as e:
        codegen.generate(m, make_plan(m))
    assert "BPF stack" in str(e.value)


@needs_cc
def test_kprobe_pair_program(tmp_path):
    from kerntrace.core.model import KernelFunction
    entry = Event("open", KernelFunction("do_sys_openat2"),
                  fields=[Field("name", STR, sources=("arg1",))])
    ret = Event("done", KernelFunction("do_sys_openat2", ret=True),
                fields=[Field("ret", sources=("retval",))])
    m = Measurement([entry, ret], Records(fields=("name", "ret", LATENCY)),
                    pair=Pair("open", "done", key=("tid",), carry=("name",)))
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    assert "bpf_probe_read_kernel_str(f->f_name, 128, (void *)PT_REGS_PARM2(ctx));" in t
    assert "f->f_ret = PT_REGS_RC(ctx);" in t
    assert [a.kind for a in prog.attachments] == ["kprobe", "kretprobe"]
    assert prog.record_layout.member("ret").kind == S64
    syntax_check(tmp_path, prog, m)


# ---------------------------------------------------------------------------
# Pairs with a mark (biosnoop -Q: insert -> issue -> completion)
QUEUE_FIELDS = ("comm", "pid", "sector", "bytes", QUEUED, LATENCY)
DEV = (7 << 20) | 3


def _function(text, name):
    start = text.index("int %s(" % name)
    return text[start:text.index("\n}", start)]


@needs_cc
@pytest.mark.parametrize("output", ["perf", "ringbuf"])
@pytest.mark.parametrize("aggregate", [Records(fields=QUEUE_FIELDS),
                                       Histogram(QUEUED, unit="usecs", keys=("comm",))],
                         ids=["records", "histogram"])
def test_queued_pair_program(tmp_path, output, aggregate):
    m = queued_block(aggregate, filters=[Filter("dev", "==", DEV)])
    prog = codegen.generate(m, make_plan(m, output=output))
    t = prog.text
    assert [a.event.name for a in prog.attachments] == ["insert", "issue", "done"]
    assert "    u64 kt_mark;" in t
    mark = _function(t, "kt_ev1_issue")
    # the mark sets its time in a live start, else stores a start itself
    assert "if (kt_s && !kt_s->kt_drop) {\n        kt_s->kt_mark = kt_now;" in mark
    assert "sv->kt_ts = kt_now;" in mark and "sv->kt_mark = kt_now;" in mark
    # it reads what it would carry only when it starts the pair
    found = mark.index("kt_s->kt_mark = kt_now;")
    assert "bpf_get_current_comm" in mark[found:] and "bpf_get_current_comm" not in mark[:found]
    assert "f->f_bytes = args->bytes;" in mark[found:]
    done = _function(t, "kt_ev2_done")
    assert "u64 kt_from = sv->kt_mark ? sv->kt_mark : sv->kt_ts;" in done
    assert "u64 kt_queued = sv->kt_mark > sv->kt_ts ? sv->kt_mark - sv->kt_ts : 0;" in done
    assert "u64 kt_latency = kt_now > kt_from ? kt_now - kt_from : 0;" in done
    # the device filter is on all three events: each tests it first
    assert t.count("((u64)(f->f_dev) == 7340035ULL)") == 3
    if aggregate.kind == "records":
        assert prog.record_layout.member(QUEUED).kind == U64
    else:
        assert "u64 kt_v = (u64)(kt_queued) / 1000ULL;" in done
    syntax_check(tmp_path, prog, m)


def test_unmarked_pairs_keep_their_program():
    t = codegen.generate(block(Records(fields=(LATENCY,))),
                         make_plan(block(Records(fields=(LATENCY,))))).text
    assert "kt_mark" not in t and "kt_queued" not in t
    assert "u64 kt_from = sv->kt_ts;" in t


def test_end_skips_early_only_what_no_start_or_mark_can_store():
    # a key filter on the start alone: the mark may still store a start for
    # another device, so the end must look it up (and retire it)
    only_start = Filter("dev", "==", DEV, events=("insert",))
    m = queued_block(Records(fields=QUEUE_FIELDS), filters=[only_start])
    done = _function(codegen.generate(m, make_plan(m)).text, "kt_ev2_done")
    assert "7340035ULL" not in done
    both = Filter("dev", "==", DEV, events=("insert", "issue"))
    m = queued_block(Records(fields=QUEUE_FIELDS), filters=[both])
    done = _function(codegen.generate(m, make_plan(m)).text, "kt_ev2_done")
    assert "((u64)(f->f_dev) == 7340035ULL)" in done


# A bcc runtime small enough to run the generated handlers on the host:
# hash maps as arrays, perf output printed as hex, a settable clock, task
# (pid/tgid 4011/4000 unless set), CPU, uid/gid and comm (test_scenarios too).
RUN_HEADER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef unsigned long long u64; typedef long long s64;
typedef unsigned int u32; typedef int s32;
typedef unsigned short u16; typedef short s16;
typedef unsigned char u8; typedef signed char s8;
#define __always_inline inline __attribute__((always_inline))
#define KT_SLOTS 64
#define BPF_HASH(n, k, v, sz) \
    static k n##_k[KT_SLOTS]; static v n##_v[KT_SLOTS]; static int n##_u[KT_SLOTS]; \
    static int n##_find(k *key) { int i; for (i = 0; i < KT_SLOTS; i++) \
        if (n##_u[i] && !memcmp(&n##_k[i], key, sizeof(k))) return i; return -1; } \
    static v *n##_lookup(k *key) { int i = n##_find(key); return i < 0 ? 0 : &n##_v[i]; } \
    static int n##_update(k *key, v *val) { int i = n##_find(key); \
        if (i < 0) for (i = 0; i < KT_SLOTS && n##_u[i]; i++) ; \
        if (i >= KT_SLOTS) return -1; \
        n##_u[i] = 1; n##_k[i] = *key; n##_v[i] = *val; return 0; } \
    static int n##_insert(k *key, v *val) { return n##_find(key) >= 0 ? -1 : n##_update(key, val); } \
    static int n##_delete(k *key) { int i = n##_find(key); if (i < 0) return -1; \
        n##_u[i] = 0; return 0; } \
    static int n##_count(void) { int i, c = 0; for (i = 0; i < KT_SLOTS; i++) c += n##_u[i]; \
        return c; } \
    struct { v *(*lookup)(k *); int (*update)(k *, v *); int (*insert)(k *, v *); \
             int (*delete)(k *); int (*count)(void); } n = { n##_lookup, n##_update, \
             n##_insert, n##_delete, n##_count }
#define BPF_PERCPU_ARRAY(n, v, sz) \
    static v n##_v[sz]; \
    static v *n##_lookup(u32 *i) { return *i < (sz) ? &n##_v[*i] : 0; } \
    struct { v *(*lookup)(u32 *); } n = { n##_lookup }
static void kt_hex(const char *tag, const void *data, u32 size)
{
    const unsigned char *p = data;
    u32 i;
    printf("%s", tag);
    for (i = 0; i < size; i++)
        printf("%02x", p[i]);
}
#define BPF_PERF_OUTPUT(n) \
    static int n##_submit(void *ctx, void *data, u32 size) { kt_hex("R ", data, size); \
        printf("\n"); return 0; } \
    struct { int (*perf_submit)(void *, void *, u32); } n = { n##_submit }
static u64 kt_test_now, kt_test_pid_tgid = (4000ULL << 32) | 4011, kt_test_uid_gid;
static u32 kt_test_cpu;
static char kt_test_comm[16];
static u64 bpf_ktime_get_ns(void) { return kt_test_now; }
static u64 bpf_get_current_pid_tgid(void) { return kt_test_pid_tgid; }
static u64 bpf_get_current_uid_gid(void) { return kt_test_uid_gid; }
static u32 bpf_get_smp_processor_id(void) { return kt_test_cpu; }
static int bpf_get_current_comm(void *buf, u32 size)
{
    memset(buf, 0, size);
    strncpy(buf, kt_test_comm, size - 1);
    return 0;
}
static int bpf_probe_read_kernel_str(void *dst, u32 size, const void *src)
{
    memset(dst, 0, size);
    strncpy(dst, src, size - 1);
    return (int)strlen(dst) + 1;
}
struct bpf_raw_tracepoint_args { u64 args[0]; };
"""


def run_program(tmp_path, m, prog, script):
    """Run the handlers on `script` lines "event ts dev sector comm rwbs
    bytes [nr_sector]" (nr_sector: bytes / 512 unless given); returns
    (records decoded with the record layout, stats, number of starts left
    in the map)."""
    script = [l if len(l.split()) == 8 else "%s %d" % (l, int(l.split()[6]) // 512)
              for l in script]
    calls = []
    for att in prog.attachments:
        p = att.event.probe
        fmt = FakeHost().event_format(p.category, p.name)
        names = set(f.name for f in fmt.payload_fields())
        sets = ["a.dev = dev;", "a.sector = sector;", "a.nr_sector = nr_sector;"]
        if "bytes" in names:
            sets.append("a.bytes = nbytes;")
        sets.append("strncpy(a.rwbs, rwbs, sizeof(a.rwbs) - 1);")
        calls.append('if (!strcmp(ev, "%s")) { struct tracepoint__%s__%s a; memset(&a, 0, '
                     'sizeof(a)); %s %s(&a); }' % (att.event.name, p.category, p.name,
                                                   " ".join(sets), att.fn_name))
    structs = sorted(set(tracepoint_struct(e.probes[0].category, e.probes[0].name)
                         for e in m.events))
    main = r"""
int main(void)
{
    char ev[32], rwbs[16];
    u64 ts, dev, sector, nbytes, nr_sector;
    while (scanf("%31s %llu %llu %llu %15s %15s %llu %llu", ev, &ts, &dev, &sector,
                 kt_test_comm, rwbs, &nbytes, &nr_sector) == 8) {
        kt_test_now = ts;
        CALLS
    }
    printf("S %llu %llu %llu %d\n", kt_stats_v[0], kt_stats_v[1], kt_stats_v[2],
           kt_start.count());
    return 0;
}
""".replace("CALLS", "\n        ".join(calls))
    text = RUN_HEADER + "\n".join(structs) + "\n" + prog.text + main
    words = compile_c(tmp_path, text, run_input="".join(line + "\n" for line in script),
                      name="run")
    records, stats = [], None
    for i, w in enumerate(words):
        if w == "R":
            records.append(prog.record_layout.decode(bytes.fromhex(words[i + 1])))
        elif w == "S":
            stats = tuple(int(x) for x in words[i + 1:i + 5])
    return records, stats


@needs_cc
def test_a_full_start_map_counts_dropped_starts_in_c(tmp_path):
    """More starts in flight than the start map holds (the harness's map
    has 64 slots): the ones it refuses are counted as dropped starts, as
    the ftrace backend counts its, and their ends as unmatched."""
    m = queued_block(Records(fields=QUEUE_FIELDS))
    prog = codegen.generate(m, make_plan(m))
    script = ["insert %d %d %d dd W 4096" % (1000 + i, DEV, 8 * i) for i in range(70)]
    script.append("done 9000 %d %d irq W 0" % (DEV, 8 * 69))      # a refused start's end
    script.append("done 9001 %d %d irq W 0" % (DEV, 0))           # a kept one's
    records, stats = run_program(tmp_path, m, prog, script)
    assert [r["sector"] for r in records] == [0]
    assert stats == (1, 0, 6, 63)


# ---------------------------------------------------------------------------
# --buffer-kb on eBPF: KB per CPU, rounded up to a power of two of pages.
@pytest.mark.parametrize("kb, ncpus, perf, ring", [
    (None, 8, 64, 512),         # the defaults
    (1, 1, 1, 1),
    (4, 2, 1, 2),
    (5, 2, 2, 4),               # 5 KB -> 2 pages; 10 KB -> 3 -> 4 pages
    (1024, 8, 256, 2048),
    (1000, 3, 256, 1024),       # 250 -> 256 pages; 750 -> 1024 pages
])
def test_buffer_sizes_per_cpu_kb_in_power_of_two_pages(kb, ncpus, perf, ring):
    from kerntrace.backends.ebpf.buffers import BufferSizes
    b = BufferSizes(kb, ncpus=ncpus, page_size=4096)
    assert (b.perf_pages, b.ringbuf_pages) == (perf, ring)
    assert ("--buffer-kb %d" % kb if kb else "default size") in b.describe("ringbuf")
    assert "%d KB per CPU" % (perf * 4) in b.describe("perf")


def test_ring_buffer_pages_reach_the_program():
    m = block(Records(fields=("dev", LATENCY)))
    assert "BPF_RINGBUF_OUTPUT(kt_events, 512);" in codegen.generate(
        m, make_plan(m, output="ringbuf"), ringbuf_pages=512).text


# ---------------------------------------------------------------------------
# Raw tracepoints: for handlers that read no field of their event.
def _issue_count(keys, filters=(), fields=()):
    ev = Event("issue", Tracepoint("block", "block_rq_issue"), fields=list(fields))
    return Measurement([ev], Count(keys=keys), filters=list(filters))


@needs_cc
@pytest.mark.parametrize("keys", [("event",), ("comm",), ("pid", "comm")])
def test_context_only_tracepoint_handler_is_a_raw_tracepoint(tmp_path, keys):
    m = _issue_count(keys, filters=[Filter("pid", "==", 42)],
                     fields=[Field("dev")])     # declared, never read
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    assert "int kt_ev0_issue(struct bpf_raw_tracepoint_args *ctx)" in t
    assert "struct tracepoint__block__block_rq_issue" not in t and "args" not in t.replace(
        "bpf_raw_tracepoint_args", "")
    assert [(a.kind, a.raw) for a in prog.attachments] == [("raw_tracepoint", True)]
    syntax_check(tmp_path, prog, m)


@pytest.mark.parametrize("why", ["field filter", "field key", "no raw tracepoint", "syscall"])
def test_handlers_that_read_fields_stay_format_tracepoints(why):
    if why == "field filter":
        m = _issue_count(("comm",), filters=[Filter("dev", "==", 5)], fields=[Field("dev")])
    elif why == "field key":
        m = _issue_count(("dev",), fields=[Field("dev")])
    elif why == "syscall":
        m = Measurement([Event("e", SyscallEntry("openat"))], Count(keys=("comm",)))
    else:
        m = _issue_count(("comm",))
    plan = make_plan(m)
    if why == "no raw tracepoint":
        plan = plan.replace(events=(plan.events[0].replace(raw_ok=False),) + plan.events[1:])
    prog = codegen.generate(m, plan)
    assert "bpf_raw_tracepoint_args" not in prog.text
    assert [a.kind for a in prog.attachments] == ["tracepoint"]


@needs_cc
def test_pair_of_context_only_tracepoints_is_raw_on_both_sides(tmp_path):
    insert = Event("insert", Tracepoint("block", "block_rq_insert"))
    issue = Event("issue", Tracepoint("block", "block_rq_issue"))
    m = Measurement([insert, issue], Histogram(LATENCY, unit="usecs"),
                    pair=Pair("insert", "issue", key=("tid",), carry=("comm",)))
    prog = codegen.generate(m, make_plan(m))
    assert [a.kind for a in prog.attachments] == ["raw_tracepoint", "raw_tracepoint"]
    syntax_check(tmp_path, prog, m)


# ---------------------------------------------------------------------------
# Shared key values (every flush of a device has sector 2^64-1).
@needs_cc
@pytest.mark.parametrize("atomic_fetch", [True, False])
@pytest.mark.parametrize("queued", [False, True])
def test_shared_key_starts_are_inserted_and_collisions_make_the_key_ambiguous(
        tmp_path, atomic_fetch, queued):
    base = queued_block if queued else block
    m0 = base(Records(fields=("sector", LATENCY)))
    pair = m0.pair
    m = Measurement(m0.events, m0.aggregate,
                    pair=Pair(pair.start, pair.end, key=pair.key, carry=pair.carry,
                              mark=pair.mark, shared={"sector": (1 << 64) - 1}))
    plan = make_plan(m).replace(atomic_fetch=atomic_fetch)
    t = codegen.generate(m, plan).text
    assert "if (kt_k.f_sector == 18446744073709551615ULL) {" in t
    assert "kt_start.insert(&kt_k, sv) == 0" in t
    assert "__sync_fetch_and_add(&kt_o->kt_more_ends, 1);" in t
    assert ("__sync_fetch_and_add(&kt_s->kt_more_ends, -1) == 0" in t) == atomic_fetch
    assert "if (kt_s->kt_ambiguous) {" in t
    assert ("if (kt_s && kt_s->kt_ambiguous)" in t) == queued   # a mark leaves it alone
    syntax_check(tmp_path, codegen.generate(m, plan), m)


def test_unique_keys_generate_no_shared_key_code():
    m = block(Records(fields=("sector", LATENCY)))
    t = codegen.generate(m, make_plan(m)).text
    assert "kt_ambiguous" not in t and ".insert(" not in t



# ---------------------------------------------------------------------------
# Field.element: a string of a NULL-terminated user array (execve's argv)
ELEMENT_HARNESS = r"""
#include <stdio.h>
#include <string.h>
typedef unsigned int u32;
typedef unsigned long long u64;
static int bpf_probe_read_kernel(void *dst, u32 size, const void *src)
{ memcpy(dst, src, size); return 0; }
static int bpf_probe_read_user(void *dst, u32 size, const void *src)
{ memcpy(dst, src, size); return 0; }
static int bpf_probe_read_user_str(void *dst, u32 size, const void *src)
{ strncpy(dst, src, size - 1); return (int)strlen(dst) + 1; }
int main(void)
{
    /* after the NULL: what must never be read as an element */
    const char *words[] = {"sh", "-c", "", "x y", 0, "envp-garbage", 0};
    u64 argv = (u64)words;
    int n;
    for (n = 0; n < 6; n++) {
        char out[16] = {0};
        char *dst = out;
        switch (n) {
%s
        }
        printf("[%%s]\n", out);
    }
    return 0;
}
"""


@needs_cc
def test_element_read_stops_at_the_arrays_end(tmp_path):
    h = eplan.MODERN_HELPERS
    cases = "\n".join("case %d:\n%s\nbreak;" % (i, "\n".join(
        codegen._element_read(h, "dst", 16, "argv", i))) for i in range(6))
    out = compile_c(tmp_path, ELEMENT_HARNESS % cases, run_input="", name="elem")
    assert out == ["[sh]", "[-c]", "[]", "[x", "y]", "[]", "[]"]


def test_element_fields_read_the_array_at_an_argument(tmp_path):
    ev = Event("exec", UserFunction("/usr/bin/true", "kerntrace_exec"),
               fields=[Field("a%d" % i, USTR, sources=("arg1",), element=i) for i in range(3)])
    m = Measurement([ev], Records(("pid", "a0", "a1", "a2")))
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    # read in order: the array's address once, then one pointer per element
    # in one unrolled loop (bcc's front end is slow over written-out reads),
    # into the record's strings, which follow each other
    assert t.count("bpf_probe_read_kernel(&kt_base_arg1, sizeof(kt_base_arg1), "
                   "&PT_REGS_PARM2(ctx));") == 1
    assert t.count("for (kt_i = 0; kt_i < 3; kt_i++) {") == 1
    assert t.count("if (bpf_probe_read_user(&kt_p, sizeof(kt_p), &kt_arr_arg1[kt_i]) != 0 "
                   "|| !kt_p)") == 1
    assert "bpf_probe_read_user_str((char *)f->f_a0 + kt_i * 128, 128, kt_p);" in t
    assert "kt_record *f = kt_scratch_record.lookup" in t and "__builtin_memcpy(r->f_a" not in t
    for i in range(3):
        assert "f->f_a%d[0] = 0;" % i in t       # emptied: the array may end before
    # out of order (only the last): it walks the array up to itself
    ev = Event("exec", UserFunction("/usr/bin/true", "kerntrace_exec"),
               fields=[Field("a2", USTR, sources=("arg1",), element=2)])
    m = Measurement([ev], Records(("pid", "a2")))
    t = codegen.generate(m, make_plan(m)).text
    assert "for (kt_i = 0; kt_i <= 2; kt_i++) {" in t
    assert prog.record_layout.member("a2").kind == STRING
    if CC is not None:
        syntax_check(tmp_path, prog, m)
