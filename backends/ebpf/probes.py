"""What this host lets the eBPF backend do, found by trying it.

Each fact is probed once per process and cached: bcc importable, privileges,
bpf() usable, BPF ring buffer, kernel headers that bcc can compile with (a
real compile of a tiny program), and which probe types really attach
(tracepoint, raw tracepoint, kprobe, uprobe: a real attach of that program,
detached at once).  Every failure -- ENOENT, EPERM, a compile error, bcc
raising because the kernel has no kprobes -- is an answer, never a crash.
"""

import os
import platform

from kerntrace.core import tracefs as core_tracefs
from kerntrace.core.errors import one_line
from kerntrace.core.model import is_identifier
from kerntrace.core.stopsignals import SignalsDeferred

from . import bccfind, bpfobject, btf, headers, progstats, sysbpf
from .quiet import CapturedOutput, first_error
from .sysbpf import Answer

# Tracepoints the compile probe may use (the first one this kernel has).
_PROBE_TRACEPOINTS = (("sched", "sched_process_fork"), ("raw_syscalls", "sys_enter"),
                      ("syscalls", "sys_enter_getppid"), ("block", "block_rq_issue"))
# Kernel functions the kprobe probe may attach to (the first one in kallsyms).
_PROBE_KFUNCS = ("do_nanosleep", "vfs_read", "ksys_read", "do_sys_openat2", "schedule")

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe/type"
KALLSYMS = "/proc/kallsyms"
KPROBE_BLACKLIST = "/sys/kernel/debug/kprobes/blacklist"

# What _compile_and_attach answers.
_ATTACH_ANSWERS = ("compile", "tracepoint", "raw_tracepoint", "kprobe", "uprobe")


