"""argdist without a real kernel: specifiers become model events, fields,
aggregates and Filters (never text for C or tracefs); bad specifiers are
one line; the BPF code of a kernel-function specifier compiles."""

import importlib
import io
import re

import pytest

from fake_tracefs import FakeTracefs
import test_ftrace_era_tools  # noqa: F401  (imports the backends' modules)
from kerntrace.core import cli
from kerntrace.core.api import INT, LOG2, KernelFunction, Tracepoint, UserFunction
from kerntrace.core.model import Schedule

for _name in ("kerntrace.core.expr", "kerntrace.core.tracepoints", "kerntrace.plugins.argdist"):
    importlib.import_module(_name)

from kerntrace.plugins.argdist import ArgDist, ArgDistPrinter  # noqa: E402

DEV = (8 << 20) | 0


@pytest.fixture
def host(fs, monkeypatch):
    monkeypatch.setenv("KERNTRACE_DISABLE_PLUGINS", "1")
    fs.create_dir("/var/tmp")
    return FakeTracefs(fs, "6.11").install(monkeypatch)


def measure(*argv):
    tool = ArgDist()
    args = tool.parse_args(list(argv))
    return args, tool.measurement(args)


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.run_tool("argdist", argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_tracepoint_field_histogram(host):
    args, m = measure("-H", "t:block:block_rq_issue():u32:args->bytes:dev == %d" % DEV)
    (ev,) = m.events
    assert ev.probes == (Tracepoint("block", "block_rq_issue"),)
    # only what the run reads is declared
    assert sorted((f.name, f.sources) for f in ev.fields) == [("bytes", ("bytes",)),
                                                              ("dev", ("dev",))]
    assert m.aggregate.kind == "histogram" and m.aggregate.value == "bytes"
    assert m.aggregate.scale == LOG2 and m.aggregate.divisor == 1
    assert [(f.field, f.op, f.value) for f in m.filters] == [("dev", "==", DEV)]
    assert m.schedule.interval == 1.0


def test_user_function_argument_count_with_pid(host):
    args, m = measure("-p", "1005", "-i", "5", "-n", "2",
                      "-C", "p:c:malloc(size_t size):size_t:size:size==16")
    (ev,) = m.events
    assert ev.probes == (UserFunction("c", "malloc"),)
    assert [(f.name, f.type, f.sources) for f in ev.fields] == [("size", INT, ("arg0",))]
    assert m.aggregate.kind == "count" and m.aggregate.keys == ("size",)
    assert [(f.field, f.op, f.value) for f in m.filters] == [("pid", "==", 1005),
                                                            ("size", "==", 16)]
    assert (m.schedule.interval, m.schedule.count) == (5.0, 2)


def test_second_argument_and_argn(host):
    _, m = measure("-C", "p:/usr/bin/prog:work(int a, long b):long,int:b,a:arg2 > 1")
    (ev,) = m.events
    assert sorted((f.name, f.sources) for f in ev.fields) == [
        ("a", ("arg0",)), ("arg2", ("arg2",)), ("b", ("arg1",))]
    assert m.aggregate.keys == ("b", "a")


def test_kernel_function_and_return_values(host):
    _, m = measure("-H", "p::__kmalloc(u64 size):u64:size")
    assert m.events[0].probes == (KernelFunction("__kmalloc"),)
    _, m = measure("-C", "r::vfs_read()")
    assert m.events[0].probes == (KernelFunction("vfs_read", ret=True),)
    assert m.aggregate.keys == ("retval",)
    _, m = measure("-H", "r:c:read():ssize_t:$retval:$retval > 0")
    assert m.events[0].probes == (UserFunction("c", "read", ret=True),)
    assert m.aggregate.value == "retval"
    assert [(f.field, f.op, f.value) for f in m.filters] == [("retval", ">", 0)]
    _, m = measure("-C", "p:c:malloc")
    assert m.aggregate.keys == () and m.events[0].fields == ()


@pytest.mark.parametrize("argv, message", [
    ([], "at least one specifier"),
    (["-H", "p:c:malloc(size_t s):size_t:s", "-C", "p:c:free"], "one -H or -C specifier"),
    (["-H", "p:c:malloc"], "-H needs a type and an expression"),
    (["-C", "u:c:foo(int x):int:arg1"], "a USDT probe takes no signature"),
    (["-C", "x:c:foo"], "probe type must be p, r, t or u"),
    (["-C", "u::prov:foo():int:arg1"], "a USDT probe needs a library"),
    (["-C", "p:c:mal*"], "no wildcards"),
    (["-C", "p:c:malloc(size_t size):size_t:size*2"], "not a field or argument name"),
    (["-C", "p:c:malloc(size_t size):size_t:size+1"], "not a field or argument name"),
    (["-C", "p:c:malloc(size_t size):char*:size"], "not an integer type"),
    (["-C", "p:c:malloc(size_t size):u64,u64:size"], "2 types for 1 expressions"),
    (["-H", "p:c:f(int a, int b):int,int:a,b"], "-H takes one expression"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size > 1 || size < 0"], "'\\|\\|' is not"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size == 1:traceoff"], "':' is not supported"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size == 1\n-:x"], "control characters"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size == 1); system(\"x\""],
     "'\\)' is not|parentheses"),
    (["-C", "p:c:malloc(size_t size):size_t:size:nope == 1"], "unknown field 'nope'"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size == \"x\""], "integer field"),
    (["-C", "p:c:malloc(size_t size):size_t:size:"], "empty filter"),
    (["-C", "p:../../etc/x:malloc"], "library must be a plain path"),
    (["-C", "p:c:malloc(size_t pid):size_t:pid"], "reserved"),
    (["-C", "p:c:malloc(size_t):size_t:size"], "invalid parameter"),
    (["-C", "r:c:malloc(size_t size):size_t:size"], "only \\$retval"),
    (["-C", "p:c:malloc():u64:$retval"], "not a field or argument name"),
    (["-C", "t:block:block_rq_issue(int x):u32:bytes"], "takes no signature"),
    (["-C", "t:block:nope():u32:bytes"], "tracepoint block:nope not found"),
    (["-C", "t:block:block_rq_issue():u32:nope"], "not a field or argument name"),
    (["-C", "t:block:block_rq_issue():u32:rwbs"], "rwbs is not an integer"),
    (["-C", "t:block:block_rq_issue():u32:bytes:rwbs > \"W\""], "use ==, != or ~"),
    (["-C", "t:../x:y():u32:bytes"], "not a tracepoint category"),
    (["-C", "p:c:malloc#"], "label"),
    (["-T", "0", "-C", "p:c:malloc"], "invalid top"),
    (["-i", "0", "-C", "p:c:malloc"], "invalid interval"),
    (["-p", "x", "-C", "p:c:malloc"], "invalid PID"),
])
def test_bad_specifiers_one_line_nothing_written(host, argv, message):
    rc, out, err = run(argv)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), err
    assert lines[0].startswith("argdist: ") and out == "" and host.writes == []


