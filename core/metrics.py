"""What a tool measures, named the way metrics systems (Prometheus) name it.

A tool declares one Metric as its class attribute `metric`:

    metric = Metric(histogram="block_io_latency",
                    histogram_help="Block I/O latency, from issue to completion.",
                    labels={"dev": "device", "rwbs": "operation"})

    histogram   what its histograms hold, without a unit: the output layer
                adds the base unit (_seconds, _bytes) from the histogram's
    unit        that base unit, "seconds" or "bytes" (for docs/metrics.md)
    counter     what its counts (or, for event tools, its events) count,
                plural, without _total: "syscalls"
    labels      key field -> label name; a key field not named here keeps
                its own (sanitized) name

Two tools that measure the same thing declare the same names (iolatency
and biolatency: block_io_latency); the exposition tells them apart by a
`tool` label.  A tool that declares no Metric is exposed under its own
name (kerntrace_<tool>_...).  The help texts must not name the tool: the
same metric name must carry the same HELP whichever tool wrote it
(node_exporter's textfile collector refuses a family whose files disagree).
"""

import re

from .errors import InvalidSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
# The label-cardinality limit: label sets per metric family.  Beyond it,
# observations fold into the family's "other" series, so a run that meets
# ever new process names or devices keeps its memory (and Prometheus') flat.
MAX_SERIES = 1000
# Label names the exposition itself uses.
RESERVED_LABELS = ("le", "quantile", "tool")
BASE_UNITS = ("seconds", "bytes")


def _name(what, value):
    if value is not None and not _NAME.match(value):
        raise InvalidSpec("metric %s %r: lower-case letters, digits and _ only" % (what, value))
    return value


class Metric(object):
    __slots__ = ("histogram", "unit", "histogram_help", "counter", "counter_help", "labels")

    def __init__(self, histogram=None, counter=None, labels=None, histogram_help=None,
                 counter_help=None, unit=None):
        self.histogram = _name("histogram", histogram)
        if (histogram is None) != (unit is None) or unit not in (None,) + BASE_UNITS:
            raise InvalidSpec("metric histogram %r needs its base unit, one of %s"
                              % (histogram, BASE_UNITS))
        self.unit = unit
        self.counter = _name("counter", counter)
        if counter is not None and counter.endswith("_total"):
            raise InvalidSpec("metric counter %r: the output adds _total" % (counter,))
        self.histogram_help = histogram_help
        self.counter_help = counter_help
        self.labels = dict(labels or {})
        for field, label in self.labels.items():
            if not _NAME.match(label) or label in RESERVED_LABELS:
                raise InvalidSpec("metric label %r for %r: not a usable label name"
                                  % (label, field))
        for what, name, text in (("histogram", histogram, histogram_help),
                                 ("counter", counter, counter_help)):
            if name is not None and not text:
                raise InvalidSpec("metric %s %r needs a help text" % (what, name))

    def __repr__(self):
        return "Metric(histogram=%r, counter=%r, labels=%r)" % (
            self.histogram, self.counter, self.labels)
