"""What the block I/O tools share: the block tracepoints as model Events,
device numbers and disk names, the rwbs request-type string, and the
validation of the -d / -i command-line values.

Nothing here knows which backend runs; it only declares and decodes.

Device numbers: block tracepoints record the kernel's internal dev_t,
(MAJOR << 20) | MINOR, which is what filters compare against.  User space
(stat(2), /sys/class/block/*/dev, /proc/partitions) shows MAJOR and MINOR
separately; the helpers below convert between the two.
"""

import os
import re

from kerntrace.core import api
from kerntrace.core.api import (INT, STR, EnableError, Event, Field, Filter, FilterError,
                                KerntraceError, Pair, Tracepoint, UsageError, read_text)

# The metric help texts every block tool that measures the same thing
# shares (one metric name, one HELP, whichever tool wrote it).
LATENCY_HELP = "Block I/O latency, from issue (or insert, with -Q) to completion."
REQUESTS_HELP = "Block I/O requests completed."

# ---------------------------------------------------------------------------
# Device numbers
MINORBITS = 20
MINORMASK = (1 << MINORBITS) - 1
MAX_MAJOR = (1 << 12) - 1          # dev_t is 32 bits: 12 for the major

# A flush request (rwbs "FF") carries no data and no sector: the tracepoints
# record its sector as (sector_t)-1.  (A data-less pre-flush write shows as
# a 0-byte "WS" at sector 0 on 6.18.)
FLUSH_SECTOR = (1 << 64) - 1
SECTOR_BYTES = 512


def make_dev(major, minor):
    """The kernel's dev_t for MAJOR,MINOR, as block tracepoints record it."""
    return (major << MINORBITS) | minor


def dev_major(dev):
    return dev >> MINORBITS


def dev_minor(dev):
    return dev & MINORMASK


def dev_string(dev):
    """'254,0': how the block tracepoints (and perf-tools) print a device."""
    return "%d,%d" % (dev_major(dev), dev_minor(dev))


SYS_CLASS_BLOCK = "/sys/class/block"
PROC_PARTITIONS = "/proc/partitions"


class DiskTable(object):
    """Disk names <-> device numbers, read from /sys/class/block/<name>/dev
    ("MAJ:MIN"), or /proc/partitions where sysfs lacks them.  Re-read when
    asked about a device it does not know (disks come and go: loop devices,
    hot-plug)."""

    def __init__(self, sys_class_block=None, proc_partitions=None):
        self.sys_class_block = sys_class_block or SYS_CLASS_BLOCK
        self.proc_partitions = proc_partitions or PROC_PARTITIONS
        self._by_dev = None
        self._by_name = None
        self._partitions = set()

    def _load(self):
        by_name = {}
        partitions = set()
        try:
            names = os.listdir(self.sys_class_block)
        except OSError:
            names = []
        for name in names:
            text = read_text(os.path.join(self.sys_class_block, name, "dev"))
            m = re.match(r"^\s*(\d+):(\d+)\s*$", text or "")
            if m:
                by_name[name] = make_dev(int(m.group(1)), int(m.group(2)))
                if os.path.exists(os.path.join(self.sys_class_block, name, "partition")):
                    partitions.add(name)
        if not by_name:
            # No sysfs (containers, very old systems): /proc/partitions lists
            # "major minor #blocks name" after a header line.
            for line in (read_text(self.proc_partitions) or "").splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
                    by_name[parts[3]] = make_dev(int(parts[0]), int(parts[1]))
        self._by_name = by_name
        self._by_dev = {}
        for name in sorted(by_name):
            self._by_dev.setdefault(by_name[name], name)
        self._partitions = partitions

    def name_of(self, dev):
        """The disk name of a dev_t, or None."""
        if self._by_dev is None or dev not in self._by_dev:
            self._load()
        return self._by_dev.get(dev)

    def dev_of(self, name):
        """The dev_t of a disk name, or None."""
        if self._by_name is None or name not in self._by_name:
            self._load()
        return self._by_name.get(name)

    def is_partition(self, name):
        if self._by_name is None:
            self._load()
        return name in self._partitions

    def exists(self, dev):
        return self.name_of(dev) is not None


class DiskNameFormatter(object):
    """callable(dev) -> disk name ("vda"), for output labels.  A device with
    no name shows as MAJ,MIN; dev 0 (a request with no disk) as <unknown>,
    as bcc prints it."""

    def __init__(self, table=None):
        self.table = table or DiskTable()

    def __call__(self, dev):
        try:
            dev = int(dev)
        except (TypeError, ValueError):
            return str(dev)
        if dev == 0:
            return "<unknown>"
        return self.table.name_of(dev) or dev_string(dev)


