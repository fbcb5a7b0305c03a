"""The BPF C program (for bcc) that runs a core Measurement.

generate(measurement, plan) -> Program: the C text plus everything the
session needs to attach it and decode its maps and records.

What the program does per logical event (one handler function each):
  read     the fields it needs: tracepoint args (args->field; char arrays
           and __data_loc strings through bpf_probe_read_kernel_str,
           user-pointer strings through bpf_probe_read_user_str, always into
           zeroed buffers), function
           arguments and return values (PT_REGS_*), context (ts, pid = tgid,
           tid, comm, cpu)
  attach   a tracepoint handler that reads none of the event's own fields
           (only context: counts by comm/pid, latency between two events)
           is a raw tracepoint program where one attaches: no argument
           record is built for it.  Handlers that read fields stay
           TRACEPOINT_PROBE-style: raw arguments are kernel struct pointers
           whose layouts only the running kernel's headers know, while the
           format-file struct is the stable ABI (block fields excepted:
           crawblock.py reads them at kernel BTF offsets).  Beside each raw
           program a sentinel tracepoint program does nothing: its perf
           hook counts the events no BPF program ran for (perfhook.py)
  filter   typed, validated filters compiled to C (cfilters.py); which
           run first in a handler and which after the pairing state is
           looked at is core.semantics' rule (early_filters)
  pair     start, mark and end keep pending starts in a hash keyed by the
           pair key (cpair.py)
  aggregate
           histogram  hash {keys..., slot} -> {count, sum}; bucket functions
                      of core.buckets rendered in C (cbuckets.py)
           count      hash {keys...} -> u64 (the "event" key is the logical
                      event's index)
           records    perf buffer or BPF ring buffer of a generated struct
                      (caggregate.py)

Map names and stats indexes the session reads are in cmaps.py (and
re-exported here).  What the program computes is what core.semantics
specifies: tests/scenarios.py runs the generated C on the same events as
the model.

Identifiers in the C come only from validated model identifiers (prefixed
f_, kt_) and tracefs format field names; numbers are formatted here;
string filter values appear only as byte comparisons.
"""

import mmap
import platform

from kerntrace.core import semantics, usdtargs
from kerntrace.core.model import CONTEXT_FIELDS, EVENT_NAME, INT, KSTACK, LATENCY, QUEUED

from . import buffers, cfilters, crawblock
from .caggregate import AggregateCode
from .cbuckets import BUCKET_C
from .cmaps import (COUNT_MAP, EVENTS_MAP, HIST_MAP, MAP_ENTRIES, MEMSET_CHUNK, SCRATCH_OVER,
                    STACK_BUDGET,
                    STACK_OVERHEAD, STAT_DROPPED_STARTS, STAT_LOST, STAT_UNMATCHED,
                    STATS, STATS_MAP, WAKE_MAP)
from .cpair import PairCode
from .cvalues import merge, src_kind
from .layout import S64, STRING, U64, Layout, Member, field_member


class Attachment(object):
    """One probe to attach: the planned event and its handler function
    (raw: a raw tracepoint program for a tracepoint event)."""

    __slots__ = ("event", "fn_name", "raw", "hook_filter")

    def __init__(self, event, fn_name, raw=False, hook_filter=None):
        self.event = event
        self.fn_name = fn_name
        self.raw = raw
        # A tracefs filter (event format syntax) the handler's early filters
        # imply, for the perf counters of events no BPF program ran for
        # (perfhook.py); None counts every event of the probe.
        self.hook_filter = hook_filter

    @property
    def kind(self):
        if getattr(self.event, "fentry", False):
            return "fexit" if self.event.probe.ret else "fentry"
        return "raw_tracepoint" if self.raw else self.event.kind

    def __repr__(self):
        return "Attachment(%s -> %s)" % (self.fn_name, self.event.probe.describe())


class Program(object):
    """text         the C source
    kind         "histogram", "count" or "records"
    key_names    the aggregate's key names (histogram/count)
    key_layout   histogram / count map key struct
    value_layout histogram map value struct ({count, sum})
    record_layout  records struct
    attachments  [Attachment]
    sentinels    [Attachment]: a tracepoint program that does nothing beside
                 each raw tracepoint attachment (perfhook.py: it lets the
                 session count the events the kernel ran no BPF program for)
    event_names  logical event index -> name
    output       "perf" / "ringbuf" for records, else None
    absent       logical event index -> the record fields it does not declare
                 (None in its records)
    """

    def __init__(self, text, kind, key_names, key_layout, value_layout, record_layout,
                 attachments, event_names, output, sentinels=(), absent=None):
        self.text = text
        self.kind = kind
        self.key_names = key_names
        self.key_layout = key_layout
        self.value_layout = value_layout
        self.record_layout = record_layout
        self.attachments = attachments
        self.sentinels = list(sentinels)
        self.event_names = event_names
        self.output = output
        self.absent = dict(absent or {})


