"""vfsstat: VFS calls per second, one line per interval (bcc's layout).

    command line  vfsstat [-p PID] [interval [count]]
    variants      kernel:    kprobes on vfs_read, vfs_write,
                             vfs_fsync_range, vfs_open, vfs_create (as bcc
                             counts them)
                  syscalls:  where no backend can probe kernel functions,
                             the system calls that reach them: READ from
                             read and pread64, WRITE from write and
                             pwrite64, FSYNC from fsync and fdatasync, OPEN
                             from the successful returns of open, openat,
                             openat2 and creat; CREATE is not measured
    aggregate     Count per logical event, printed as per-second rates over
                  each interval's real length (core/rates.py)
    filters       -p PID
    output        TIME then READ/s WRITE/s FSYNC/s OPEN/s CREATE/s

Why CREATE cannot come from system calls: the kernel reaches vfs_create
from mknod(2) of a regular file and from in-kernel users (nfsd,
overlayfs, ecryptfs); an open with O_CREAT (and creat(2)) creates the file
through the directory's create operation in lookup_open() without calling
vfs_create, and its return does not say whether it created the file.
mknod of a regular file alone is not selectable with the model's filters
(its mode's type bits may be S_IFREG or 0).
What the syscall variant does not see that vfs_* does: reads, writes and
opens made inside the kernel (execve opening the program, kernel_read
users), msync(MS_SYNC)'s fsync.  readv/preadv and writev/pwritev reach
vfs_readv/vfs_writev (vfs_iter_*), not vfs_read/vfs_write, so neither
variant counts them, as bcc does not.
"""

import os

from kerntrace.core.api import (EVENT_NAME, Count, Event, Field, Filter, KernelFunction,
                                Measurement, Metric, RateColumn, RateTablePrinter, SyscallEntry,
                                SyscallExit, Tool, UsageError, Variant, count_value, hookimpl,
                                pid_value, report_every, seconds_value)

KERNTRACE_API_VERSION = "1.1"

# bcc's columns, in bcc's order, and the kernel function behind each.
KERNEL_FUNCTIONS = (("READ/s", "vfs_read"), ("WRITE/s", "vfs_write"),
                    ("FSYNC/s", "vfs_fsync_range"), ("OPEN/s", "vfs_open"),
                    ("CREATE/s", "vfs_create"))

# The system calls that reach each kernel function (fs/read_write.c,
# fs/sync.c, fs/open.c), counted at entry, or for opens at a successful
# return (vfs_open runs only for a file found or created).
SYSCALL_ENTRIES = {"vfs_read": ("read", "pread64"),
                   "vfs_write": ("write", "pwrite64"),
                   "vfs_fsync_range": ("fsync", "fdatasync")}
SYSCALL_OPENS = ("openat", "openat2", "open", "creat")
# open(2) and creat(2) exist on x86_64 but not on newer architectures
# (aarch64, riscv), which have only openat/openat2.
LEGACY_OPENS = ("open", "creat")

USAGE_EXAMPLES = (
    ("vfsstat", "count some VFS calls per second"),
    ("vfsstat -p 185", "trace PID 185 only"),
    ("vfsstat 2 5", "print 2 second summaries, 5 times"),
    ("vfsstat --explain 1 1", "say whether kernel functions or system calls are counted"),
)


def kernel_measurement(filters, schedule):
    events = [Event(function, KernelFunction(function)) for _, function in KERNEL_FUNCTIONS]
    return Measurement(events=events, aggregate=Count(keys=(EVENT_NAME,)), filters=filters,
                       schedule=schedule)


def syscall_measurement(filters, schedule, opens=SYSCALL_OPENS):
    events = []
    for function, calls in sorted(SYSCALL_ENTRIES.items()):
        events += [Event(call, SyscallEntry(call)) for call in calls]
    exits = [Event(call, SyscallExit(call), fields=[Field("ret")]) for call in opens]
    events += exits
    # A failed open (-errno) never reached vfs_open.
    filters = list(filters) + [Filter("ret", ">=", 0, events=[e.name for e in exits])]
    return Measurement(events=events, aggregate=Count(keys=(EVENT_NAME,)), filters=filters,
                       schedule=schedule)