class HostProbes(object):
    """Cached probes for one tracefs location (one per process)."""

    def __init__(self, tracefs_path):
        self.tracefs_path = tracefs_path
        self._cache = {}
        self._kallsyms = None
        self._btf = None            # kernel BTF, loaded by fentry()

    def _cached(self, key, fn, keep=None):
        """fn()'s Answer, remembered unless keep(answer) says it was not a
        real try (no bcc, no privileges, nothing found: those are asked
        again, so a fake filesystem in one test cannot decide for later
        ones)."""
        if key in self._cache:
            return self._cache[key]
        try:
            answer = fn()
        except Exception as e:  # a probe that crashes is an answer too
            answer = Answer(False, "%s probe failed: %s: %s" % (key, type(e).__name__,
                                                                 one_line(e)))
        if keep is None or keep(answer):
            self._cache[key] = answer
        return answer

    def _really_tried(self):
        return self.bcc().ok and self.privileges().ok

    # -- cheap facts --------------------------------------------------------
    def bcc(self):
        return bccfind.status()

    def bcc_package(self):
        """Answer: is a bcc package there?  Found without importing it (a
        run whose compiled program is cached never imports bcc); once bcc
        is imported, or when there is none, what bccfind says."""
        if not bccfind._found:
            pkg = bccfind.package_dir()
            if pkg is not None:
                return Answer(True, "bcc package at %s" % pkg)
        st = self.bcc()
        return Answer(st.ok, st.how if st.ok else st.why_not)

    def privileges(self):
        return self._cached("privileges", sysbpf.privileges)

    def bpf_syscall(self):
        return self._cached("bpf", sysbpf.probe_prog_load)

    def ringbuf(self):
        def probe():
            priv = self.privileges()
            if not priv.ok:
                return Answer(False, "not tried: %s" % priv.detail)
            # Since Linux commit 457f44363a88 ("bpf: Implement BPF ring buffer and
            # verifier support for it") (v5.8); before it, perf buffers only.
            kernel = sysbpf.probe_ringbuf()
            if not kernel.ok:
                return kernel
            mod = self.bcc().module
            if mod is not None and not hasattr(getattr(mod, "table", None), "RingBuf"):
                return Answer(False, "kernel has BPF ring buffers, this bcc cannot read them; "
                                     "perf buffers are used")
            return kernel
        return self._cached("ringbuf", probe, keep=lambda a: self.privileges().ok)

    def raw_tracepoint(self, name):
        """Whether a raw tracepoint program attaches to tracepoint `name`."""
        return self._cached("raw_tracepoint:" + name, lambda: sysbpf.probe_raw_tracepoint(name),
                            keep=lambda a: self.privileges().ok)

    def atomic_fetch(self):
        """Whether BPF atomics may return the old value (else only add)."""
        def probe():
            ok = sysbpf.has_atomic_fetch()
            return Answer(ok, "atomic fetch-and-add %s" % ("available" if ok else "missing"))
        return self._cached("atomic_fetch", probe, keep=lambda a: self.privileges().ok)

    def read_kernel_helper(self):
        """Whether bpf_probe_read_kernel exists (else bpf_probe_read)."""
        def probe():
            ok = sysbpf.has_helper(sysbpf.BPF_FUNC_probe_read_kernel)
            return Answer(ok, "bpf_probe_read_kernel %s" % ("available" if ok else
                                                            "missing: bpf_probe_read is used"))
        return self._cached("read_kernel", probe)

    def skip_counter(self):
        """Whether bpf_prog_info tells how often the kernel skipped a
        program (cheap: one program load)."""
        return self._cached("skip_counter", progstats.probe_recursion_misses,
                            keep=lambda a: self.privileges().ok)

    def skips_counted(self):
        """Whether skipped runs of tracepoint programs are really counted:
        provoked with bcc (about half a second; doctor asks, runs do not)."""
        def probe():
            field = self.skip_counter()
            if not field.ok:
                return Answer(False, "the kernel cannot tell how often it skipped a BPF"
                              " program: %s; eBPF counts may be short with no lost count"
                              % field.detail)
            bcc = self.bcc()
            if not bcc.ok:
                return Answer(False, "not tried: bcc unavailable: %s" % bcc.why_not)
            return progstats.probe_skips_counted(bcc.module)
        return self._cached("skips_counted", probe, keep=lambda a: self._really_tried())

    def headers(self):
        if "headers" in self._cache:
            return self._cache["headers"]
        h = headers.locate()
        if h.found:
            self._cache["headers"] = h
        return h

    def fentry(self):
        """Whether fentry/fexit programs (bcc's KFUNC_PROBE/KRETFUNC_PROBE)
        attach to kernel functions here: what bcc's BPF.support_kfunc()
        asks (x86_64, kernel BTF, bpf_trampoline_link_prog in kallsyms),
        then a real load and attach of one (sysbpf.probe_fentry)."""
        def probe():
            priv = self.privileges()
            if not priv.ok:
                return Answer(False, "not tried: %s" % priv.detail)
            if platform.machine() != "x86_64":
                return Answer(False, "bcc has fentry (kfunc) programs on x86_64 only")
            if not os.path.exists(btf.VMLINUX):
                return Answer(False, "no kernel BTF (%s)" % btf.VMLINUX)
            if not self.kernel_function("bpf_trampoline_link_prog").ok:
                return Answer(False, "no BPF trampoline (bpf_trampoline_link_prog not in %s)"
                              % KALLSYMS)
            try:
                types = btf.Btf.load()
            except (IOError, OSError, btf.BtfError) as e:
                return Answer(False, "kernel BTF unreadable: %s" % one_line(e))
            self._btf = types
            for name in _PROBE_KFUNCS:
                tid = types.find(btf.FUNC, name)
                if tid is not None and self.kernel_function(name).ok:
                    return sysbpf.probe_fentry(tid, name)
            return Answer(False, "no kernel function to try fentry on (%s)"
                          % ", ".join(_PROBE_KFUNCS))
        return self._cached("fentry", probe, keep=lambda a: self.privileges().ok)

    def fentry_function(self, name):
        """Whether an fentry program attaches to kernel function `name`
        (fentry() works here): a text symbol with a BTF FUNC (a function
        the compiler inlined everywhere, or that has no BTF, has none)."""
        fn = self.kernel_function(name)
        if not fn.ok:
            return fn
        if self._btf is None or self._btf.find(btf.FUNC, name) is None:
            return Answer(False, "no BTF for kernel function %s (fentry needs it)" % name)
        return Answer(True, "fentry on %s (BTF FUNC)" % name)

    def kprobe_interface(self):
        """Whether the kernel has kprobes at all (kprobe_events or the kprobe
        PMU), without loading anything."""
        return self._probe_interface("kprobe", KPROBE_PMU)

    def uprobe_interface(self):
        return self._probe_interface("uprobe", UPROBE_PMU)

    def _probe_interface(self, kind, pmu):
        def probe():
            ev = self.tracefs_path and os.path.exists(os.path.join(self.tracefs_path,
                                                                   kind + "_events"))
            if ev or os.path.exists(pmu):
                return Answer(True, "%s_events" % kind if ev else "%s PMU" % kind)
            return Answer(False, "%ss not configured in this kernel (no %s_events, no %s PMU)"
                          % (kind, kind, kind))
        return self._cached(kind + "_interface", probe)

    def kernel_function(self, name):
        """Whether a kprobe on kernel function `name` may work: it is a text
        symbol in kallsyms and not on the kprobe blacklist."""
        if self._kallsyms is None:
            syms = set()
            try:
                with open(KALLSYMS) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3 and parts[1] in ("t", "T"):
                            syms.add(parts[2])
            except (IOError, OSError):
                pass
            black = set()
            text = core_tracefs.read_text(KPROBE_BLACKLIST) or ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    black.add(parts[-1])
            self._kallsyms = (syms, black)
        syms, black = self._kallsyms
        if not syms:
            self._kallsyms = None       # unreadable now: ask again next time
        if name in black:
            return Answer(False, "%s is on the kprobe blacklist" % name)
        if name not in syms:
            return Answer(False, "no kernel function %s in %s" % (name, KALLSYMS))
        return Answer(True, "%s in %s" % (name, KALLSYMS))

    # -- the real compile and attach probe ----------------------------------
    def _probe_tracepoint(self):
        if not self.tracefs_path:
            return None
        for cat, name in _PROBE_TRACEPOINTS:
            fmt = core_tracefs.read_format(self.tracefs_path, cat, name)
            if fmt is None:
                continue
            fields = [f.name for f in fmt.payload_fields()
                      if is_identifier(f.name) and not f.data_loc and f.array_len is None
                      and not f.name.startswith("__")]
            if fields:
                return cat, name, fields[0]
        return None

    def _compile_and_attach(self):
        """Compile one tiny program with a function per probe type, try to
        attach each, detach everything.  Returns {name: Answer}."""
        bcc = self.bcc()
        if not bcc.ok:
            why = Answer(False, "bcc unavailable: %s" % bcc.why_not)
            return {k: why for k in _ATTACH_ANSWERS}
        priv = self.privileges()
        if not priv.ok:
            why = Answer(False, "not tried: %s" % priv.detail)
            return {k: why for k in _ATTACH_ANSWERS}
        tp = self._probe_tracepoint()
        lines = []
        if tp:
            lines.append("int kt_probe_tp(struct tracepoint__%s__%s *args)\n"
                         "{\n    return args->%s == 0;\n}\n" % tp)
        lines.append("int kt_probe_rawtp(void *ctx)\n{\n    return 0;\n}\n")
        lines.append("int kt_probe_kprobe(struct pt_regs *ctx)\n{\n    return 0;\n}\n")
        lines.append("int kt_probe_uprobe(struct pt_regs *ctx)\n{\n    return 0;\n}\n")
        text = "\n".join(lines)
        # A signal during the trial attaches is delivered once all is undone.
        with SignalsDeferred():
            try:
                b = bpfobject.load(bcc.module, text)
            except bpfobject.LoadError as e:
                reason = str(e)
                hdr = self.headers()
                if not hdr.found:
                    reason = hdr.describe()
                fail = Answer(False, "bcc cannot compile: %s" % reason)
                return {k: fail for k in _ATTACH_ANSWERS}
            try:
                return self._attach_each(b, tp)
            finally:
                bpfobject.unload(b)  # a probe program: its errors are no answer

    def _attach_each(self, b, tp):
        out = {"compile": Answer(True, "bcc compiles with " + self.headers().describe())}
        out["tracepoint"] = self._try_attach(
            b, lambda: b.attach_tracepoint(tp=("%s:%s" % tp[:2]).encode(),
                                           fn_name=b"kt_probe_tp"),
            "tracepoint %s:%s" % tp[:2]) if tp else Answer(
            False, "no known tracepoint to try (tracefs unavailable?)")
        raw_name = tp[1] if tp else "sched_process_fork"
        out["raw_tracepoint"] = self._try_attach(
            b, lambda: b.attach_raw_tracepoint(tp=raw_name.encode(), fn_name=b"kt_probe_rawtp"),
            "raw tracepoint %s" % raw_name)
        kif = self.kprobe_interface()
        if not kif.ok:
            out["kprobe"] = kif
        else:
            func = None
            for name in _PROBE_KFUNCS:
                if self.kernel_function(name).ok:
                    func = name
                    break
            out["kprobe"] = self._try_attach(
                b, lambda: b.attach_kprobe(event=func.encode(), fn_name=b"kt_probe_kprobe"),
                "kprobe %s" % func) if func else Answer(
                False, "no kernel function to try a kprobe on in %s" % KALLSYMS)
        uif = self.uprobe_interface()
        if not uif.ok:
            out["uprobe"] = uif
        else:
            out["uprobe"] = self._try_attach(
                b, lambda: b.attach_uprobe(name=b"c", sym=b"getppid",
                                           fn_name=b"kt_probe_uprobe"),
                "uprobe on libc getppid")
        return out

    @staticmethod
    def _try_attach(b, attach, what):
        cap = CapturedOutput()
        try:
            with cap:
                attach()
        except Exception as e:
            return Answer(False, "%s failed: %s" % (what, first_error(cap.text, one_line(e))))
        return Answer(True, "%s attached" % what)

    def _attach_results(self):
        if "attach" in self._cache:
            return self._cache["attach"]
        try:
            results = self._compile_and_attach()
        except Exception as e:  # never let a probe crash the caller
            fail = Answer(False, "probe failed: %s: %s" % (type(e).__name__, one_line(e)))
            results = {k: fail for k in ("compile", "tracepoint", "raw_tracepoint", "kprobe",
                                         "uprobe")}
        # Kept once a real compile happened on a tracefs that has our test
        # tracepoint; otherwise asked again next time.
        if self._really_tried() and results["compile"].ok and self._probe_tracepoint():
            self._cache["attach"] = results
        return results

    def compile(self):
        """Whether bcc really compiles a program here: a real compile (doctor)."""
        return self._attach_results()["compile"]

    def compiler(self):
        """Whether bcc should compile here, for check(): what makes bcc fail
        (no bcc, no headers it can use) found without compiling.  A check
        must not cost a compile (most of a start's time and memory): the
        run's own compile is the real test, and a start that fails hands
        over to the next backend (runner._start).  The answer of a real
        compile probe is used when this process already made one."""
        if "attach" in self._cache:
            return self._cache["attach"]["compile"]
        bcc = self.bcc_package()
        if not bcc.ok:
            return Answer(False, "bcc unavailable: %s" % bcc.detail)
        hdr = self.headers()
        if not hdr.found:
            return Answer(False, "bcc cannot compile: %s" % hdr.describe())
        return Answer(True, "bcc compiles with " + hdr.describe())

    def attach(self, kind):
        """Answer for probe type kind: tracepoint, raw_tracepoint, kprobe, uprobe.
        Tracepoint kinds are answered without bcc (no compile, no attach
        whose detach waits for an RCU grace period); kprobes and uprobes by
        a real compile and attach."""
        if kind == "tracepoint":
            return self._cached("attach:tracepoint", self._tracepoint_programs,
                                keep=lambda a: self.privileges().ok)
        if kind == "raw_tracepoint":
            tp = self._probe_tracepoint()
            return self.raw_tracepoint(tp[1] if tp else "sched_process_fork")
        if kind in ("kprobe", "uprobe"):
            cheap = self._cached("attach:" + kind, lambda: self._probe_programs(kind),
                                 keep=lambda a: self.privileges().ok)
            if cheap.detail is not None:
                return cheap
        return self._attach_results()[kind]

    def _probe_programs(self, kind):
        """kprobe/uprobe programs attach when the kernel has that probe
        interface and BPF_PROG_TYPE_KPROBE loads (CONFIG_BPF_EVENTS builds
        their perf_event attach too).  Not loading may only mean a kernel
        that wants kern_version (before Linux commit 6c4fc209fcf9 ("bpf:
        remove useless version check for prog load") (v5.0)): then the
        detail is None and the real compile-and-attach probe answers."""
        iface = self.kprobe_interface() if kind == "kprobe" else self.uprobe_interface()
        if not iface.ok:
            return iface
        priv = self.privileges()
        if not priv.ok:
            return Answer(False, "not tried: %s" % priv.detail)
        if not sysbpf.probe_kprobe_prog_load():
            return Answer(False, None)
        return Answer(True, "%s programs load and the kernel has %s: they attach"
                      % (kind, iface.detail))

    def attach_tried(self, kind):
        """Answer for probe type kind from a real compile and attach of
        each kind (doctor: what the host really does)."""
        return self._attach_results()[kind]

    def _tracepoint_programs(self):
        """A tracepoint program loads, so it attaches: the kernel registers
        BPF_PROG_TYPE_TRACEPOINT only with CONFIG_BPF_EVENTS
        (include/linux/bpf_types.h), which also builds the perf_event
        PERF_EVENT_IOC_SET_BPF attach (kernel/trace/bpf_trace.c)."""
        priv = self.privileges()
        if not priv.ok:
            return Answer(False, "not tried: %s" % priv.detail)
        loads = self.bpf_syscall()
        if not loads.ok:
            return loads
        return Answer(True, "tracepoint programs load (BPF_PROG_TYPE_TRACEPOINT, so "
                            "CONFIG_BPF_EVENTS): they attach")


_by_tracefs = {}


def for_host(host):
    """The process-wide HostProbes for this host's tracefs."""
    path = host.tracefs_path()
    if path not in _by_tracefs:
        _by_tracefs[path] = HostProbes(path)
    return _by_tracefs[path]
