"""Reading ftrace text output (`trace`, `trace_pipe`) from any kernel era.

A trace line is

    TASK-PID [(TGID)] [CPU] [FLAGS] TIMESTAMP: EVENT: payload

and the parts that vary between kernels are handled here:

  * no flags column (3.2 era, or options/irq-info off);
  * 4 flag characters (3.x to 5.14) or 5 (5.15 and later), with letters
    that newer kernels added in the same width (`DBZff`, `.Ns1.`);
  * the `(  TGID)` column of options/record-tgid (`(-------)` when unknown);
  * task names with spaces and dashes: the PID is the last `-digits` before
    the CPU column; `<...>` when the name is not in saved_cmdlines;
  * timestamps as seconds.micro(nano)seconds, or plain integers for the
    counter and x86-tsc trace clocks;
  * syscall events, which do not print `EVENT: payload` but
    `sys_openat(dfd: 0x..., ...)` and `sys_openat -> 0x3`;
  * `CPU:N [LOST M EVENTS]` / `[LOST EVENTS]` markers, `#` headers and
    blank lines.

parse_line() splits a line; TextDecoder turns it into a RawEvent using the
event's own format file (printfmt), so a payload layout change in a new
kernel is read from that kernel's format, not from code here.
"""

import re

from .plan import Lost, RawEvent
from .printfmt import PrintFmtError, compile_print_fmt

# The header up to "TIMESTAMP: ".  The comm is lazy so the PID is the first
# "-digits" that is followed by the rest of a valid header; a comm holding
# "-digits" (e.g. "foo-12") makes the first try fail and the regex moves on.
# Every part is bounded, the leading blanks are taken whole (a shorter run
# would leave a blank for the comm: (?!\s) fails it at once) and the match
# never looks past HEADER_CHARS, so a line costs the same small work however
# long it is (blanks shared by \s* and an unbounded lazy comm made it
# quadratic in the line's length).  Numbers are bounded by what the kernel
# prints: pid_t and CPU numbers fit 10 digits, u64 seconds 20.
# Groups: comm, tid, tgid, cpu, flags, seconds, fraction.
MAX_COMM_CHARS = 64            # TASK_COMM_LEN is 16; room for odd encodings
HEADER_CHARS = 256             # comm padded to 16, pid, tgid, cpu, flags, time
_HEADER = re.compile(
    r"\s*(?!\s)(.{0,%d}?)-(\d{1,10})\s+" % MAX_COMM_CHARS +
    r"(?:\(\s*(\d{1,10}|-+)\)\s+)?"          # options/record-tgid
    r"\[(\d{1,10})\]\s+"
    # Since Linux commit 54357f0c9149 ("tracing: Add migrate-disabled counter
    # to tracing output") (v5.15) there are 5 flag characters, 4 before, none
    # in 3.2-era kernels or with options/irq-info off.
    r"(?:([^\s:\[\]()]{4,5})\s+)?"
    r"(\d{1,20})(?:\.(\d{1,20}))?: ")


# "EVENT: payload" as trace_output prints it for every event with a format.
_EVENT = re.compile(r"^(?P<event>[A-Za-z_][A-Za-z0-9_]*):(?: (?P<payload>.*))?$", re.S)
# Syscall events are printed by their own output functions, not their print
# fmt (kernel/trace/trace_syscalls.c print_syscall_enter/exit).
_SYS_ENTER = re.compile(r"^sys_(?P<name>[A-Za-z0-9_]+)\((?P<payload>.*)\)$", re.S)
_SYS_EXIT = re.compile(r"^sys_(?P<name>[A-Za-z0-9_]+) -> (?P<payload>\S+)$")
# The function tracer: "func <-parent".
_FUNCTION = re.compile(r"^(?P<payload>\S+ <-\S+)$")
_LOST = re.compile(r"^\s*(?:CPU:(?P<cpu>\d+)\s+)?\[LOST(?: (?P<count>\d+))? EVENTS\]\s*$")

UNKNOWN_COMM = "<...>"