# Kernel stacks (model.KSTACK): a record carries the stack's id in this map,
# the session turns it into function names.  Distinct stacks it can hold:
KSTACK_MAP = "kt_kstacks"
KSTACK_ENTRIES = 16384


# Beside each raw tracepoint program: a tracepoint program that does
# nothing.  The kernel sometimes runs no BPF program at all for an event
# it traces (measured on Linux 6.18, bench/ebpf_raw_blind.py: block
# completions in softirq on top of one task, raw programs included, no
# recursion miss counted); a tracepoint program's perf hook still sees
# those events, and the session counts them as lost (perfhook.py).
_SENTINEL_C = """/* tracepoint %(probe)s beside raw program %(raw)s (perfhook.py) */
int %(fn)s(void *ctx)
{
    return 0;
}"""


def _event_tag(pe):
    """What names a planned event's C symbols: its index, and its member
    number for the members of an Each alternative after the first."""
    return "%d_m%d" % (pe.index, pe.member) if pe.member else "%d" % pe.index


def _probe_ident(pe):
    """What a probe attaches to, from identifiers only (a library path,
    although validated, is no C identifier and stays out of the C text)."""
    p = pe.probe
    if getattr(p, "provider", None):            # a USDT probe
        return "%s:%s#%d" % (p.provider, p.name, p.site)
    return getattr(p, "symbol", None) or getattr(p, "function", None) or \
        "%s:%s" % (p.category, p.name)


def usdt_register(reg, machine=None):
    """The C expression of a USDT argument's register (a canonical name
    from core/usdtargs.py's tables) in the handler's struct pt_regs."""
    arch = usdtargs.arch_of(machine or platform.machine())
    if arch == "aarch64":
        return "ctx->sp" if reg == "sp" else "ctx->regs[%d]" % int(reg[1:])
    if arch == "x86_64" and reg.isalnum():
        return "ctx->%s" % reg
    raise ValueError("no pt_regs member for register %r" % (reg,))


def _ctype(size, signed):
    return "%s%d" % ("s" if signed else "u", size * 8)


def _sized(expr, size, signed):
    """`expr` (a 64-bit register) as the C integer type of `size` bytes."""
    return "(%s)%s" % (_ctype(size, signed), expr) if size < 8 or signed else expr


