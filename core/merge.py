"""`kerntrace merge`: the --json outputs of one tool from many hosts as one
histogram or count table (a fleet view), printed in the tool's own format
or as one JSON object of the same schema (docs/json.md).

    kerntrace merge [--json] [--per-host] [TOOL OPTION...] FILE...

Every interval of every file adds into one aggregate.  Keys are merged by
their labels (what the text output shows: "vda", not the device number,
which differs between hosts).  The tool's printer gets each entry under the
raw key first seen with it, and the hosts' labels as its formatters.
Files of different tools, key names, units,
bucket scales or bucket widths are refused, as are event (records) outputs,
which have nothing to add up.

The tool's display options (Tool.display_options: biolatency -m -D -F -e,
syscount -L -P -m -T TOP, ...) given to merge build its printer as they
would on a run; files the tool wrote without them (other keys, unit or
kind of aggregate) are refused.  Which options those are is known once the
first file names its tool, so merge reads that first line before parsing
its command line for good.

The input streams: files are read one after the other, line by line, and
only the merged aggregate (one entry per distinct key and bucket) and the
per-host totals stay in memory, however many files there are.
"""

import argparse
import io
import json

from .buckets import bucket_index
from .errors import KerntraceError, UsageError
from .model import LINEAR, POW2_MS
from .output.base import RunContext, as_text
from .output.jsonlines import SCHEMA_VERSION
from .results import CountSet, Histogram, HistogramSet, Report

# A line longer than this is no kerntrace output (a histogram of 64 log2
# buckets and many keys stays far below it).
MAX_LINE_BYTES = 64 * 1024 * 1024


class MergeError(KerntraceError):
    """Files that cannot be merged, or are not kerntrace --json output."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser(tool=None):
    """merge's command line; with a tool, also the tool's display options
    (each recorded as given, in `tool_argv`, for the tool's own parser)."""
    p = _Parser(prog="kerntrace merge", description=(
        "Combine the --json output of one tool from many hosts into one histogram or "
        "count table, printed in the tool's format (or as JSON).  The tool's display "
        "options (biolatency -D, -F, -m, -e; syscount -L, -P, -m, -T TOP; ...) print it "
        "as the tool does with them."))
    p.add_argument("--json", action="store_true",
                   help="print the merged result as one JSON object (docs/json.md)")
    p.add_argument("--per-host", action="store_true",
                   help="also give each host's total (a table on stdout after the merged "
                        "one; with --json, the \"hosts\" list)")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="--json output of a tool (JSON lines), one file per host")
    p.set_defaults(tool_argv=[])
    if tool is not None:
        own = tool.build_parser()
        for option in tool.display_options:
            action = own._option_string_actions.get(option)
            if action is None:
                raise KerntraceError("tool %s declares display option %s, which its command "
                                     "line does not have" % (tool.name, option))
            p.add_argument(*action.option_strings, action=_ToolOption, dest="tool_argv",
                           nargs=action.nargs, help=argparse.SUPPRESS)
    return p


