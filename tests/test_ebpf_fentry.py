"""fentry/fexit programs (bcc's KFUNC_PROBE / KRETFUNC_PROBE) for kernel
functions, without a kernel that allows them: this machine refuses fentry
attach (EPERM), so the choice, the generated C and the session's attach step
are checked with fake probe answers and a fake bcc object; the live test
(test_fentry_live.py) checks what this kernel really answers."""

import pytest

from kerntrace.backends.ebpf import codegen, session as esession
from kerntrace.backends.ebpf import plan as eplan
from kerntrace.backends.ebpf.sysbpf import Answer
from kerntrace.core.errors import EnableError
from kerntrace.core.model import (EVENT_NAME, LATENCY, Count, Event, Field, Histogram,
                                  KernelFunction, Measurement, Pair)

from test_ebpf_codegen import AllAttach, FakeHost, STUB_HEADER, compile_c, needs_cc

EPERM = Answer(False, "fentry on do_nanosleep does not attach: EPERM (Operation not permitted)")
NO_KPROBES = Answer(False, "kprobes not configured in this kernel (no kprobe_events, no "
                           "kprobe PMU)")


class Fentry(AllAttach):
    """A host with BTF and BPF trampolines; `btf` the functions with BTF."""

    def __init__(self, fentry=Answer(True, "fentry attaches"), kprobes=True,
                 btf=("vfs_read", "vfs_write", "do_nanosleep")):
        self.answer, self.kprobes, self.btf = fentry, kprobes, btf

    def fentry(self):
        return self.answer

    def fentry_function(self, name):
        return Answer(name in self.btf, "BTF of %s" % name)

    def attach(self, kind):
        if kind == "kprobe" and not self.kprobes:
            return NO_KPROBES
        return AllAttach.attach(self, kind)


def funccount(*names):
    return Measurement([Event(n, KernelFunction(n)) for n in names],
                       Count(keys=(EVENT_NAME,)))


def funclatency(name="do_nanosleep"):
    return Measurement([Event("entry", KernelFunction(name)),
                        Event("return", KernelFunction(name, ret=True))],
                       Histogram(LATENCY, unit="usecs"),
                       pair=Pair("entry", "return", key=("tid",)))


def planned(measurement, probes):
    out = []
    for i, ev in enumerate(measurement.events):
        pe, why = eplan.resolve_event(i, ev, FakeHost(), probes)
        assert pe is not None, why
        out.append(pe)
    return eplan.EbpfPlan(out)


# Like bcc's BPF_PROG: the program's ctx is the array of the arguments.
KFUNC_STUB = """
#define KFUNC_PROBE(f) int kfunc__##f(unsigned long long *ctx)
#define KRETFUNC_PROBE(f) int kretfunc__##f(unsigned long long *ctx)
"""


def test_kernel_function_counts_use_fentry_where_it_attaches():
    pe, why = eplan.resolve_event(0, Event("vfs_read", KernelFunction("vfs_read")),
                                  FakeHost(), Fentry())
    assert pe.fentry and why == []


def test_arguments_stay_on_kprobes():
    ev = Event("r", KernelFunction("vfs_read"), fields=[Field("count", sources=("arg2",))])
    pe, _why = eplan.resolve_event(0, ev, FakeHost(), Fentry())
    assert not pe.fentry


def test_a_function_without_btf_falls_back_to_a_kprobe():
    pe, _ = eplan.resolve_event(0, Event("x", KernelFunction("inlined_fn")), FakeHost(),
                                Fentry())
    assert not pe.fentry


def test_fentry_refused_and_no_kprobes_gives_one_reason():
    pe, why = eplan.resolve_event(0, Event("vfs_read", KernelFunction("vfs_read")),
                                  FakeHost(), Fentry(fentry=EPERM, kprobes=False))
    assert pe is None
    assert why == ["k:vfs_read: fentry: %s; kprobe: %s" % (EPERM.detail, NO_KPROBES.detail)]


@needs_cc
def test_funccount_program_is_kfunc_probes_bcc_attaches_itself(tmp_path):
    m = funccount("vfs_read", "vfs_write")
    prog = codegen.generate(m, planned(m, Fentry()))
    assert "KFUNC_PROBE(vfs_read)\n{" in prog.text and "KFUNC_PROBE(vfs_write)\n{" in prog.text
    assert "pt_regs" not in prog.text
    assert [(a.kind, a.fn_name) for a in prog.attachments] == [
        ("fentry", "kfunc__vfs_read"), ("fentry", "kfunc__vfs_write")]
    compile_c(tmp_path, STUB_HEADER + KFUNC_STUB + prog.text)


