"""The pairing part of the generated BPF program: the start map and what
the start, mark and end handlers do with it (core.semantics states the
rules; tests/scenarios.py checks the C against them).

    start  store {ts, kt_drop, carried fields} under the pair key (kt_drop:
           its late filters rejected it); a shared key value several starts
           hold becomes ambiguous (kt_ambiguous, kt_more_ends)
    mark   set its time in the stored start, or when none is stored (or a
           rejected one), store one itself {ts = mark = now, its own
           carried fields}
    end    look up + delete; latency = now - (mark ts, else start ts),
           queued = mark ts - start ts (0 without a mark), never below 0.
           An end without a start is counted in the per-CPU stats array;
           starts in flight at an interval boundary stay in the map
    nested a nested pair (Pair.nested) keeps each key's depth in a map of
           its own; a start is stored under (key, its level), an end
           takes the level below the depth: recursion pairs innermost
           first.  A start at or beyond the pair's depth is counted as
           dropped and not stored, so its end finds none (unmatched)
    abandon the key's life ended (Pair.abandon, a thread's exit): its
           pending starts are deleted, each counted as dropped
"""

from kerntrace.core.model import EVENT_NAME, LATENCY, QUEUED

from . import cfilters
from .cmaps import DEPTH_MAP, MAP_ENTRIES, START_MAP, STATS_MAP
from .cvalues import src_kind
from .layout import S64, U64, Layout, Member, field_member