# ---------------------------------------------------------------------------
# Command-line values the block tools share (seconds_value and count_value
# are every tool's: kerntrace.core.tool)
def sector_text(sector):
    """A request's sector as the snoop tools print it: a flush carries none
    (the kernel records (sector_t)-1)."""
    return "-" if sector == FLUSH_SECTOR else str(sector)


# -d values
_MAJMIN = re.compile(r"^\s*(\d+)\s*[,:]\s*(\d+)\s*$")
_DISK_NAME = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}\Z")


def looks_like_majmin(text):
    """True for a MAJOR,MINOR value (as opposed to a disk name)."""
    return bool(re.match(r"^\s*[-+]?\d+\s*[,:]", text or ""))


def parse_majmin(text):
    """'202,1' (or '202:1') -> dev_t.  Raises UsageError for anything else
    or numbers a dev_t cannot hold."""
    m = _MAJMIN.match(text or "")
    if not m:
        raise UsageError("invalid device %r (expected MAJOR,MINOR, e.g. 202,1)" % (text,))
    major, minor = int(m.group(1)), int(m.group(2))
    if major > MAX_MAJOR or minor > MINORMASK:
        raise UsageError("invalid device %r: major must be <= %d and minor <= %d"
                         % (text, MAX_MAJOR, MINORMASK))
    return make_dev(major, minor)


class NoSuchDisk(KerntraceError):
    """-d names a disk this host does not have (exit status 1, as bcc's
    biolatency/biosnoop exit for it)."""


def resolve_disk(text, table=None, allow_majmin=True):
    """A -d value -> dev_t: a disk name ("vda"), a device path ("/dev/vda"),
    or MAJOR,MINOR.  The disk must exist and be a whole disk (block
    requests are traced per disk, never per partition)."""
    table = table or DiskTable()
    if text is None or text == "":
        raise UsageError("empty disk name")
    if allow_majmin and looks_like_majmin(text):
        dev = parse_majmin(text)
        name = table.name_of(dev)
        if name is None:
            raise NoSuchDisk("no such disk %s (not in /sys/class/block or /proc/partitions)"
                             % dev_string(dev))
        _check_whole_disk(table, name, text)
        return dev
    name = text
    if text.startswith("/dev/"):
        name = text[len("/dev/"):]
    if not _DISK_NAME.match(name) or name in (".", "..") or "/" in name:
        raise UsageError("invalid disk name %r" % (text,))
    dev = table.dev_of(name)
    if dev is None:
        raise NoSuchDisk("no such disk '%s'" % text)
    _check_whole_disk(table, name, text)
    return dev


def _check_whole_disk(table, name, text):
    if table.is_partition(name):
        raise UsageError("%s is a partition: block requests are traced per whole disk "
                         "(give the disk it belongs to)" % text)


# ---------------------------------------------------------------------------
# rwbs: the request type string blk_fill_rwbs() writes into every block_rq_*
# event: [F]OP[F][A][S][M]... -- an optional F (pre-flush), the operation
# (R read, W write, D discard, DE secure erase, F flush, N other, Z? zone
# operations), then flag letters (F FUA, A readahead, S sync, M metadata).
# Older kernels add E (secure) and B (barrier) after the operation.  Format
# changes handled: zone operations ZA/ZR/ZRA/ZO/ZC/ZF since the 2025 patch
# "blktrace: add zoned block commands to blk_fill_rwbs" (J. Thumshirn); a
# lower-case 'a' for REQ_ATOMIC writes since the 2025 patch that grew
# RWBS_LEN from 8 to 9 (R. Harjani); rwbs is char[10] on 6.18.
_OPS = {
    "R": "Read", "W": "Write", "D": "Discard", "DE": "SecureErase", "F": "Flush",
    "N": "Unknown", "WZ": "WriteZeros", "ZR": "ZoneReset", "ZRA": "ZoneResetAll",
    "ZA": "ZoneAppend", "ZO": "ZoneOpen", "ZC": "ZoneClose", "ZF": "ZoneFinish",
}
_OP_LETTERS = "RWDFNZ"
# Flag letter -> bcc's biolatency -F word, innermost first (bcc prefixes
# each word in this order, so the last one ends up leftmost).
_FLAG_WORDS = (("S", "Sync"), ("M", "Metadata"), ("F", "ForcedUnitAccess"),
               ("A", "ReadAhead"), ("E", "Secure"), ("B", "Barrier"), ("a", "Atomic"))


_TYPE_LETTERS = {}     # rwbs text -> Rwbs.type_letter()


