"""opensnoop: one line per file open, with its file descriptor or error
(bcc-compatible columns; perf-tools' -n, -x, -d and filename operand).

    command line  opensnoop [-h] [-T] [-U] [-x] [-p PID | -t TID] [-u UID]
                            [-n NAME] [-e] [-f FLAG ...] [-d DURATION]
                            [FILENAME]
    events        enter: the open's start, with the path (and flags), from
                  the first of these the host has:
                    syscalls:sys_enter_{openat,open,openat2,creat} (those
                    the kernel has; -e, -f: openat, open), the path read from its user
                    pointer (eBPF reads user memory in the probe; ftrace
                    records only the pointer, so it goes on);
                    a kprobe on do_sys_open / do_sys_openat2 fetching the
                    path string (ftrace on kernels with kprobes);
                    uprobes on the C library's open() and creat() with a
                    string fetch (ftrace on kernels without kprobes: opens
                    through these functions only, which is what most
                    programs call);
                    else the tracepoint, the path looked up in
                    /proc/PID/fd/FD when printed (best-effort: marked
                    "(from /proc)"; not with a FILENAME filter)
                  exit: the same syscalls' sys_exit_*, the return value
    pair          enter -> exit of the same thread, carrying comm, pid, path
    aggregate     Records: comm, pid, tid, path, ret (-e: and flags; -U, -u:
                  and uid, the context field: eBPF reads it at the open;
                  ftrace looks it up in /proc when the event is decoded,
                  best-effort: "?" once the process is gone)
    filters       -p PID / -t TID / -u UID on both events, -n NAME (comm contains),
                  FILENAME (path glob, '*' at the ends only), -f FLAG
                  (flags & the FLAGs' bits: any set) on the enter, -x
                  (ret < 0) on the exit
    output        bcc 0.26's columns
                  [TIME(s)       ][UID   ]PID    COMM               FD ERR [FLAGS    ]PATH
"""

import os
import re

from kerntrace.core.api import (INT, STR, USTR, Column, Each, Event, EventTablePrinter, Field,
                                Filter, KernelFunction, Measurement, Metric, Pair, ProcFdPath,
                                Records, Schedule, SyscallEntry, SyscallExit, Tool, UsageError,
                                UserFunction, hookimpl, seconds_value)

KERNTRACE_API_VERSION = "1.1"

ENTER = "enter"
EXIT = "exit"

# The system calls that open a file by path.
SYSCALLS = ("openat", "open", "openat2", "creat")
FLAG_SYSCALLS = ("openat", "open")

# PIDs are below pid_max, at most PID_MAX_LIMIT (include/linux/threads.h, 64-bit).
PID_MAX_LIMIT = 4 * 1024 * 1024


def enter_event(flags=False):
    """The start of an open, with the path (and the open flags)."""
    # The last resort (ftrace with neither kprobes nor uprobes): the file
    # the returned descriptor points to, read from /proc when reported.
    fields = [Field("path", USTR, sources=("filename", "pathname"),
                    lookup=ProcFdPath("pid", "ret"))]
    if flags:
        fields.append(Field("flags", INT, sources=("flags",)))
    # open, creat and openat2 (where the kernel has them) beside openat:
    # glibc's open() is openat since 2.26, its creat() is creat.  Their
    # flags are elsewhere (creat has none, openat2 keeps them in struct
    # open_how): with -e only open and openat are traced.
    probes = [Each(*[SyscallEntry(s) for s in SYSCALLS if not flags or s in FLAG_SYSCALLS])]
    # do_sys_open(dfd, filename, flags, mode): fs/open.c, every era.
    probes.append(KernelFunction("do_sys_open", sources={"path": "arg1", "flags": "arg2"}))
    if not flags:
        # Since Linux commit fe9060964be1 ("open: introduce openat2(2)
        # syscall") (v5.6) do_sys_openat2(dfd, filename, how) does the work;
        # its flags are inside struct open_how, out of a fetch's reach.
        probes.append(KernelFunction("do_sys_openat2", sources={"path": "arg1"}))
    # open(path, flags, mode) and creat(path, mode) in the C library: the
    # path in user memory.  (open64 and creat64 are the same functions.)
    libc = [UserFunction("c", "open", sources={"path": "arg0", "flags": "arg1"})]
    if not flags:
        libc.append(UserFunction("c", "creat", sources={"path": "arg0"}))
    probes.append(Each(*libc))
    return Event(ENTER, *probes, fields=fields)


def exit_event(flags=False):
    return Event(EXIT, Each(*[SyscallExit(s) for s in SYSCALLS
                              if not flags or s in FLAG_SYSCALLS]), fields=[Field("ret", INT)])


def record_fields(flags=False, uid=False):
    return ("comm", "pid", "tid", "path", "ret") + (("flags",) if flags else ()) + (
        ("uid",) if uid else ())


