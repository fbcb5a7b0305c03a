"""The ftrace backend's per-event handlers, generated as Python source.

For each logical event one small Python function is generated, like the
eBPF backend generates C: it reads only the fields it needs, by position,
and does the filtering, pairing and bucketing inline (a busy disk makes
hundreds of thousands of events a second).  What it does is what
core.semantics specifies; the shared scenario table checks the two agree.

Only identifiers validated by the model (logical field names) appear in
the source; every value (filter constants, format field names, event
names) is passed in the function's namespace, never spliced into code.

Pending pair starts (pending.PendingStarts): the start's time stamp alone,
or a tuple (ts, carried fields...).  A pair with a mark keeps a list
[start ts, mark ts or None, carried fields...] that its mark handler
updates in place.
"""

import re

from kerntrace.core.model import EVENT_NAME, LATENCY, LINEAR, LOG2, POW2_MS, QUEUED
from kerntrace.core.semantics import early_filters, late_filters

from .plan import own_comm_field

# core.buckets' bucket_index() as inline expressions (a call per event
# costs more than the arithmetic); tests compare the two on many values.
BUCKET_EXPR = {
    LOG2: "%(v)s.bit_length() if %(v)s > 0 else 1",
    LINEAR: "%(v)s // _step if %(v)s > 0 else 0",
    POW2_MS: "0 if %(v)s <= _NS_PER_MS else ((%(v)s + _NS_PER_MS - 1) // _NS_PER_MS - 1).bit_length()",
}

_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class _Code(object):
    """Source lines of one generated handler, with the values it loads."""

    def __init__(self):
        self.lines = []
        self.loaded = set()

    def emit(self, line, indent=1):
        self.lines.append("    " * indent + line)


def _check_name(name):
    if not _SAFE_NAME.match(name):
        raise ValueError("not an identifier: %r" % (name,))
    return name


