"""USDT probe arguments: the stapsdt descriptor parser (core/usdtargs.py)
on the forms compilers write and on the real notes of this machine's
binaries (their text as readelf shows it), and what each backend makes of
them: uprobe fetch args (ftrace) and pt_regs reads in the BPF C (eBPF),
for a program compiled with its arguments in stack memory (-O0) and in
registers (-O2)."""

import os
import re
import shutil
import subprocess

import pytest

import usdtworkload
from kerntrace.core import elfsym, usdtargs
from kerntrace.core.model import INT, Count, Event, Field, Measurement, Usdt
from kerntrace.core.usdtargs import UsdtArg, UsdtArgError

needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf not installed")


@pytest.mark.parametrize("text, want", [
    ("-4@%eax", UsdtArg("", 4, True, "reg", reg="ax")),
    ("8@%rdi", UsdtArg("", 8, False, "reg", reg="di")),
    ("-8@%r12", UsdtArg("", 8, True, "reg", reg="r12")),
    ("4@%r9d", UsdtArg("", 4, False, "reg", reg="r9")),
    ("-2@%si", UsdtArg("", 2, True, "reg", reg="si")),
    ("1@%dil", UsdtArg("", 1, False, "reg", reg="di")),
    ("-1@%al", UsdtArg("", 1, True, "reg", reg="ax")),
    ("8@-16(%rbp)", UsdtArg("", 8, False, "mem", reg="bp", disp=-16)),
    ("-4@112(%rsp)", UsdtArg("", 4, True, "mem", reg="sp", disp=112)),
    ("8@(%rax)", UsdtArg("", 8, False, "mem", reg="ax", disp=0)),
    ("8@0x10(%r15)", UsdtArg("", 8, False, "mem", reg="r15", disp=16)),
    ("-4@$5", UsdtArg("", 4, True, "const", value=5)),
    ("-8@$-1", UsdtArg("", 8, True, "const", value=-1)),
    ("%rdx", UsdtArg("", 8, False, "reg", reg="dx")),       # before the size prefix
])
def test_x86_64_forms(text, want):
    assert usdtargs.parse_argument(text, "x86_64") == want


@pytest.mark.parametrize("text, want", [
    ("8@x0", UsdtArg("", 8, False, "reg", reg="x0")),
    ("-4@w1", UsdtArg("", 4, True, "reg", reg="x1")),
    ("8@[sp, 16]", UsdtArg("", 8, False, "mem", reg="sp", disp=16)),
    ("-4@[x29, -12]", UsdtArg("", 4, True, "mem", reg="x29", disp=-12)),
    ("8@[x2]", UsdtArg("", 8, False, "mem", reg="x2", disp=0)),
    ("-4@-5", UsdtArg("", 4, True, "const", value=-5)),
])
def test_aarch64_forms(text, want):
    assert usdtargs.parse_argument(text, "aarch64") == want


def test_blanks_separate_arguments_except_inside_brackets():
    assert usdtargs.split_arguments("8@[sp, 16] -4@w1  8@x0") == ["8@[sp, 16]", "-4@w1", "8@x0"]
    assert usdtargs.split_arguments("-4@-4(%rbp) -8@%rdi -4@$5") == [
        "-4@-4(%rbp)", "-8@%rdi", "-4@$5"]
    assert usdtargs.split_arguments("") == []


@pytest.mark.parametrize("text, machine, reason", [
    ("-8@8(%rax,%rdx,8)", "x86_64", "indexed memory"),
    ("8@kt_table(%rip)", "x86_64", "%rip-relative"),
    ("8@-8(%rip)", "x86_64", "%rip-relative"),
    ("8@%fs:40", "x86_64", "segment"),
    ("8@%xmm0", "x86_64", "not a general-purpose register"),
    ("1@%ah", "x86_64", "high-byte"),
    ("3@%eax", "x86_64", "size 3"),
    ("16@%rax", "x86_64", "size 16"),
    ("8@kt_global", "x86_64", "not a register"),
    ("8@[w1, 4]", "aarch64", "not a base register"),
    ("8@d0", "aarch64", "not a register"),
    ("4@%r3", "ppc64le", "of ppc64le are not read"),
])
def test_other_forms_are_refused_with_the_reason(text, machine, reason):
    with pytest.raises(UsdtArgError, match=re.escape(reason)):
        usdtargs.parse_argument(text, machine)


