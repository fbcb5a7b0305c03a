"""funccount, funclatency, funcslower without a live kernel: the pattern
grammar and its expansion (plugins/funcspec.py, core/symbols.py), bad
input (one line, non-zero exit, nothing written anywhere), the kernel
function paths in fake kernel eras (kprobe_events, the function tracer)
and in generated BPF C, and the model pieces they brought (nested pairs,
min_latency)."""

import os
import re
import shutil
import subprocess
import time

import pytest

import clirun
import funcworkload
from kerntrace.core import elfsym, symbols
from kerntrace.core.errors import InvalidSpec, UsageError
from kerntrace.core.model import (EVENT_NAME, LATENCY, MAX_NESTING, Count, Event, Histogram,
                                  KernelFunction, Measurement, Pair, UserFunction,
                                  is_identifier)
from kerntrace.plugins import funccount, funclatency, funcslower, funcspec


@pytest.fixture(scope="module")
def funcwork(tmp_path_factory):
    exe = funcworkload.build(tmp_path_factory.mktemp("funcwork"))
    if exe is None:
        pytest.skip("no C compiler to build the function workload")
    return exe


# ---------------------------------------------------------------------------
# The spec grammar (bcc's)
@pytest.mark.parametrize("spec,expected", [
    ("vfs_read", ("kernel", None, "vfs_read")),
    ("k:vfs_*", ("kernel", None, "vfs_*")),
    ("p::vfs_*", ("kernel", None, "vfs_*")),
    (":vfs_read", ("kernel", None, "vfs_read")),
    ("c:malloc", ("user", "c", "malloc")),
    ("p:c:str*", ("user", "c", "str*")),
    ("/usr/bin/bash:readline", ("user", "/usr/bin/bash", "readline")),
    ("t:block:block_rq_*", ("tracepoint", None, ("block", "block_rq_*"))),
    ("u:node:gc*", ("usdt", "node", (None, "gc*"))),
    ("u:/usr/bin/python3:python:gc__*", ("usdt", "/usr/bin/python3", ("python", "gc__*"))),
])
def test_spec_grammar(spec, expected):
    assert funcspec.split_spec(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("u:node", "expected u:LIB:PROBE"),
    ("u::gc*", "expected u:LIB:PROBE"),
    ("u:a:b:c:d", "expected u:LIB:PROBE"),
    ("a:b:c:d", "invalid pattern"),
    ("t:block", "needs more parts"),
    ("vfs_read\nvfs_write", "invalid pattern"),
    ("", "invalid pattern"),
])
def test_spec_grammar_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        funcspec.split_spec(spec)


def test_user_functions_glob_and_regex(funcwork):
    assert symbols.user_functions(funcwork, "kt_*") == ["kt_leaf", "kt_recurse", "kt_vanish"]
    assert symbols.user_functions(funcwork, "kt_(leaf|vanish)", regex=True) == [
        "kt_leaf", "kt_vanish"]
    # a regular expression matches whole names, a glob is no regex
    assert symbols.user_functions(funcwork, "kt_lea", regex=True) == []
    assert symbols.user_functions(funcwork, "kt_.*") == []


def test_expand_user_pattern_resolves_the_binary_once(funcwork):
    targets = funcspec.expand(funcwork + ":kt_*")
    assert [t.label for t in targets] == ["kt_leaf", "kt_recurse", "kt_vanish"]
    assert targets[0].entry() == UserFunction(os.path.realpath(funcwork), "kt_leaf")
    assert targets[0].exit() == UserFunction(os.path.realpath(funcwork), "kt_leaf", ret=True)


def test_libc_pattern_limit_says_how_many_matched():
    n = len(symbols.user_functions(symbols.resolve_binary("c"), "str*"))
    assert n > 3
    with pytest.raises(UsageError) as e:
        funcspec.expand("c:str*", max_functions=3)
    assert str(e.value) == ("c:str* matches %d functions, more than the limit of 3 "
                            "(raise it with --max-functions %d)" % (n, n))
    assert len(funcspec.expand("c:str*", max_functions=n)) == n


