"""A running eBPF measurement.

    EbpfSession(measurement, plan, bcc_module, options)
        built from check()'s RunPlan without touching the kernel:
        program_text() is plan.program.text, the C that start() compiles
    start()     compile that text with bcc, attach every planned probe (verified: the
                probe must show up in bcc's open-probe tables), open the
                perf/ring buffer for records
    wait(t)     poll the buffer (records) or sleep
    collect()   Report for the interval: maps read-and-cleared (maps.py), the
                pair start map left alone (in-flight starts survive), lost,
                unmatched and dropped-start counts as deltas of never-cleared
                counters; runs of our programs the kernel skipped count as
                lost (progstats.py)
    close()     detach everything, free maps and programs (bcc's cleanup),
                remove any tracefs probe definitions bcc left; idempotent,
                safe after a partial start
"""

import ctypes
import re
import sys
import time

from kerntrace.core import results
from kerntrace.core.backend import Session
from kerntrace.core.errors import EnableError, KerntraceError, one_line
from kerntrace.core.model import EVENT_NAME, KSTACK
from kerntrace.core.stopsignals import SignalsLatched

from . import (bccfind, bpfobject, codegen, loadobj, objcache, perfhook, progstats, recdecode,
               tracefs_probes)
from .maps import HashDrainer, MapError
from .quiet import CapturedOutput, first_error


_NON_IDENT = re.compile(b"[^a-zA-Z0-9_]")