def test_kernel_function_here_says_why_it_cannot_run(host):
    rc, out, err = run(["--explain", "-H", "p::__kmalloc(u64 size):u64:size"])
    assert rc == 1 and out == ""
    assert "kprobe" in err and len(err.splitlines()) == 1, err


def report(data, end=0.0):
    from kerntrace.core.api import Report
    return Report(data, start=0.0, end=end)


def test_count_output_is_bccs(host):
    from kerntrace.core.api import CountSet, RunContext
    args = ArgDist().parse_args(["-T", "2", "-C", "p:c:write(int fd, size_t n):int,size_t:fd,n"])
    out = io.StringIO()
    p = ArgDistPrinter(out, io.StringIO(), args.spec, False, top=args.top)
    p.report(report(CountSet(("fd", "n"), {(1, 10): 5, (2, 20): 1, (3, 30): 9})),
             RunContext("argdist", "ftrace", Schedule()))
    lines = out.getvalue().splitlines()
    assert re.match(r"^\[\d\d:\d\d:\d\d\]$", lines[0])
    assert lines[1:] == ["p:c:write(int fd, size_t n):int,size_t:fd,n", "\tCOUNT      EVENT",
                         "\t5          fd = 1, n = 10", "\t9          fd = 3, n = 30"]


def test_histogram_output_is_bccs(host):
    from kerntrace.core.api import HistogramSet, RunContext, results
    args = ArgDist().parse_args(["-H", "p:c:malloc(size_t size):size_t:size"])
    out = io.StringIO()
    h = results.Histogram(LOG2, "size")
    h.add(5, 16, 3)    # log2 slot 5: 16 -> 31
    ArgDistPrinter(out, io.StringIO(), args.spec, True).report(
        report(HistogramSet((), {(): h})), RunContext("argdist", "ftrace", Schedule()))
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["size", ":", "count", "distribution"]
    assert re.match(r"^\s+16 -> 31\s+: 3\s+\|\*+\|$", lines[-1]), lines