class TraceLine(object):
    """One parsed trace line.  `event` is the tracefs event name
    ("block_rq_issue", "sys_enter_openat", "function"), or None when the
    payload has no recognisable event shape; `tgid` is None without the
    record-tgid column (or when it shows dashes); `ts_ns` is nanoseconds
    for seconds.fraction timestamps and the raw count for integer clocks."""

    __slots__ = ("comm", "tid", "tgid", "cpu", "flags", "ts_ns", "event", "payload")

    def __init__(self, comm, tid, tgid, cpu, flags, ts_ns, event, payload):
        self.comm = comm
        self.tid = tid
        self.tgid = tgid
        self.cpu = cpu
        self.flags = flags
        self.ts_ns = ts_ns
        self.event = event
        self.payload = payload

    def __eq__(self, other):
        return isinstance(other, TraceLine) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "TraceLine(%r-%d (%s) [%d] %s %d %s: %r)" % (
            self.comm, self.tid, self.tgid, self.cpu, self.flags, self.ts_ns,
            self.event, self.payload)


def timestamp_ns(text):
    """'673.770523' -> 673770523000; '673.770523123' -> 673770523123;
    an integer clock value ('1926525391961') is returned unchanged."""
    sec, dot, frac = text.partition(".")
    return _ts(sec, frac if dot else None)


def _ts(sec, frac):
    if frac is None:
        return int(sec)
    if len(frac) >= 9:
        return int(sec) * 1000000000 + int(frac[:9])
    return int(sec) * 1000000000 + int(frac) * _SCALE[len(frac)]


_SCALE = [10 ** (9 - n) for n in range(10)]


def split_event(rest):
    """The text after 'TIMESTAMP: ' -> (tracefs event name or None, payload)."""
    m = _EVENT.match(rest)
    if m:
        return m.group("event"), m.group("payload") or ""
    m = _SYS_ENTER.match(rest)
    if m:
        return "sys_enter_" + m.group("name"), m.group("payload")
    m = _SYS_EXIT.match(rest)
    if m:
        return "sys_exit_" + m.group("name"), m.group("payload")
    m = _FUNCTION.match(rest)
    if m:
        return "function", m.group("payload")
    return None, rest


def _as_text(line):
    if isinstance(line, bytes):
        return line.decode("utf-8", "replace")
    return line


def parse_lost(line):
    m = _LOST.match(line)
    if not m:
        return None
    cpu = m.group("cpu")
    count = m.group("count")
    # A count no u64 holds is no count the kernel printed; refused by length
    # (not by int(), whose limit differs between Python versions).
    if len(cpu or "") > 10 or len(count or "") > 20:
        return Lost(None, None)
    return Lost(int(cpu) if cpu is not None else None,
                int(count) if count is not None else None)


def parse_line(line):
    """A trace line -> TraceLine, Lost, or None (header, blank or
    unrecognised line).  Never raises on any str or bytes input."""
    line = _as_text(line).rstrip("\r\n")
    if not line or line.lstrip().startswith("#"):
        return None
    m = _HEADER.match(line, 0, HEADER_CHARS)
    if m is None:
        if "LOST" in line:
            return parse_lost(line)
        return None
    event, payload = split_event(line[m.end():])
    tid, tgid, cpu, ts = _numbers(m)
    return TraceLine(m.group(1), tid, tgid, cpu, m.group(5), ts, event, payload)


def _numbers(m):
    _comm, tid, tgid, cpu, _flags, sec, frac = m.groups()
    return (int(tid), int(tgid) if tgid is not None and tgid[0] != "-" else None,
            int(cpu), _ts(sec, frac))


class _Undecodable(object):
    """Stands in for a print fmt we cannot parse: every payload fails."""

    @staticmethod
    def decode(_payload):
        return None


def _decoder(fmt):
    try:
        return compile_print_fmt(fmt)
    except PrintFmtError:
        return _Undecodable


# The kernel_stack record as the text prints it (trace_output.c
# trace_stack_print): "<stack trace>" after the line's header, then one
# " => function" line per frame.
STACK_HEAD = "<stack trace>"
STACK_FRAME = " => "
UNKNOWN_FRAME = "[unknown]"


class KernelStackText(object):
    """A "<stack trace>" line: its CPU, thread and the frames of the " => "
    lines after it, appended as the decoder reads them."""

    __slots__ = ("cpu", "tid", "frames")

    def __init__(self, cpu, tid):
        self.cpu = cpu
        self.tid = tid
        self.frames = []