class _Gen(PairCode, AggregateCode):
    def __init__(self, measurement, plan, ringbuf_pages):
        self.m = measurement
        self.plan = plan
        self.ringbuf_pages = ringbuf_pages
        self.agg = measurement.aggregate
        self.pair = measurement.pair
        self.by_name = {}      # (an Each's first member stands for its layout)
        for pe in plan.events:
            self.by_name.setdefault(pe.name, pe)
        self.helpers = []      # filter match functions
        self.decls = []        # structs and maps
        self.funcs = []        # handlers
        self.n_match = 0
        self.func_probes = any(pe.kind != "tracepoint" for pe in plan.events)
        self.stack = 0         # bytes of BPF stack the current handler uses
        self._raw = None       # crawblock.Reads of the current raw handler
        self._f_is_record = False   # the current handler reads into the record

    # -- which events get handlers, and what each reads --------------------
    def handlers(self):
        if self.pair:
            # (every member of an Each alternative gets its own handler)
            roles = [(self.pair.start, "start"), (self.pair.mark, "mark"),
                     (self.pair.end, "end"), (self.pair.abandon, "abandon")]
            return [(pe, role) for name, role in roles if name is not None
                    for pe in self.plan.events if pe.name == name]
        return [(pe, "event") for pe in self.plan.events]

    def _agg_fields(self):
        a = self.agg
        if a.kind == "histogram":
            return list(a.keys) + [a.value]
        if a.kind == "count":
            return list(a.keys)
        return list(a.fields)

    def _filters(self, pe, role):
        """(early, deferred) filters for a handler (core.semantics decides
        which run early).  early: return at once when false; deferred: a
        pair start (or a mark) stores its outcome (kt_drop), a pair end
        tests them after taking its start out of the map."""
        if role == "event":
            return self.m.filters_for(pe.logical), []
        if role == "abandon":
            return semantics.early_filters(self.m, pe.logical), []   # the pair filters only
        return (semantics.early_filters(self.m, pe.logical),
                semantics.late_filters(self.m, pe.logical))

    def _needs(self, pe, role):
        early, deferred = self._filters(pe, role)
        names = [f.field for f in early + deferred]
        if role in ("start", "mark"):
            names += list(self.pair.key) + list(self.pair.carry)
        elif role == "abandon":
            names += list(self.pair.key)
        elif role == "end":
            names += list(self.pair.key)
            names += [n for n in self._agg_fields()
                      if n not in self.pair.carry and n not in (LATENCY, QUEUED, EVENT_NAME)]
        else:
            names += [n for n in self._agg_fields() if n not in (LATENCY, EVENT_NAME)
                      and not self._absent(pe, n)]
        out = []
        for n in names:
            # what a derived value needs is read before it (model.Field)
            for dep in self._depends(pe, n) + [n]:
                if dep not in out:
                    out.append(dep)
        return out

    @staticmethod
    def _absent(pe, name):
        """A record field this event does not declare (another event's:
        model.Measurement), left zero here and None in user space."""
        return name not in CONTEXT_FIELDS and name not in (EVENT_NAME, LATENCY, QUEUED, KSTACK) \
            and name not in pe.fields

    @staticmethod
    def _depends(pe, name):
        f = pe.logical.field(name)
        return f.depends_on() if f is not None else []

    # -- output members ------------------------------------------------------
    def _output_member(self, name):
        if name in (EVENT_NAME, LATENCY, QUEUED):
            return field_member(name, U64)
        if self.pair:
            pe = self.by_name[self.pair.start if name in self.pair.carry else self.pair.end]
            kind, size = src_kind(pe, name)
        else:
            kind, size = merge([src_kind(pe, name) for pe in self.plan.events
                                if not self._absent(pe, name)])
        return field_member(name, kind, size)

    def _value_signed(self):
        return self._output_member(self.agg.value).kind == S64

    # -- C building blocks ---------------------------------------------------
    def _alloc(self, lines, layout, var, scratch, zero=True):
        """Declare `struct X *var` (zeroed unless the caller fills all of
        it): on the stack, or (big) in a per-CPU scratch map."""
        if layout.size > SCRATCH_OVER:
            decl = "BPF_PERCPU_ARRAY(%s, struct %s, 1);" % (scratch, layout.cname)
            if decl not in self.decls:
                self.decls.append(decl)
            lines += ["u32 %s_zero = 0;" % var,
                      "struct %s *%s = %s.lookup(&%s_zero);" % (layout.cname, var, scratch, var),
                      "if (!%s)" % var,
                      "    return 0;"]
        else:
            self.stack += layout.size
            lines += ["struct %s %s_buf;" % (layout.cname, var),
                      "struct %s *%s = &%s_buf;" % (layout.cname, var, var)]
        if zero and layout.size <= MEMSET_CHUNK:
            lines.append("__builtin_memset(%s, 0, sizeof(*%s));" % (var, var))
        elif zero:
            # clang inlines a memset of at most 128 stores for BPF, and BPF
            # has no memset to call: a big struct is zeroed in pieces, a
            # compiler barrier between them (clang would merge them again)
            for off in range(0, layout.size, MEMSET_CHUNK):
                if off:
                    lines.append('asm volatile("" ::: "memory");')
                lines.append("__builtin_memset((char *)%s + %d, 0, %d);"
                             % (var, off, min(MEMSET_CHUNK, layout.size - off)))

    def _read(self, pe, name, dst):
        """C statement(s) reading field `name` of event pe into member dst."""
        h = self.plan.helpers
        if name == "ts":
            return ["%s = kt_now;" % dst]
        if name == "pid":
            return ["%s = kt_pid_tgid >> 32;" % dst]
        if name == "tid":
            return ["%s = (u32)kt_pid_tgid;" % dst]
        if name == "cpu":
            return ["%s = bpf_get_smp_processor_id();" % dst]
        if name == "uid":
            # the low half is the real uid (kernel/bpf/helpers.c)
            return ["%s = (u32)bpf_get_current_uid_gid();" % dst]
        if name == "comm":
            return ["bpf_get_current_comm(%s, sizeof(%s));" % (dst, dst)]
        if name == KSTACK:
            decl = "BPF_STACK_TRACE(%s, %d);" % (KSTACK_MAP, KSTACK_ENTRIES)
            if decl not in self.decls:
                self.decls.append(decl)
            # a negative id (no room, or a collision in the map) is kept:
            # the record says its stack was not taken
            return ["%s = %s.get_stackid(%s, 0);" % (dst, KSTACK_MAP, self._ctx)]
        fs = pe.fields[name]
        k = fs.kind
        if self._raw is not None:
            return self._raw.read(fs.member, dst, fs.size, h) + (
                self._derive(pe, name, dst) if k == "tp" else [])
        if k == "tp":
            return ["%s = args->%s;" % (dst, fs.member)] + self._derive(pe, name, dst)
        if k == "tp_array":
            # A *_str read, into a zeroed buffer: everything after the first
            # NUL stays NUL, which the string filters rely on.
            return ["%s(%s, %d, args->%s);" % (h["kernel_str"], dst, fs.size, fs.member)]
        if k == "tp_dataloc":
            # __data_loc: low 16 bits are the string's offset in the record.
            return ["%s(%s, %d, (void *)args + (args->data_loc_%s & 0xFFFF));"
                    % (h["kernel_str"], dst, fs.size, fs.member)]
        if k in ("tp_ustr", "tp_kstr"):
            fn = h["user_str"] if k == "tp_ustr" else h["kernel_str"]
            return ["%s(%s, %d, (void *)args->%s);" % (fn, dst, fs.size, fs.member)]
        if k == "const":
            return ["%s = %s;" % (dst, cfilters.int_literal(fs.member, True))]
        if k in ("arg", "retval"):
            reg = "PT_REGS_PARM%d(ctx)" % (fs.member + 1) if k == "arg" else "PT_REGS_RC(ctx)"
            if fs.size < 8:
                # the low bytes of the register, as the C type the field names
                reg = "(%s%d)%s" % ("s" if fs.signed else "u", fs.size * 8, reg)
            return ["%s = %s;" % (dst, reg)]
        if k == "usdt_reg":
            return ["%s = %s;" % (dst, _sized(usdt_register(fs.member), fs.size, fs.signed))]
        if k == "usdt_mem":
            reg, disp = fs.member
            # (a block: the field may be read in more than one place)
            return ["{ %s kt_usdt = 0;" % _ctype(fs.size, fs.signed),
                    "  %s(&kt_usdt, %d, (void *)(%s + (%s)));" % (
                        h["user"], fs.size, usdt_register(reg),
                        cfilters.int_literal(disp, True)),
                    "  %s = kt_usdt; }" % dst]
        if k in ("tp_uelem", "arg_uelem"):
            base = ("args->%s" % fs.member if k == "tp_uelem"
                    else "PT_REGS_PARM%d(ctx)" % (fs.member + 1))
            tag = "%s%s" % ("" if k == "tp_uelem" else "arg", fs.member)
            return self._element(h, pe, name, dst, base, tag)
        if k in ("arg_ustr", "arg_kstr"):
            fn = h["user_str"] if k == "arg_ustr" else h["kernel_str"]
            return ["%s(%s, %d, (void *)PT_REGS_PARM%d(ctx));" % (fn, dst, fs.size, fs.member + 1)]
        raise ValueError("unknown field source %r" % k)

    def _read_all(self, pe, names, flayout):
        """C reading fields `names` of pe, in this order, into struct f."""
        lines = []
        for i, n in enumerate(names):
            self._next_reads = names[i + 1:]    # (_element looks ahead)
            lines += self._read(pe, n, "f->%s" % flayout.member(n).cname)
        self._next_reads = []
        return lines

    def _element_run(self, pe, name):
        """The fields read from `name` on, one after another, that are the
        elements 0, 1, 2 ... of its array: one walk reads them all."""
        fs = pe.fields[name]
        run = [name]
        for n in self._next_reads:
            nfs = pe.fields.get(n)
            if (nfs is None or nfs.kind != fs.kind or nfs.member != fs.member
                    or nfs.element != len(run)):
                break
            run.append(n)
        return run

    def _contiguous(self, run):
        """Whether the members of `run` follow each other in the struct,
        each as big as the first (strings: char arrays, no padding), so
        that element i is at the first's address + i * its size."""
        members = self._flayout.members
        first = self._flayout.member(run[0])
        at = members.index(first)
        return [m.name for m in members[at:at + len(run)]] == run and all(
            m.kind == first.kind and m.size == first.size for m in members[at:at + len(run)])

    def _element(self, h, pe, name, dst, base, tag):
        """Elements of one array read one after another (argv[0], argv[1]
        ...) walk it once, emptied first; each reads one pointer and its
        string, and the array's end stops the walk.  In one struct one
        after another (as a record's argv is), they are read by one
        unrolled loop, as bcc's execsnoop does: bcc's front end takes
        seconds over the same reads written out (execsnoop's 21 took 1.5 s
        per handler, the loop 0.1 s).  Else each read jumps past the rest
        at the array's end (a flag tested around every element would make
        clang thread it through all later ones).  One read out of order
        walks the array up to itself (_element_read)."""
        fs = pe.fields[name]
        run = self._arrays.get(base)
        if run is None and fs.element == 0:
            run = self._element_run(pe, name)
            self._arrays[base] = run
            var = dst.rsplit("->", 1)[0]
            lines = ["u64 kt_base_%s = 0;" % tag,
                     "%s(&kt_base_%s, sizeof(kt_base_%s), &%s);" % (h["kernel"], tag, tag, base),
                     "const char *const *kt_arr_%s = (const char *const *)kt_base_%s;"
                     % (tag, tag)]
            lines += ["%s->%s[0] = 0;" % (var, self._flayout.member(n).cname) for n in run]
            if len(run) > 1 and self._contiguous(run):
                self._arrays[base] = []     # all read here
                return lines + [
                    "{",
                    "    int kt_i;",
                    "#pragma unroll",
                    "    for (kt_i = 0; kt_i < %d; kt_i++) {" % len(run),
                    "        const char *kt_p = 0;",
                    "        if (%s(&kt_p, sizeof(kt_p), &kt_arr_%s[kt_i]) != 0 || !kt_p)"
                    % (h["user"], tag),
                    "            break;",
                    "        %s((char *)%s + kt_i * %d, %d, kt_p);" % (h["user_str"], dst, fs.size,
                                                            fs.size),
                    "    }",
                    "}"]
        elif run is not None and not run:
            return []                       # read by the loop
        elif run is not None and fs.element < len(run) and run[fs.element] == name:
            lines = []
        else:
            return _element_read(h, dst, fs.size, base, fs.element)
        lines += [
            "{",
            "    const char *kt_p = 0;",
            "    if (%s(&kt_p, sizeof(kt_p), &kt_arr_%s[%d]) != 0 || !kt_p)"
            % (h["user"], tag, fs.element),
            "        goto kt_end_%s;" % tag,
            "    %s(%s, %d, kt_p);" % (h["user_str"], dst, fs.size),
            "}"]
        if fs.element == len(run) - 1:
            lines.append("kt_end_%s: ;" % tag)
        return lines

    def _derive(self, pe, name, dst):
        """A declared field's if_zero fallback and override (model.Field),
        on the value just read into dst; the fields they use are read
        before it (_needs), into the same struct."""
        field = pe.logical.field(name)
        if field is None:
            return []
        var = dst.rsplit("->", 1)[0]
        out = []
        if field.if_zero is not None:
            other, factor = field.if_zero
            out += ["if (%s == 0)" % dst,
                    "    %s = %s->%s * %s;" % (dst, var, self._flayout.member(other).cname,
                                              cfilters.int_literal(factor, False))]
        if field.override is not None:
            filters, value = field.override
            tests = " || ".join("(%s)" % self._filter_expr(f, self._flayout, var)
                                for f in filters)
            member = self._flayout.member(name)
            out += ["if (%s)" % tests,
                    "    %s = %s;" % (dst, cfilters.int_literal(value, member.kind == S64))]
        return out

    def _filter_expr(self, flt, layout, var):
        m = layout.member(flt.field)
        expr = "%s->%s" % (var, m.cname)
        if flt.type == INT:
            return cfilters.int_filter(expr, m.kind == S64, flt)
        self.n_match += 1
        fname = "kt_match_%d" % self.n_match
        self.helpers.append("/* filter: %s */\n%s" % (cfilters.describe(flt),
                                                      cfilters.string_match_function(
                                                          fname, flt, m.size)))
        return cfilters.string_filter(fname, flt, expr)

    def _all(self, exprs):
        return " && ".join(exprs) if exprs else "1"

    @staticmethod
    def _assign(dst, member, src, src_kind):
        if member.kind == STRING:
            kind, size = src_kind
            return "__builtin_memcpy(%s, %s, %d);" % (dst, src, min(member.size, size))
        return "%s = %s;" % (dst, src)

    # -- the program -----------------------------------------------------------
    def generate(self):
        a = self.agg
        self.decls.append("#define KT_UNMATCHED %d   /* pair ends without their start */\n"
                          "#define KT_LOST %d        /* events dropped: map or buffer full */\n"
                          "#define KT_DROPPED_STARTS %d  /* pair starts: start map full */\n"
                          "BPF_PERCPU_ARRAY(%s, u64, %d);"
                          % (STAT_UNMATCHED, STAT_LOST, STAT_DROPPED_STARTS, STATS_MAP, STATS))
        key_layout = value_layout = record_layout = None
        if a.kind == "histogram":
            members = [self._output_member(k) for k in a.keys]
            members.append(Member("kt_slot", "kt_slot", U64))
            key_layout = Layout("kt_hist_key", members)
            value_layout = Layout("kt_hist_val", [
                Member("count", "count", U64),
                Member("sum", "sum", S64 if self._value_signed() else U64)])
            self.decls += [key_layout.c_decl(), value_layout.c_decl(),
                           "BPF_HASH(%s, struct kt_hist_key, struct kt_hist_val, %d);"
                           % (HIST_MAP, MAP_ENTRIES)]
        elif a.kind == "count":
            members = [self._output_member(k) for k in a.keys] or [
                Member("kt_unused", "kt_unused", U64)]
            key_layout = Layout("kt_count_key", members)
            self.decls += [key_layout.c_decl(),
                           "BPF_HASH(%s, struct kt_count_key, u64, %d);" % (COUNT_MAP, MAP_ENTRIES)]
        else:
            members = [Member("kt_ts", "kt_ts", U64)] + [self._output_member(f) for f in a.fields]
            record_layout = Layout("kt_record", members)
            self.decls.append(record_layout.c_decl())
            if self.plan.output == "ringbuf":
                self.decls.append("BPF_RINGBUF_OUTPUT(%s, %d);" % (EVENTS_MAP, self.ringbuf_pages))
                self.decls.append(_WAKEUP_C % {
                    "map": WAKE_MAP, "every": wakeup_every(record_layout.size,
                                                           self.ringbuf_pages)})
            else:
                self.decls.append("BPF_PERF_OUTPUT(%s);" % EVENTS_MAP)
        self.key_layout, self.value_layout, self.record_layout = key_layout, value_layout, \
            record_layout
        if self.pair:
            self._pair_structs()
        attachments = []
        raw_names = set()
        for pe, role in self.handlers():
            fn = "kt_ev%s_%s" % (_event_tag(pe), pe.name)
            if getattr(pe, "fentry", False):
                # bcc loads and attaches kfunc__F / kretfunc__F itself, by name
                fn = "%s__%s" % ("kretfunc" if pe.probe.ret else "kfunc", pe.probe.function)
            # bcc keys raw attachments by tracepoint name: one handler each.
            raw = (pe.kind == "tracepoint" and pe.raw_ok and pe.probe.name not in raw_names
                   and all(n in CONTEXT_FIELDS or self._raw_field(pe, n)
                           for n in self._needs(pe, role)))
            if raw:
                raw_names.add(pe.probe.name)
            self.funcs.append(self._handler(pe, role, fn, raw))
            attachments.append(Attachment(pe, fn, raw, self._hook_filter(pe, role)))
        self.attachments_made = attachments
        sentinels = []
        for att in attachments:
            if att.raw:
                fn = "kt_sentinel_ev%s" % _event_tag(att.event)
                self.funcs.append(_SENTINEL_C % {"probe": _probe_ident(att.event),
                                                 "raw": att.fn_name, "fn": fn})
                sentinels.append(Attachment(att.event, fn, hook_filter=att.hook_filter))
        text = self._assemble()
        return Program(text, a.kind, tuple(getattr(a, "keys", ())), key_layout, value_layout,
                       record_layout, attachments,
                       dict((pe.index, pe.name) for pe in self.plan.events),
                       self.plan.output if a.kind == "records" else None, sentinels,
                       absent={} if self.pair else dict(
                           (pe.index, tuple(n for n in getattr(a, "fields", ())
                                            if self._absent(pe, n)))
                           for pe in self.plan.events))

    def _hook_filter(self, pe, role):
        """The early filters of a tracepoint handler that compare an integer
        format field, as it is recorded, with == or != to a number: as a
        tracefs filter ("dev == 7340033 && ..."), or None.  The others are
        left out: the filter may count more events, never fewer."""
        if pe.kind != "tracepoint":
            return None
        terms = []
        for f in self._filters(pe, role)[0]:
            fs = pe.fields.get(f.field)
            field = pe.logical.field(f.field)
            if (f.type != INT or f.op not in ("==", "!=") or fs is None or fs.kind != "tp"
                    or (field is not None and (field.if_zero is not None
                                               or field.override is not None))
                    or not 0 <= f.value < (1 << 31)):
                continue
            terms.append("%s %s %d" % (fs.member, f.op, f.value))
        return " && ".join(terms) or None

    def _raw_field(self, pe, name):
        """Whether field `name` of pe can be computed in a raw tracepoint
        program (crawblock: from BTF offsets)."""
        reads = self.plan.raw_reads.get(pe.probe.name) if pe.kind == "tracepoint" else None
        fs = pe.fields.get(name)
        return (reads is not None and fs is not None and fs.kind in ("tp", "tp_array")
                and reads.can_read(fs.member, fs.size))

    def _handler(self, pe, role, fn, raw=False):
        self.stack = STACK_OVERHEAD
        self._arrays = {}      # array base -> the fields one walk of it reads
        self._next_reads = []  # the fields read after the one being read
        self._raw = self.plan.raw_reads.get(pe.probe.name) if raw else None
        needs = self._needs(pe, role)
        flayout = Layout("kt_ev%s_f" % _event_tag(pe), [field_member(n, *src_kind(pe, n))
                                                       for n in needs])
        # A record's fields are read straight into the record when it can
        # hold them as read: no second big struct to copy it from.
        self._f_is_record = self._reads_into_record(pe, role, raw, needs, flayout)
        if self._f_is_record:
            flayout = self.record_layout
        self._flayout = flayout
        if not flayout.empty and not self._f_is_record:
            self.decls.append(flayout.c_decl())
        if raw:
            sig = "/* raw tracepoint %s: %s */\n" \
                  "int %s(struct bpf_raw_tracepoint_args *ctx)" % (
                      pe.probe.name, "fields from struct request at BTF offsets"
                      if any(n not in CONTEXT_FIELDS for n in needs) else "reads no event fields",
                      fn)
            ctx = "ctx"
        elif pe.kind == "tracepoint":
            sig = "int %s(struct tracepoint__%s__%s *args)" % (fn, pe.probe.category,
                                                                  pe.probe.name)
            ctx = "args"
        elif getattr(pe, "fentry", False):
            # BPF_PROG(kfunc__F): ctx is the u64 array of the arguments
            sig = "%s(%s)" % ("KRETFUNC_PROBE" if pe.probe.ret else "KFUNC_PROBE",
                              pe.probe.function)
            ctx = "ctx"
        else:
            sig = "int %s(struct pt_regs *ctx)" % fn
            ctx = "ctx"
        self._ctx = ctx
        body = []
        early, deferred = self._filters(pe, role)
        if any(n in ("pid", "tid") for n in needs):
            body.append("u64 kt_pid_tgid = bpf_get_current_pid_tgid();")
        if not flayout.empty:
            # Strings are zero-padded for the string filters' byte tests;
            # a big struct no filter tests is not (every read leaves a
            # string NUL-terminated), a store per 8 bytes saved.
            self._alloc(body, flayout, "f", "kt_scratch_record" if self._f_is_record
                        else "kt_scratch_ev%s" % _event_tag(pe),
                        zero=flayout.size <= MEMSET_CHUNK or bool(early or deferred))
        # What the early filters test is read first: an event they reject
        # costs no further reads.
        first = [n for n in needs if any(f.field == n or n in self._depends(pe, f.field)
                                         for f in early)]
        body += self._read_all(pe, first, flayout)
        if early:
            body.append("/* %s */" % "; ".join(cfilters.describe(f) for f in early))
            body += ["if (!(%s))" % self._all([self._filter_expr(f, flayout, "f") for f in early]),
                     "    return 0;"]
        # A mark reads what it would carry only when it starts the pair.
        lazy = [] if role != "mark" else [
            n for n in self.pair.carry
            if n not in self.pair.key and not any(f.field == n for f in early + deferred)]
        body += self._read_all(pe, [n for n in needs if n not in first and n not in lazy],
                               flayout)
        deferred_expr = self._all([self._filter_expr(f, flayout, "f") for f in deferred]) \
            if deferred else None
        if deferred:
            body.append("/* %s */" % "; ".join(cfilters.describe(f) for f in deferred))
        if role == "start":
            self._start_body(body, pe, flayout, deferred_expr)
        elif role == "mark":
            self._mark_body(body, pe, flayout, deferred_expr, lazy)
        elif role == "end":
            self._end_body(body, pe, flayout, deferred_expr, ctx)
        elif role == "abandon":
            self._abandon_body(body, pe, flayout)
        else:
            if deferred_expr:
                body += ["if (!(%s))" % deferred_expr, "    return 0;"]
            self._aggregate(body, pe, self._event_value(pe, flayout), ctx)
        body.append("return 0;")
        if any("kt_now" in line for line in body):
            # The clock is read only by handlers that use it (pairs, ts).
            body.insert(0, "u64 kt_now = bpf_ktime_get_ns();")
        if self.stack > STACK_BUDGET:
            # clang would stop the whole process on a program over the BPF
            # stack limit, so refuse it here with a reason instead.
            raise ValueError("event %s needs about %d bytes of BPF stack (limit 512): use "
                             "fewer or shorter string keys" % (pe.name, self.stack))
        return "\n".join([sig, "{"] + ["    " + l if l else "" for l in body] + ["}"])

    def _reads_into_record(self, pe, role, raw, needs, flayout):
        """Whether a records handler reads its fields into the record
        itself: its own fields would need a per-CPU scratch struct (big:
        execsnoop's argv), no filter tests them (filters want zero-padded
        strings, a record is not zeroed), and the record holds every field
        it reads as it reads it."""
        if (role != "event" or self.agg.kind != "records" or raw
                or flayout.size <= SCRATCH_OVER or any(self._filters(pe, role))):
            return False
        for n in needs:
            have, want = self.record_layout.member(n), flayout.member(n)
            if have is None or want is None or have.kind != want.kind or have.size < want.size:
                return False
        return True

    def _event_value(self, pe, flayout):
        def value(name):
            if name == EVENT_NAME:
                return cfilters.int_literal(pe.index, False), (U64, 8)
            if self._absent(pe, name):
                return None, None
            return "f->%s" % flayout.member(name).cname, src_kind(pe, name)
        return value

    def _assemble(self):
        head = ["/* kerntrace: generated BPF program for bcc (kerntrace.backends.ebpf.codegen) */",
                "/* events: %s */" % "; ".join("%s <- %s %s" % (pe.name, pe.kind, _probe_ident(pe))
                                                for pe in self.plan.events)]
        if self.func_probes:
            head.append("#include <uapi/linux/ptrace.h>")
        parts = ["\n".join(head)]
        parts.extend(self.decls)
        parts.append("static __always_inline void kt_stat(u32 idx)\n{\n"
                     "    u64 *p = %s.lookup(&idx);\n    if (p)\n"
                     "        __sync_fetch_and_add(p, 1);\n}" % STATS_MAP)
        if any(a.raw for a in self.attachments_made) and self.plan.raw_reads:
            parts.append(crawblock.BYTE_SHIFT_C)
        if self.agg.kind == "histogram":
            parts.append(BUCKET_C.strip("\n"))
        parts.extend(self.helpers)
        parts.extend(self.funcs)
        return "\n\n".join(parts) + "\n"