def test_an_argument_past_the_last_says_how_many_there_are():
    with pytest.raises(UsdtArgError, match="the probe has 2 arguments, not 3"):
        usdtargs.probe_argument("8@%rdi 8@%rsi", 2, "x86_64")


def _readelf_arguments(path):
    """[(provider, name, argument text)] per readelf -nW."""
    text = subprocess.check_output(["readelf", "-nW", path], universal_newlines=True)
    return re.findall(r"Provider: (\S+)\s+Name: (\S+)\s+Location: .*\n\s+Arguments: ?(.*)",
                      text)


@needs_readelf
def test_the_notes_of_this_machines_binaries_parse_or_say_why():
    if os.uname().machine != "x86_64":
        pytest.skip("descriptor forms checked here are x86-64's")
    checked = 0
    for path in ("/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                 "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        path = os.path.realpath(path)
        if not os.path.isfile(path) or not _readelf_arguments(path):
            continue
        ours = [(p.provider, p.name, p.arguments) for p in elfsym.ElfFile(path).usdt_probes()]
        assert ours == [(a, b, c.strip()) for a, b, c in _readelf_arguments(path)]
        for _prov, _name, text in ours:
            for desc in usdtargs.split_arguments(text):
                size = re.match(r"^(-?\d+)@", desc)
                try:
                    arg = usdtargs.parse_argument(desc, "x86_64")
                except UsdtArgError as e:
                    # refused only for the forms we do not read
                    assert re.search(r",|%rip|:|%[a-z]mm", desc.split("@", 1)[1]), (desc, e)
                    continue
                assert (arg.size, arg.signed) == (abs(int(size.group(1))),
                                                  size.group(1).startswith("-"))
                checked += 1
    if not checked:
        pytest.skip("no binary with USDT probes among python3, libstdc++ and libc")


@pytest.fixture(scope="module")
def argsprogs(tmp_path_factory):
    out = {}
    for opt in (0, 2):
        exe, why = usdtworkload.build_args(tmp_path_factory.mktemp("usdtargs"), opt)
        if exe is None:
            pytest.skip("cannot build the USDT arguments program: %s" % why)
        out[opt] = os.path.realpath(exe)
    if os.uname().machine != "x86_64":
        pytest.skip("the operands compared here are x86-64's")
    return out


@needs_readelf
def test_the_compiled_programs_notes_are_readelfs(argsprogs):
    for exe in argsprogs.values():
        ours = [(p.provider, p.name, p.arguments) for p in elfsym.ElfFile(exe).usdt_probes()]
        assert ours == [(a, b, c.strip()) for a, b, c in _readelf_arguments(exe)]
        assert ("kt", "args") in [o[:2] for o in ours]


def _args_of(exe):
    (site,) = [p for p in elfsym.ElfFile(exe).usdt_probes() if p.name == "args"]
    return [usdtargs.parse_argument(d, "x86_64")
            for d in usdtargs.split_arguments(site.arguments)]


def test_the_compiled_programs_arguments_are_typed_by_their_c_types(argsprogs):
    # int small, long big, the constant 5 (an int): in stack memory at -O0,
    # in registers at -O2 (what gcc chose; the kinds and types are the C's)
    for opt, kinds in ((0, ["mem", "mem", "const"]), (2, ["reg", "reg", "const"])):
        args = _args_of(argsprogs[opt])
        assert [a.type for a in args] == ["s32", "s64", "s32"], args
        assert [a.kind for a in args] == kinds, args
        assert args[2].value == 5
    assert all(a.reg == "bp" for a in _args_of(argsprogs[0])[:2])


def _event(exe, *names):
    return Event("args", Usdt(exe, "kt", "args"),
                 fields=[Field(n, INT, sources=("arg%d" % i,)) for i, n in names])


def test_ftrace_fetches_each_operand_with_the_notes_type(argsprogs):
    from kerntrace.backends.ftrace import probes
    for opt in (0, 2):
        exe = argsprogs[opt]
        ev = _event(exe, (0, "small"), (1, "big"), (2, "five"))
        args = dict(probes.usdt_fetch_args(ev.fields, ev.probes[0],
                                           _site(exe).arguments, "x86_64", immediate=True))
        want = {}
        for name, a in zip(("small", "big", "five"), _args_of(exe)):
            spec = ("%%%s" % a.reg if a.kind == "reg" else
                    "%+d(%%%s)" % (a.disp, a.reg) if a.kind == "mem" else "\\%d" % a.value)
            want[name] = spec + ":" + a.type
        assert args == want
        assert args["five"] == "\\5:s32"
    # a kernel without immediates (before v5.7) refuses the constant, saying so
    ev = _event(argsprogs[0], (2, "five"))
    with pytest.raises(probes.ProbeError, match="takes no immediate values"):
        probes.usdt_fetch_args(ev.fields, ev.probes[0], _site(argsprogs[0]).arguments,
                               "x86_64", immediate=False)
    ev = _event(argsprogs[0], (3, "nope"))
    with pytest.raises(probes.ProbeError, match="has 3 arguments, not 4"):
        probes.usdt_fetch_args(ev.fields, ev.probes[0], _site(argsprogs[0]).arguments,
                               "x86_64", immediate=True)


def _site(exe):
    (site,) = [p for p in elfsym.ElfFile(exe).usdt_probes() if p.name == "args"]
    return site


def test_ftrace_definition_line_reads_the_arguments(argsprogs):
    from kerntrace.backends.ftrace import backend as fbackend

    class Feats(object):
        uprobe_events = uprobe_ref_ctr = immediate = True
    b = fbackend.FtraceBackend.__new__(fbackend.FtraceBackend)
    ev = _event(argsprogs[0], (0, "small"), (1, "big"))
    rev, why = b._usdt(ev, ev.probes[0], Feats())
    assert why is None
    assert rev.probe_def.split()[2:] == ["small=-4(%bp):s32", "big=-16(%bp):s64"]
    assert dict(rev.fields) == {"small": "small", "big": "big"}


def test_bpf_reads_registers_memory_and_constants(argsprogs):
    from test_ebpf_codegen import make_plan
    from kerntrace.backends.ebpf import codegen, plan as eplan

    class Probes(object):
        def attach(self, kind):
            class Yes(object):
                ok, detail = True, ""
            return Yes()
    texts = {}
    for opt in (0, 2):
        exe = argsprogs[opt]
        ev = _event(exe, (0, "small"), (1, "big"), (2, "five"))
        path, location, fields, why = eplan.resolve_usdt(ev, ev.probes[0], Probes(), "x86_64")
        assert why is None and path == exe
        a = _args_of(exe)
        assert fields["five"].kind == "const" and fields["five"].member == 5
        assert [(fields[n].kind, fields[n].size, fields[n].signed)
                for n in ("small", "big")] == [("usdt_" + x.kind, x.size, x.signed) for x in a[:2]]
        m = Measurement([ev], Count(keys=("small", "big", "five")))
        texts[opt] = codegen.generate(m, make_plan_usdt(m, fields, path, location)).text
        assert exe not in texts[opt]
    # -O0: 4 and 8 bytes of user memory below the frame pointer
    assert re.search(r"s32 kt_usdt = 0;\s+\w+\(&kt_usdt, 4, \(void \*\)\(ctx->bp \+ \(-4LL\)\)\);",
                     texts[0]), texts[0]
    assert re.search(r"s64 kt_usdt = 0;\s+\w+\(&kt_usdt, 8, \(void \*\)\(ctx->bp \+ \(-16LL\)\)\);",
                     texts[0]), texts[0]
    # -O2: the registers' low bytes as the C type
    a = _args_of(argsprogs[2])
    assert "= (s32)ctx->%s;" % a[0].reg in texts[2]
    assert "= (s64)ctx->%s;" % a[1].reg in texts[2]
    assert "= 5LL;" in texts[0] and "= 5LL;" in texts[2]


def make_plan_usdt(m, fields, path, location):
    from kerntrace.backends.ebpf import plan as eplan
    ev = m.events[0]
    return eplan.EbpfPlan([eplan.PlannedEvent(0, ev, ev.probes[0], fields, path,
                                              location=location)])


def test_bpf_register_names_per_architecture():
    from kerntrace.backends.ebpf import codegen
    assert codegen.usdt_register("r12", "x86_64") == "ctx->r12"
    assert codegen.usdt_register("x29", "aarch64") == "ctx->regs[29]"
    assert codegen.usdt_register("sp", "aarch64") == "ctx->sp"
    with pytest.raises(ValueError):
        codegen.usdt_register("ax)", "x86_64")


def test_argdist_specifier_of_a_usdt_probe(argsprogs):
    from kerntrace.plugins.argdist import Specifier
    from kerntrace.core.errors import UsageError
    exe = argsprogs[2]
    for text in ("u:%s:kt:args():int:arg1:arg1 > -2 && pid > 0" % exe,
                 "u:%s:args():int:arg1:arg1 > -2 && pid > 0" % exe):
        s = Specifier(text, False)
        assert s.probe == Usdt(exe, "kt", "args")
        # bcc's argdist numbers USDT arguments from 1: arg1 is the model's arg0
        assert [(f.name, f.sources) for f in s.fields] == [("arg1", ("arg0",))]
        assert s.values == [("arg1", "arg1")]
    s = Specifier("u:%s:kt:args()" % exe, False)
    assert s.fields == [] and s.values == []
    for text, message in (
            ("u:%s:kt:nope():int:arg1" % exe, "has no USDT probe kt:nope"),
            ("u:%s:kt:args(int x):int:arg1" % exe, "takes no signature"),
            ("u:%s:kt:args():int:arg13" % exe, "not a field or argument name"),
            ("u:%s:kt:args():char*:arg1" % exe, "not an integer type"),
            ("u::kt:args():int:arg1", "needs a library"),
            ("u:%s:k-t:args():int:arg1" % exe, "not a USDT provider name")):
        with pytest.raises(UsageError, match=re.escape(message)):
            Specifier(text, True)


def test_aarch64_fetch_args_and_bpf_reads():
    from kerntrace.backends.ebpf import plan as eplan
    from kerntrace.backends.ftrace import probes
    probe = Usdt("/bin/x", "p", "n")
    fields = [Field("a", INT, sources=("arg0",)), Field("b", INT, sources=("arg1",)),
              Field("c", INT, sources=("arg2",))]
    notes = "8@x0 -4@[sp, 12] -4@-5"
    assert probes.usdt_fetch_args(fields, probe, notes, "aarch64", immediate=True) == [
        ("a", "%x0:u64"), ("b", "+12(%sp):s32"), ("c", "\\-5:s32")]
    srcs = [eplan.usdt_field(f, probe, notes, "aarch64") for f in fields]
    assert [(s.kind, s.member, s.size, s.signed) for s in srcs] == [
        ("usdt_reg", "x0", 8, False), ("usdt_mem", ("sp", 12), 4, True), ("const", -5, 8, True)]