class Rwbs(object):
    """A decoded rwbs string: op (one of _OPS' keys, or "" when empty),
    preflush (bool) and the set of flag letters."""

    __slots__ = ("text", "op", "preflush", "flags")

    def __init__(self, text):
        self.text = text = (text or "").strip()
        i = 0
        # A leading F followed by an operation letter is the pre-flush bit.
        self.preflush = len(text) > 1 and text[0] == "F" and text[1] in _OP_LETTERS
        if self.preflush:
            i = 1
        op = text[i:i + 1]
        if op == "D" and text[i + 1:i + 2] == "E":
            op = "DE"
        elif op == "W" and text[i + 1:i + 2] == "Z":
            op = "WZ"
        elif op == "Z":
            op = text[i:i + 2]
            if op == "ZR" and text[i + 2:i + 3] == "A":
                op = "ZRA"
        self.op = op
        self.flags = frozenset(text[i + len(op):])

    @property
    def is_write(self):
        return self.op in ("W", "WZ", "ZA")

    @property
    def is_read(self):
        return self.op == "R"

    def type_letter(self):
        """bcc biosnoop's T column: W for writes, R for reads; other
        operations show their own letter (D discard, F flush, N other)."""
        if self.is_write:
            return "W"
        if not self.op:
            return "?"
        return self.op[0]

    @staticmethod
    def type_letter_of(text):
        """Rwbs(text).type_letter(), remembered: a snoop asks per printed
        row, and a disk's requests repeat a few rwbs strings."""
        letter = _TYPE_LETTERS.get(text)
        if letter is None:
            letter = Rwbs(text).type_letter()
            if len(_TYPE_LETTERS) < 1024:
                _TYPE_LETTERS[text] = letter
        return letter

    def bcc_name(self):
        """bcc biolatency -F's name for the request flags, e.g. "Read",
        "Sync-Write", "ForcedUnitAccess-Metadata-Sync-Write".  rwbs carries
        fewer flags than the kernel's cmd_flags that bcc decodes (no
        Priority, NoMerge, Idle, Background, NoWait); it adds PreFlush,
        which bcc does not show."""
        if not self.text:
            return "Unknown"
        desc = _OPS.get(self.op, "Unknown")
        for letter, word in _FLAG_WORDS:
            if letter in self.flags:
                desc = word + "-" + desc
        if self.preflush and self.op != "F":
            # (a flush request is always marked pre-flush too: "FF")
            desc = "PreFlush-" + desc
        return desc


def rwbs_flags_name(rwbs):
    """Formatter for the rwbs field in biolatency -F sections."""
    return Rwbs(rwbs).bcc_name()


def rwbs_glob(pattern):
    """A -i value -> a validated rwbs glob.  Wildcards (*) only at the start
    and end, as the kernel filter and every backend can match."""
    if not pattern or not pattern.strip("*"):
        if pattern and pattern.strip("*") == "":
            return pattern      # '*': every type
        raise UsageError("-i needs a pattern, e.g. '*R*'")
    try:
        return Filter("rwbs", "glob", pattern, type=STR).value
    except UsageError:
        raise UsageError("invalid -i pattern %r: use the request type letters (R, W, D, F, "
                         "S, M, A, N...) with * only at the start or end, e.g. '*R*'"
                         % (pattern,))


# ---------------------------------------------------------------------------
# The events
BLOCK_RQ_ISSUE = Tracepoint("block", "block_rq_issue")
BLOCK_RQ_INSERT = Tracepoint("block", "block_rq_insert")
BLOCK_RQ_COMPLETE = Tracepoint("block", "block_rq_complete")
# Since Linux commit 5a80bd075f3b ("block: introduce block_io_start/block_io_done
# tracepoints") (v6.5): the request-accounting start, where bcc's -Q attaches
# its kprobe (blk_account_io_start); older kernels only have block_rq_insert.
BLOCK_IO_START = Tracepoint("block", "block_io_start")

START = "start"
DONE = "done"


# A flush request's rwbs: the flush operation, alone or after the pre-flush
# F ("FF" on 6.18); "FW..." is a pre-flush write, which has data and a sector.
FLUSH_RWBS = (Filter("rwbs", "==", "F", type=STR), Filter("rwbs", "glob", "FF*", type=STR))


def request_fields(with_bytes=True):
    """Fields of a request start event (block_rq_issue/insert/io_start).

    sector: a flush's start is keyed by FLUSH_SECTOR, the sector its
    completion shows.  Since Linux commit 0803de78049f ("blktrace: Show
    requests without sector") issue and insert record a request whose start
    sector was never set (a flush) at sector 0, while block_rq_complete
    still records (sector_t)-1: keyed as recorded, a flush would never pair,
    and would be taken for a real I/O at sector 0.  (Stable kernels got the
    change too: the rwbs says what a request is, whatever the version.)

    bytes: up to v4.10 the tracepoints record 0 bytes for every file system
    request (only SCSI pass-through requests carry a byte count; v4.11
    records blk_rq_bytes() for all), so the size is then nr_sector * 512,
    as perf-tools' iosnoop computes it."""
    fields = [Field("dev"), Field("sector", override=(FLUSH_RWBS, FLUSH_SECTOR)),
              Field("nr_sector"), Field("rwbs", STR)]
    if with_bytes:
        fields.append(Field("bytes", if_zero=("nr_sector", SECTOR_BYTES)))
    return fields