def test_kernel_functions_from_available_filter_functions(tmp_path):
    root = tmp_path / "tracing"
    root.mkdir()
    (root / "available_filter_functions").write_text(
        "vfs_read\nvfs_write\nvfs_fsync [ext4]\nfoo.cold\n")
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T vfs_read\nffffffff81000100 T vfs_write\n"
                        "ffffffff81000200 t vfs_notraced\nffffffff81000300 D vfs_data\n")
    assert symbols.kernel_functions("vfs_*", tracing_root=str(root),
                                    kallsyms=str(kallsyms)) == ["vfs_fsync", "vfs_read",
                                                                "vfs_write"]
    # without available_filter_functions: kallsyms text symbols
    assert symbols.kernel_functions("vfs_*", kallsyms=str(kallsyms)) == [
        "vfs_notraced", "vfs_read", "vfs_write"]
    assert symbols.notrace_reason("vfs_notraced", str(root), str(kallsyms)) == (
        "kernel function vfs_notraced is not traceable (notrace or inlined: not in %s)"
        % (root / "available_filter_functions"))
    assert symbols.notrace_reason("nosuch", str(root), str(kallsyms)) == (
        "no kernel function nosuch (not in %s)" % kallsyms)
    assert symbols.notrace_reason("vfs_read", str(root), str(kallsyms)) is None


def test_tracepoint_patterns(tmp_path):
    for cat, ev in (("block", "block_rq_issue"), ("block", "block_rq_complete"),
                    ("sched", "sched_switch"), ("ftrace", "function")):
        d = tmp_path / "events" / cat / ev
        d.mkdir(parents=True)
        (d / "format").write_text("name: %s\n" % ev)
    (tmp_path / "events" / "block" / "enable").write_text("0\n")
    assert symbols.tracepoints("block", "block_rq_*", tracing_root=str(tmp_path)) == [
        ("block", "block_rq_complete"), ("block", "block_rq_issue")]
    # ftrace's own record formats are not tracepoints
    assert symbols.tracepoints("*", "*", tracing_root=str(tmp_path)) == [
        ("block", "block_rq_complete"), ("block", "block_rq_issue"), ("sched", "sched_switch")]


# ---------------------------------------------------------------------------
# .gnu_debugdata (MiniDebugInfo): stripped binaries keep local symbols there
@pytest.mark.skipif(not all(shutil.which(t) for t in ("objcopy", "xz", "nm", "strip")),
                    reason="needs binutils (objcopy, nm, strip) and xz")
def test_minidebuginfo_symbols_of_a_stripped_binary(funcwork, tmp_path):
    exe = str(tmp_path / "stripped")
    shutil.copy(funcwork, exe)
    # the recipe of Fedora's find-debuginfo (gdb's "MiniDebugInfo" manual page)
    subprocess.check_call(["objcopy", "--only-keep-debug", exe, exe + ".debug"])
    subprocess.check_call(["objcopy", "-S", "--remove-section", ".gdb_index",
                           "--remove-section", ".comment", "--keep-symbol", "sleep_usec",
                           exe + ".debug", exe + ".mini"])
    subprocess.check_call(["xz", "-f", exe + ".mini"])
    subprocess.check_call(["strip", "--strip-all", exe])
    subprocess.check_call(["objcopy", "--add-section", ".gnu_debugdata=%s.mini.xz" % exe, exe])
    original = elfsym.ElfFile(funcwork).functions()
    stripped = elfsym.ElfFile(exe)
    assert [s.name for s in stripped.sections if s.name in (".symtab", ".gnu_debugdata")] == [
        ".gnu_debugdata"]
    # sleep_usec is static: in no .dynsym, only in the MiniDebugInfo
    sym = elfsym.find_symbol(exe, "sleep_usec")
    assert sym.table == ".gnu_debugdata"
    assert sym.offset == original["sleep_usec"].offset
    assert "sleep_usec" in symbols.user_functions(exe, "sleep_*")