class EbpfSession(Session):
    def __init__(self, measurement, plan, bcc_module, options=None):
        self.measurement = measurement
        self.plan = plan                # plan.RunPlan
        self.bcc = bcc_module
        self.options = options
        self.buffers = plan.buffers
        self.program = plan.program
        self._tracefs = plan.tracefs_path
        self._bpf = None
        self._drainers = {}
        self._raw = []                  # bytes of the records not yet decoded
        self._decode = None
        self._perf_lost = 0
        self._stats_seen = [0, 0, 0]
        self._skips = None
        self._hook = None
        self._deferred = None
        self._buffer = None
        self._probe_names = []
        self._loaded_as = {}            # fn_name -> the name bcc loaded it under
        self._stacks = {}
        self._closed = False

    def program_text(self):
        return self.program.text

    # -- start ---------------------------------------------------------------
    def start(self):
        if self._bpf is not None:
            return
        if self._closed:
            raise KerntraceError("ebpf: session already closed")
        # (Session.__enter__ defers stop signals: an attach opens its fd
        # before bcc records it.)
        self._compile()
        for att in self.program.attachments:
            self._attach(att)
        for att in self.program.sentinels:
            self._attach(att)
        self._check_layouts()
        self._skips = progstats.MissCounter(
            self._bpf.funcs[self._loaded_as.get(att.fn_name, att.fn_name.encode())].fd
            for att in self.program.attachments)
        self._hook = self._open_hook_counter()
        if self.program.kind == "records":
            self._open_buffer()

    def _open_hook_counter(self):
        """Counters of the events our tracepoint programs were not run for
        (perfhook.py), opened once they are attached; None when there are
        none or they cannot be opened."""
        # (a raw tracepoint program's sentinel is a tracepoint program)
        filters = {}
        for att in self.program.attachments + self.program.sentinels:
            if att.kind == "tracepoint":
                probe = (att.event.probe.category, att.event.probe.name)
                # Handlers of one probe with different filters: count all.
                filters[probe] = att.hook_filter if filters.get(probe, att.hook_filter) == \
                    att.hook_filter else None
        if not filters or not self._tracefs:
            return None
        return perfhook.HookCounter.open(self._tracefs, sorted(
            ((c, n, f) for (c, n), f in filters.items()), key=lambda p: p[:2]))

    def _compile(self):
        """self._bpf: the cached compiled object loaded (no bcc, no compile),
        else bcc's compile of the program text, then kept in the cache."""
        cache = self.plan.cache
        if cache is not None and cache.entry is not None:
            try:
                self._bpf = loadobj.LoadedObject(cache.entry, self._tracefs)
                return
            except (loadobj.LoadError, OSError) as e:
                # Compiled afresh below (and the entry replaced).
                self._say("the cached compiled program did not load (%s); compiling it"
                          % one_line(e))
        if self.bcc is None:
            self.bcc = bccfind.import_bcc()
            if self.bcc is None:
                raise EnableError("ebpf: bcc: %s" % bccfind.status().why_not)
        try:
            self._bpf = bpfobject.load(self.bcc, self.program.text)
        except bpfobject.LoadError as e:
            raise EnableError("ebpf: bcc could not compile the BPF program: %s" % e)
        if cache is not None:
            self._keep(cache)

    def _keep(self, cache):
        """Store the object just compiled for the next run (best effort)."""
        try:
            # (the sentinels too: a cached run attaches them as well)
            entry = loadobj.capture(self._bpf, [(a.fn_name, a.kind) for a in
                                                self.program.attachments +
                                                self.program.sentinels])
        except Exception as e:  # libbcc answering oddly: no cache, still a run
            self._say("not caching the compiled program: %s" % one_line(e))
            return
        if entry is not None and not objcache.write(cache.directory, cache.key, entry):
            self._say("cannot write the compiled program to %s" % cache.directory)

    def _say(self, line):
        stderr = getattr(self.options, "stderr", None)
        if stderr is not None and getattr(self.options, "verbose", False):
            stderr.write("kerntrace: ebpf: %s\n" % line)

    def _attach(self, att):
        b = self._bpf
        pe = att.event
        fn = att.fn_name.encode()
        probe = pe.probe
        kind = att.kind
        if kind in ("fentry", "fexit"):
            # bcc attached it while loading (its autoload of kfunc__ and
            # kretfunc__ names): attaching again would fail; check it is.
            # bcc releases that support kernel modules name them
            # kfunc__vmlinux__F (their KFUNC_PROBE macro), older ones kfunc__F.
            fds = b.kfunc_entry_fds if kind == "fentry" else b.kfunc_exit_fds
            vmlinux = fn.replace(b"func__", b"func__vmlinux__", 1)
            loaded = [n for n in (fn, vmlinux) if n in fds]
            if not loaded:
                raise EnableError("ebpf: %s (event %s) did not attach (fentry)"
                                  % (probe.describe(), pe.name))
            self._loaded_as[att.fn_name] = loaded[0]
            return
        counter = {"tracepoint": b.num_open_tracepoints,
                   "raw_tracepoint": lambda: len(b.raw_tracepoint_fds),
                   "kprobe": b.num_open_kprobes, "kretprobe": b.num_open_kprobes,
                   "uprobe": b.num_open_uprobes, "uretprobe": b.num_open_uprobes,
                   "usdt": b.num_open_uprobes}[kind]
        before = counter()
        known = set(b.kprobe_fds) | set(b.uprobe_fds)
        cap = CapturedOutput()
        try:
            with cap:
                if kind == "raw_tracepoint":
                    b.attach_raw_tracepoint(tp=probe.name.encode(), fn_name=fn)
                elif kind == "tracepoint":
                    b.attach_tracepoint(tp=("%s:%s" % (probe.category, probe.name)).encode(),
                                        fn_name=fn)
                elif kind == "kprobe":
                    b.attach_kprobe(event=probe.function.encode(), fn_name=fn)
                elif kind == "kretprobe":
                    b.attach_kretprobe(event=probe.function.encode(), fn_name=fn)
                elif kind == "usdt":
                    self._attach_usdt(pe, fn)
                elif kind == "uprobe":
                    b.attach_uprobe(name=pe.target.encode(), sym=probe.symbol.encode(),
                                    fn_name=fn)
                else:
                    b.attach_uretprobe(name=pe.target.encode(), sym=probe.symbol.encode(),
                                       fn_name=fn)
        except Exception as e:
            raise EnableError("ebpf: cannot attach %s (event %s): %s"
                              % (probe.describe(), pe.name, first_error(cap.text, one_line(e))))
        finally:
            new = (set(b.kprobe_fds) | set(b.uprobe_fds)) - known
            self._probe_names.extend(n.decode() if isinstance(n, bytes) else n for n in new)
        if counter() != before + 1:
            raise EnableError("ebpf: %s (event %s) did not attach" % (probe.describe(), pe.name))

    def _attach_usdt(self, pe, fn_name):
        """A uprobe at a USDT site with its semaphore as the uprobe's
        reference counter, so the kernel raises it in every process mapping
        the file while attached (how bcc's C++ BPF::attach_usdt does it):
        BPF.attach_uprobe() has no ref_ctr_offset, so libbcc's
        bpf_attach_uprobe() is called as it does, with the seventh argument
        (backends/ebpf/bccfixes.py declares it)."""
        b = self._bpf
        path = pe.target.encode()
        offset, ref_ctr = pe.location
        fn = b.load_func(fn_name, self.bcc.BPF.KPROBE)
        # bcc's own name for a uprobe at that offset (BPF._get_uprobe_evname)
        ev_name = b"p_%s_0x%x" % (_NON_IDENT.sub(b"_", path), offset)
        fd = self.bcc.lib.bpf_attach_uprobe(fn.fd, 0, ev_name, path, offset, -1, ref_ctr)
        if fd < 0:
            raise EnableError("uprobe at %s:0x%x (ref_ctr_offset 0x%x) did not attach"
                              % (pe.target, offset, ref_ctr))
        # registered as BPF.attach_uprobe() does: cleanup() detaches it
        b._add_uprobe_fd(ev_name, fd)

    def _table(self, name):
        return self._bpf[name.encode()]

    def _check_layouts(self):
        """The Python decoders must see exactly the structs clang laid out."""
        p = self.program
        checks = []
        if p.kind == "histogram":
            t = self._table(codegen.HIST_MAP)
            checks = [(t.Key, p.key_layout.size), (t.Leaf, p.value_layout.size)]
        elif p.kind == "count":
            t = self._table(codegen.COUNT_MAP)
            checks = [(t.Key, p.key_layout.size), (t.Leaf, 8)]
        for ctype, size in checks:
            if ctypes.sizeof(ctype) != size:
                raise EnableError("ebpf: internal error: struct size %d != expected %d"
                                  % (ctypes.sizeof(ctype), size))

    def _open_buffer(self):
        table = self._table(codegen.EVENTS_MAP)
        layout = self.program.record_layout
        names = set(m.name for m in layout.members)
        self._decode = recdecode.compile_decoder(
            layout, self._named if names & {EVENT_NAME, KSTACK} else None)
        # Each record's bytes, decoded in a batch by collect(): this runs
        # once per record, as a C callback, and does no more than it must.
        keep = self._raw.append
        string_at = ctypes.string_at

        def on_record(_ctx_or_cpu, data, length):
            try:
                keep(string_at(data, length))
            except BaseException as e:
                # A signal (Ctrl-C) raised inside a ctypes callback would be
                # printed and swallowed by ctypes: keep it and re-raise once
                # poll returns.
                if self._deferred is None:
                    self._deferred = e
            return 0

        def on_lost(n):
            try:
                self._perf_lost += int(n)
            except BaseException as e:
                if self._deferred is None:
                    self._deferred = e
            return 0

        # (--explain told the buffer's size: RunPlan.describe().)
        cap = CapturedOutput()
        try:
            with cap:
                if self.program.output == "ringbuf":
                    table.open_ring_buffer(on_record)
                    self._buffer = "ringbuf"
                else:
                    table.open_perf_buffer(on_record, page_cnt=self.buffers.perf_pages,
                                           lost_cb=on_lost, **self._perf_wakeups(table))
                    self._buffer = "perf"
        except Exception as e:  # libbcc prints perf_event_open's errno, bcc raises
            raise EnableError("ebpf: cannot open the %s buffer: %s" % (
                self.program.output, first_error(cap.text, one_line(e))))

    def _perf_wakeups(self, table):
        """The perf buffers' wake-up batch, as the ring buffer's
        (codegen.wakeup_every): each CPU's reader is woken once per quarter
        of its buffer, not for every record; collect() drains them every
        flush period.  {} for a bcc without the option (it wakes per record)."""
        if "wakeup_events" not in table.open_perf_buffer.__code__.co_varnames:
            return {}
        # (a perf record: its header, a u32 size, the data, 8-byte aligned)
        return {"wakeup_events": codegen.wakeup_every(
            self.program.record_layout.size + 4, self.buffers.perf_pages)}

    def _take_records(self):
        """The Records of the bytes kept since the last call; a record
        shorter than the program's struct counts as lost."""
        raw = self._raw[:]
        del self._raw[:]        # (the callback appends to this list object)
        if not raw:
            return []
        records, short = self._decode(raw)
        self._perf_lost += short
        return records

    def _named(self, fields):
        """Decoded member values -> model values (event index -> name,
        kernel stack id -> function names)."""
        ev = fields.get(EVENT_NAME)
        if ev is not None:
            for name in self.program.absent.get(ev, ()):
                fields[name] = None
            fields[EVENT_NAME] = self.program.event_names.get(ev, str(ev))
        if KSTACK in fields:
            fields[KSTACK] = self._kernel_stack(fields[KSTACK])
        return fields

    def _kernel_stack(self, stack_id):
        """Function names of a stack in the stack map, innermost first; ()
        when the program could not take it (a negative id).  A stack id
        names one stack for the whole run (entries are never replaced), so
        each is read and symbolized once, from /proc/kallsyms (bcc's ksym)."""
        if stack_id < 0:
            return ()
        names = self._stacks.get(stack_id)
        if names is None:
            try:
                addrs = list(self._table(codegen.KSTACK_MAP).walk(stack_id))
            except (KeyError, ValueError, OSError):
                addrs = []
            names = tuple(self._bpf.ksym(a).decode("utf-8", "replace") for a in addrs)
            self._stacks[stack_id] = names
        return names

    # -- wait / collect --------------------------------------------------------
    def wait(self, timeout):
        if self._bpf is None:
            time.sleep(max(0.0, timeout))
            return
        if self._buffer is None:
            time.sleep(max(0.0, timeout))
            return
        ms = max(1, int(timeout * 1000))
        # bcc calls back into Python for every record: a stop signal is
        # latched meanwhile and raised once the (bounded) poll returns.
        with SignalsLatched():
            if self._buffer == "ringbuf":
                self._bpf.ring_buffer_poll(ms)
            else:
                self._bpf.perf_buffer_poll(ms)
        self._raise_deferred()

    def _raise_deferred(self):
        if self._deferred is not None:
            e, self._deferred = self._deferred, None
            raise e

    def _drain(self, name, key_size, value_size):
        d = self._drainers.get(name)
        if d is None:
            d = HashDrainer(self._table(name).map_fd, key_size, value_size)
            self._drainers[name] = d
        try:
            return d.drain()
        except MapError as e:
            raise KerntraceError("ebpf: reading map %s: %s" % (name, e))

    def _stats(self):
        """(unmatched, lost, dropped starts) since the last call.  The kernel
        counters are never cleared: deltas of monotonic counters cannot race."""
        table = self._table(codegen.STATS_MAP)
        now = []
        for i in (codegen.STAT_UNMATCHED, codegen.STAT_LOST, codegen.STAT_DROPPED_STARTS):
            now.append(sum(int(getattr(v, "value", v)) for v in table.getvalue(table.Key(i))))
        delta = [n - seen for n, seen in zip(now, self._stats_seen)]
        self._stats_seen = now
        return delta

    def collect(self):
        p = self.program
        if self._bpf is None:
            return results.Report(self._empty())
        if p.kind == "histogram":
            data = self._collect_histograms()
        elif p.kind == "count":
            data = self._collect_counts()
        else:
            with SignalsLatched():
                if self._buffer == "ringbuf":
                    self._bpf.ring_buffer_consume()
                else:
                    self._bpf.perf_buffer_consume()
            data = self._take_records()
        unmatched, lost, dropped_starts = self._stats()
        lost += self._perf_lost + (self._skips.missed() if self._skips else 0) + \
            (self._hook.missed() if self._hook else 0)
        self._perf_lost = 0
        report = results.Report(data, lost=lost, unmatched=unmatched,
                                dropped_starts=dropped_starts)
        self._raise_deferred()
        return report

    def _empty(self):
        p = self.program
        if p.kind == "histogram":
            return results.HistogramSet(p.key_names)
        if p.kind == "count":
            return results.CountSet(p.key_names)
        return []

    def _key_tuple(self, decoded):
        return tuple(self._named(decoded)[k] for k in self.program.key_names)

    def _collect_histograms(self):
        p = self.program
        agg = self.measurement.aggregate
        hists = {}
        for kraw, vraw in self._drain(codegen.HIST_MAP, p.key_layout.size, p.value_layout.size):
            key = p.key_layout.decode(kraw)
            val = p.value_layout.decode(vraw)
            if not val["count"]:
                continue
            k = self._key_tuple(key)
            h = hists.get(k)
            if h is None:
                h = hists[k] = results.Histogram(agg.scale, agg.unit, agg.step)
            h.buckets[key["kt_slot"]] = h.buckets.get(key["kt_slot"], 0) + val["count"]
            h.total += val["sum"]
            h.count += val["count"]
        return results.HistogramSet(p.key_names, hists)

    def _collect_counts(self):
        p = self.program
        counts = {}
        for kraw, vraw in self._drain(codegen.COUNT_MAP, p.key_layout.size, 8):
            n = int.from_bytes(vraw[:8], sys.byteorder)
            if not n:
                continue
            k = self._key_tuple(p.key_layout.decode(kraw))
            counts[k] = counts.get(k, 0) + n
        return results.CountSet(p.key_names, counts)

    # -- close -------------------------------------------------------------------
    def close(self):
        if self._closed:
            return
        self._closed = True
        b, self._bpf = self._bpf, None
        if self._hook is not None:
            self._hook.close()
            self._hook = None
        if b is None:
            return
        errors = bpfobject.unload(b)
        if self._probe_names and self._tracefs:
            errors += tracefs_probes.remove_own(self._tracefs, self._probe_names)
        self._drainers = {}
        self._raw[:] = []
        self._skips = None
        stderr = getattr(self.options, "stderr", None)
        if errors and stderr is not None:
            for e in errors:
                stderr.write("kerntrace: ebpf: while detaching: %s\n" % e)