class _ToolOption(argparse.Action):
    """A tool's display option: kept as it was given, for the tool's parser."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = [] if values is None else [values] if isinstance(values, str) else values
        namespace.tool_argv = list(namespace.tool_argv) + [option_string] + list(values)


def parse_command_line(plugins, argv):
    """merge's options, with the display options of the tool the first
    file names where any are given."""
    _opts, extra = parser().parse_known_args(argv)
    if not extra:
        return parser().parse_args(argv), None
    tool = plugins.tools().get(_first_tool(argv))
    if tool is None or not tool.display_options:
        return parser().parse_args(argv), None      # the usual error line
    return parser(tool).parse_args(argv), tool


def _first_tool(argv):
    """The tool the first readable kerntrace --json file among `argv`
    names, or None (its errors are reported when it is read for good)."""
    for path in argv:
        if path.startswith("-"):
            continue
        try:
            with open(path, "rb") as f:
                for raw in iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""):
                    if raw.strip():
                        obj = json.loads(raw.decode("utf-8"))
                        return obj.get("tool") if isinstance(obj, dict) else None
        except (IOError, OSError, ValueError):
            continue
    return None


class Merged(object):
    """The aggregate of everything read so far."""

    def __init__(self):
        self.type = None          # "histogram" | "counts"
        self.tool = None
        self.key_names = None
        self.backends = set()
        self.kernels = set()
        self.first = None         # where the kind above was first seen (for errors)
        self.shape = None         # (unit, scale, step) of histograms
        self.values = {}          # label tuple -> Histogram or count
        self.raw = {}             # label tuple -> the raw key first seen with it
        self.hosts = {}           # host -> [count, files]
        self.start = self.end = None
        self.lost = self.unmatched = self.dropped_starts = 0
        # The hosts traced side by side: the fleet's time is the longest of
        # the files' times; None once a file does not say.
        self.seconds = 0.0

    def refuse(self, where, what, mine, theirs):
        raise MergeError("cannot merge %s: %s %s, but %s %s"
                         % (where, what, _show(theirs), self.first, _show(mine)))

    def add(self, obj, where):
        """Add one object; the number of values it adds (its histograms'
        counts or its counts)."""
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MergeError("%s: JSON schema version %s; this kerntrace merges version %d"
                             % (where, _show(version), SCHEMA_VERSION))
        kind = obj.get("type")
        if kind == "lost":
            self._interval(obj)
            return 0
        if kind == "event":
            raise MergeError("cannot merge %s: %s prints events, not a histogram or counts"
                             % (where, obj.get("tool", "the tool")))
        if kind not in ("histogram", "counts"):
            raise MergeError("%s: not kerntrace --json output (type %s)" % (where, _show(kind)))
        tool, key_names = obj.get("tool"), obj.get("key_names")
        if self.type is None:
            self.type, self.tool, self.key_names = kind, tool, key_names
            self.first = "%s has" % where
        if tool != self.tool:
            self.refuse(where, "tool", self.tool, tool)
        if kind != self.type:
            self.refuse(where, "output type", self.type, kind)
        if key_names != self.key_names:
            self.refuse(where, "keys", self.key_names, key_names)
        self.backends.add(as_text(obj.get("backend", "")))
        self.kernels.add(as_text(obj.get("kernel", "")))
        self._interval(obj)
        if kind == "histogram":
            return self._histograms(obj, where)
        n = 0
        for item in obj["counts"]:
            key = self._key(item, key_names)
            self.values[key] = self.values.get(key, 0) + int(item["count"])
            n += int(item["count"])
        return n

    def _key(self, item, key_names):
        key = _labels(item, key_names)
        if key not in self.raw:
            raw = item.get("key") or {}
            self.raw[key] = tuple(raw.get(name) for name in key_names)
        return key

    def _interval(self, obj):
        for name in ("lost", "unmatched", "dropped_starts"):
            setattr(self, name, getattr(self, name) + int(obj.get(name) or 0))
        start, end = obj.get("interval_start"), obj.get("interval_end")
        if start is not None:
            self.start = start if self.start is None else min(self.start, start)
        if end is not None:
            self.end = end if self.end is None else max(self.end, end)

    def _histograms(self, obj, where):
        n = 0
        for item in obj["histograms"]:
            shape = (item["unit"], item["scale"], int(item.get("step") or 1))
            if self.shape is None:
                self.shape = shape
            elif shape[0] != self.shape[0]:
                self.refuse(where, "unit", self.shape[0], shape[0])
            elif shape[1:] != self.shape[1:]:
                self.refuse(where, "bucket scale", "%s/%d" % self.shape[1:],
                            "%s/%d" % shape[1:])
            unit, scale, step = shape
            key = self._key(item, obj["key_names"])
            hist = self.values.get(key)
            if hist is None:
                # pow2ms bounds are given in ns; the histogram itself is in ms
                hist = self.values[key] = Histogram(scale, "ms" if scale == POW2_MS else unit,
                                                    step)
            for bucket in item["buckets"]:
                if bucket["count"]:
                    index = bucket_index(scale, int(bucket["high"]), step)
                    hist.buckets[index] = hist.buckets.get(index, 0) + int(bucket["count"])
            hist.total += int(item["sum"])
            hist.count += int(item["count"])
            n += int(item["count"])
        return n

    def data(self):
        if self.type == "histogram":
            return HistogramSet(self.key_names, self.values)
        return CountSet(self.key_names, self.values)

    def raw_data(self):
        """(the merged data keyed by raw key values, {key name: raw value
        -> label}) for a tool's printer, which may read raw values (a
        syscall number) where the merge keys by label.  Each label tuple
        goes back to the raw key it was first seen with; where hosts give
        one raw value different labels (a syscall number of another
        architecture) that cannot be done."""
        labels = {name: {} for name in self.key_names}
        values = {}
        for key, value in self.values.items():
            raw = self.raw[key]
            for name, r, label in zip(self.key_names, raw, key):
                if labels[name].setdefault(_hashable(r), label) != label:
                    raise MergeError(
                        "%s %s is %s on one host and %s on another: only kerntrace merge "
                        "--json can show that (it merges by label)"
                        % (name, _show(r), labels[name][_hashable(r)], label))
            values[tuple(_hashable(r) for r in raw)] = value
        data = HistogramSet(self.key_names, values) if self.type == "histogram" else \
            CountSet(self.key_names, values)
        return data, labels

    def add_file_seconds(self, seconds):
        if seconds is None or self.seconds is None:
            self.seconds = None
        else:
            self.seconds = max(self.seconds, seconds)


def _hashable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _labels(item, key_names):
    labels = item.get("labels") or {}
    return tuple(as_text(labels.get(name, "-")) for name in key_names)


def _show(value):
    return json.dumps(value) if not isinstance(value, str) else value


def read_into(merged, path):
    """Add one file to `merged`, line by line."""
    try:
        f = open(path, "rb")
    except (IOError, OSError) as e:
        raise MergeError("cannot read %s: %s" % (path, e.strerror or e))
    host, total, seconds = None, 0, 0.0
    with f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            where = "%s:%d" % (path, lineno)
            if len(raw) > MAX_LINE_BYTES:
                raise MergeError("%s: line longer than %d bytes" % (where, MAX_LINE_BYTES))
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except ValueError:
                raise MergeError("%s: not a JSON line (kerntrace TOOL --json writes them)"
                                 % where)
            if not isinstance(obj, dict) or "type" not in obj:
                raise MergeError("%s: not kerntrace --json output" % where)
            try:
                if host is None:
                    # a replay of a plain trace file names no host: the file does
                    host = as_text(obj.get("host") or "") or path
                total += merged.add(obj, where)
                if obj["type"] == "counts" and seconds is not None:
                    seconds = None if obj["seconds"] is None else seconds + float(obj["seconds"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise MergeError("%s: not kerntrace --json output (%s %s)"
                                 % (where, type(e).__name__, e))
    if host is None:
        raise MergeError("%s: no histogram or counts to merge" % path)
    merged.add_file_seconds(seconds)
    totals = merged.hosts.setdefault(host, [0, 0])
    totals[0] += total
    totals[1] += 1


def merge(plugins, argv, out, err):
    """Run `kerntrace merge argv`; the exit status.  Raises KerntraceError
    (one line for the user)."""
    opts, tool = parse_command_line(plugins, argv)
    merged = Merged()
    try:
        for path in opts.files:
            read_into(merged, path)
    except KeyboardInterrupt:
        return 130              # nothing printed yet: nothing half-written
    args = None
    if opts.tool_argv:
        if merged.tool != tool.name:
            raise MergeError("%s are options of %s; the files hold %s output"
                             % (" ".join(opts.tool_argv), tool.name, merged.tool))
        args = _tool_args(tool, opts.tool_argv)
        _check_written_with(merged, tool, args, opts.tool_argv)
    seconds = merged.seconds if merged.type == "counts" else None
    report = Report(merged.data(), lost=merged.lost, unmatched=merged.unmatched,
                    dropped_starts=merged.dropped_starts, tool=merged.tool,
                    backend=_one(merged.backends), seq=0,
                    start=0.0 if seconds else None, end=seconds)
    if opts.json:
        _write_json(merged, report, opts.per_host, out, err)
    else:
        _write_text(plugins, merged, report, out, err, args)
        if opts.per_host:
            _write_hosts(merged, out)
    return 0


def _one(names):
    """The one backend (or kernel) all files name, else ""."""
    names = set(names)
    return names.pop() if len(names) == 1 else ""


def _context(merged, tool=None, args=None):
    # Keys are labels already: no formatter applies again.
    return RunContext(merged.tool, _one(merged.backends), None, hostname="",
                      kernel=_one(merged.kernels), args=args, formatters={})


def _write_json(merged, report, per_host, out, err):
    from .output.jsonlines import JsonLinesPrinter
    printer = JsonLinesPrinter(out, err)
    obj = printer.interval_object(report, _context(merged))
    obj["interval_start"], obj["interval_end"] = merged.start, merged.end
    if per_host:
        obj["hosts"] = [{"host": h, "count": n, "files": files}
                        for h, (n, files) in sorted(merged.hosts.items())]
    printer.write(obj)


def _tool_args(tool, options=()):
    """The tool's arguments as a run with `options` and its sample
    arguments would have them (some tools need a positional one)."""
    return tool.parse_args(list(options) + list(getattr(tool, "sample_args", ())),
                           prog=tool.name)


def _check_written_with(merged, tool, args, options):
    """Refuse files the tool wrote with other options than `options`: what
    they aggregate (histograms or counts, the keys, the unit) differs."""
    aggregate = tool.measurement(args).aggregate
    kind = {"histogram": "histogram", "count": "counts"}.get(aggregate.kind)
    written = (merged.type, tuple(merged.key_names or ()),
               merged.shape[0] if merged.type == "histogram" and merged.shape else None)
    wanted = (kind, tuple(aggregate.keys), aggregate.unit if kind == "histogram" else None)
    if written[:2] != wanted[:2] or None not in (written[2], wanted[2]) and \
            written[2] != wanted[2]:
        raise MergeError("cannot print with %s: the files hold %s, %s %s makes %s (give "
                         "merge the options the files were written with)"
                         % (" ".join(options), _aggregate_text(*written), tool.name,
                            " ".join(options), _aggregate_text(*wanted)))


def _aggregate_text(kind, keys, unit):
    what = {"histogram": "histograms", "counts": "counts"}.get(kind, kind)
    return what + (" in %s" % unit if unit else "") + (" by %s" % ", ".join(keys) if keys else "")


def _write_text(plugins, merged, report, out, err, args=None):
    tools = plugins.tools()
    if merged.tool not in tools:
        raise MergeError("tool %r is not installed here: its format is unknown "
                         "(kerntrace merge --json merges without it)" % merged.tool)
    tool = tools[merged.tool]
    # The tool's printer as a run with the display options given to merge
    # would make it; no banner: nothing is traced.
    if args is None:
        args = _tool_args(tool)
    printer = tool.printer(args, out, err)
    report.data, labels = merged.raw_data()
    ctx = _context(merged, tool, args)
    # The labels the hosts gave, not this machine's formatters (its disks,
    # its syscall table)
    ctx.formatters = {name: _label_of(table) for name, table in labels.items()}
    printer.report(report, ctx)
    # The end of the tool's output (iolatency's "Ending tracing..." on
    # stdout), but not what it tells the user about tracing ("Detaching..."
    # on stderr): nothing was traced.
    printer.err = io.StringIO()
    printer.finish(ctx)


def _label_of(table):
    def label(value):
        return table.get(_hashable(value), as_text(value))
    return label


def _write_hosts(merged, out):
    width = max([len(h) for h in merged.hosts] + [4])
    lines = ["", "%-*s %10s" % (width, "HOST", "TOTAL")]
    for host, (n, _) in sorted(merged.hosts.items()):
        lines.append("%-*s %10d" % (width, host, n))
    out.write("\n".join(lines) + "\n")
