"""A saved trace: a recording (`kerntrace record`) or a plain `cat trace` file.

A recording is one text file: a small header, the format files of the
events it enabled and the host's ring-buffer headers, then the trace text
as the kernel printed it.  Replay decodes its events with the formats it
carries; a plain `cat trace` file carries none, and replay falls back on the
stored formats of known kernel eras (core.known_formats).

The file format, version 1 (line-oriented, UTF-8, lines end in "\\n"):

    kerntrace-recording 1            magic and version: the first line
    <key> <value>                    metadata, one line each (see below)
    format <system> <event> <n>      an event's `format` file: the n lines
    <n lines>                        that follow, verbatim
    header_page <n>                  events/header_page: the n lines after
    <n lines>
    header_event <n>                 events/header_event: the n lines after
    <n lines>
    trace                            the last header line: everything after
    <trace text>                     it is trace text, to the end of the file

Metadata keys written: kerntrace (its version), release (uname -r of the
recording host), hostname, clock (the trace clock), tool, args (the tool's
arguments as a JSON list of strings), started (UTC, ISO 8601), and for each
probe event the run defined (a uprobe, kprobe, USDT probe: its events are
named after the recording process) probe_<n> "<system> <event> <probe>",
<probe> the model probe's describe() text (u:/usr/bin/x:f, k:vfs_read, ...)
that a replay matches its tool's probes against.  A reader
ignores keys it does not know (a later version 1 writer may add some); a
file of a higher version is refused.  Values are read with every
non-printable character as "?".

Everything here treats the file as untrusted: the header is read line by
line with bounded lengths, counts and total size, and any breach or
malformed line is one KerntraceError naming the file and line.  The trace
text is not read here: the replaying backend reads it from trace_offset in
its own bounded way.
"""

import json
import os
import re

from .errors import KerntraceError
from .output.base import terminal_text
from .tracefs import parse_format

MAGIC = "kerntrace-recording"
VERSION = 1

# Bounds on the header.  Real format files have fewer than 100 lines and
# field lines under 200 bytes; a print fmt line with long symbol tables can
# reach a few KB.  The header as a whole stays small even for a tool with
# many events.
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_FIELD_LINE_BYTES = 1024
MAX_SECTION_LINES = 4096
MAX_FORMATS = 1024
MAX_META = 64 + MAX_FORMATS        # (a probe_<n> line per probe event)
MAX_VALUE_BYTES = 4096

_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_PROBE_KEY = re.compile(r"^probe_([0-9]{1,4})$")
# "<system> <event> <probe>": a probe's describe() holds a resolved path of
# ordinary file name characters (core.symbols.SAFE_PATH) and identifiers.
_PROBE_VALUE = re.compile(r"^([A-Za-z0-9_]{1,255}) ([A-Za-z0-9_]{1,255}) "
                          r"([A-Za-z]{1,8}:[A-Za-z0-9_./+:#-]{1,4000})$")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_COUNT = re.compile(r"^[0-9]{1,9}$")


class RecordingError(KerntraceError):
    """A recording (or something that claims to be one) that cannot be read."""


