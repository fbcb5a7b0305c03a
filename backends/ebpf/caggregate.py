"""The aggregate part of the generated BPF program: what a handler does
with its values (histogram slot and sum, count, record)."""

from kerntrace.core.model import LINEAR

from . import cfilters
from .cbuckets import BUCKET_FN
from .cmaps import COUNT_MAP, EVENTS_MAP, HIST_MAP, MEMSET_CHUNK


class AggregateCode(object):
    """Mixin of codegen's generator: the aggregate's code in a handler."""

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
            fn = BUCKET_FN[a.scale] + ("_s" if signed else "_u")
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
            # Every member is assigned below, or belongs to another event
            # and is None in user space: a big record (execsnoop's argv) is
            # not zeroed first, which would cost a store per 8 bytes.
            if self._f_is_record:
                body.append("struct kt_record *r = f;    /* read into it */")
            else:
                self._alloc(body, self.record_layout, "r", "kt_scratch_record",
                            zero=self.record_layout.size <= MEMSET_CHUNK)
            body.append("r->kt_ts = kt_now;")
            for name in a.fields:
                m = self.record_layout.member(name)
                src, kind = value(name)
                if src is None:
                    continue        # another event's field: None in user space
                if self._f_is_record and src == "f->%s" % m.cname:
                    continue        # read there
                body.append(self._assign("r->%s" % m.cname, m, src, kind))
            if self.plan.output == "ringbuf":
                # (kt_wakeup_flags: the reader is woken once per batch)
                body += ["if (%s.ringbuf_output(r, sizeof(*r), kt_wakeup_flags()) != 0)"
                         % EVENTS_MAP,
                         "    kt_stat(KT_LOST);"]
            else:
                # A full perf buffer is reported by the reader's lost callback.
                body.append("%s.perf_submit(%s, r, sizeof(*r));" % (EVENTS_MAP, ctx))