# ---------------------------------------------------------------------------
# Bad input: one line, non-zero exit, no traceback, nothing left behind
def _probe_lines(path):
    lines = []
    for f in ("uprobe_events", "kprobe_events"):
        p = os.path.join(symbols.tracing_root() or "/nonexistent", f)
        try:
            with open(p) as fh:
                lines += [l for l in fh if path in l]
        except (IOError, OSError):
            pass
    return lines


BAD = [
    (["funccount", "{exe}:nosuch_*"], "{exe}:nosuch_* matches no function in {real}"),
    (["funccount", "{exe}:nosuch"], "{exe}:nosuch matches no function in {real}"),
    (["funccount", "--max-functions", "2", "{exe}:kt_*"],
     "{exe}:kt_* matches 3 functions, more than the limit of 2 (raise it with "
     "--max-functions 3)"),
    (["funccount", "/nonexistent/bin:f"], "/nonexistent/bin does not exist"),
    (["funccount", "u:{exe}:nosuch*"], "u:{exe}:nosuch* matches no USDT probe in {real}"),
    (["funccount", "u:{notelf}:p"], "{notelf} is not an ELF binary"),
    (["funccount", "u:{exe}:a:traceoff"], "matches no USDT probe"),
    (["funccount", "u:{exe}:-:x"], "invalid pattern"),
    (["funclatency", "u:{exe}:tick"], "is a USDT probe; this tool measures functions"),
    (["funccount", "{notelf}:f"], "{notelf} is not an ELF binary"),
    (["funccount", "vfs_read:traceoff"], "library 'vfs_read' not found"),
    (["funccount", "!vfs_read"], "invalid pattern '!vfs_read'"),
    (["funccount", "--", "-:kerntrace_1/x"], "invalid pattern '-:kerntrace_1/x'"),
    (["funccount", "{exe}:kt_leaf\nkt_x"], "invalid pattern"),
    (["funccount", "u:{exe}:probe"], "u:{exe}:probe matches no USDT probe in {real}"),
    (["funccount", "-r", "{exe}:kt_(", ], "invalid regular expression"),
    (["funclatency", "--max-functions", "2", "{exe}:kt_*"],
     "{exe}:kt_* matches 3 functions, more than the limit of 2"),
    (["funcslower", "{exe}:kt_*"], "{exe}:kt_* matches 3 functions (kt_leaf, kt_recurse, "
                                   "kt_vanish); name exactly one"),
    (["funclatency", "-u", "-m", "{exe}:kt_leaf"], "-u and -m are mutually exclusive"),
    (["funccount", "-t", "0", "{exe}:kt_*"], "invalid top '0': expected a whole number > 0"),
    (["funcslower", "-C", "{exe}:kt_leaf", "100"], "-C (on-CPU time only) is not supported"),
    (["funcslower", "-u", "5", "{exe}:kt_leaf", "100"], "give the minimum duration once"),
    (["funcslower", "-p", "1", "-L", "1", "{exe}:kt_leaf", "100"],
     "You can use -p or -L but not both"),
    (["funcslower", "{exe}:kt_leaf", "soon"], "invalid minimum duration 'soon' us"),
    (["funclatency", "t:sched:sched_switch"], "is a tracepoint; this tool measures functions"),
    (["funclatency", "-l", "0", "{exe}:kt_leaf"], "-l takes a level from 1 to 64"),
    (["funcslower", "-a", "7", "{exe}:kt_leaf"], "-a takes 0 to 6 arguments"),
    (["funcslower", "-m", "1", "-u", "5", "{exe}:kt_leaf"], "-m and -u are mutually exclusive"),
    (["funcslower", "-m", "nan", "{exe}:kt_leaf"], "invalid minimum duration"),
    (["funccount", "kerntrace_no_such_kernel_function"],
     "no kernel function kerntrace_no_such_kernel_function"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line(funcwork, tmp_path, argv, message):
    notelf = tmp_path / "script"
    notelf.write_text("#!/bin/sh\n")
    subst = {"exe": funcwork, "real": os.path.realpath(funcwork), "notelf": str(notelf)}
    argv = [a.format(**subst) for a in argv]
    rc, out, err = clirun.run(argv[:1] + ["-d", "1"] + argv[1:])
    assert rc != 0 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message.format(**subst) in lines[0], lines[0]
    assert _probe_lines(funcwork) == [] and _probe_lines(str(notelf)) == []


# ---------------------------------------------------------------------------
# What the tools declare
def _args(tool, argv):
    return tool.parse_args(argv)


def test_funccount_declares_one_counted_event_per_function(funcwork):
    tool = funccount.FuncCount()
    args = _args(tool, ["-p", "42", "-c", "1", "-d", "3", funcwork + ":kt_*"])
    m = tool.measurement(args)
    assert [e.probes[0] for e in m.events] == [
        UserFunction(os.path.realpath(funcwork), n) for n in ("kt_leaf", "kt_recurse",
                                                              "kt_vanish")]
    assert m.aggregate.keys == (EVENT_NAME,)
    assert [(f.field, f.op, f.value) for f in m.filters] == [("pid", "==", 42), ("cpu", "==", 1)]
    assert m.schedule.interval == 3 and m.schedule.duration == 3
    assert [e.name for e in m.events] == ["kt_leaf", "kt_recurse", "kt_vanish"]
    assert tool.formatters(args)[EVENT_NAME]("kt_recurse") == "kt_recurse"


def test_funccount_names_tracepoints_of_two_categories_apart(monkeypatch):
    tool = funccount.FuncCount()
    targets = [funcspec.Target("a:x", "tracepoint", name="x", category="a"),
               funcspec.Target("b:x", "tracepoint", name="x", category="b"),
               funcspec.Target("b:y", "tracepoint", name="y", category="b")]
    monkeypatch.setattr(funcspec, "expand", lambda *a: targets)
    args = _args(tool, ["t:*:*"])
    m = tool.measurement(args)
    assert [e.name for e in m.events] == ["f0", "f1", "y"]
    label = tool.formatters(args)[EVENT_NAME]
    assert [label(e.name) for e in m.events] == ["a:x", "b:x", "b:y"]


def test_funclatency_is_a_nested_tid_pair(funcwork):
    tool = funclatency.FuncLatency()
    m = tool.measurement(_args(tool, ["-m", "-l", "3", funcwork + ":kt_recurse"]))
    assert m.pair.key == ("tid",) and m.pair.nested == 3
    # a thread's exit gives up the calls it exited inside
    assert m.pair.abandon == "exit" and m.event("exit").probes[0].describe() == (
        "t:sched:sched_process_exit")
    assert (m.aggregate.value, m.aggregate.unit) == (LATENCY, "msecs")
    assert m.events[1].probes[0].ret


def test_funcslower_threshold_is_the_pairs_min_latency(funcwork):
    tool = funcslower.FuncSlower()
    m = tool.measurement(_args(tool, ["-u", "2.5", "-a", "2", funcwork + ":kt_leaf"]))
    assert m.pair.min_latency == 2500
    assert m.pair.carry == ("arg0", "arg1")
    assert m.aggregate.fields == ("comm", "pid", LATENCY, "retval", "arg0", "arg1")
    m = tool.measurement(_args(tool, [funcwork + ":kt_leaf"]))
    assert m.pair.min_latency == 1000000          # bcc's default: 1 ms


def test_funcslower_prints_bcc_columns(funcwork):
    import io
    from kerntrace.core.output.base import RunContext
    from kerntrace.core.results import Record
    tool = funcslower.FuncSlower()
    args = _args(tool, ["-a", "1", funcwork + ":kt_leaf"])
    out, err = io.StringIO(), io.StringIO()
    p = tool.printer(args, out, err)
    ctx = RunContext("funcslower", "ftrace", None)
    p.start(ctx)
    from kerntrace.core.results import Report
    p.report(Report([Record(1, {"comm": "kerntrace_funcwork", "pid": 7, LATENCY: 30123456,
                                "retval": -1, "arg0": 30000})]), ctx)
    assert err.getvalue() == "Tracing function calls slower than 1 ms... Ctrl+C to quit.\n"
    assert out.getvalue().splitlines() == [
        "COMM           PID    LAT(ms)             RVAL FUNC ARGS",
        "kerntrace_func 7        30.12 ffffffffffffffff kt_leaf 0x7530"]


# ---------------------------------------------------------------------------
# Model pieces
def _pair(**kw):
    return Pair("a", "b", key=("tid",), **kw)


def test_nested_and_min_latency_are_validated():
    assert _pair(nested=MAX_NESTING).nested == MAX_NESTING
    for bad in (0, MAX_NESTING + 1, True, "2"):
        with pytest.raises(InvalidSpec):
            _pair(nested=bad)
    with pytest.raises(InvalidSpec):
        Pair("a", "b", key=("tid",), mark="c", nested=2)
    with pytest.raises(InvalidSpec):
        Pair("a", "b", key=("tid",), shared={"tid": 0}, nested=2)
    for bad in (-1, 1.5, True, 1 << 64):
        with pytest.raises(InvalidSpec):
            _pair(min_latency=bad)


def test_ftrace_drops_each_start_of_a_nested_key_it_gives_up():
    from kerntrace.backends.ftrace.aggregate import Counters
    from kerntrace.backends.ftrace.pending import PendingStarts, Stack
    c = Counters()
    p = PendingStarts(1, c)
    p.table[(1,)] = Stack([10, 20, 30])
    p.table[(2,)] = Stack([40])
    p.drop_oldest()
    assert list(p.table) == [(2,)] and c.dropped_starts == 3


# ---------------------------------------------------------------------------
# Generated BPF C for the kernel-function paths
def _kernel_latency():
    return Measurement([Event("entry", KernelFunction("vfs_read")),
                        Event("ret", KernelFunction("vfs_read", ret=True))],
                       Histogram(LATENCY, unit="usecs"),
                       pair=Pair("entry", "ret", key=("tid",), nested=4, min_latency=1000))


def test_bpf_nested_pair_keeps_a_depth_per_key(tmp_path):
    from test_ebpf_codegen import CC, make_plan, syntax_check
    from kerntrace.backends.ebpf import codegen
    m = _kernel_latency()
    prog = codegen.generate(m, make_plan(m))
    t = prog.text
    assert [(a.kind, a.event.probe.function) for a in prog.attachments] == [
        ("kprobe", "vfs_read"), ("kretprobe", "vfs_read")]
    assert "BPF_HASH(kt_depth, struct kt_pair_key, u64, 10240);" in t
    assert "u64 kt_depth;" in t                       # the level in the start map's key
    assert "if (kt_depth.update(&kt_k, &kt_next) != 0 || kt_level >= 4) {" in t
    assert "kt_k.kt_depth = kt_level;" in t
    assert "if (kt_latency < 1000ULL)" in t
    if CC is not None:
        syntax_check(tmp_path, prog, m)


def test_bpf_funccount_of_kernel_functions_attaches_a_kprobe_each():
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen
    m = Measurement([Event("f0", KernelFunction("vfs_read")),
                     Event("f1", KernelFunction("vfs_write"))], Count(keys=(EVENT_NAME,)))
    prog = codegen.generate(m, make_plan(m))
    assert [(a.kind, a.event.logical.name) for a in prog.attachments] == [("kprobe", "f0"),
                                                                   ("kprobe", "f1")]


def test_ftrace_nested_handler_source():
    from kerntrace.backends.ftrace.aggregate import Aggregator
    from kerntrace.backends.ftrace.plan import Plan, ResolvedEvent
    m = _kernel_latency()
    events = [ResolvedEvent(e, e.probes[0], "kerntrace_1", "kerntrace_1_%d" % i, None, {},
                            probe_def="p:x") for i, e in enumerate(m.events)]
    agg = Aggregator(m, Plan(events))
    assert "st.append(ts)" in agg.sources["entry"]
    assert "if len(st) >= 4:" in agg.sources["entry"]
    assert "s = st.pop() if st else None" in agg.sources["ret"]
    assert re.search(r"if x_latency < \w+:", agg.sources["ret"])


def test_aliases_are_one_function_named_once():
    libc = symbols.resolve_binary("c")
    funcs = elfsym.ElfFile(libc).functions()
    names = symbols.user_functions(libc, "str*")
    offsets = [funcs[n].offset for n in names]
    assert len(set(offsets)) == len(offsets)       # one probe per address
    # every matching function's address is covered
    assert set(offsets) == set(s.offset for n, s in funcs.items()
                               if n.startswith("str") and not s.is_ifunc
                               and is_identifier(n))


def test_a_short_library_name_with_pid_is_the_library_that_process_maps(tmp_path):
    """-p PID: "c" is the libc the process has mapped (/proc/PID/maps), even
    where it is a copy of its own (here: libc copied and preloaded)."""
    libc = symbols.resolve_binary("c")
    own = tmp_path / "lib" / os.path.basename(libc)
    own.parent.mkdir()
    shutil.copy(libc, str(own))
    p = subprocess.Popen(["sleep", "30"], env=dict(os.environ, LD_LIBRARY_PATH=str(own.parent)))
    try:
        for _ in range(100):
            with open("/proc/%d/maps" % p.pid) as f:
                if str(own) in f.read():
                    break
            time.sleep(0.05)
        assert symbols.resolve_binary("c", pid=p.pid) == str(own)
        assert symbols.resolve_binary("c") == libc      # ours: the system's
        t = funcspec.expand("c:getppid", pid=p.pid)
        assert t[0].entry() == UserFunction(str(own), "getppid")
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------------------
# USDT probes (u:LIB:PROBE)
@pytest.fixture(scope="module")
def usdtwork(tmp_path_factory):
    import usdtworkload
    exe, why = usdtworkload.build(tmp_path_factory.mktemp("usdtwork"))
    if exe is None:
        pytest.skip("cannot build the USDT workload: %s" % why)
    return exe


def test_funccount_of_usdt_probes_declares_every_site(usdtwork):
    from kerntrace.core.model import Each, Usdt
    tool = funccount.FuncCount()
    path = os.path.realpath(usdtwork)
    args = _args(tool, ["-p", "42", "u:%s:*" % usdtwork])
    m = tool.measurement(args)
    assert [e.name for e in m.events] == ["guarded", "tick"]
    # kt:tick is used at two places: one Each of both sites, one count
    assert m.events[0].probes == (Usdt(path, "kt", "guarded"),)
    assert m.events[1].probes == (Each(Usdt(path, "kt", "tick", site=0),
                                       Usdt(path, "kt", "tick", site=1)),)
    assert [(f.field, f.value) for f in m.filters] == [("pid", 42)]
    # u:LIB:PROVIDER:PROBE narrows by provider too, with wildcards in both
    assert [t.label for t in funcspec.expand("u:%s:k*:t*" % usdtwork)] == ["tick"]
    assert [t.label for t in funcspec.expand("u:%s:kt:g.*" % usdtwork, regex=True)] == [
        "guarded"]
    with pytest.raises(UsageError, match="matches no USDT probe"):
        funcspec.expand("u:%s:other:*" % usdtwork)


def test_usdt_model_validates_its_names():
    from kerntrace.core.model import Usdt
    for bad in (("/bin/x", "kt", "a:traceoff"), ("/bin/x", "k t", "a"), ("/bin/x y", "kt", "a"),
                ("/bin/x", "kt", "tick", -1)):
        with pytest.raises(InvalidSpec):
            Usdt(*bad)
    assert Usdt("/bin/x", "kt", "tick", 1).describe() == "usdt:/bin/x:kt:tick#1"


def test_ftrace_defines_a_usdt_semaphore_as_the_reference_counter(usdtwork):
    from kerntrace.backends.ftrace import backend as fbackend
    from kerntrace.backends.ftrace import probes as fprobes
    from kerntrace.core.model import Event, Usdt
    path = os.path.realpath(usdtwork)
    sites = elfsym.ElfFile(path).usdt_probes()
    guarded = next(p for p in sites if p.name == "guarded")

    class Feats(object):
        uprobe_events = True
        uprobe_ref_ctr = True
        immediate = True
    b = fbackend.FtraceBackend.__new__(fbackend.FtraceBackend)
    ev, why = b._usdt(Event("guarded", Usdt(path, "kt", "guarded")),
                      Usdt(path, "kt", "guarded"), Feats())
    assert why is None
    assert ev.probe_def.split()[1] == "%s:0x%x(0x%x)" % (path, guarded.offset,
                                                         guarded.semaphore)
    tick, why = b._usdt(Event("tick", Usdt(path, "kt", "tick", 1)),
                        Usdt(path, "kt", "tick", 1), Feats())
    assert tick.probe_def.split()[1] == "%s:0x%x" % (path, sites[1].offset)
    # a kernel before ref_ctr_offset (v4.20) cannot raise the semaphore:
    # refused with the reason, not counted as zero
    Feats.uprobe_ref_ctr = False
    ev, why = b._usdt(Event("guarded", Usdt(path, "kt", "guarded")),
                      Usdt(path, "kt", "guarded"), Feats())
    assert ev is None and "takes no reference counter (ref_ctr_offset)" in why
    assert fprobes.uprobe_definition("g", "e", "/bin/x", 0x10, False, [], 0x20) == \
        "p:g/e /bin/x:0x10(0x20)\n"


def test_bpf_usdt_plan_carries_the_site_and_semaphore(usdtwork):
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen, plan as eplan
    from kerntrace.core.model import Event, Usdt
    path = os.path.realpath(usdtwork)
    guarded = next(p for p in elfsym.ElfFile(path).usdt_probes() if p.name == "guarded")

    class Probes(object):
        def attach(self, kind):
            class Yes(object):
                ok, detail = True, ""
            return Yes()
    ev = Event("guarded", Usdt(path, "kt", "guarded"))
    target, location, fields, why = eplan.resolve_usdt(ev, ev.probes[0], Probes())
    assert (target, location, fields, why) == (path, (guarded.offset, guarded.semaphore), {},
                                               None)
    m = Measurement([ev], Count(keys=(EVENT_NAME,)))
    prog = codegen.generate(m, make_plan(m))
    assert [a.kind for a in prog.attachments] == ["usdt"]
    assert path not in prog.text         # paths stay out of the C text


# ---------------------------------------------------------------------------
# funclatency of several functions
def test_funclatency_of_several_functions_tags_each_entry(funcwork):
    from kerntrace.core.model import Each, Field
    tool = funclatency.FuncLatency()
    path = os.path.realpath(funcwork)
    args = _args(tool, ["-F", "-u", funcwork + ":kt_*"])
    m = tool.measurement(args)
    names = ("kt_leaf", "kt_recurse", "kt_vanish")
    entry, ret = m.event("entry"), m.event("ret")
    # one stack per thread for all of them: their calls nest on a thread
    assert entry.probes == (Each(*[UserFunction(path, n, values={"func": i})
                                   for i, n in enumerate(names)]),)
    assert ret.probes == (Each(*[UserFunction(path, n, ret=True) for n in names]),)
    assert [f.name for f in entry.fields] == ["func"]
    assert m.pair.key == ("tid",) and m.pair.carry == ("func",) and m.pair.nested == 64
    assert m.aggregate.keys == ("func",)
    label = tool.formatters(args)["func"]
    assert [label(i) for i in range(3)] == list(names)
    # without -F: one histogram, nothing carried
    m = tool.measurement(_args(tool, ["-u", funcwork + ":kt_*"]))
    assert m.aggregate.keys == () and m.pair.carry == ()


def test_probe_values_are_validated_integers():
    for bad in ({"func": "1"}, {"func": True}, {"func": 1 << 63}, {"no such": 1}):
        with pytest.raises(InvalidSpec):
            UserFunction("/bin/x", "f", values=bad)
    assert UserFunction("/bin/x", "f", values={"func": 2}).values == {"func": 2}
    assert UserFunction("/bin/x", "f", values={"func": 2}) != UserFunction("/bin/x", "f")


def test_probe_values_on_both_backends():
    """A probe's own value: a constant in the BPF C, no fetch argument on
    ftrace (the handler sets it)."""
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen
    from kerntrace.backends.ebpf import plan as eplan
    from kerntrace.backends.ftrace import probes as fprobes
    from kerntrace.core.model import Field
    probe = KernelFunction("vfs_read", values={"func": 7})
    ev = Event("entry", probe, fields=[Field("func"), Field("count", sources=("arg2",))])
    fs = eplan._function_field(ev.field("func"), probe)
    assert (fs.kind, fs.member) == ("const", 7)
    m = Measurement([ev], Count(keys=("func",)))
    assert "= 7LL;" in codegen.generate(m, make_plan(m)).text
    args = fprobes.fetch_args(ev.fields, False, arch="x86_64", probe=probe)
    assert args == [("count", "%dx:s64")]


# ---------------------------------------------------------------------------
# perf-tools' option forms
def test_funcslower_perf_tools_form_threshold_and_thread(funcwork):
    tool = funcslower.FuncSlower()
    args = _args(tool, ["-H", "-P", "-L", "77", "-d", "2", funcwork + ":kt_leaf", "2500"])
    m = tool.measurement(args)
    assert m.pair.min_latency == 2500 * 1000
    assert [(f.field, f.op, f.value) for f in m.filters] == [("tid", "==", 77)]
    assert tool.threshold(args)[:2] == ("2500", "us")


def test_funccount_top_keeps_the_largest_counts(funcwork):
    import io
    from kerntrace.core.results import CountSet, Report
    tool = funccount.FuncCount()
    args = _args(tool, ["-t", "2", funcwork + ":kt_*"])
    out, err = io.StringIO(), io.StringIO()
    printer = tool.printer(args, out, err)
    counts = CountSet((EVENT_NAME,), {("kt_leaf",): 9, ("kt_recurse",): 5, ("kt_vanish",): 1})
    printer.report(Report(counts), None)
    rows = [l.split() for l in out.getvalue().splitlines()[2:]]
    assert rows == [["kt_recurse", "5"], ["kt_leaf", "9"]]


def test_with_pid_a_short_name_is_the_program_that_process_runs(usdtwork):
    import usdtworkload
    w = usdtworkload.UsdtWorkload(usdtwork, 0, 0)
    try:
        # as bcc's -p: "kt_usdtwork" (not on PATH, no library) is the process's program
        assert symbols.resolve_binary("kt_usdtwork", pid=w.pid) == os.path.realpath(usdtwork)
        assert [t.label for t in funcspec.expand("u:kt_usdtwork:*", pid=w.pid)] == [
            "guarded", "tick"]
        with pytest.raises(UsageError, match="library 'kt_usdtwork' not found"):
            symbols.resolve_binary("kt_usdtwork")
    finally:
        assert w.release() == 0