class SavedTrace(object):
    """A file given to --input, with what its header carries.

    path          the file
    recorded      True for a kerntrace recording, False for plain trace text
    meta          metadata (key -> str); {} for plain text
    format_texts  (system, event) -> `format` file text, as recorded
    formats       (system, event) -> parsed core.tracefs.EventFormat
    header_page, header_event   the recording host's texts, or None
    trace_offset  byte offset where the trace text starts
    """

    def __init__(self, path, recorded=False, meta=None, format_texts=None,
                 header_page=None, header_event=None, trace_offset=0):
        self.path = path
        self.recorded = recorded
        self.meta = dict(meta or {})
        self.format_texts = dict(format_texts or {})
        self.header_page = header_page
        self.header_event = header_event
        self.trace_offset = trace_offset
        self.formats = {}
        for (system, event), text in self.format_texts.items():
            self.formats[(system, event)] = parse_format(text, system)

    @property
    def probes(self):
        """probe describe() text -> (system, event) of the probe events the
        recording holds (metadata probe_<n>); malformed entries are left out."""
        out = {}
        for key, value in self.meta.items():
            m = _PROBE_VALUE.match(value) if _PROBE_KEY.match(key) else None
            if m:
                out[m.group(3)] = (m.group(1), m.group(2))
        return out

    def describe(self):
        if not self.recorded:
            return self.path
        m = self.meta
        return "recording %s (%s on %s, %s)" % (self.path, m.get("tool", "?"),
                                               m.get("hostname", "?"), m.get("release", "?"))

    def open_trace(self):
        """The file, opened binary and positioned at the trace text."""
        try:
            f = open(self.path, "rb")
        except (IOError, OSError) as e:
            raise KerntraceError("cannot read %s: %s" % (self.path, e.strerror or e))
        f.seek(self.trace_offset)
        return f


def open_saved_trace(path):
    """A SavedTrace for a file given to --input: a recording's header is
    read and checked here (RecordingError when it is bad); any other
    readable file is taken as plain trace text."""
    if not os.path.isfile(path):
        # (a pipe or device could be endless; a directory is no trace)
        raise KerntraceError("cannot read %s" % path)
    try:
        with open(path, "rb") as f:
            first = f.readline(len(MAGIC) + 16)
            if not first.startswith(MAGIC.encode()):
                return SavedTrace(path)
            f.seek(0)
            return _Reader(path, f).read()
    except (IOError, OSError) as e:
        raise KerntraceError("cannot read %s: %s" % (path, e.strerror or e))


class _Reader(object):
    def __init__(self, path, f):
        self.path = path
        self.f = f
        self.lineno = 0
        self.consumed = 0

    def fail(self, what):
        raise RecordingError("%s: line %d: %s" % (self.path, self.lineno, what))

    def line(self, limit=MAX_LINE_BYTES):
        """The next header line without its newline (str)."""
        raw = self.f.readline(limit + 1)
        self.lineno += 1
        self.consumed += len(raw)
        if not raw:
            self.fail("the file ends inside the header (no `trace` line)")
        if not raw.endswith(b"\n"):
            if len(raw) > limit:
                self.fail("line longer than %d bytes" % limit)
            self.fail("the file ends inside the header (no `trace` line)")
        if self.consumed > MAX_HEADER_BYTES:
            self.fail("header larger than %d bytes" % MAX_HEADER_BYTES)
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            self.fail("not UTF-8 text")

    def count(self, text):
        if not _COUNT.match(text) or int(text) > MAX_SECTION_LINES:
            self.fail("bad line count %r (at most %d)" % (text[:20], MAX_SECTION_LINES))
        return int(text)

    def section(self, n, field_lines=False):
        lines = []
        for _ in range(n):
            # A format file's field lines are short; bounding them keeps
            # parsing a hostile declaration cheap.
            line = self.line()
            if field_lines and line.lstrip().startswith("field:") \
                    and len(line) > MAX_FIELD_LINE_BYTES:
                self.fail("field line longer than %d bytes" % MAX_FIELD_LINE_BYTES)
            lines.append(line)
        return "".join(line + "\n" for line in lines)

    def read(self):
        magic = self.line().split(" ")
        if len(magic) != 2 or magic[0] != MAGIC or not _COUNT.match(magic[1]):
            self.fail("not a kerntrace recording header (expected %r)" % ("%s %d" % (MAGIC,
                                                                                   VERSION)))
        if int(magic[1]) != VERSION:
            self.fail("recording version %s; this kerntrace reads version %d"
                      % (magic[1], VERSION))
        meta, texts = {}, {}
        header_page = header_event = None
        while True:
            start = self.lineno + 1
            words = self.line().split(" ")
            key = words[0]
            if key == "trace" and len(words) == 1:
                break
            if key == "format":
                if len(words) != 4 or not _NAME.match(words[1]) or not _NAME.match(words[2]):
                    self.fail("expected `format <system> <event> <lines>`")
                if len(texts) >= MAX_FORMATS:
                    self.fail("more than %d format sections" % MAX_FORMATS)
                event = (words[1], words[2])
                if event in texts:
                    self.fail("a second format of %s:%s" % event)
                texts[event] = self.section(self.count(words[3]), field_lines=True)
                self._check_format(event, texts[event], start)
            elif key in ("header_page", "header_event"):
                if len(words) != 2:
                    self.fail("expected `%s <lines>`" % key)
                text = self.section(self.count(words[1]))
                if key == "header_page":
                    header_page = text
                else:
                    header_event = text
            elif _KEY.match(key):
                if len(meta) >= MAX_META:
                    self.fail("more than %d metadata lines" % MAX_META)
                value = " ".join(words[1:])
                if len(value) > MAX_VALUE_BYTES:
                    self.fail("metadata value longer than %d bytes" % MAX_VALUE_BYTES)
                # (said on stderr by --explain: never a control character
                # from the file on the user's terminal)
                meta[key] = terminal_text(value)
            else:
                self.fail("unexpected header line %r" % key[:40])
        return SavedTrace(self.path, True, meta, texts, header_page, header_event,
                          trace_offset=self.consumed)

    def _check_format(self, event, text, start):
        try:
            fmt = parse_format(text, event[0])
        except ValueError as e:
            self.lineno = start
            self.fail("format of %s:%s: %s" % (event[0], event[1], e))
        if fmt.name != event[1]:
            self.lineno = start
            self.fail("format of %s:%s names event %r" % (event[0], event[1], fmt.name[:64]))