def fd_text(record, ctx):
    ret = record["ret"]
    return ret if ret >= 0 else -1


def err_text(record, ctx):
    ret = record["ret"]
    return 0 if ret >= 0 else -ret


def path_text(record, ctx):
    """The path; one looked up in /proc after the fact (no probe could read
    it) says so: the descriptor may have been closed, or reused, by then."""
    path = record.get("path")
    if "path" not in record.best_effort:
        return path
    return "%s (from /proc)" % path if path is not None else "? (not in /proc)"


def uid_text(record, ctx):
    uid = record.get("uid")
    return "?" if uid is None else uid


def opensnoop_columns(timestamp=False, tid=False, flags=False, uid=False):
    """bcc 0.26 opensnoop's columns: ["%-14s" TIME(s)] ["%-6d" UID] "%-6s
    %-16s %4s %3s " PID (or TID) COMM FD ERR, ["%-9s" FLAGS, rows "%08o "],
    "%s" PATH."""
    cols = []
    if timestamp:
        first = []

        def elapsed(record, ctx):
            if not first:
                first.append(record.ts)
            return (record.ts - first[0]) / 1e9
        cols.append(Column("TIME(s)", elapsed, 14, fmt=lambda v: "%.9f" % v, sep=""))
    if uid:
        cols.append(Column("UID", uid_text, 6, sep=""))
    cols += [
        Column("TID" if tid else "PID", "tid" if tid else "pid", 6, sep=""),
        Column("COMM", "comm", 16, truncate=True),
        Column("FD", fd_text, 4, align=">"),
        Column("ERR", err_text, 3, align=">"),
    ]
    if flags:
        cols.append(Column("FLAGS", "flags", 8, fmt=lambda v: "%08o" % v))
    cols.append(Column("PATH", path_text, 0))
    return cols


# An O_* name of the open flags (fcntl.h), as bcc's -f takes them.
_FLAG_NAME = re.compile(r"^O_[A-Z0-9_]{1,24}\Z")


def flag_value(text):
    """-f FLAG: an open flag by name (O_WRONLY, O_CREAT ...), its bit(s)
    as this architecture's C library defines them (Python's os module)."""
    value = getattr(os, text, None) if isinstance(text, str) and _FLAG_NAME.match(text) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = "".join(c if c.isprintable() else "?" for c in str(text))[:64]
        raise UsageError("invalid open flag %r: expected a name such as O_WRONLY, O_RDWR or "
                         "O_CREAT" % shown)
    if value == 0:
        raise UsageError("open flag %s is 0: it sets no bit to filter on" % text)
    return value


# Linux uids are 32-bit; (uid_t)-1 means "none" (include/linux/uidgid.h).
MAX_UID = (1 << 32) - 2


def uid_value(text):
    """-u UID: a numeric user id."""
    if not _digits(text) or int(text) > MAX_UID:
        raise UsageError("invalid UID %r: expected a number from 0 to %d" % (text, MAX_UID))
    return int(text)


def _digits(text):
    return bool(text) and len(text) <= 10 and all("0" <= c <= "9" for c in text)


def process_id(what):
    def parse(text):
        if not _digits(text) or not 0 < int(text) < PID_MAX_LIMIT:
            raise UsageError("invalid %s %r: expected a process id" % (what, text))
        return int(text)
    return parse


def _filter_text(text, what, pattern):
    """A -n NAME or FILENAME value: what a string filter may carry
    (model.Filter checks it), and never a ':' (tracefs command syntax such
    as ':traceoff' has no business in a name or path filter)."""
    value = "*%s*" % text if not pattern else text
    try:
        if not text or ":" in text or (not pattern and "*" in text):
            raise UsageError("")
        Filter("path", "glob", value, type=STR)
    except UsageError:
        raise UsageError("invalid %s %r (letters, digits, space and _.+/@=,- only, at most "
                         "%d%s)" % (what, text, 64 if pattern else 62,
                                    "; '*' only at its start or end" if pattern else ""))
    return text


def name_value(text):
    """-n NAME: a substring of the task name."""
    return _filter_text(text, "process name", False)


def path_pattern(text):
    """FILENAME: a path, or a pattern with '*' at its start or end."""
    return _filter_text(text, "file name pattern", True)


