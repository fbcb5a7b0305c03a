"""Measurement variants: a tool that can measure the same thing in more than
one whole way (vfsstat: the kernel's vfs_* functions, or, where no backend
can probe kernel functions, the system calls that lead to them) lists them
in order of preference.  Unlike an Event's probe alternatives, which each
event picks on its own, a variant is taken or left as a whole, so the
columns of one run never mix kinds of probe.

The first variant some backend can run on this host is used (with
--backend NAME: the first that backend can run); --explain, the banner (a
printer sees ctx.variant) and `kerntrace doctor` say which, and why the
earlier ones could not run."""

from .errors import TracingUnavailable, Unsupported
from .selector import select


class Variant(object):
    """name         a short identifier ("kernel", "syscalls");
    measurement  the Measurement;
    description  what it measures, for --explain, doctor and banners."""

    def __init__(self, name, measurement, description):
        self.name = name
        self.measurement = measurement
        self.description = description

    def __repr__(self):
        return "Variant(%r)" % (self.name,)


def variants(tool, args):
    """The tool's variants in order of preference: Tool.variants(args) when
    it defines it, else its one measurement (as a Variant named None)."""
    listed = getattr(tool, "variants", None)
    if listed is None:
        return [Variant(None, tool.measurement(args), "")]
    out = list(listed(args))
    if not out:
        raise Unsupported("tool %s offers no way to measure" % tool.name)
    return out


class Choice(object):
    """The variant taken, the backend selection for it, and why each earlier
    variant could not run ([(Variant, reason)])."""

    def __init__(self, variant, selection, skipped):
        self.variant = variant
        self.selection = selection
        self.skipped = list(skipped)

    @property
    def measurement(self):
        return self.variant.measurement

    def explain(self):
        """Lines for --explain and doctor (none for a single-variant tool)."""
        if self.variant.name is None:
            return []
        lines = ["measuring %s" % self.variant.description]
        lines += ["not measuring %s: %s" % (v.description, why) for v, why in self.skipped]
        return lines


def choose(tool, args, backends, host, requested="auto", hook=None, listed=None,
           options=None):
    """Choice of the first variant a backend (the requested one) can run.
    Raises the last variant's error when none can; a host where nothing can
    trace at all (not root, no tracefs) fails at the first."""
    listed = listed if listed is not None else variants(tool, args)
    skipped = []
    for i, variant in enumerate(listed):
        try:
            sel = select(tool, variant.measurement, backends, host, requested, hook=hook,
                         options=options)
        except Unsupported as e:
            if i + 1 == len(listed) or isinstance(e, TracingUnavailable):
                raise
            skipped.append((variant, str(e)))
            continue
        return Choice(variant, sel, skipped)
    raise Unsupported("tool %s offers no way to measure" % tool.name)