@needs_cc
def test_funclatency_program_pairs_fentry_with_fexit(tmp_path):
    m = funclatency()
    prog = codegen.generate(m, planned(m, Fentry()))
    assert "KFUNC_PROBE(do_nanosleep)\n{" in prog.text
    assert "KRETFUNC_PROBE(do_nanosleep)\n{" in prog.text
    assert [a.kind for a in prog.attachments] == ["fentry", "fexit"]
    compile_c(tmp_path, STUB_HEADER + KFUNC_STUB + prog.text)


class FakeBPF(object):
    """What a bcc BPF object holds after loading a program with kfunc__ /
    kretfunc__ functions: bcc attached them itself (_trace_autoload)."""

    def __init__(self, entry=(), exit=()):
        self.kfunc_entry_fds = {n.encode(): 10 + i for i, n in enumerate(entry)}
        self.kfunc_exit_fds = {n.encode(): 20 + i for i, n in enumerate(exit)}
        self.kprobe_fds, self.uprobe_fds = {}, {}

    def attach_kprobe(self, **kw):
        raise AssertionError("a kfunc program must not be attached as a kprobe")

    def num_open_kprobes(self):
        return 0


def _session(bpf):
    s = esession.EbpfSession.__new__(esession.EbpfSession)
    s._bpf = bpf
    s._probe_names = []
    s._loaded_as = {}
    return s


def test_the_attach_step_checks_bcc_attached_kfuncs_itself():
    m = funclatency()
    prog = codegen.generate(m, planned(m, Fentry()))
    s = _session(FakeBPF(entry=["kfunc__do_nanosleep"], exit=["kretfunc__do_nanosleep"]))
    for att in prog.attachments:
        s._attach(att)          # no second attach: bcc did it at load
    s = _session(FakeBPF(entry=["kfunc__do_nanosleep"]))
    with pytest.raises(EnableError) as e:
        for att in prog.attachments:
            s._attach(att)
    assert "kr:do_nanosleep (event return) did not attach (fentry)" in str(e.value)


def _host_probes(monkeypatch, kallsyms):
    from kerntrace.backends.ebpf import probes as eprobes
    p = eprobes.HostProbes(None)
    monkeypatch.setattr(p, "privileges", lambda: Answer(True, "root"))
    monkeypatch.setattr(eprobes.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(p, "kernel_function", lambda n: Answer(n in kallsyms, n))
    return p


def test_fentry_detection_without_btf_says_so(monkeypatch, tmp_path):
    from kerntrace.backends.ebpf import btf
    monkeypatch.setattr(btf, "VMLINUX", str(tmp_path / "vmlinux"))
    p = _host_probes(monkeypatch, {"bpf_trampoline_link_prog"})
    assert (p.fentry().ok, p.fentry().detail) == (False, "no kernel BTF (%s)" % btf.VMLINUX)


def test_fentry_detection_without_trampoline_says_so(monkeypatch, tmp_path):
    from kerntrace.backends.ebpf import btf
    (tmp_path / "vmlinux").write_bytes(b"")
    monkeypatch.setattr(btf, "VMLINUX", str(tmp_path / "vmlinux"))
    p = _host_probes(monkeypatch, set())
    assert p.fentry().detail == ("no BPF trampoline (bpf_trampoline_link_prog not in "
                                 "/proc/kallsyms)")


def test_the_attach_step_knows_bcc_module_kfunc_names():
    # bcc releases with kernel-module kfuncs expand KFUNC_PROBE(F) to
    # kfunc__vmlinux__F
    m = funclatency()
    prog = codegen.generate(m, planned(m, Fentry()))
    s = _session(FakeBPF(entry=["kfunc__vmlinux__do_nanosleep"],
                         exit=["kretfunc__vmlinux__do_nanosleep"]))
    for att in prog.attachments:
        s._attach(att)
    assert s._loaded_as == {"kfunc__do_nanosleep": b"kfunc__vmlinux__do_nanosleep",
                            "kretfunc__do_nanosleep": b"kretfunc__vmlinux__do_nanosleep"}