class _EventProgram(object):
    """The generated handler of one logical event."""

    def __init__(self, builder, resolved, role):
        self.builder = builder
        self.resolved = resolved
        self.logical = resolved.logical
        self.role = role                   # "plain", "start", "mark", "end" or "abandon"
        self.fmt = resolved.format
        self.names = []                    # format field names read, in v[1:] order
        self.ns = {}
        self.code = _Code()
        self._consts = 0

    # -- values ------------------------------------------------------------
    def const(self, value, prefix="_c"):
        name = "%s%d" % (prefix, self._consts)
        self._consts += 1
        self.ns[name] = value
        return name

    def _format_has(self, fname):
        return self.fmt is None or self.fmt.field(fname) is not None

    def _field_index(self, fname):
        if fname not in self.names:
            self.names.append(fname)
        # v[0] is the thread id; fields follow.  Named in finish().
        return "v[@%s@]" % fname

    def load(self, name):
        """Emit code that puts logical value `name` in variable x_<name>
        (once) and return the variable name."""
        var = "x_" + _check_name(name)
        if name in self.code.loaded:
            return var
        self.code.loaded.add(name)
        emit = self.code.emit
        if name == EVENT_NAME:
            emit("%s = %s" % (var, self.const(self.logical.name, "_event")))
        elif name == "ts":
            emit("%s = ts" % var)
        elif name == "cpu":
            emit("%s = cpu" % var)
        elif name == "tid":
            emit("%s = v[0]" % var)
        elif name == "pid":
            if self._task_entry():
                # TaskInfo.tgid()'s first answer inline: the task events' own
                emit("%s = tgid if tgid is not None else (e[1] if e is not None and "
                     "e[1] is not None else _tgid_of(v[0]))" % var)
            else:
                emit("%s = tgid if tgid is not None else _tgid_of(v[0])" % var)
        elif name == "uid":
            # no record carries it: /proc now, best-effort (model.CONTEXT_FIELDS)
            emit("%s = _uid_of(v[0])" % var)
        elif name == "comm":
            own = self._own_comm_field()
            if own is not None:
                emit("%s = comm if comm is not None else %s" % (var, self._field_index(own)))
            elif self._task_entry():
                # TaskInfo.comm()'s first answer inline: the task events' own
                emit("%s = comm if comm is not None else (e[0] if e is not None and "
                     "e[0] is not None else _comm_of(v[0]))" % var)
            else:
                emit("%s = comm if comm is not None else _comm_of(v[0])" % var)
                # (the kernel's task events name it at the event, if followed)
                self.comm_after_the_fact = not self.builder.tasks.follows_events
        elif name in self.resolved.probe.values:
            # an INT the probe sets itself (model.KernelFunction values)
            emit("%s = %s" % (var, self.const(self.resolved.probe.values[name])))
            self._derive(name, var)
        else:
            fname = self.resolved.fields.get(name)
            if fname is None or not self._format_has(fname):
                emit("%s = None" % var)
            else:
                emit("%s = %s" % (var, self._field_index(fname)))
            self._derive(name, var)
        return var

    def _derive(self, name, var):
        """A declared field's if_zero fallback and override (model.Field)."""
        field = self.logical.field(name)
        if field is None:
            return
        emit = self.code.emit
        if field.if_zero is not None:
            other, factor = field.if_zero
            dep = self.load(other)
            emit("if not %s and %s is not None:" % (var, dep))
            emit("%s = %s * %s" % (var, dep, self.const(factor)), 2)
        if field.override is not None:
            filters, value = field.override
            tests = []
            for f in filters:
                dep = self.load(f.field)
                tests.append("(%s is not None and %s)" % (dep, self.match_expr(f, dep)))
            emit("if %s:" % " or ".join(tests))
            emit("%s = %s" % (var, self.const(value)), 2)

    comm_after_the_fact = False
    _entry_loaded = False

    def _task_entry(self):
        """Where the task events name the threads (TaskInfo.follows_events,
        fixed before the handlers are made): load the thread's entry into
        `e` once (a call per name and pid per event cost more); else
        False."""
        tasks = self.builder.tasks
        if not getattr(tasks, "follows_events", False) or not hasattr(tasks, "entry_getter"):
            return False
        if not self._entry_loaded:
            self._entry_loaded = True
            self.code.emit("e = _task_entry(v[0])")
        return True

    def match_expr(self, f, var):
        """f.matches(var) as an inline expression (a call per event, and
        working out a glob's parts each time, cost more than the test)."""
        if f.op != "glob":
            return "%s %s %s" % (var, f.op, self.const(f.value))
        start, text, end = f.glob_parts()
        c = self.const(text)
        if start and end:
            return "%s == %s" % (var, c)
        if start:
            return "%s.startswith(%s)" % (var, c)
        if end:
            return "%s.endswith(%s)" % (var, c)
        return "%s in %s" % (c, var)

    def _own_comm_field(self):
        return own_comm_field(self.resolved)

    # -- filters -----------------------------------------------------------
    def filters(self, which, reject=()):
        """Return from the handler when one of the filters `which` rejects
        the event, after the `reject` statements."""
        for f in which:
            var = self.load(f.field)
            c = self.const(f.value)
            if f.op == "glob":
                self.code.emit("if %s is None or not %s:" % (var, self.match_expr(f, var)))
            elif f.op == "==":
                self.code.emit("if %s != %s:" % (var, c))
            elif f.op == "!=":
                self.code.emit("if %s is None or %s == %s:" % (var, var, c))
            else:
                self.code.emit("if %s is None or not (%s %s %s):" % (var, var, f.op, c))
            for line in reject:
                self.code.emit(line, 2)
            self.code.emit("return", 2)

    # -- finishing -----------------------------------------------------------
    def finish(self):
        """Compile; returns the handler function."""
        if self.fmt is not None:
            # struct reads in offset order: ask for the fields that way
            self.names.sort(key=lambda n: self.fmt.field(n).offset)
        body = "\n".join(self.code.lines) or "    pass"
        # one unpacking of v up front is cheaper than indexing it per value
        for i, n in enumerate(self.names):
            body = body.replace("v[@%s@]" % n, "_v%d" % (i + 1))
        body = body.replace("v[0]", "_v0")
        unpack = "    %s, = v\n" % ", ".join("_v%d" % i for i in range(len(self.names) + 1))
        # n: how many identical events the call stands for (a Count's rows
        # counted per page: pagecount.py); 1 everywhere else
        src = "def handler(ts, cpu, v, comm=None, tgid=None, n=1):\n" + unpack + body + "\n"
        self.source = src
        ns = dict(self.builder.namespace)
        ns.update(self.ns)
        exec(compile(src, "<kerntrace aggregate %s>" % self.logical.name, "exec"), ns)
        return ns["handler"]