def _section(lines_of):
    text = lines_of or ""
    if text and not text.endswith("\n"):
        text += "\n"
    return text, text.count("\n")


def _one_line(value):
    """A metadata value on one line (a hostname or argument never breaks
    the header)."""
    text = " ".join(str(value).split())
    return text[:MAX_VALUE_BYTES]


def header_text(meta, formats, header_page=None, header_event=None):
    """The header of a recording.  meta: key -> value (args: a list);
    formats: [(system, event, format file text)]."""
    out = ["%s %d\n" % (MAGIC, VERSION)]
    for key in sorted(meta):
        value = meta[key]
        if key == "args":
            value = json.dumps([str(a) for a in value])
        if not _KEY.match(key):
            raise ValueError("bad metadata key %r" % key)
        out.append("%s %s\n" % (key, _one_line(value)))
    for system, event, text in formats:
        body, n = _section(text)
        out.append("format %s %s %d\n" % (system, event, n))
        out.append(body)
    for key, text in (("header_page", header_page), ("header_event", header_event)):
        if text:
            body, n = _section(text)
            out.append("%s %d\n%s" % (key, n, body))
    out.append("trace\n")
    return "".join(out)


def probe_meta(probes):
    """Metadata {probe_<n>: "<system> <event> <probe>"} of a run's probe
    events [(system, event, probe describe() text)]."""
    out = {}
    for n, (system, event, probe) in enumerate(probes):
        value = "%s %s %s" % (system, event, probe)
        if n >= MAX_FORMATS or not _PROBE_VALUE.match(value):
            raise KerntraceError("cannot record probe %s (more than %d probes, or a name a "
                                 "recording cannot hold)" % (probe, MAX_FORMATS))
        out["probe_%d" % n] = value
    return out


def recorded_args(saved):
    """The tool arguments a recording was made with (a list of str), or
    None when it does not say or says it in a way we cannot read."""
    try:
        args = json.loads(saved.meta.get("args", "null"))
    except ValueError:
        return None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return args
    return None