def columns(variant):
    """The printed columns: each header with the event names it sums."""
    out = []
    for header, function in KERNEL_FUNCTIONS:
        if variant == "kernel":
            names = (function,)
        elif function == "vfs_open":
            names = SYSCALL_OPENS
        else:
            names = SYSCALL_ENTRIES.get(function, ())
        out.append(RateColumn(header, names))
    return out


def syscall_description(opens):
    return ("system calls (READ: read, pread64; WRITE: write, pwrite64; FSYNC: fsync, "
            "fdatasync; OPEN: successful %s; CREATE not measured)" % ", ".join(opens))


class VfsStat(Tool):
    name = "vfsstat"
    metric = Metric(counter="vfs_operations", labels={"event": "operation"},
                    counter_help="VFS operations (read, write, open, ...).")
    summary = "Count some VFS calls, per second."
    description = ("Counts calls of the kernel's vfs_read, vfs_write, vfs_fsync_range,\n"
                   "vfs_open and vfs_create; where no backend can probe kernel functions,\n"
                   "counts the system calls that reach them instead (and says so).\n"
                   "Rates are per second of each interval's real length.")
    examples = USAGE_EXAMPLES

    def add_arguments(self, p):
        p.add_argument("-p", "--pid", type=pid_value, help="trace this PID only")
        p.add_argument("interval", nargs="?", type=seconds_value, default=1.0,
                       help="output interval, in seconds (default 1)")
        p.add_argument("count", nargs="?", type=count_value, default=0,
                       help="number of outputs (default: until Ctrl-C)")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        # A process that does not exist would only count zeros (a replayed
        # recording's processes are not this host's).
        if (args.pid is not None and not args.input_file
                and not os.path.exists("/proc/%d" % args.pid)):
            raise UsageError("no process with PID %d" % args.pid)
        return args

    def variants(self, args):
        if args.pid is not None:
            filters = [Filter("pid", "==", args.pid)]
        else:
            # Not its own calls: the ftrace backend reads the trace buffer
            # with read(2) all the time, each read an event, which would
            # count itself (bcc's vfsstat reads a map once per interval).
            # A thread filter, which the kernel applies (ftrace: common_pid):
            # kerntrace reads from its main thread only.  (A process filter
            # would be applied in user space, after the ftrace backend had
            # followed every task's process id.)
            filters = [Filter("tid", "!=", os.getpid())]
        schedule = report_every(args.interval, count=args.count)
        newer = tuple(c for c in SYSCALL_OPENS if c not in LEGACY_OPENS)
        return [
            Variant("kernel", kernel_measurement(filters, schedule),
                    "kernel functions (%s)" % ", ".join(f for _, f in KERNEL_FUNCTIONS)),
            Variant("syscalls", syscall_measurement(filters, schedule),
                    syscall_description(SYSCALL_OPENS)),
            Variant("syscalls", syscall_measurement(filters, schedule, opens=newer),
                    syscall_description(newer)),
        ]

    def measurement(self, args):
        return self.variants(args)[0].measurement

    def printer(self, args, out, err):
        def banner(ctx):
            variant = getattr(ctx, "variant", None)
            if variant is not None and variant.name == "syscalls":
                return ("vfsstat: kernel functions cannot be probed here: counting %s. "
                        "Ctrl-C to end." % variant.description)
            return "Tracing VFS calls... Ctrl-C to end."
        return VfsStatPrinter(out, err, banner=banner)


class VfsStatPrinter(RateTablePrinter):
    """bcc's columns, each summing the events of the variant that runs."""

    def __init__(self, out, err, banner):
        RateTablePrinter.__init__(self, out, err, columns("kernel"), banner=banner)

    def start(self, ctx):
        variant = getattr(ctx, "variant", None)
        self.columns = columns(variant.name if variant is not None else "kernel")
        RateTablePrinter.start(self, ctx)


@hookimpl
def kerntrace_tools():
    return [VfsStat()]
