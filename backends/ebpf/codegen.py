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
           format-file struct is the stable ABI
  filter   typed, validated filters compiled to C (cfilters.py)
  pair     start: store {ts, carried fields} in a hash keyed by the pair key;
           mark (optional): set its time in the stored start, or when none is
           stored, store one itself {ts = mark = now, its own carried fields};
           end: look up + delete, latency = now - (mark ts, else start ts),
           queued = mark ts - start ts (0 without a mark).  An end without
           a start is counted in a per-CPU stats array; starts in flight at an
           interval boundary stay in the map (collect never clears it)
  aggregate
           histogram  hash {keys..., slot} -> {count, sum}; bucket functions
                      equal core.buckets (tests compile them with the host C
                      compiler and compare)
           count      hash {keys...} -> u64 (the "event" key is the logical
                      event's index)
           records    perf buffer or BPF ring buffer of a generated struct

Identifiers in the C come only from validated model identifiers (prefixed
f_, kt_) and tracefs format field names; numbers are formatted here;
string filter values appear only as byte comparisons.
"""

from kerntrace.core.model import (CONTEXT_FIELDS, EVENT_NAME, INT, LATENCY, LINEAR, LOG2,
                                  POW2_MS, QUEUED, STR)

from . import buffers, cfilters
from .layout import S64, STRING, U64, Layout, Member, field_member

MAP_ENTRIES = 10240
# Structs larger than this live in a per-CPU scratch map instead of the
# 512-byte BPF stack.
SCRATCH_OVER = 96
# What a handler may put on the BPF stack (structs we size, plus room for
# the compiler's own temporaries); the kernel's limit is 512 bytes.
STACK_OVERHEAD = 64
STACK_BUDGET = 448
COMM_LEN = 16          # TASK_COMM_LEN

# Indexes of the per-CPU stats array.
STAT_UNMATCHED = 0     # pair ends without their start
STAT_LOST = 1          # events dropped in the kernel: full map, ring buffer full
STAT_DROPPED_STARTS = 2  # pair starts the full start map refused
STATS = 3

START_MAP = "kt_start"
HIST_MAP = "kt_hist"
COUNT_MAP = "kt_counts"
EVENTS_MAP = "kt_events"
STATS_MAP = "kt_stats"

# Bucket arithmetic, the same as core/buckets.py (test_ebpf_codegen compiles
# this with the host C compiler and compares).  Only unsigned division is
# used: BPF had no signed division before cpu v4.
BUCKET_C = r"""
/* floor(log2 v) + 1 for v > 0; 0 for v == 0 */
static __always_inline u64 kt_bitlen(u64 v)
{
    u64 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { v >>= 1; r += 1; }
    return r + v;
}

/* log2 scale: bcc's bpf_log2l(v), with 0 (and negatives) in slot 1 */
static __always_inline u64 kt_log2_u(u64 v)
{
    return v == 0 ? 1 : kt_bitlen(v);
}

static __always_inline u64 kt_log2_s(s64 v)
{
    return v <= 0 ? 1 : kt_bitlen((u64)v);
}

/* linear scale: v / step, negatives in bucket 0 */
static __always_inline u64 kt_linear_u(u64 v, u64 step)
{
    return v / step;
}

static __always_inline u64 kt_linear_s(s64 v, u64 step)
{
    return v <= 0 ? 0 : (u64)v / step;
}

/* perf-tools iolatency rows: the smallest i >= 0 with ns <= 2^i ms.
 * 1000000 << 44 still fits 64 bits; anything above is row 45. */
static __always_inline u64 kt_pow2ms_u(u64 ns)
{
    u64 i;
#pragma unroll
    for (i = 0; i < 45; i++) {
        if (ns <= (1000000ULL << i))
            return i;
    }
    return 45;
}

static __always_inline u64 kt_pow2ms_s(s64 ns)
{
    return ns <= 0 ? 0 : kt_pow2ms_u((u64)ns);
}

/* Python's floor division v // d for d > 0, without signed division */
static __always_inline s64 kt_floordiv_s(s64 v, u64 d)
{
    if (v >= 0)
        return (s64)((u64)v / d);
    return -(s64)((u64)(-(v + 1)) / d) - 1;
}
"""

_BUCKET_FN = {LOG2: "kt_log2", LINEAR: "kt_linear", POW2_MS: "kt_pow2ms"}


class Attachment(object):
    """One probe to attach: the planned event and its handler function
    (raw: a raw tracepoint program for a tracepoint event)."""

    __slots__ = ("event", "fn_name", "raw")

    def __init__(self, event, fn_name, raw=False):
        self.event = event
        self.fn_name = fn_name
        self.raw = raw

    @property
    def kind(self):
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
    event_names  logical event index -> name
    output       "perf" / "ringbuf" for records, else None
    """

    def __init__(self, text, kind, key_names, key_layout, value_layout, record_layout,
                 attachments, event_names, output):
        self.text = text
        self.kind = kind
        self.key_names = key_names
        self.key_layout = key_layout
        self.value_layout = value_layout
        self.record_layout = record_layout
        self.attachments = attachments
        self.event_names = event_names
        self.output = output


def _src_kind(pe, name):
    """(kind, size) of field `name` as event pe produces it."""
    if name in CONTEXT_FIELDS:
        return (STRING, COMM_LEN) if CONTEXT_FIELDS[name] == STR else (U64, 8)
    fs = pe.fields[name]
    if fs.is_string:
        return STRING, fs.size
    return (S64 if fs.signed else U64), 8


def _merge(kinds):
    """One member kind for a value several sources produce."""
    if any(k == STRING for k, _s in kinds):
        return STRING, max(s for _k, s in kinds)
    return (S64 if any(k == S64 for k, _s in kinds) else U64), 8


def _event_tag(pe):
    """What names a planned event's C symbols: its index, and its member
    number for the members of an Each alternative after the first."""
    return "%d_m%d" % (pe.index, pe.member) if pe.member else "%d" % pe.index


def _probe_ident(pe):
    """What a probe attaches to, from identifiers only (a library path,
    although validated, is no C identifier and stays out of the C text)."""
    p = pe.probe
    return getattr(p, "symbol", None) or getattr(p, "function", None) or \
        "%s:%s" % (p.category, p.name)


class _Gen(object):
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

    # -- which events get handlers, and what each reads --------------------
    def handlers(self):
        if self.pair:
            # (every member of an Each alternative gets its own handler)
            roles = [(self.pair.start, "start"), (self.pair.mark, "mark"),
                     (self.pair.end, "end")]
            return [(pe, role) for name, role in roles for pe in self.plan.events
                    if pe.name == name]
        return [(pe, "event") for pe in self.plan.events]

    def _agg_fields(self):
        a = self.agg
        if a.kind == "histogram":
            return list(a.keys) + [a.value]
        if a.kind == "count":
            return list(a.keys)
        return list(a.fields)

    def _key_determined(self, flt):
        """A filter whose outcome is the same on a pair's start and end:
        it tests a pair key field (or pid, when tid is a key)."""
        return flt.field in self.pair.key or (flt.field == "pid" and "tid" in self.pair.key)

    def _filters(self, pe, role):
        """(early, deferred) filters for a handler.  early: return at once
        when false; deferred: a pair start (or a mark) stores its outcome
        (kt_drop), a pair end tests them after taking its start out of the
        map."""
        own = self.m.filters_for(pe.logical)
        if role == "event":
            return own, []
        if role in ("start", "mark"):
            # A mark decides on its own filters only (as the ftrace backend
            # does): it may start the pair itself.
            return ([f for f in own if self._key_determined(f)],
                    [f for f in own if not self._key_determined(f)])
        # An end may skip at once what no stored start can match: a key
        # filter of the start (and of the mark, which may store one too).
        starters = self.m.filters_for(self.by_name[self.pair.start].logical)
        if self.pair.mark is not None:
            marks = self.m.filters_for(self.by_name[self.pair.mark].logical)
            starters = [f for f in starters if f in marks]
        early = []
        for f in list(own) + list(starters):
            if self._key_determined(f) and f not in early:
                early.append(f)
        return early, [f for f in own if not self._key_determined(f)]

    def _needs(self, pe, role):
        early, deferred = self._filters(pe, role)
        names = [f.field for f in early + deferred]
        if role in ("start", "mark"):
            names += list(self.pair.key) + list(self.pair.carry)
        elif role == "end":
            names += list(self.pair.key)
            names += [n for n in self._agg_fields()
                      if n not in self.pair.carry and n not in (LATENCY, QUEUED, EVENT_NAME)]
        else:
            names += [n for n in self._agg_fields() if n not in (LATENCY, EVENT_NAME)]
        out = []
        for n in names:
            # what a derived value needs is read before it (model.Field)
            for dep in self._depends(pe, n) + [n]:
                if dep not in out:
                    out.append(dep)
        return out

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
            kind, size = _src_kind(pe, name)
        else:
            kind, size = _merge([_src_kind(pe, name) for pe in self.plan.events])
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
        if zero:
            lines.append("__builtin_memset(%s, 0, sizeof(*%s));" % (var, var))

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
        if name == "comm":
            return ["bpf_get_current_comm(%s, sizeof(%s));" % (dst, dst)]
        fs = pe.fields[name]
        k = fs.kind
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
        if k == "arg":
            return ["%s = PT_REGS_PARM%d(ctx);" % (dst, fs.member + 1)]
        if k == "retval":
            return ["%s = PT_REGS_RC(ctx);" % dst]
        if k in ("arg_ustr", "arg_kstr"):
            fn = h["user_str"] if k == "arg_ustr" else h["kernel_str"]
            return ["%s(%s, %d, (void *)PT_REGS_PARM%d(ctx));" % (fn, dst, fs.size, fs.member + 1)]
        raise ValueError("unknown field source %r" % k)

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
            # bcc keys raw attachments by tracepoint name: one handler each.
            raw = (pe.kind == "tracepoint" and pe.raw_ok and pe.probe.name not in raw_names
                   and all(n in CONTEXT_FIELDS for n in self._needs(pe, role)))
            if raw:
                raw_names.add(pe.probe.name)
            self.funcs.append(self._handler(pe, role, fn, raw))
            attachments.append(Attachment(pe, fn, raw))
        text = self._assemble()
        return Program(text, a.kind, tuple(getattr(a, "keys", ())), key_layout, value_layout,
                       record_layout, attachments,
                       dict((pe.index, pe.name) for pe in self.plan.events),
                       self.plan.output if a.kind == "records" else None)

    def _pair_structs(self):
        start = self.by_name[self.pair.start]
        self.pair_key = Layout("kt_pair_key", [field_member(k, *_src_kind(start, k))
                                               for k in self.pair.key])
        members = [Member("kt_ts", "kt_ts", U64), Member("kt_drop", "kt_drop", U64)]
        if self.pair.mark is not None:
            # the mark's time; 0 until it is seen (no clock reads 0)
            members.append(Member("kt_mark", "kt_mark", U64))
        if self.pair.shared:
            # a shared key value several starts hold: set once they collide
            # (kt_ambiguous), with the ends still to come after the next one
            members += [Member("kt_ambiguous", "kt_ambiguous", U64),
                        Member("kt_more_ends", "kt_more_ends", U64)]
        members += [field_member(c, *_src_kind(start, c)) for c in self.pair.carry]
        self.pair_val = Layout("kt_pair_val", members)
        self.decls += [self.pair_key.c_decl(), self.pair_val.c_decl(),
                       "BPF_HASH(%s, struct kt_pair_key, struct kt_pair_val, %d);"
                       % (START_MAP, MAP_ENTRIES)]

    def _handler(self, pe, role, fn, raw=False):
        self.stack = STACK_OVERHEAD
        needs = self._needs(pe, role)
        flayout = Layout("kt_ev%s_f" % _event_tag(pe), [field_member(n, *_src_kind(pe, n))
                                                       for n in needs])
        self._flayout = flayout
        if not flayout.empty:
            self.decls.append(flayout.c_decl())
        if raw:
            sig = "/* raw tracepoint %s: reads no event fields */\n" \
                  "int %s(struct bpf_raw_tracepoint_args *ctx)" % (pe.probe.name, fn)
            ctx = "ctx"
        elif pe.kind == "tracepoint":
            sig = "int %s(struct tracepoint__%s__%s *args)" % (fn, pe.probe.category,
                                                                  pe.probe.name)
            ctx = "args"
        else:
            sig = "int %s(struct pt_regs *ctx)" % fn
            ctx = "ctx"
        body = []
        if any(n in ("pid", "tid") for n in needs):
            body.append("u64 kt_pid_tgid = bpf_get_current_pid_tgid();")
        early, deferred = self._filters(pe, role)
        if not flayout.empty:
            self._alloc(body, flayout, "f", "kt_scratch_ev%s" % _event_tag(pe))
        # What the early filters test is read first: an event they reject
        # costs no further reads.
        first = [n for n in needs if any(f.field == n or n in self._depends(pe, f.field)
                                         for f in early)]
        for n in first:
            body += self._read(pe, n, "f->%s" % flayout.member(n).cname)
        if early:
            body.append("/* %s */" % "; ".join(cfilters.describe(f) for f in early))
            body += ["if (!(%s))" % self._all([self._filter_expr(f, flayout, "f") for f in early]),
                     "    return 0;"]
        # A mark reads what it would carry only when it starts the pair.
        lazy = [] if role != "mark" else [
            n for n in self.pair.carry
            if n not in self.pair.key and not any(f.field == n for f in early + deferred)]
        for n in needs:
            if n not in first and n not in lazy:
                body += self._read(pe, n, "f->%s" % flayout.member(n).cname)
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

    def _pair_key(self, body, pe, flayout):
        self.stack += self.pair_key.size
        body += ["struct kt_pair_key kt_k;", "__builtin_memset(&kt_k, 0, sizeof(kt_k));"]
        for m in self.pair_key.members:
            body.append(self._assign("kt_k.%s" % m.cname, m, "f->%s" % flayout.member(m.name).cname,
                                     _src_kind(pe, m.name)))

    def _start_body(self, body, pe, flayout, deferred_expr):
        self._pair_key(body, pe, flayout)
        self._store_start(body, pe, flayout, deferred_expr, marked=False,
                          shared=self._shared_expr())

    def _shared_expr(self):
        """C test of kt_k for a shared key value (Pair.shared), or None."""
        tests = []
        for name, value in sorted(self.pair.shared.items()):
            m = self.pair_key.member(name)
            tests.append("kt_k.%s == %s" % (m.cname, cfilters.int_literal(value, m.kind == S64)))
        return " && ".join(tests) or None

    def _store_start(self, body, pe, flayout, deferred_expr, marked, shared=None):
        """Store a pending start (a mark that found none starts the pair
        itself, with its own time as both start and mark).  A start whose
        key is a shared value (the C test `shared`) is stored only if none
        is pending (insert, so two CPUs cannot both think they were first);
        otherwise the pending one becomes ambiguous: whose end is whose can
        no longer be told, so none of them is measured."""
        self._alloc(body, self.pair_val, "sv", "kt_scratch_sv")
        body.append("sv->kt_ts = kt_now;")
        if marked:
            body.append("sv->kt_mark = kt_now;")
        body.append("sv->kt_drop = %s;" % ("!(%s)" % deferred_expr if deferred_expr else "0"))
        for c in self.pair.carry:
            m = self.pair_val.member(c)
            body.append(self._assign("sv->%s" % m.cname, m,
                                     "f->%s" % flayout.member(c).cname, _src_kind(pe, c)))
        if shared:
            body += ["if (%s) {" % shared,
                     "    if (%s.insert(&kt_k, sv) == 0)" % START_MAP,
                     "        return 0;",
                     "    struct kt_pair_val *kt_o = %s.lookup(&kt_k);" % START_MAP,
                     "    if (kt_o) {",
                     "        __sync_fetch_and_add(&kt_o->kt_more_ends, 1);",
                     "        kt_o->kt_ambiguous = 1;",
                     "        return 0;",
                     "    }",
                     "}"]
        # a full start map refuses a new key: the start is dropped, counted
        # as the ftrace backend counts the starts it drops
        body += ["if (%s.update(&kt_k, sv) != 0)" % START_MAP,
                 "    kt_stat(KT_DROPPED_STARTS);"]

    def _mark_body(self, body, pe, flayout, deferred_expr, lazy):
        self._pair_key(body, pe, flayout)
        # A start its filters rejected counts as none: the mark decides on
        # its own filters (as in the ftrace backend).
        body += ["struct kt_pair_val *kt_s = %s.lookup(&kt_k);" % START_MAP]
        if self.pair.shared:
            body += ["if (kt_s && kt_s->kt_ambiguous)",   # several requests: no mark
                     "    return 0;"]
        body += ["if (kt_s && !kt_s->kt_drop) {",
                 "    kt_s->kt_mark = kt_now;"]
        if deferred_expr:
            # a rejected mark ends the pair
            body += ["    if (!(%s))" % deferred_expr, "        kt_s->kt_drop = 1;"]
        body += ["    return 0;", "}"]
        for n in lazy:
            body += self._read(pe, n, "f->%s" % flayout.member(n).cname)
        self._store_start(body, pe, flayout, deferred_expr, marked=True)

    def _end_body(self, body, pe, flayout, deferred_expr, ctx):
        self._pair_key(body, pe, flayout)
        body += ["struct kt_pair_val *kt_s = %s.lookup(&kt_k);" % START_MAP, "if (!kt_s) {"]
        if deferred_expr:
            # An end its own filters reject is not reported as unmatched.
            body += ["    if (%s)" % deferred_expr, "        kt_stat(KT_UNMATCHED);"]
        else:
            body.append("    kt_stat(KT_UNMATCHED);")
        body += ["    return 0;", "}"]
        if self.pair.shared:
            # one of the ends of an ambiguous key: not measured; the last
            # one removes the key
            body.append("if (kt_s->kt_ambiguous) {")
            if deferred_expr:
                body += ["    if (%s)" % deferred_expr, "        kt_stat(KT_UNMATCHED);"]
            else:
                body.append("    kt_stat(KT_UNMATCHED);")
            if self.plan.atomic_fetch:
                body += ["    if (__sync_fetch_and_add(&kt_s->kt_more_ends, -1) == 0)",
                         "        %s.delete(&kt_k);" % START_MAP]
            else:
                # Without atomics that return the old value, two ends within
                # the same microsecond may take the same count: the key then
                # stays ambiguous (its ends unmatched, never mis-paired) for
                # as long as starts keep arriving before its last end.
                body += ["    if (kt_s->kt_more_ends)",
                         "        kt_s->kt_more_ends -= 1;",
                         "    else",
                         "        %s.delete(&kt_k);" % START_MAP]
            body += ["    return 0;", "}"]
        self._alloc(body, self.pair_val, "sv", "kt_scratch_sv", zero=False)
        body += ["__builtin_memcpy(sv, kt_s, sizeof(*sv));",
                 "%s.delete(&kt_k);" % START_MAP,
                 "if (sv->kt_drop%s)" % (" || !(%s)" % deferred_expr if deferred_expr else ""),
                 "    return 0;"]
        if self.pair.mark is None:
            body.append("u64 kt_latency = kt_now - sv->kt_ts;")
        else:
            body.append("u64 kt_latency = kt_now - (sv->kt_mark ? sv->kt_mark : sv->kt_ts);")
            if QUEUED in self._agg_fields():
                body.append("u64 kt_queued = sv->kt_mark ? sv->kt_mark - sv->kt_ts : 0;")
        start = self.by_name[self.pair.start]

        def value(name):
            if name == LATENCY:
                return "kt_latency", (U64, 8)
            if name == QUEUED:
                return "kt_queued", (U64, 8)
            if name == EVENT_NAME:
                return cfilters.int_literal(pe.index, False), (U64, 8)
            if name in self.pair.carry:
                return "sv->%s" % self.pair_val.member(name).cname, _src_kind(start, name)
            return "f->%s" % flayout.member(name).cname, _src_kind(pe, name)
        self._aggregate(body, pe, value, ctx)

    def _event_value(self, pe, flayout):
        def value(name):
            if name == EVENT_NAME:
                return cfilters.int_literal(pe.index, False), (U64, 8)
            return "f->%s" % flayout.member(name).cname, _src_kind(pe, name)
        return value

    def _aggregate(self, body, pe, value, ctx):
        a = self.agg
        if a.kind == "count":
            self.stack += self.key_layout.size + 8
            body += ["struct kt_count_key kt_ck;", "__builtin_memset(&kt_ck, 0, sizeof(kt_ck));"]
            for k in a.keys:
                m = self.key_layout.member(k)
                src, kind = value(k)
                body.append(self._assign("kt_ck.%s" % m.cname, m, src, kind))
            body += ["u64 kt_zero64 = 0;",
                     "u64 *kt_c = %s.lookup(&kt_ck);" % COUNT_MAP,
                     "if (!kt_c) {",
                     "    %s.insert(&kt_ck, &kt_zero64);" % COUNT_MAP,
                     "    kt_c = %s.lookup(&kt_ck);" % COUNT_MAP,
                     "}",
                     "if (kt_c)",
                     "    __sync_fetch_and_add(kt_c, 1);",
                     "else",
                     "    kt_stat(KT_LOST);"]
        elif a.kind == "histogram":
            src, _kind = value(a.value)
            signed = self._value_signed()
            if signed:
                div = ("kt_floordiv_s(%s, %s)" % (src, cfilters.int_literal(a.divisor, False))
                       if a.divisor > 1 else src)
                body.append("s64 kt_v = %s;" % div)
            else:
                div = ("(u64)(%s) / %s" % (src, cfilters.int_literal(a.divisor, False))
                       if a.divisor > 1 else src)
                body.append("u64 kt_v = %s;" % div)
            fn = _BUCKET_FN[a.scale] + ("_s" if signed else "_u")
            slot = ("%s(kt_v, %s)" % (fn, cfilters.int_literal(a.step, False))
                    if a.scale == LINEAR else "%s(kt_v)" % fn)
            self.stack += self.key_layout.size + self.value_layout.size + 8
            body += ["struct kt_hist_key kt_hk;", "__builtin_memset(&kt_hk, 0, sizeof(kt_hk));"]
            for k in a.keys:
                m = self.key_layout.member(k)
                src, kind = value(k)
                body.append(self._assign("kt_hk.%s" % m.cname, m, src, kind))
            body += ["kt_hk.kt_slot = %s;" % slot,
                     "struct kt_hist_val kt_hzero = {};",
                     "struct kt_hist_val *kt_h = %s.lookup(&kt_hk);" % HIST_MAP,
                     "if (!kt_h) {",
                     "    %s.insert(&kt_hk, &kt_hzero);" % HIST_MAP,
                     "    kt_h = %s.lookup(&kt_hk);" % HIST_MAP,
                     "}",
                     "if (kt_h) {",
                     "    __sync_fetch_and_add(&kt_h->count, 1);",
                     "    __sync_fetch_and_add(&kt_h->sum, kt_v);",
                     "} else {",
                     "    kt_stat(KT_LOST);",
                     "}"]
        else:
            self._alloc(body, self.record_layout, "r", "kt_scratch_record")
            body.append("r->kt_ts = kt_now;")
            for name in a.fields:
                m = self.record_layout.member(name)
                src, kind = value(name)
                body.append(self._assign("r->%s" % m.cname, m, src, kind))
            if self.plan.output == "ringbuf":
                body += ["if (%s.ringbuf_output(r, sizeof(*r), 0) != 0)" % EVENTS_MAP,
                         "    kt_stat(KT_LOST);"]
            else:
                # A full perf buffer is reported by the reader's lost callback.
                body.append("%s.perf_submit(%s, r, sizeof(*r));" % (EVENTS_MAP, ctx))

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
        if self.agg.kind == "histogram":
            parts.append(BUCKET_C.strip("\n"))
        parts.extend(self.helpers)
        parts.extend(self.funcs)
        return "\n\n".join(parts) + "\n"


def generate(measurement, plan, ringbuf_pages=buffers.DEFAULT_RINGBUF_PAGES):
    """The Program for a measurement resolved by `plan`; records go through
    a ring buffer of `ringbuf_pages` pages where the plan says ringbuf."""
    return _Gen(measurement, plan, ringbuf_pages).generate()
