"""The eBPF backend: bcc compiles generated C; aggregation happens in the
kernel.  Preferred over ftrace wherever check() says it can run."""

from kerntrace.core.backend import (Backend, Capability, RunOptions, Verdict, check_plan_options,
                                    members_left_out, probe_choice)
from kerntrace.core.errors import one_line
from kerntrace.core.model import Tracepoint

from . import NAME, PREFERENCE, bccfind
from . import plan as eplan
from . import buffers, codegen, crawblock, objcache, probes, tracefs_probes
from .session import EbpfSession

_PROBE_KINDS = ("tracepoint", "raw_tracepoint", "kprobe", "uprobe")


def _lockdown_blocks(lock):
    # lockdown=confidentiality forbids reading kernel memory from BPF
    # (bpf_probe_read_kernel and friends); integrity only forbids writes.
    return lock == "confidentiality"


def _btf_block_fields():
    """Whether block tracepoints that read fields can be raw tracepoint
    programs here (crawblock.py), or why they stay tracepoint programs."""
    reads = crawblock.reads_for(["block_rq_issue", "block_rq_complete"])
    bad = ["%s: %s" % (n, r) for n, r in sorted(reads.items()) if isinstance(r, str)]
    if bad:
        return Capability("btf_block_fields", False, "block tracepoint programs read the "
                          "format-file record (the kernel may skip them while another BPF "
                          "program runs): " + "; ".join(bad))
    return Capability("btf_block_fields", True, "block fields read in raw tracepoint "
                      "programs at kernel BTF offsets (skipped only on self-recursion; events "
                      "the kernel runs no BPF program for are counted as lost)")


