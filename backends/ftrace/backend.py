"""FtraceBackend: kerntrace through tracefs, for kernels (or hosts) where
eBPF cannot run.  Aggregation happens in user space (aggregate.py).

check() resolves every logical event to the first probe alternative this
host has (tracepoint format files, uprobe_events + an ELF symbol,
kprobe_events, or the function tracer) and every field to a format field,
and decides the rest of the run (plan.Plan), without writing anything;
open() builds a LiveSession from that plan (or, for --input, a
ReplaySession that needs no kernel at all).
"""

import errno
import os
import re

from kerntrace.core import tracefs
from kerntrace.core.backend import (Backend, Capability, RunOptions, Verdict, check_plan_options,
                                    members_left_out, probe_choice)
from kerntrace.core.errors import Unsupported
from kerntrace.core.model import KSTACK, STR, USTR, Each

from . import NAME, PREFERENCE, RECORDS, REPLAYS
from . import instance as inst
from . import funcprofile, histcount, kfilter, pagecount, probes, tasks
from .plan import Plan, ResolvedEvent, field_source

# Per-CPU buffer of our instance.  Block and most tools: 4 MB per CPU (what
# perf-tools uses); probes and high-rate tracepoint families get more.  The
# total over all CPUs is capped so big machines do not pin gigabytes.
DEFAULT_BUFFER_KB = 4096
HIGH_RATE_BUFFER_KB = 8192
HIGH_RATE_SYSTEMS = ("syscalls", "raw_syscalls", "sched", "irq", "kmem", "ftrace", "net")
TOTAL_BUFFER_CAP_KB = 256 * 1024


class Features(object):
    """What the tracefs at `root` offers, read once, nothing written."""

    def __init__(self, root):
        self.root = root
        self.readme = tracefs.read_text(os.path.join(root, "README")) or ""
        self.instances = os.path.isdir(os.path.join(root, "instances"))
        self.raw = (os.path.exists(os.path.join(root, "per_cpu", "cpu0", "trace_pipe_raw"))
                    and os.path.exists(os.path.join(root, "events", "header_page")))
        self.uprobe_events = os.path.exists(os.path.join(root, "uprobe_events"))
        self.kprobe_events = os.path.exists(os.path.join(root, "kprobe_events"))
        # Since Linux commit 88903c464321 ("tracing/probe: Add ustring type
        # for user-space string") (v5.5) the README lists the ustring type.
        self.ustring = "ustring" in self.readme
        # Since Linux commit "trace_uprobe: Support SDT markers having
        # reference count (semaphore)" (v4.20) the README shows
        # "<path>:<offset>[%return][(ref_ctr_offset)]".
        self.uprobe_ref_ctr = "ref_ctr_offset" in self.readme
        # Since Linux commit "tracing/probe: Add immediate parameter
        # support" (v5.7) the README lists "\\imm-value" fetch args.
        self.immediate = "\\imm-value" in self.readme
        tracers = (tracefs.read_text(os.path.join(root, "available_tracers")) or "").split()
        self.function_tracer = "function" in tracers
        text = tracefs.read_text(os.path.join(root, "tracing_on"))
        self.tracing_on = text.strip()[:1] if text else None
        # Every buffer (an instance too) has the top level's options and
        # files; a new instance starts with the default clock.
        self.clocks = tracefs.read_text(os.path.join(root, "trace_clock")) or ""
        # Since Linux commit d914ba37d714 ("tracing: Add support for
        # recording tgid of tasks") (v4.13).
        self.record_tgid = os.path.exists(os.path.join(root, "options", "record-tgid"))
        self.event_pid = (os.path.exists(os.path.join(root, "set_event_pid"))
                          and os.path.exists(os.path.join(root, "options", "event-fork")))
        # options/stacktrace: a kernel_stack record after each event
        self.stacktrace = os.path.exists(os.path.join(root, "options", "stacktrace"))
        self._ftrace_filter_error = False

    def mono_clock(self, instances):
        """"mono" when the buffer should be switched to it, else None.
        CLOCK_MONOTONIC makes timestamps comparable with other sources;
        kernels without it keep their default clock, and a top level that
        already uses it is left alone."""
        if not re.search(r"(^|\s|\[)mono(\]|\s|$)", self.clocks):
            return None
        if not instances and "[mono]" in self.clocks:
            return None
        return "mono"

    def headers(self):
        """(header_page, header_event) texts: the raw ring buffer layout."""
        return tuple(tracefs.read_text(os.path.join(self.root, "events", name)) or ""
                     for name in ("header_page", "header_event"))

    @property
    def ftrace_filter_error(self):
        """Why set_ftrace_filter cannot be written, or None.  Probed only
        when a plan needs it: closing a written-to set_ftrace_filter makes
        the kernel re-apply the function filter."""
        if self._ftrace_filter_error is False:
            self._ftrace_filter_error = _writable(os.path.join(self.root, "set_ftrace_filter"))
        return self._ftrace_filter_error

    @property
    def function_filtering(self):
        return self.function_tracer and self.ftrace_filter_error is None