class OpenSnoop(Tool):
    name = "opensnoop"
    metric = Metric(counter="file_opens", counter_help="File open calls.")
    summary = "Trace open() syscalls: one line per open with process, FD or error, and path."
    description = ("The path is read where the open starts: in the kernel on eBPF; on "
                   "ftrace with a kprobe, or uprobes on the C library's open() and creat(), "
                   "or else looked up in /proc when printed, marked \"(from /proc)\" "
                   "(--explain says which).")
    best_effort = ("UID (-U, -u) on the ftrace backend: no event carries it, it is read from "
                   "/proc/TID/status when the event is decoded (\"?\" once the process is "
                   "gone)",
                   "PATH on the ftrace backend without kprobes or uprobes: from "
                   "/proc/PID/fd/FD when printed, marked \"(from /proc)\"")
    examples = (
        ("opensnoop", "trace all open() syscalls"),
        ("opensnoop -T", "include timestamps"),
        ("opensnoop -x", "only show failed opens"),
        ("opensnoop -p 181", "only trace PID 181"),
        ("opensnoop -t 123", "only trace TID 123"),
        ("opensnoop -U", "include UID"),
        ("opensnoop -u 1000", "only trace UID 1000"),
        ("opensnoop -d 10", "trace for 10 seconds only"),
        ("opensnoop -n main", "only print process names containing \"main\""),
        ("opensnoop -e", "show extended fields (open flags)"),
        ("opensnoop -f O_WRONLY -f O_RDWR", "only print calls for writing"),
        ("opensnoop '/etc/*'", "only opens of paths starting with /etc/"),
        ("opensnoop '*.conf'", "only opens of paths ending in .conf"),
    )

    def add_arguments(self, p):
        p.add_argument("-T", "--timestamp", action="store_true",
                       help="include timestamp on output")
        p.add_argument("-U", "--print-uid", action="store_true",
                       help="print UID column (ftrace: read from /proc, best-effort)")
        p.add_argument("-x", "--failed", action="store_true", help="only show failed opens")
        p.add_argument("-u", "--uid", type=uid_value,
                       help="trace this UID only (ftrace: matched against /proc, "
                            "best-effort)")
        who = p.add_mutually_exclusive_group()
        who.add_argument("-p", "--pid", type=process_id("PID"), help="trace this PID only")
        who.add_argument("-t", "-L", "--tid", type=process_id("TID"),
                         help="trace this TID only (-L: as perf-tools' opensnoop takes it)")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration of trace in seconds")
        p.add_argument("-n", "--name", type=name_value,
                       help="only print process names containing this name")
        p.add_argument("-e", "--extended_fields", action="store_true",
                       help="show extended fields (FLAGS: the open flags, octal)")
        p.add_argument("-f", "--flag_filter", action="append", type=flag_value, metavar="FLAG",
                       help="only opens with this flag set (e.g. O_WRONLY; repeat for any "
                            "of several; open and openat only, as -e)")
        p.add_argument("filename", nargs="?", type=path_pattern,
                       help="only opens of this path; '*' at its start or end matches "
                            "any prefix or suffix")

    def measurement(self, args):
        flags = args.extended_fields or bool(args.flag_filter)
        if not getattr(args, "input_file", None):
            for what in ("pid", "tid"):
                value = getattr(args, what)
                if value is not None and not os.path.exists("/proc/%d" % value):
                    raise UsageError("no process with %s %d" % (what.upper(), value))
        filters = []
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid))
        if args.tid is not None:
            filters.append(Filter("tid", "==", args.tid))
        if args.uid is not None:
            filters.append(Filter("uid", "==", args.uid))
        if args.name is not None:
            filters.append(Filter("comm", "glob", "*%s*" % args.name, events=(ENTER,),
                                  type=STR))
        if args.filename is not None:
            filters.append(Filter("path", "glob", args.filename, events=(ENTER,), type=USTR))
        if args.flag_filter:
            mask = 0
            for bits in args.flag_filter:
                mask |= bits
            filters.append(Filter("flags", "&", mask, events=(ENTER,), type=INT))
        if args.failed:
            filters.append(Filter("ret", "<", 0, events=(EXIT,)))
        return Measurement(
            events=[enter_event(flags), exit_event(flags)],
            pair=Pair(ENTER, EXIT, key=("tid",), carry=("comm", "pid", "path")
                      + (("flags",) if flags else ())),
            aggregate=Records(record_fields(flags, uid=args.print_uid or args.uid is not None)),
            filters=filters,
            schedule=Schedule(duration=args.duration))

    def printer(self, args, out, err):
        return EventTablePrinter(out, err, opensnoop_columns(
            timestamp=args.timestamp, tid=args.tid is not None, flags=args.extended_fields,
            uid=args.print_uid),
            banner=self.banner(args))

    @staticmethod
    def banner(args):
        """On stderr (bcc prints none): when the table starts, tracing is on."""
        if args.duration is not None:
            return "Tracing open() calls for %g seconds." % args.duration
        return "Tracing open() calls. Ctrl-C to end."


__all__ = ["OpenSnoop", "opensnoop_columns", "enter_event", "exit_event", "ENTER", "EXIT"]


@hookimpl
def kerntrace_tools():
    return [OpenSnoop()]