class EbpfBackend(Backend):
    name = NAME
    preference = PREFERENCE

    # -- what the host offers -------------------------------------------------
    def capabilities(self, host):
        p = probes.for_host(host)
        caps = []
        b = p.bcc()
        caps.append(Capability("bcc", b.ok, b.how if b.ok else b.why_not))
        priv = p.privileges()
        caps.append(Capability("privileges", priv.ok, priv.detail))
        lock = host.lockdown()
        blocks = _lockdown_blocks(lock.mode)
        caps.append(Capability("lockdown", not blocks, "lockdown=%s (%s)%s" % (
            lock.mode, lock.how, ": BPF may not read kernel memory" if blocks else "")))
        bpf = p.bpf_syscall()
        caps.append(Capability("bpf_syscall", bpf.ok, bpf.detail))
        comp = p.compile()
        caps.append(Capability("kernel_headers", comp.ok,
                               p.headers().describe() if comp.ok else comp.detail))
        for kind in _PROBE_KINDS:
            a = p.attach_tried(kind)
            caps.append(Capability(kind, a.ok, a.detail))
            if kind == "kprobe":
                f = p.fentry()
                caps.append(Capability("fentry", f.ok, f.detail))
        ring = p.ringbuf()
        caps.append(Capability("ring_buffer", ring.ok, ring.detail))
        skips = p.skips_counted()
        caps.append(Capability("skipped_runs", skips.ok, skips.detail))
        caps.append(_btf_block_fields())
        return caps

    # -- can it run this measurement here? -----------------------------------------
    def check(self, measurement, host, options=None):
        try:
            return self._check(measurement, host, options or RunOptions())
        except Exception as e:  # a probe that crashes is an answer, never a crash
            return Verdict(self.name, False, ["probe failed: %s: %s"
                                              % (type(e).__name__, one_line(e, ""))])

    def _check(self, measurement, host, options):
        p = probes.for_host(host)
        reasons = []
        b = p.bcc_package()
        if not b.ok:
            reasons.append("bcc: %s" % b.detail)
        priv = p.privileges()
        if not priv.ok:
            reasons.append(priv.detail)
        if _lockdown_blocks(host.lockdown().mode):
            reasons.append("kernel lockdown=confidentiality: BPF may not read kernel memory")
        if reasons:
            return Verdict(self.name, False, reasons)
        bpf = p.bpf_syscall()
        if not bpf.ok:
            return Verdict(self.name, False, [bpf.detail])
        comp = p.compiler()
        if not comp.ok:
            # bcc itself would have said so on stdout (quiet.py keeps it off).
            return Verdict(self.name, False, [comp.detail],
                           notice="the eBPF backend cannot run: %s" % comp.detail)
        planned = []
        choices = []
        for i, event in enumerate(measurement.events):
            pes, why, chosen, left_out = eplan.resolve_events(i, event, host, p)
            if pes is None:
                reasons.append("event %s: %s" % (event.name, "; ".join(why)))
            else:
                planned.extend(pes)
                choices.append(probe_choice(event, chosen, why))
                choices.append(members_left_out(event, left_out))
        seen = {}
        for pe in planned:
            other = seen.get(pe.probe)
            if other is not None:
                reasons.append("events %s and %s use the same probe %s"
                               % (other, pe.name, pe.probe.describe()))
            seen[pe.probe] = pe.name
        if reasons:
            return Verdict(self.name, False, reasons)
        notes = [c for c in choices if c]
        # (events that read arguments are kprobes anyway: nothing to say)
        kprobed = [pe.name for pe in planned if pe.kind in ("kprobe", "kretprobe")
                   and not pe.fentry and not pe.logical.fields]
        if kprobed:
            fentry = p.fentry()
            notes.append("kprobes, not fentry, for %s: %s" % (
                ", ".join(kprobed), fentry.detail if not fentry.ok else
                "no BTF for the function"))
        hdr = p.headers()
        if hdr.matches is False:
            notes.append(hdr.describe())
        if not p.skip_counter().ok:
            notes.append("lost counts miss the events the kernel skips: %s"
                         % p.skip_counter().detail)
        raw_reads = {}
        for name, r in sorted(crawblock.reads_for(
                [pe.probe.name for pe in planned if pe.kind == "tracepoint" and pe.raw_ok
                 and pe.probe.category == "block"]).items()):
            if isinstance(r, str):
                notes.append("%s: tracepoint program, not raw: %s" % (name, r))
            else:
                raw_reads[name] = r
        # (Only records go through a buffer: asking whether bcc reads ring
        # buffers would import bcc, which a cached program never needs.)
        records = measurement.aggregate.kind == "records"
        ep = eplan.EbpfPlan(planned, output="ringbuf" if records and p.ringbuf().ok else "perf",
                            helpers=eplan.MODERN_HELPERS if p.read_kernel_helper().ok
                            else eplan.LEGACY_HELPERS, notes=notes,
                            atomic_fetch=bool(measurement.pair and measurement.pair.shared)
                            and p.atomic_fetch().ok, raw_reads=raw_reads)
        try:
            # Where bcc's leftover probe definitions are removed and
            # tracepoint ids read; never a reason not to run.
            tracefs_path = host.tracefs_path()
        except Exception:
            tracefs_path = None
        try:
            plan = run_plan(measurement, ep, options, tracefs_path, p.headers())
        except (ValueError, KeyError, TypeError) as e:
            return Verdict(self.name, False, ["cannot generate the BPF program: %s" % e])
        if plan.cache is None or plan.cache.entry is None:
            b = p.bcc()        # it compiles: bcc must import
            if not b.ok:
                return Verdict(self.name, False, ["bcc: %s" % b.why_not])
        for a in plan.program.attachments:
            reads = (raw_reads.get(a.event.probe.name)
                     if isinstance(a.event.probe, Tracepoint) else None)
            if reads is not None and not a.raw:
                notes.append("%s: tracepoint program: %s not computed in raw programs" % (
                    a.event.probe.name, ", ".join(sorted(
                        n for n, fs in a.event.fields.items()
                        if not reads.can_read(fs.member, fs.size)))
                    or "a second handler"))
        raw = [a.event.probe.name for a in plan.program.attachments if a.raw]
        if raw:
            # Skipped only when itself running, not whenever another BPF
            # program runs on the CPU (crawblock.py).
            notes.append("raw tracepoint%s %s (%s)" % (
                "s" if len(raw) > 1 else "", ", ".join(raw),
                "fields from struct request at kernel BTF offsets"
                if any(n in raw_reads for n in raw) else "no event fields read"))
        return Verdict(self.name, True, notes, plan, choices=choices)

    # -- run it ----------------------------------------------------------------------
    def open(self, measurement, verdict, options=None):
        """The session of verdict.plan: it loads plan.program.text."""
        check_plan_options(verdict.plan.plan_key, options)
        cache = verdict.plan.cache
        # A cached compiled object needs no bcc (nor its memory).
        bcc = None if cache is not None and cache.entry is not None else bccfind.import_bcc()
        return EbpfSession(measurement, verdict.plan, bcc, options)

    def cleanup_stale(self, host, stderr=None, problems=None, notes=None):
        return tracefs_probes.cleanup_stale(host, stderr=stderr, problems=problems, notes=notes)


def run_plan(measurement, probe_plan, options, tracefs_path, headers_info=None):
    """The RunPlan for an EbpfPlan: the program is generated here, once,
    for the buffer sizes the options ask for, and looked up in the cache
    of compiled objects (given the headers bcc would compile with)."""
    sizes = buffers.BufferSizes(options.buffer_kb)
    program = codegen.generate(measurement, probe_plan, sizes.ringbuf_pages)
    cache = cache_slot(program, tracefs_path, headers_info) if headers_info else None
    return eplan.RunPlan(probe_plan, program, sizes, tracefs_path, options.plan_key(), cache)


def cacheable(program):
    """Whether loadobj can run the program's compiled object: aggregated in
    maps, attached only to tracepoints and raw tracepoints."""
    return program.kind in ("histogram", "count") and all(
        a.kind in objcache.ATTACHABLE for a in program.attachments)


def cache_slot(program, tracefs_path, headers_info):
    """The CacheSlot of the program (with the cached object when there is
    one), or None when it is not to be cached here."""
    directory = objcache.directory()
    if directory is None or not cacheable(program) or not tracefs_path:
        return None
    pkg = bccfind.package_dir()
    if pkg is None:
        return None
    key = objcache.key(program.text, objcache.kernel_identity(),
                       objcache.headers_identity(headers_info),
                       objcache.tracepoint_formats(tracefs_path, [
                           (a.event.probe.category, a.event.probe.name)
                           for a in program.attachments if a.kind == "tracepoint"]),
                       objcache.bcc_package_identity(pkg))
    return eplan.CacheSlot(directory, key, objcache.read(directory, key))
