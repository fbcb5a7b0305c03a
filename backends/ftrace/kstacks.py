"""Kernel stacks on the ftrace backend (model.KSTACK): the kernel_stack
records that options/stacktrace makes, decoded and named.

With the option set in a buffer, the kernel writes after each event it
commits there a record of its own, ftrace:kernel_stack (entry type
TRACE_STACK, kernel/trace/trace_entries.h), on the same CPU:

    int           size       the number of return addresses
    unsigned long caller[]   the addresses, innermost first

The format file declares caller[8] (FTRACE_STACK_ENTRIES), but the entry
is as long as its stack: the addresses are read up to `size` and the
entry's length, whichever ends first.  The text path (trace_pipe) prints
the same record as "<stack trace>" and one " => function" line per frame.

Addresses are named from /proc/kallsyms as bcc's ksym names them (the
function, no offset; "[unknown]" outside every symbol), so a record's
KSTACK value is the tuple of names the eBPF backend gives.
"""

import bisect
import struct
import sys

UNKNOWN = "[unknown]"
# Before "tracing: Remove the ULONG_MAX stack trace hackery" (v5.2) a saved
# stack could end with ULONG_MAX (as trace_stack_print() still stops at).
_END_MARKS = (0xffffffff, 0xffffffffffffffff)


class StackFormatError(ValueError):
    """A kernel_stack format this decoder does not know."""


class StackLayout(object):
    """Where size and caller[] are in a kernel_stack entry."""

    def __init__(self, event_format, byteorder=None):
        size = event_format.field("size")
        caller = event_format.field("caller")
        pid = event_format.field("common_pid")
        if size is None or caller is None or pid is None:
            raise StackFormatError("ftrace:kernel_stack has no size/caller/common_pid field")
        if not caller.array_len or caller.size % caller.array_len:
            raise StackFormatError("ftrace:kernel_stack caller is not an array")
        word = caller.size // caller.array_len
        if word not in (4, 8) or size.size != 4 or pid.size != 4:
            raise StackFormatError("ftrace:kernel_stack: unexpected field sizes")
        endian = "<" if (byteorder or sys.byteorder) == "little" else ">"
        self.id = event_format.id
        self._head = struct.Struct(endian + "i").unpack_from
        self._pid_at = pid.offset
        self._size_at = size.offset
        self._callers_at = caller.offset
        self._word = word
        self._code = endian + ("Q" if word == 8 else "I")

    def decode(self, data, pos, length):
        """(common_pid, addresses) of the entry at data[pos:pos + length]."""
        (tid,) = self._head(data, pos + self._pid_at)
        (count,) = self._head(data, pos + self._size_at)
        room = max(0, (length - self._callers_at) // self._word)
        n = min(max(count, 0), room)
        addrs = struct.unpack_from("%s%d%s" % (self._code[0], n, self._code[1]), data,
                                   pos + self._callers_at)
        out = []
        for a in addrs:
            if a in _END_MARKS:
                break
            out.append(a)
        return tid, tuple(out)


class KernelSymbols(object):
    """Addresses -> kernel function names, from a kallsyms text (read once,
    when first asked).  Without root the addresses read as 0: every one is
    then unknown."""

    def __init__(self, path="/proc/kallsyms"):
        self.path = path
        self._addrs = None
        self._names = None
        self._cache = {}

    def _load(self):
        pairs = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split(None, 3)
                    if len(parts) < 3 or parts[1] not in "tTwW":
                        continue
                    addr = int(parts[0], 16)
                    if addr:
                        pairs.append((addr, parts[2]))
        except (IOError, OSError, ValueError):
            pairs = []
        pairs.sort()
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def name(self, addr):
        name = self._cache.get(addr)
        if name is None:
            if self._addrs is None:
                self._load()
            i = bisect.bisect_right(self._addrs, addr) - 1
            name = self._names[i] if i >= 0 and addr else UNKNOWN
            if len(self._cache) < 65536:
                self._cache[addr] = name
        return name

    def names(self, addrs):
        return tuple(self.name(a) for a in addrs)


def stack_sink(layout, symbols, attach):
    """A RawDecoder binding entry for kernel_stack entries: each one's
    names go to attach(cpu, tid, names)."""
    decode = layout.decode
    names = symbols.names

    def unpack(data, pos):
        return ()

    def fix(_values, data, pos, length):
        return decode(data, pos, length)

    def callback(_ts, cpu, values):
        attach(cpu, values[0], names(values[1]))
    return (unpack, fix, callback, layout._callers_at)


class StackAttacher(object):
    """Gives each stack to the record the event before it on the same CPU
    made, when the same thread wrote both (options/stacktrace writes the
    stack right after its event, in the same context).  A stack with no
    such record (its event was filtered out in user space, or was before
    the run) is dropped; so is a second stack for a record."""

    def __init__(self, field):
        self.field = field
        self._last = {}         # cpu -> (tid, the newest record still without a stack)

    def made(self, cpu, tid, record):
        self._last[cpu] = (tid, record)

    def attach(self, cpu, tid, frames):
        last = self._last.pop(cpu, None)
        if last is not None and last[0] == tid:
            last[1].fields[self.field] = frames
            return True
        return False

    def forget(self, cpu):
        self._last.pop(cpu, None)