class HandlerBuilder(object):
    """Generates and compiles the handler of every planned event.

        builder = HandlerBuilder(measurement, plan, tasks, namespace)
        for resolved, names, handler, source in builder.build(): ...

    `namespace` holds what the handlers use at run time (the pending
    table, the aggregate's dicts, counters): see Aggregator."""

    def __init__(self, measurement, plan, tasks, namespace):
        self.m = measurement
        self.plan = plan
        self.tasks = tasks
        self.namespace = namespace
        self.carry_comm_flag = None     # index of the "comm looked up" flag
        self.start_tuple = True
        pair = measurement.pair
        # a pending entry's first carried field: after the start's (and the
        # mark's) time stamp
        self.carry_base = 2 if pair is not None and pair.mark is not None else 1

    def build(self):
        """[(resolved event, format field names read, handler, source)] for
        the planned events the measurement uses."""
        pair = self.m.pair
        roles = []
        for resolved in self.plan.events:
            name = resolved.logical.name
            if pair is None:
                roles.append((0, resolved, "plain"))
            elif name == pair.start:
                roles.append((0, resolved, "start"))
            elif name == pair.mark:
                roles.append((1, resolved, "mark"))  # after the start: it writes its layout
            elif name == pair.end:
                roles.append((2, resolved, "end"))   # after the start: it reads its layout
            elif name == pair.abandon:
                roles.append((3, resolved, "abandon"))
            # else: an event the pair does not use
        out = []
        for _order, resolved, role in sorted(roles, key=lambda r: r[0]):
            prog = _EventProgram(self, resolved, role)
            getattr(self, "gen_" + role)(prog)
            handler = prog.finish()
            out.append((resolved, tuple(prog.names), handler, prog.source))
        return out

    def _aggregate_names(self):
        agg = self.m.aggregate
        if agg.kind == "histogram":
            return list(agg.keys) + [agg.value]
        if agg.kind == "count":
            return list(agg.keys)
        return list(agg.fields)

    def gen_plain(self, prog):
        prog.filters(early_filters(self.m, prog.logical))
        self.gen_aggregate(prog, {})

    def gen_start(self, prog):
        pair = self.m.pair
        emit = prog.code.emit
        # core.semantics: pair filters first, then shared keys, then the
        # start's other filters
        prog.filters(early_filters(self.m, prog.logical))
        emit("k = %s" % _tuple_src([prog.load(k) for k in pair.key]))
        if pair.nested is not None:
            self.gen_push(prog)
            return
        shared = self._shared_test(prog)
        if shared:
            # another request in flight with this key: whose end is whose
            # can no longer be told (whether this one passes the filters or not)
            emit("if %s and k in _pending:" % shared)
            emit("_share(k)", 2)
            emit("return", 2)
        # A start its filters reject still takes its key, so that its end is
        # neither measured nor counted unmatched.
        prog.filters(late_filters(self.m, prog.logical),
                     reject=("_reject_start(k)",))
        carried = self._carried(prog)
        if pair.mark is not None:
            # a list: the mark handler sets its time in place
            emit("_pending[k] = [%s]" % ", ".join(["ts", "None"] + carried))
        else:
            # nothing carried: the start's time stamp alone, no tuple per event
            self.start_tuple = bool(carried)
            emit("_pending[k] = %s" % (_tuple_src(["ts"] + carried) if carried else "ts"))
        # (a reused key replaces the old start, which keeps its age rank)
        emit("if len(_pending) > _max_pending:")
        emit("_drop_oldest()", 2)

    def gen_push(self, prog):
        """A nested pair's start: pushed on its key's stack (a Stack,
        innermost last); beyond the depth a _TOO_DEEP placeholder keeps the
        level (core.semantics)."""
        emit = prog.code.emit
        emit("st = _pending_get(k)")
        emit("if st is None:")
        emit("st = _pending[k] = _Stack()", 2)
        emit("if len(_pending) > _max_pending:", 2)
        emit("_drop_oldest()", 3)
        emit("if len(st) >= %d:" % self.m.pair.nested)
        emit("_st.dropped_starts += 1", 2)
        emit("st.append(_TOO_DEEP)", 2)
        emit("return", 2)
        prog.filters(late_filters(self.m, prog.logical), reject=("st.append(_REJECTED)",))
        carried = self._carried(prog)
        self.start_tuple = bool(carried)
        emit("st.append(%s)" % (_tuple_src(["ts"] + carried) if carried else "ts"))

    def _shared_test(self, prog):
        """Python test of `k` for a shared key value (Pair.shared), or None."""
        pair = self.m.pair
        tests = ["k[%d] == %s" % (pair.key.index(f), prog.const(v))
                 for f, v in sorted(pair.shared.items())]
        return " and ".join(tests) or None

    def _carried(self, prog):
        """Variables of the carried fields as `prog` reads them, then the
        best-effort comm flag where records need it."""
        pair = self.m.pair
        carried = [prog.load(c) for c in pair.carry]
        agg = self.m.aggregate
        if prog.role == "start":
            if (agg.kind == "records" and "comm" in agg.fields and "comm" in pair.carry
                    and prog.comm_after_the_fact):
                # remember whether the carried comm was looked up after the fact
                carried.append("comm is None")
                self.carry_comm_flag = self.carry_base + len(carried) - 1
        elif self.carry_comm_flag is not None:
            # the same layout as the start's (a mark starting a pair)
            carried.append("comm is None" if prog.comm_after_the_fact else "False")
        return carried

    def gen_mark(self, prog):
        """Set the mark's time in the pending start; only when no start is
        pending does the mark start the pair (and read what it carries)."""
        pair = self.m.pair
        emit = prog.code.emit
        prog.filters(early_filters(self.m, prog.logical))
        emit("k = %s" % _tuple_src([prog.load(k) for k in pair.key]))
        # a rejected mark ends the pair: its end is then dropped, as after a
        # rejected start
        prog.filters(late_filters(self.m, prog.logical),
                     reject=("_reject_start(k)",))
        emit("s = _pending_get(k)")
        emit("if s is not None and s is not _REJECTED:")
        if pair.shared:
            emit("if s.__class__ is not _Shared:", 2)   # several requests: no mark
            emit("s[1] = ts", 3)
        else:
            emit("s[1] = ts", 2)
        emit("return", 2)
        carried = self._carried(prog)
        emit("_pending[k] = [%s]" % ", ".join(["ts", "ts"] + carried))
        emit("if len(_pending) > _max_pending:")
        emit("_drop_oldest()", 2)

    def gen_abandon(self, prog):
        """The key's life ended: its pending starts are forgotten, each one
        that would have been measured counted as dropped (core.semantics)."""
        emit = prog.code.emit
        prog.filters(early_filters(self.m, prog.logical))
        emit("k = %s" % _tuple_src([prog.load(k) for k in self.m.pair.key]))
        emit("s = _pending_pop(k, None)")
        emit("if s is None or s is _REJECTED or s is _TOO_DEEP:")
        emit("return", 2)
        emit("if s.__class__ is _Stack:")
        emit("_st.dropped_starts += sum(1 for x in s if x is not _REJECTED and "
             "x is not _TOO_DEEP)", 2)
        emit("else:")
        emit("_st.dropped_starts += 1", 2)

    def gen_end(self, prog):
        pair = self.m.pair
        emit = prog.code.emit
        prog.filters(early_filters(self.m, prog.logical))
        key = _tuple_src([prog.load(k) for k in pair.key])
        emit("k = %s" % key)
        if pair.nested is not None:
            # the innermost start of the key's stack is this end's
            emit("st = _pending_get(k)")
            emit("s = st.pop() if st else None")
            emit("if st is not None and not st:")
            emit("del _pending[k]", 2)
            emit("if s is _TOO_DEEP:")
            emit("s = None", 2)
        else:
            emit("s = _pending_pop(k, None)")
        # an end its filters reject ends its pair (one of a shared key's)
        prog.filters(late_filters(self.m, prog.logical),
                     reject=("_end_shared(k, s, False)",) if pair.shared else ())
        emit("if s is None:")
        emit("_st.unmatched += 1", 2)
        emit("return", 2)
        if pair.shared:
            emit("if s.__class__ is _Shared:")
            emit("_end_shared(k, s, True)", 2)
            emit("return", 2)
        emit("if s is _REJECTED:")
        emit("return", 2)
        if pair.mark is None:
            emit("x_latency = ts - %s" % ("s[0]" if self.start_tuple else "s"))
        else:
            emit("m = s[1]")
            emit("if m is None:")
            emit("x_latency = ts - s[0]", 2)
            if QUEUED in self._aggregate_names():
                emit("x_queued = 0", 2)
                emit("else:")
                emit("x_latency = ts - m", 2)
                emit("x_queued = m - s[0]", 2)
                emit("if x_queued < 0:", 2)
                emit("x_queued = 0", 3)
                prog.code.loaded.add(QUEUED)
            else:
                emit("else:")
                emit("x_latency = ts - m", 2)
        emit("if x_latency < 0:")
        # clock skew between CPUs: never a negative latency
        emit("x_latency = 0", 2)
        if pair.min_latency:
            emit("if x_latency < %s:" % prog.const(pair.min_latency))
            emit("return", 2)
        prog.code.loaded.add(LATENCY)
        carried = {}
        for i, c in enumerate(pair.carry):
            var = "x_" + _check_name(c)
            emit("%s = s[%d]" % (var, i + self.carry_base))
            prog.code.loaded.add(c)
            carried[c] = var
        self.gen_aggregate(prog, carried)

    def gen_aggregate(self, prog, carried):
        agg = self.m.aggregate
        emit = prog.code.emit
        if agg.kind == "histogram":
            keys = _tuple_src([prog.load(k) for k in agg.keys])
            val = prog.load(agg.value)
            if agg.value not in (LATENCY, QUEUED, "ts", "tid", "cpu"):
                # a field the event could not provide (or a pid nobody knows)
                emit("if %s is None:" % val)
                emit("_st.incomplete += 1", 2)
                emit("return", 2)
            if agg.divisor != 1:
                emit("%s = %s // _div" % (val, val))
            emit("hk = %s" % keys)
            emit("h = _hists_get(hk)")
            emit("if h is None:")
            emit("h = _hists[hk] = _Hist(_scale, _unit, _step)", 2)
            # Histogram.add() inlined (count is summed at collect())
            emit("b = h.buckets")
            emit("i = %s" % (BUCKET_EXPR[agg.scale] % {"v": val}))
            emit("b[i] = b.get(i, 0) + 1")
            emit("h.total += %s" % val)
        elif agg.kind == "count":
            keys = _tuple_src([prog.load(k) for k in agg.keys])
            emit("ck = %s" % keys)
            emit("_counts[ck] = _counts_get(ck, 0) + n")
        else:
            pairs = ", ".join("%r: %s" % (_check_name(f), prog.load(f)) for f in agg.fields)
            # comm looked up in /proc after the event is marked best effort,
            # and a uid always is (looked up when decoded)
            be, be_comm = ("_BE_UID", "_BE_COMM_UID") if "uid" in agg.fields else (
                "_EMPTY", "_BE_COMM")
            if "comm" in carried and self.carry_comm_flag:
                emit("_records_append(_Record(ts, {%s}, %s if s[%d] else %s))"
                     % (pairs, be_comm, self.carry_comm_flag, be))
            elif "comm" in agg.fields and "comm" not in carried and prog.comm_after_the_fact:
                emit("_records_append(_Record(ts, {%s}, %s if comm is not None else %s))"
                     % (pairs, be, be_comm))
            elif be != "_EMPTY":
                emit("_records_append(_Record(ts, {%s}, %s))" % (pairs, be))
            else:
                emit("_records_append(_Record(ts, {%s}))" % pairs)


def _tuple_src(items):
    if not items:
        return "_EMPTY"
    return "(%s,)" % ", ".join(items)
