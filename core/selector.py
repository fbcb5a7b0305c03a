"""Choosing the backend for a tool on this host.

Every backend is asked whether it can run the measurement here (its check()
probes: events exist, probe types attach, bcc compiles, ...).  The first ok
backend in preference order wins unless a kerntrace_select_backend hook
decides otherwise or the user forces one with --backend.  Never decided by
kernel version numbers."""

import inspect
import os

from . import tracefs
from .errors import OptionError, TracingUnavailable, Unsupported
from .model import Tracepoint


class Selection(object):
    """backend, verdict   the chosen backend and its check() answer
    verdicts             every backend's answer, by name
    alternatives         with --backend auto: the other backends that said
                         they can run it, in preference order (the runner
                         falls back to them if the chosen one cannot start)"""

    def __init__(self, backend, verdict, verdicts, requested, alternatives=()):
        self.backend = backend
        self.verdict = verdict
        self.verdicts = verdicts
        self.requested = requested
        self.alternatives = list(alternatives)

    def notices(self):
        """One line per backend not chosen whose check() has something to
        tell the user (see Verdict.notice)."""
        return ["%s; running on %s" % (v.notice, self.backend.name)
                for name, v in self.verdicts.items()
                if v.notice and name != self.backend.name]

    def explain(self):
        """One line per backend: chosen (followed by what its plan will do,
        read from the very plan the run opens), or why not."""
        lines = []
        for name, v in self.verdicts.items():
            if self.backend is not None and name == self.backend.name:
                lines.append("%s: chosen%s" % (name, (" (" + "; ".join(v.reasons) + ")") if v.reasons else ""))
                lines.extend("%s: %s" % (name, line) for line in v.describe())
            elif v.ok:
                lines.append("%s: can run it, not chosen (%s)" % (
                    name, "--backend %s" % self.requested if self.requested != "auto"
                    else "a preferred backend can"))
            else:
                lines.append("%s: cannot: %s" % (name, "; ".join(v.reasons) or "unsupported"))
        return lines


def _check(backend, measurement, host, options):
    """backend.check(); a third-party backend written before check() took
    the run options (API 1.0 allows both forms) is asked without them."""
    try:
        params = inspect.signature(backend.check).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and len(params) < 3 and not any(
            p.kind == p.VAR_POSITIONAL for p in params.values()):
        return backend.check(measurement, host)
    return backend.check(measurement, host, options)


def evaluate(measurement, backends, host, only=None, options=None):
    verdicts = {}
    for b in backends:
        if only and b.name != only:
            continue
        try:
            verdicts[b.name] = _check(b, measurement, host, options)
        except Exception as e:  # a probe that crashes is an answer too
            from .backend import Verdict
            verdicts[b.name] = Verdict(b.name, False, ["probe failed: %s: %s" % (type(e).__name__, e)])
    return verdicts


def select(tool, measurement, backends, host, requested="auto", hook=None, options=None):
    """The Selection for `measurement`; every backend's check() plans with
    `options` (RunOptions: the tool name and buffer size a plan depends on)."""
    by_name = {b.name: b for b in backends}
    if requested != "auto" and requested not in by_name:
        raise OptionError("--backend must be auto or an installed backend's name (%s), got %r"
                          % (", ".join(sorted(by_name)), requested))
    verdicts = evaluate(measurement, backends, host,
                        only=requested if requested != "auto" else None, options=options)
    chosen = None
    if requested != "auto":
        v = verdicts[requested]
        if not v.ok:
            raise _unavailable(host)("the %s backend cannot run here: %s"
                                     % (requested, "; ".join(v.reasons) or "unsupported"))
        chosen = requested
    else:
        if hook is not None:
            pick = hook(tool=tool, measurement=measurement, verdicts=verdicts,
                        requested=requested)
            if pick and pick in verdicts and verdicts[pick].ok:
                chosen = pick
        if chosen is None:
            for b in backends:
                if verdicts[b.name].ok:
                    chosen = b.name
                    break
    if chosen is None:
        missing = missing_tracepoints(measurement, host)
        if missing:
            # A typo, or an event of another kernel: say that, not why each
            # backend could not run it.
            raise Unsupported("no tracepoint %s on this kernel" % ", ".join(missing))
        why = "; ".join("%s: %s" % (n, "; ".join(v.reasons) or "unsupported")
                        for n, v in verdicts.items()) or "no backend installed"
        kind = _unavailable(host)
        if kind is TracingUnavailable and not host.is_root():
            raise kind("must be run as root (%s)" % why)
        raise kind("no backend can run on this host (%s)" % why)
    alternatives = [b for b in backends if requested == "auto" and b.name != chosen
                    and verdicts[b.name].ok]
    return Selection(by_name[chosen], verdicts[chosen], verdicts, requested, alternatives)


def missing_tracepoints(measurement, host):
    """"category:name" of every tracepoint an event needs that this host's
    tracefs does not have (events whose every probe is a tracepoint, none
    of them present).  Empty when tracefs cannot be read or for a replay:
    then nothing can be said about the kernel's events."""
    if host is None or getattr(host, "saved_trace", None) is not None:
        return []
    root = host.tracefs_path()
    if not root or not os.access(os.path.join(root, "events"), os.R_OK | os.X_OK):
        return []
    missing = []
    for event in measurement.events:
        if not all(isinstance(p, Tracepoint) for p in event.probes):
            continue
        if not any(os.path.isdir(tracefs.event_dir(root, p.category, p.name))
                   for p in event.probes):
            missing.extend("%s:%s" % (p.category, p.name) for p in event.probes)
    return missing


def _unavailable(host):
    """Without root or tracefs nothing can trace at all: say it as the kind
    of error drop-in tools word as perf-tools does ("Root user?")."""
    try:
        if host is not None and (not host.is_root() or host.tracefs() is None):
            return TracingUnavailable
    except Exception:
        pass
    return Unsupported