class PairCode(object):
    """Mixin of codegen's generator: the pair's structs and handler bodies."""

    def _pair_structs(self):
        start = self.by_name[self.pair.start]
        key = [field_member(k, *src_kind(start, k)) for k in self.pair.key]
        if self.pair.nested is not None:
            # the level of a start in its key's stack (0 in the depth map's keys)
            key.append(Member("kt_depth", "kt_depth", U64))
        self.pair_key = Layout("kt_pair_key", key)
        members = [Member("kt_ts", "kt_ts", U64), Member("kt_drop", "kt_drop", U64)]
        if self.pair.mark is not None:
            # the mark's time; 0 until it is seen (no clock reads 0)
            members.append(Member("kt_mark", "kt_mark", U64))
        if self.pair.shared:
            # a shared key value several starts hold: set once they collide
            # (kt_ambiguous), with the ends still to come after the next one
            members += [Member("kt_ambiguous", "kt_ambiguous", U64),
                        Member("kt_more_ends", "kt_more_ends", U64)]
        members += [field_member(c, *src_kind(start, c)) for c in self.pair.carry]
        self.pair_val = Layout("kt_pair_val", members)
        self.decls += [self.pair_key.c_decl(), self.pair_val.c_decl(),
                       "BPF_HASH(%s, struct kt_pair_key, struct kt_pair_val, %d);"
                       % (START_MAP, MAP_ENTRIES)]
        if self.pair.nested is not None:
            self.decls.append("BPF_HASH(%s, struct kt_pair_key, u64, %d);"
                              % (DEPTH_MAP, MAP_ENTRIES))

    def _pair_key(self, body, pe, flayout):
        self.stack += self.pair_key.size
        body += ["struct kt_pair_key kt_k;", "__builtin_memset(&kt_k, 0, sizeof(kt_k));"]
        for m in self.pair_key.members:
            if m.name == "kt_depth":
                continue        # 0: set for the start map by the handler
            body.append(self._assign("kt_k.%s" % m.cname, m, "f->%s" % flayout.member(m.name).cname,
                                     src_kind(pe, m.name)))

    def _start_body(self, body, pe, flayout, deferred_expr):
        self._pair_key(body, pe, flayout)
        if self.pair.nested is not None:
            body += ["u64 kt_level = 0;",
                     "u64 *kt_d = %s.lookup(&kt_k);" % DEPTH_MAP,
                     "if (kt_d)",
                     "    kt_level = *kt_d;",
                     "u64 kt_next = kt_level + 1;",
                     # a full depth map: the start cannot be placed (its end,
                     # finding no depth, is unmatched)
                     "if (%s.update(&kt_k, &kt_next) != 0 || kt_level >= %d) {"
                     % (DEPTH_MAP, self.pair.nested),
                     "    kt_stat(KT_DROPPED_STARTS);",
                     "    return 0;",
                     "}",
                     "kt_k.kt_depth = kt_level;"]
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
                                     "f->%s" % flayout.member(c).cname, src_kind(pe, c)))
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
        body += self._read_all(pe, lazy, flayout)
        self._store_start(body, pe, flayout, deferred_expr, marked=True)

    def _abandon_body(self, body, pe, flayout):
        """The key's life ended (its thread exited): its pending starts are
        deleted, each one not rejected counted as dropped (core.semantics)."""
        self._pair_key(body, pe, flayout)
        drop = ["    if (!kt_s->kt_drop)", "        kt_stat(KT_DROPPED_STARTS);",
                "    %s.delete(&kt_k);" % START_MAP]
        if self.pair.nested is None:
            body += ["struct kt_pair_val *kt_s = %s.lookup(&kt_k);" % START_MAP,
                     "if (kt_s) {"] + drop + ["}"]
            return
        n = self.pair.nested
        # Every level's branches end in the same state (the count goes
        # straight to the stats slot, not into a variable), so the verifier
        # prunes the loop instead of walking 2^levels paths.
        body += ["u64 *kt_d = %s.lookup(&kt_k);" % DEPTH_MAP,
                 "if (!kt_d)",
                 "    return 0;",
                 "u32 kt_levels = *kt_d < %d ? *kt_d : %d;" % (n, n),
                 "%s.delete(&kt_k);" % DEPTH_MAP,
                 "u32 kt_idx = KT_DROPPED_STARTS;",
                 "u64 *kt_n = %s.lookup(&kt_idx);" % STATS_MAP,
                 "if (!kt_n)",
                 "    return 0;",
                 "for (u32 kt_i = 0; kt_i < %d; kt_i++) {" % n,
                 "    if (kt_i >= kt_levels)",
                 "        break;",
                 "    kt_k.kt_depth = kt_i;",
                 "    struct kt_pair_val *kt_s = %s.lookup(&kt_k);" % START_MAP,
                 "    if (!kt_s)",
                 "        continue;",
                 "    if (!kt_s->kt_drop)",
                 "        __sync_fetch_and_add(kt_n, 1);",
                 "    %s.delete(&kt_k);" % START_MAP,
                 "}"]

    @staticmethod
    def _unmatched(body, deferred_expr):
        if deferred_expr:
            # An end its own filters reject is not reported as unmatched.
            body += ["    if (%s)" % deferred_expr, "        kt_stat(KT_UNMATCHED);"]
        else:
            body.append("    kt_stat(KT_UNMATCHED);")
        body += ["    return 0;", "}"]

    def _end_body(self, body, pe, flayout, deferred_expr, ctx):
        self._pair_key(body, pe, flayout)
        if self.pair.nested is not None:
            # the innermost level of the key's stack is this end's
            body += ["u64 *kt_d = %s.lookup(&kt_k);" % DEPTH_MAP, "if (!kt_d || !*kt_d) {"]
            self._unmatched(body, deferred_expr)
            body += ["u64 kt_level = *kt_d - 1;",
                     "if (kt_level)",
                     "    *kt_d = kt_level;",
                     "else",
                     "    %s.delete(&kt_k);" % DEPTH_MAP,
                     "kt_k.kt_depth = kt_level;"]
        body += ["struct kt_pair_val *kt_s = %s.lookup(&kt_k);" % START_MAP, "if (!kt_s) {"]
        self._unmatched(body, deferred_expr)
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
        # a time before the start's (clock skew between CPUs) counts as 0,
        # as core.semantics says
        if self.pair.mark is None:
            body.append("u64 kt_from = sv->kt_ts;")
        else:
            body.append("u64 kt_from = sv->kt_mark ? sv->kt_mark : sv->kt_ts;")
            if QUEUED in self._agg_fields():
                body.append("u64 kt_queued = sv->kt_mark > sv->kt_ts ? "
                            "sv->kt_mark - sv->kt_ts : 0;")
        body.append("u64 kt_latency = kt_now > kt_from ? kt_now - kt_from : 0;")
        if self.pair.min_latency:
            # faster than the pair's threshold: nothing to report
            body += ["if (kt_latency < %s)" % cfilters.int_literal(self.pair.min_latency, False),
                     "    return 0;"]
        start = self.by_name[self.pair.start]

        def value(name):
            if name == LATENCY:
                return "kt_latency", (U64, 8)
            if name == QUEUED:
                return "kt_queued", (U64, 8)
            if name == EVENT_NAME:
                return cfilters.int_literal(pe.index, False), (U64, 8)
            if name in self.pair.carry:
                return "sv->%s" % self.pair_val.member(name).cname, src_kind(start, name)
            return "f->%s" % flayout.member(name).cname, src_kind(pe, name)
        self._aggregate(body, pe, value, ctx)