def _element_read(h, dst, size, base, element):
    """C reading the string element `element` of a NULL-terminated user
    array of string pointers at `base` (model Field.element) into dst: the
    pointers before it are read first, and the array's end (a NULL, or
    memory that cannot be read) leaves dst empty, as past it is anything."""
    # The array's address is read with a helper: clang keeps one ctx
    # address for several plain reads of it, and the verifier refuses a
    # read through a modified ctx pointer.
    return ["{",
            "    u64 kt_base = 0;",
            "    %s(&kt_base, sizeof(kt_base), &%s);" % (h["kernel"], base),
            "    const char *const *kt_arr = (const char *const *)kt_base;",
            "    const char *kt_p = 0;",
            "    int kt_i;",
            "#pragma unroll",
            "    for (kt_i = 0; kt_i <= %d; kt_i++) {" % element,
            "        kt_p = 0;",
            "        if (%s(&kt_p, sizeof(kt_p), &kt_arr[kt_i]) != 0 || !kt_p)" % h["user"],
            "            break;",
            "    }",
            "    if (kt_i > %d)" % element,
            "        %s(%s, %d, kt_p);" % (h["user_str"], dst, size),
            "    else",
            "        %s[0] = 0;" % dst,
            "}"]


# By default the kernel wakes the ring buffer's reader for a record whenever
# the reader has caught up: a reader that keeps up (one record in 50 us)
# wakes for nearly every record, and the wake-ups (epoll, a poll per
# record) cost it more than the records.  The reader drains the buffer every
# flush period anyway (core/runner.py): woken only when a batch of a quarter
# of the buffer is waiting, it is never late to keep the buffer from filling.
# (Racing CPUs may lose an increment: a wake-up comes a record later.)
_WAKEUP_C = """BPF_ARRAY(%(map)s, u64, 1);
static __always_inline u64 kt_wakeup_flags(void)
{
    u32 zero = 0;
    u64 *n = %(map)s.lookup(&zero);
    if (!n)
        return 0;
    u64 c = *n + 1;
    *n = c;
    return (c & (%(every)d - 1)) == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}"""

RINGBUF_RECORD_HEADER = 8       # the kernel's struct bpf_ringbuf_hdr; records 8-aligned


def wakeup_every(record_size, ringbuf_pages, page_size=None):
    """Records per wake-up of the ring buffer's reader: the largest power of
    two at most a quarter of the records the buffer holds (at least 1)."""
    page_size = page_size or mmap.PAGESIZE
    per_record = (record_size + RINGBUF_RECORD_HEADER + 7) // 8 * 8
    quarter = max(1, ringbuf_pages * page_size // per_record // 4)
    return 1 << (quarter.bit_length() - 1)


def generate(measurement, plan, ringbuf_pages=buffers.DEFAULT_RINGBUF_PAGES):
    """The Program for a measurement resolved by `plan`; records go through
    a ring buffer of `ringbuf_pages` pages where the plan says ringbuf."""
    return _Gen(measurement, plan, ringbuf_pages).generate()