def frame_name(text):
    """A " => " line's function as bcc's ksym names it: without the offset
    options/sym-offset adds ("f+0x5e/0x170") or the address of
    options/sym-addr ("f <ffffffff81001000>"); an address the kernel could
    not name is [unknown]."""
    name = text.strip().split(" <", 1)[0].split("+", 1)[0]
    if not name or name.startswith("0x") or name == "0":
        return UNKNOWN_FRAME
    return name


class TextDecoder(object):
    """Trace lines -> RawEvents, with the event formats of this run.

    formats     (system, event) -> core.tracefs.EventFormat; a value of None
                means "count this event, decode no payload" (an event whose
                format is unknown but whose fields nobody reads).
    candidates  optional (system, event) -> [EventFormat]: for events whose
                format is not known in advance (replay of a trace from
                another host), the first candidate whose print fmt decodes a
                line of that event is chosen, once, for the rest of the run.

    The text names only the event, not its system: names are unique within
    a run's plan, so the event name alone finds the format.

    stacks      decode kernel stacks: a "<stack trace>" line gives a
                KernelStackText whose frames the " => " lines after it fill.
    """

    def __init__(self, formats, candidates=None, stacks=False):
        self.stacks = stacks
        self._stack = None          # the KernelStackText being read
        self.undecodable = 0
        self.lost_markers = 0
        self.chosen = {}            # (system, event) -> EventFormat picked from candidates
        self._by_name = {}          # event name -> (system, event, decoder or None)
        self._pending = {}          # event name -> (system, event, [(fmt, decoder)])
        for (system, event), fmt in (formats or {}).items():
            self._by_name[event] = (system, event, _decoder(fmt) if fmt else None)
        for (system, event), fmts in (candidates or {}).items():
            if event in self._by_name:
                continue
            self._pending[event] = (system, event, [(f, _decoder(f)) for f in fmts])

    def _choose(self, name, payload):
        system, event, options = self._pending[name]
        for fmt, decoder in options:
            fields = decoder.decode(payload)
            if fields is not None:
                del self._pending[name]
                self.chosen[(system, event)] = fmt
                self._by_name[name] = (system, event, decoder)
                return system, event, fields
        return None

    def decode(self, line):
        """A line -> RawEvent, Lost, or None (headers, other events, and
        payloads the format cannot decode, which are counted in
        self.undecodable).  Never raises."""
        if type(line) is not str:
            line = _as_text(line)
        m = _HEADER.match(line, 0, HEADER_CHARS)
        if m is None:
            if self._stack is not None:
                if line.startswith(STACK_FRAME):
                    self._stack.frames.append(frame_name(line[len(STACK_FRAME):]))
                    return None
                self._stack = None
            return self._not_an_event(line)
        rest = line[m.end():].rstrip("\r\n")
        self._stack = None
        if self.stacks and rest == STACK_HEAD:
            tid, _tgid, cpu, _ts = _numbers(m)
            self._stack = KernelStackText(cpu, tid)
            return self._stack
        # the common case, "EVENT: payload" of one of ours, without a regex
        name, sep, payload = rest.partition(": ")
        entry = self._by_name.get(name) if sep else None
        if entry is None:
            name, payload = split_event(rest)
            entry = self._by_name.get(name)
        if entry is None:
            if name not in self._pending:
                return None
            chosen = self._choose(name, payload)
            if chosen is None:
                self.undecodable += 1
                return None
            system, event, fields = chosen
        else:
            system, event, decoder = entry
            if decoder is None:
                fields = {}
            else:
                fields = decoder.decode(payload)
                if fields is None:
                    self.undecodable += 1
                    return None
        comm = m.group(1)
        tid, tgid, cpu, ts = _numbers(m)
        return RawEvent(system, event, ts, tid, cpu,
                        comm=None if comm == UNKNOWN_COMM else comm, fields=fields, tgid=tgid)

    def _not_an_event(self, line):
        if "LOST" not in line or line.lstrip().startswith("#"):
            return None
        lost = parse_lost(line.rstrip("\r\n"))
        if lost is not None:
            self.lost_markers += 1
        return lost