def test_kprobe_program_compiles(tmp_path):
    from test_ebpf_codegen import make_plan, syntax_check
    from kerntrace.backends.ebpf import codegen
    import shutil
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler for the syntax check")
    _, m = measure("-H", "p::__kmalloc(size_t size, gfp_t flags):size_t:size:flags == 3264")
    prog = codegen.generate(m, make_plan(m))
    assert "f->f_size = PT_REGS_PARM1(ctx);" in prog.text
    # gfp_t is 32 bits: the low half of the register, unsigned
    assert "f->f_flags = (u32)PT_REGS_PARM2(ctx);" in prog.text
    assert [a.kind for a in prog.attachments] == ["kprobe"]
    syntax_check(tmp_path, prog, m)


# ---------------------------------------------------------------------------
# Field.width: a function's int argument or return value is the low 32 bits
# of its register, sign-extended (close() failing returns -1, not 4294967295).
def test_width_is_validated_by_the_model():
    from kerntrace.core.api import Field, InvalidSpec, STR
    assert Field("ret", sources=("retval",), width="s32").width == "s32"
    assert Field("ret", sources=("retval",)).width is None
    for bad in ("i32", "s31", 32, ""):
        with pytest.raises(InvalidSpec, match="width"):
            Field("ret", sources=("retval",), width=bad)
    with pytest.raises(InvalidSpec, match="width"):
        Field("name", STR, sources=("arg0",), width="u8")


def test_widths_come_from_the_specifier_types(host):
    _, m = measure("-C", "p:c:write(int fd, const char *buf, size_t count):u64,char:count,"
                   "arg3:fd == -1")
    assert sorted((f.name, f.width) for f in m.events[0].fields) == [
        ("arg3", "s8"), ("count", "u64"), ("fd", "s32")]
    _, m = measure("-C", "r:c:close()")
    assert [(f.name, f.width) for f in m.events[0].fields] == [("retval", "s32")]
    _, m = measure("-H", "r:c:read():ssize_t:$retval")
    assert [(f.name, f.width) for f in m.events[0].fields] == [("retval", "s64")]
    _, m = measure("-C", "p:c:f(void *p):u64:arg1:p != 0")
    # a pointer parameter and an untyped argN used only in a filter: whole registers
    assert sorted((f.name, f.width) for f in m.events[0].fields) == [("arg1", "u64"),
                                                                    ("p", None)]


def test_widths_in_both_backends_programs():
    from kerntrace.backends.ebpf import codegen
    from kerntrace.backends.ftrace.probes import fetch_args
    from kerntrace.core.api import Field
    from test_ebpf_codegen import make_plan
    fields = [Field("fd", sources=("arg0",), width="s32"), Field("n", sources=("arg2",)),
              Field("flags", sources=("arg1",), width="u16")]
    assert fetch_args(fields, False, arch="x86_64") == [
        ("fd", "%di:s32"), ("n", "%dx:s64"), ("flags", "%si:u16")]
    assert fetch_args([Field("r", sources=("retval",), width="u8")], True,
                      arch="x86_64") == [("r", "$retval:u8")]
    from kerntrace.core.api import Count, Event, Measurement
    m = Measurement([Event("e", UserFunction("c", "write"), fields=fields)],
                    Count(keys=("fd", "n", "flags")))
    text = codegen.generate(m, make_plan(m)).text
    assert "f->f_fd = (s32)PT_REGS_PARM1(ctx);" in text
    assert "f->f_n = PT_REGS_PARM3(ctx);" in text
    assert "f->f_flags = (u16)PT_REGS_PARM2(ctx);" in text