def _writable(path):
    """None if `path` can be opened for writing, else why not.  Opened
    O_APPEND and closed without writing, which changes nothing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as e:
        return "%s (%s)" % (errno.errorcode.get(e.errno, e.errno), e.strerror)
    os.close(fd)
    return None


def _described(event, why):
    """Reasons per alternative of `event`, each naming its probe."""
    return [r if r.startswith(p.describe()) else "%s: %s" % (p.describe(), r)
            for p, r in zip(event.probes, why)]


def _lookup_allowed(measurement, event):
    """Whether `event` may leave its lookup fields unread: it has some and
    no filter tests them (a filter needs the value when the event comes)."""
    names = set(f.name for f in event.fields if f.lookup is not None)
    return bool(names) and not any(f.field in names for f in measurement.filters_for(event))


def _lookup_choice(event, chosen, evs, why):
    looked = ", ".join("%s from %s after the fact (best-effort)" % (f.name, f.lookup.describe())
                       for f in event.fields if f.lookup is not None
                       and any(f.name not in ev.fields for ev in evs))
    return "event %s from %s, %s (not %s)" % (event.name, chosen.describe(), looked,
                                             "; ".join(why))


def default_buffer_kb(plan, ncpus=None):
    """Per-CPU KB for the events of `plan` (anything with .events)."""
    ncpus = ncpus or os.cpu_count() or 1
    high = any(ev.system in HIGH_RATE_SYSTEMS or ev.probe_def for ev in plan.events)
    kb = HIGH_RATE_BUFFER_KB if high else DEFAULT_BUFFER_KB
    return max(1024, min(kb, TOTAL_BUFFER_CAP_KB // ncpus))


def _stack_support(host, feats):
    """(kernel_stack EventFormat or None on the text path, None), or (None,
    why kernel stacks cannot be taken here).  They come from
    options/stacktrace in the run's own buffer, not from a `stacktrace`
    trigger on the event ("tracing: Add 'stacktrace' event trigger command",
    v3.14): before Linux commit ce33c845b030 ("tracing: Dump stacktrace
    trigger to the corresponding instance") (v5.17) that trigger wrote
    into the top-level buffer whatever instance it was set in, and the
    files cannot tell which kernel does which; the option writes to its
    own buffer, which holds only the run's events, each stack right after
    its event."""
    if not feats.stacktrace:
        return None, "kernel stacks: no options/stacktrace in this tracefs"
    if not feats.raw:
        return None, None           # trace_pipe prints them named: no format needed
    fmt = host.event_format("ftrace", "kernel_stack")
    if fmt is None:
        return None, "kernel stacks: no ftrace/kernel_stack event format"
    from .kstacks import StackFormatError, StackLayout
    try:
        StackLayout(fmt)
    except StackFormatError as e:
        return None, "kernel stacks: %s" % e
    return fmt, None


def live_plan(measurement, resolved, feats, task_events, options):
    """The Plan of a live run: the resolved events and every decision the
    session acts on, made here once."""
    kernel_filters, fallbacks = {}, {}
    for ev in resolved:
        # (A probe we define has no format yet: kfilter then trusts the
        # field kinds fetch_args gave it, s64 integers and strings.)
        clause_list = kfilter.clauses(kfilter.kernel_side_filters(measurement, ev.logical), ev)
        kernel_filters[ev.name] = kfilter.expression(clause_list) or None
        fallback = kfilter.expression(kfilter.without_globs(clause_list))
        fallbacks[ev.name] = fallback if fallback and fallback != kernel_filters[ev.name] \
            else None
    buffer_kb = options.buffer_kb or default_buffer_kb(Plan(resolved))
    header_page, header_event = feats.headers() if feats.raw else ("", "")
    plan = Plan(resolved, read_path="raw" if feats.raw else "text",
                kernel_filters=kernel_filters, filter_fallbacks=fallbacks,
                instances=feats.instances, task_events=task_events,
                tracefs_root=feats.root,
                instance_name=inst.instance_name(options.tool) if feats.instances else None,
                buffer_kb=buffer_kb,
                buffer_source="--buffer-kb" if options.buffer_kb else "default for these events",
                trace_clock=feats.mono_clock(feats.instances), record_tgid=feats.record_tgid,
                event_pid=kfilter.pid_for_set_event_pid(measurement) if feats.event_pid
                else None,
                header_page=header_page, header_event=header_event,
                plan_key=options.plan_key())
    return with_event_instances(measurement, with_count_route(measurement, plan), options)


def with_event_instances(measurement, plan, options):
    """The plan with one instance per event where bulkpair pairs the events
    (its split is fastest on pages of one entry size)."""
    if not plan.instances or plan.read_path != "raw" or measurement.pair is None:
        return plan
    from .bulkpair import bulk_pairs
    if bulk_pairs(measurement, plan) is not None:
        return plan
    names = [plan.instance_name] + [inst.instance_name(options.tool)
                                    for _ in plan.events[1:]]
    return plan.replace(event_instances=names)


def with_count_route(measurement, plan):
    """The plan with how a plain count is counted (pagecount.py)."""
    if measurement.aggregate.kind != "count" or measurement.pair is not None:
        return plan
    triggers = histcount.hist_route(measurement, plan)
    if not isinstance(triggers, str):
        return plan.replace(count_route="hist", count_triggers=triggers)
    why = pagecount.counts_from_pages(measurement, plan)
    if why is None:
        return plan.replace(count_route="pages", count_note=triggers)
    return plan.replace(count_route=None, count_note="%s; %s" % (triggers, why))


class FtraceBackend(Backend):
    name = NAME
    preference = PREFERENCE
    replays = REPLAYS

    # -- capabilities --------------------------------------------------------
    def capabilities(self, host):
        caps = [Capability("root", host.is_root(), "effective uid %d" % os.geteuid(), NAME)]
        loc = host.tracefs()
        if loc is None:
            caps.append(Capability("tracefs", False, host.tracefs_missing(), NAME))
            return caps
        f = Features(loc.path)
        caps.append(Capability("tracefs", True, "%s: %s" % (loc.path, loc.how), NAME))
        caps.append(Capability("instances", f.instances,
                               "instances/ present: private buffer per run" if f.instances else
                               "no instances/: top-level buffer under %s" % "/var/tmp/.ftrace-lock",
                               NAME))
        caps.append(Capability("trace_pipe_raw", f.raw,
                               "binary per-CPU reads" if f.raw else "text trace_pipe only", NAME))
        caps.append(Capability("kprobe_events", f.kprobe_events,
                               "kprobe_events %s" % ("present" if f.kprobe_events else
                                                     "missing (CONFIG_KPROBE_EVENTS off)"), NAME))
        caps.append(Capability("uprobe_events", f.uprobe_events,
                               "uprobe_events %s" % ("present" if f.uprobe_events else
                                                     "missing (CONFIG_UPROBE_EVENTS off)"), NAME))
        if not f.function_tracer:
            detail = "function tracer not in available_tracers"
        elif f.ftrace_filter_error:
            detail = "set_ftrace_filter not writable: %s" % f.ftrace_filter_error
        else:
            detail = "function tracer with set_ftrace_filter"
        caps.append(Capability("function_tracer", f.function_filtering, detail, NAME))
        why = funcprofile.has_profiler(f.root)
        if why is None and not f.function_filtering:
            why = "needs the function tracer with set_ftrace_filter (%s)" % detail
        caps.append(Capability("function_profiler", why is None,
                               why or "kernel-function counts in the kernel (trace_stat)", NAME))
        caps.append(Capability("tracing_on", f.tracing_on == "1",
                               "top-level tracing_on=%s%s" % (
                                   f.tracing_on, "" if f.tracing_on == "1" else
                                   " (kerntrace turns it on while it runs in the top level)"),
                               NAME))
        return caps

    # -- check ---------------------------------------------------------------
    def check(self, measurement, host, options=None, profiler=True):
        """`profiler`: a plain count of kernel functions may run on the
        function profiler (a recording needs the events themselves)."""
        options = options or RunOptions()
        wants_stacks = KSTACK in getattr(measurement.aggregate, "fields", ())
        saved = getattr(host, "saved_trace", None)
        if saved is not None:
            # Replaying a saved trace (--input): no kernel involved at all.
            from .replay import replay_plan
            try:
                plan = replay_plan(measurement, saved)
            except Unsupported as e:
                return Verdict(NAME, False, [str(e)])
            return Verdict(NAME, True, ["replaying %s" % saved.describe()], plan=plan)
        reasons = []
        if not host.is_root():
            reasons.append("needs root (effective uid %d)" % os.geteuid())
        loc = host.tracefs()
        if loc is None:
            reasons.append(host.tracefs_missing())
            return Verdict(NAME, False, reasons)
        if not os.access(loc.path, os.R_OK | os.X_OK):
            reasons.append("tracefs at %s is not accessible" % loc.path)
        if reasons:
            return Verdict(NAME, False, reasons)
        feats = Features(loc.path)
        stack_format = None
        if wants_stacks:
            stack_format, why = _stack_support(host, feats)
            if why:
                return Verdict(NAME, False, [why])
        profiled = self._profiled(measurement, feats, options) if profiler else None
        if isinstance(profiled, Verdict):
            return profiled
        resolved = []
        choices = [profiled] if profiled else []
        for event in measurement.events:
            evs, why, chosen, left_out = self._resolve(event, host, feats)
            if evs is None and _lookup_allowed(measurement, event):
                # the last resort: a probe that leaves the field to its lookup
                evs, _why, chosen, left_out = self._resolve(event, host, feats, lookups=True)
                if evs is not None:
                    choices.append(_lookup_choice(event, chosen, evs, _described(event, why)))
                    choices.append(members_left_out(event, left_out))
                    resolved.extend(evs)
                    continue
            if evs is None:
                reasons.append("event %s: %s" % (event.name, "; ".join(why)))
            else:
                resolved.extend(evs)
                choices.append(probe_choice(event, chosen, _described(event, why)))
                choices.append(members_left_out(event, left_out))
        seen = {}
        for ev in resolved:
            key = (ev.system, ev.event)
            if key in seen:
                reasons.append("events %s and %s both use %s:%s (cannot be told apart)"
                               % (seen[key], ev.name, ev.system, ev.event))
            seen[key] = ev.name
        if len([ev for ev in resolved if ev.system == "ftrace"]) > 1:
            reasons.append("only one kernel function can be counted with the function tracer")
        if reasons:
            if profiled:
                reasons.append(profiled)
            return Verdict(NAME, False, reasons)
        notes = [c for c in choices if c]
        task_events = None
        if tasks.needs_task_identity(measurement, resolved):
            task_events = tasks.resolve_task_events(host.event_format)
            if not any(te.kind == "rename" for te in task_events):
                notes.append("no task:task_newtask/task_rename events: task names and "
                             "process ids from /proc at the start and saved_cmdlines")
        if not feats.instances:
            notes.append("no instances: top-level buffer under the perf-tools lock")
        if not feats.raw:
            notes.append("text trace_pipe (no trace_pipe_raw)")
        plan = live_plan(measurement, resolved, feats, task_events, options)
        if wants_stacks:
            plan = plan.replace(kernel_stacks=True, stack_format=stack_format)
            notes.append("kernel stacks: options/stacktrace in the run's buffer")
        route = None
        if plan.count_route == "hist":
            route = "counted in the kernel by hist triggers (no event recorded)"
        elif plan.count_route == "pages":
            route = "counted per trace_pipe_raw page (event types and key fields, no event " \
                "decoded)"
        if route:
            # (among the choices too: `kerntrace doctor` lists those of a
            # backend that can run the tool)
            notes.append(route)
            choices.append(route)
        return Verdict(NAME, True, notes, choices=choices, plan=plan)

    def _profiled(self, measurement, feats, options):
        """A Verdict for the function profiler when it can count the
        measurement (cheaper than a kprobe or function-tracer event per
        call: funcprofile.py); else why not, where the measurement counts
        kernel functions (said under --explain), or None."""
        functions, why = funcprofile.route(measurement, feats)
        if functions is None:
            if any(funcprofile.kernel_entry(e) for e in measurement.events):
                return "function profiler: %s" % why
            return None
        for name, function in functions.items():
            if probes.kernel_function_exists(function) is False:
                return "function profiler: no kernel function %s" % function
        plan = funcprofile.ProfilePlan(feats.root, functions,
                                       cpu=funcprofile.cpu_filter(measurement),
                                       plan_key=options.plan_key())
        note = ("kernel functions counted by the function profiler (set_ftrace_filter + "
                "function_profile_enabled, top level, perf-tools lock)")
        return Verdict(NAME, True, [note], choices=[note], plan=plan)

    def _resolve(self, event, host, feats, lookups=False):
        """([ResolvedEvent], [why not, per alternative before it], that
        alternative, [why not, per Each member left out]) for the first
        alternative this host supports (an Each gives one ResolvedEvent per
        member it has), or (None, [why not, per alternative], None, [])."""
        why = []
        for probe in event.probes:
            if isinstance(probe, Each):
                evs, reason = [], []
                for member in probe.probes:
                    ev, r = self._resolve_one(event, member, host, feats, lookups)
                    if ev is not None:
                        evs.append(ev)
                    else:
                        reason.append(r if r.startswith(member.describe())
                                      else "%s: %s" % (member.describe(), r))
                if evs:
                    return evs, why, probe, reason
                why.append("; ".join(reason))
                continue
            ev, reason = self._resolve_one(event, probe, host, feats, lookups)
            if ev is not None:
                return [ev], why, probe, []
            why.append(reason)
        return None, why, None, []

    def _resolve_one(self, event, probe, host, feats, lookups):
        """(ResolvedEvent, None) for plain probe `probe`, or (None, why not)."""
        kind = probe.kind
        try:
            if kind in ("tracepoint", "syscall_enter", "syscall_exit"):
                ev, reason = self._tracepoint(event, probe, host, lookups)
            elif kind in ("uprobe", "uretprobe"):
                ev, reason = self._uprobe(event, probe, feats)
            elif kind == "usdt":
                ev, reason = self._usdt(event, probe, feats)
            elif kind in ("kprobe", "kretprobe"):
                ev, reason = self._kprobe(event, probe, host, feats)
            else:
                ev, reason = None, "%s: unknown probe kind" % probe.describe()
        except (IOError, OSError, ValueError) as e:
            # An unreadable format file or binary is an answer, not a crash.
            ev, reason = None, "%s: %s" % (probe.describe(), e)
        return ev, reason

    def _tracepoint(self, event, probe, host, lookups=False):
        fmt = host.event_format(probe.category, probe.name)
        if fmt is None:
            extra = " (syscall tracepoints need CONFIG_FTRACE_SYSCALLS)" \
                if probe.category == "syscalls" else ""
            return None, "no tracepoint %s:%s%s" % (probe.category, probe.name, extra)
        fields = {}
        for f in event.fields:
            src = field_source(fmt, f, probe)
            if src is None and lookups and f.lookup is not None:
                continue            # left unread: looked up when reported
            if src is None:
                return None, "tracepoint %s:%s has no %sfield %s" % (
                    probe.category, probe.name, "string " if f.type in (STR, USTR) else "",
                    "/".join(probe.sources_for(f)) or f.name)
            fields[f.name] = src
        return ResolvedEvent(event, probe, probe.category, probe.name, fmt, fields), None

    def _uprobe(self, event, probe, feats):
        if not feats.uprobe_events:
            return None, "no uprobe support (uprobe_events missing)"
        try:
            path = probes.resolve_library(probe.library)
            offset = probes.resolve_symbol(path, probe.symbol)
            args = probes.fetch_args(event.fields, probe.ret, ustring=feats.ustring, probe=probe)
        except probes.ProbeError as e:
            return None, "%s: %s" % (probe.describe(), e)
        group, name = probes.next_name()
        line = probes.uprobe_definition(group, name, path, offset, probe.ret, args)
        return ResolvedEvent(event, probe, group, name, None, {n: n for n, _ in args},
                             probe_def=line), None

    def _usdt(self, event, probe, feats):
        if not feats.uprobe_events:
            return None, "no uprobe support (uprobe_events missing)"
        try:
            path = probes.resolve_library(probe.library)
            site = probes.usdt_site(path, probe.provider, probe.name, probe.site)
            args = probes.usdt_fetch_args(event.fields, probe, site.arguments,
                                          immediate=feats.immediate)
        except probes.ProbeError as e:
            return None, "%s: %s" % (probe.describe(), e)
        offset, semaphore = site.offset, site.semaphore
        if semaphore and not feats.uprobe_ref_ctr:
            return None, ("%s: the probe has a semaphore and this kernel's uprobe_events "
                          "takes no reference counter (ref_ctr_offset)" % probe.describe())
        group, name = probes.next_name()
        line = probes.uprobe_definition(group, name, path, offset, False, args, semaphore)
        return ResolvedEvent(event, probe, group, name, None, {n: n for n, _ in args},
                             probe_def=line), None

    def _kprobe(self, event, probe, host, feats):
        exists = probes.kernel_function_exists(probe.function)
        if exists is False:
            return None, "no kernel function %s (not in /proc/kallsyms)" % probe.function
        if feats.kprobe_events:
            try:
                args = probes.fetch_args(event.fields, probe.ret, ustring=feats.ustring, probe=probe)
            except probes.ProbeError as e:
                return None, "%s: %s" % (probe.describe(), e)
            group, name = probes.next_name()
            line = probes.kprobe_definition(group, name, probe.function, probe.ret, args)
            return ResolvedEvent(event, probe, group, name, None, {n: n for n, _ in args},
                                 probe_def=line), None
        # Entry counting without arguments works with the function tracer
        # limited to that function, where set_ftrace_filter is writable.
        if not probe.ret and not event.fields and feats.function_filtering:
            fmt = host.event_format("ftrace", "function")
            if fmt is not None:
                return ResolvedEvent(event, probe, "ftrace", "function", fmt, {}), None
        why = "no kprobe support (kprobe_events missing)"
        if not probe.ret and not event.fields:
            why += "; function tracer: %s" % (
                "not available" if not feats.function_tracer else
                "set_ftrace_filter not writable: %s" % feats.ftrace_filter_error)
        return None, why

    # -- open ----------------------------------------------------------------
    def open(self, measurement, verdict, options=None):
        """The session of verdict.plan (a replay's plan has no tracefs)."""
        plan = verdict.plan
        if getattr(plan, "count_route", None) == "profile":
            return funcprofile.open_session(measurement, plan, options)
        saved = getattr(plan, "saved_trace", None)
        if saved is not None:
            # check() planned a replay of --input (host.saved_trace)
            from .replay import ReplaySession
            return ReplaySession(measurement, plan, saved,
                                 stderr=getattr(options, "stderr", None))
        check_plan_options(plan.plan_key, options)
        from .session import LiveSession
        return LiveSession(measurement, plan, options)

    # -- recording (kerntrace record) ------------------------------------------
    records = RECORDS

    def open_recording(self, measurement, host, options):
        """A RecordingSession of the measurement's events on this host."""
        from .record import RecordingSession, recording_plan
        verdict = self.check(measurement, host, options, profiler=False)
        if not verdict.ok:
            raise Unsupported("cannot record here: %s" % "; ".join(verdict.reasons))
        return RecordingSession(measurement, recording_plan(verdict.plan), options)

    # -- cleanup -------------------------------------------------------------
    def cleanup_stale(self, host, stderr=None, problems=None, notes=None):
        from . import _cleanup_stale
        return _cleanup_stale(host, stderr=stderr, problems=problems, notes=notes)