def completion_fields():
    """Fields of block_rq_complete.  The status field was renamed when
    struct request lost its `errors` member (Linux v4.12/v4.13 block-status
    rework): format files of 3.x/4.x kernels say "errors", 6.x "error"."""
    return [Field("dev"), Field("sector"), Field("nr_sector"), Field("rwbs", STR),
            Field("error", INT, sources=("error", "errors"))]


def start_event(probes):
    return Event(START, *probes, fields=request_fields())


def issue_event():
    """I/O issued to the device driver: block_rq_issue."""
    return start_event([BLOCK_RQ_ISSUE])


def insert_event():
    """I/O inserted into the request queue (perf-tools -Q): block_rq_insert."""
    return start_event([BLOCK_RQ_INSERT])


def queued_event():
    """I/O start including OS queue time (bcc -Q): block_io_start where the
    kernel has it, else block_rq_insert."""
    return start_event([BLOCK_IO_START, BLOCK_RQ_INSERT])


def completion_event():
    return Event(DONE, BLOCK_RQ_COMPLETE, fields=completion_fields())


def request_pair(carry=(), mark=None):
    """An I/O is a start and a completion on the same device and starting
    sector.  Completions whose start was not seen (started before tracing,
    or lost) are counted as unmatched by the backends, never paired with
    another request; those of a start the filters rejected are dropped.
    Every flush of a device has the same sector: while two are in flight
    (one per hardware queue on multi-queue devices) neither is measured and
    their completions count as unmatched, rather than one being timed
    against the other's start."""
    return Pair(START, DONE, key=("dev", "sector"), carry=carry, mark=mark,
                shared={"sector": FLUSH_SECTOR})


def device_filter(dev, events=(START, DONE)):
    """Only requests of this device (by default on the start and the
    completion, so neither side of another disk's I/O is traced)."""
    return Filter("dev", "==", dev, events=events)


def rwbs_filter(pattern, events=(START, DONE)):
    """Only requests whose rwbs matches the glob."""
    return Filter("rwbs", "glob", pattern, events=events, type=STR)


def check_perf_tools_filters(device, iotype):
    """perf-tools' -d MAJ,MIN (or a disk name) and -i GLOB, checked for
    syntax at parse time; whether the disk exists is asked when the
    measurement is built."""
    if device is not None and looks_like_majmin(device):
        parse_majmin(device)
    if iotype is not None:
        rwbs_glob(iotype)


def perf_tools_error_lines(exc):
    """perf-tools' ERROR lines of its block tools (iolatency, iosnoop): a
    filter or the block tracepoints that could not be set, and those every
    perf-tools script prints (api.perf_tools_error_lines); None: the default
    one line."""
    if isinstance(exc, FilterError):
        return ["ERROR: setting -d or -t filter. Exiting."]
    if isinstance(exc, EnableError):
        return ["ERROR: enabling block I/O tracepoints. Exiting."]
    return api.perf_tools_error_lines(exc)


def perf_tools_filters(device, iotype):
    """The filters of perf-tools' -d and -i (None: not given)."""
    filters = []
    if device is not None:
        filters.append(device_filter(resolve_disk(device)))
    if iotype is not None:
        filters.append(rwbs_filter(iotype))
    return filters


__all__ = [
    "MINORBITS", "FLUSH_SECTOR", "SECTOR_BYTES", "SYS_CLASS_BLOCK", "PROC_PARTITIONS",
    "make_dev", "dev_major", "dev_minor", "dev_string", "DiskTable", "DiskNameFormatter",
    "sector_text", "looks_like_majmin", "parse_majmin", "NoSuchDisk",
    "resolve_disk", "Rwbs", "rwbs_flags_name", "rwbs_glob", "request_fields",
    "completion_fields", "start_event", "issue_event", "insert_event", "queued_event",
    "completion_event", "request_pair", "device_filter", "rwbs_filter",
    "check_perf_tools_filters", "perf_tools_filters", "perf_tools_error_lines", "START", "DONE",
    "BLOCK_RQ_ISSUE", "BLOCK_RQ_INSERT", "BLOCK_RQ_COMPLETE", "BLOCK_IO_START",
]
