"""syscount: system call counts (and latencies), top N, per syscall or
per process (bcc's syscount columns and options).

    command line  syscount [-h] [-p PID | -t TID] [-i INTERVAL] [-d DURATION]
                           [-T TOP] [-x | -e ERRNO] [-L] [-m] [-P] [-l]
                           [--syscall NAME]
    events        exit: raw_syscalls:sys_exit (id, ret): every syscall's return
                  enter (-L only): raw_syscalls:sys_enter (id)
    pair          -L: enter -> exit of the same thread
    aggregate     Count per syscall number (-P: per pid, comm);
                  -L: Histogram of the latency in ns per key, whose count and
                  sum are syscount's COUNT and TIME columns
    filters       -p/-t on every event, --syscall (id) on every event,
                  -x (ret < 0) and -e (ret == -ERRNO) on the exit
    output        bcc's layout: [HH:MM:SS], "%-22s %8s" SYSCALL COUNT
                  (-L: "%16s" TIME (us|ms)), top N by count (-L: by time)

The syscall number becomes a name through core.syscalls' table for the
running architecture, in every output format.
"""

import errno
import os
import time

from kerntrace.core.api import (LATENCY, LOG2, Count, Event, Field, Filter, Histogram,
                                HistogramSet, Measurement, Metric, Pair, Printer, Tool, Tracepoint,
                                UsageError, hookimpl, pid_value, report_every, seconds_value,
                                syscall_table, top_value)

KERNTRACE_API_VERSION = "1.2"

ENTER = "enter"
EXIT = "exit"


def errno_value(text):
    """-e: a number (its sign ignored, as bcc does) or a name such as ENOENT."""
    digits = text.lstrip("-")
    if digits and len(digits) <= 4 and all("0" <= c <= "9" for c in digits):
        value = int(digits)
        if 0 < value < 4096:            # MAX_ERRNO (include/linux/err.h)
            return value
    elif (len(text) <= 32 and text.startswith("E") and all("A" <= c <= "Z" or "0" <= c <= "9"
                                                         for c in text)
          and isinstance(getattr(errno, text, None), int)):
        return getattr(errno, text)
    raise UsageError("invalid errno %r: expected a number from 1 to 4095 or a name such as "
                     "ENOENT" % (_shown(text),))


def syscall_value(text):
    """--syscall NAME: a system call of this architecture."""
    if not isinstance(text, str) or not text.replace("_", "a").isalnum() or len(text) > 64:
        raise UsageError("invalid system call name %r" % (_shown(text),))
    syscall_table().number(text)
    return text


def _shown(text):
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text[:64] + ("..." if len(text) > 64 else "")


def exit_event():
    return Event(EXIT, Tracepoint("raw_syscalls", "sys_exit"),
                 fields=[Field("id"), Field("ret")])


def enter_event():
    return Event(ENTER, Tracepoint("raw_syscalls", "sys_enter"), fields=[Field("id")])


class SyscountPrinter(Printer):
    """bcc syscount's table: "[HH:MM:SS]", the header, the top N rows, a
    blank line; per interval.  Counts (CountSet) or, with -L, latency
    histograms (HistogramSet) whose count and sum are COUNT and TIME."""

    def __init__(self, out, err, top=10, latency=False, milliseconds=False,
                 process=False, banner=None):
        Printer.__init__(self, out, err)
        self.top = top
        self.latency = latency
        self.milliseconds = milliseconds
        self.process = process
        self.banner = banner
        self.table = syscall_table()

    def start(self, ctx):
        if self.banner:
            self.err.write(self.banner + "\n")
            self.err.flush()

    def key_text(self, key, ctx=None):
        if self.process:
            pid, comm = key
            comm = comm.decode("utf-8", "replace") if isinstance(comm, bytes) else str(comm)
            comm = "".join(c if c.isprintable() else "?" for c in comm)
            return "%-6s %-15s" % (pid if pid is not None else "-", comm)
        # The run's own formatter when it has one: kerntrace merge names
        # syscalls as the hosts that traced them did, not by this table.
        name = (getattr(ctx, "formatters", None) or {}).get("id", self.table.name)
        return name(key[0])

    def rows(self, data):
        """[(key, count, total ns)] largest first (by time with -L)."""
        if isinstance(data, HistogramSet):
            rows = [(k, h.count, h.total) for k, h in data.histograms.items() if h.count]
            rank = lambda r: (-r[2], -r[1], str(r[0]))       # noqa: E731
        else:
            rows = [(k, n, 0) for k, n in data.counts.items() if n]
            rank = lambda r: (-r[1], str(r[0]))               # noqa: E731
        # bcc skips the key 0xFFFFFFFF ("happens occasionally"): a syscall
        # number of -1, which the kernel records for no real call.
        if not self.process:
            rows = [r for r in rows if r[0][0] is not None and r[0][0] >= 0]
        rows.sort(key=rank)
        return rows[:self.top]

    def report(self, report, ctx):
        self.lost(report, ctx)
        head = "PID    COMM" if self.process else "SYSCALL"
        lines = ["[%s]" % time.strftime("%H:%M:%S", time.localtime(report.end or time.time()))]
        if self.latency:
            lines.append("%-22s %8s %16s" % (head, "COUNT",
                                             "TIME (ms)" if self.milliseconds else "TIME (us)"))
        else:
            lines.append("%-22s %8s" % (head, "COUNT"))
        for key, count, total in self.rows(report.data):
            if self.latency:
                if self.milliseconds:
                    lines.append("%-22s %8d %16.6f" % (self.key_text(key, ctx), count, total / 1e6))
                else:
                    lines.append("%-22s %8d %16.3f" % (self.key_text(key, ctx), count, total / 1e3))
            else:
                lines.append("%-22s %8d" % (self.key_text(key, ctx), count))
        lines.append("")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def finish(self, ctx):
        self.err.write("Detaching...\n")


class Syscount(Tool):
    name = "syscount"
    metric = Metric(histogram="syscall_latency", unit="seconds", counter="syscalls",
                    labels={"id": "syscall", "pid": "pid", "comm": "comm"},
                    histogram_help="System call latency, from entry to exit.",
                    counter_help="System calls completed.")
    summary = "Summarize syscall counts and latencies."
    display_options = ("-L", "-P", "-m", "-T")
    description = ("Counts every system call's return (raw_syscalls:sys_exit), per syscall "
                   "(named from the kernel's table for this architecture) or per process.")
    examples = (
        ("syscount", "count syscalls, print the top 10 at Ctrl-C"),
        ("syscount -i 1 -T 5", "the top 5 every second"),
        ("syscount -P", "count per process instead of per syscall"),
        ("syscount -L", "also the total time spent in each syscall (us)"),
        ("syscount -x", "only failed syscalls"),
        ("syscount -e ENOENT", "only syscalls that failed with ENOENT"),
        ("syscount -p 181 -d 10", "PID 181 only, for 10 seconds"),
        ("syscount --syscall getppid", "only getppid()"),
        ("syscount -l", "list the syscalls this architecture has"),
    )

    def add_arguments(self, p):
        who = p.add_mutually_exclusive_group()
        who.add_argument("-p", "--pid", type=pid_value, help="trace only this pid")
        who.add_argument("-t", "--tid", type=pid_value, help="trace only this tid")
        p.add_argument("-i", "--interval", type=seconds_value,
                       help="print summary at this interval (seconds)")
        p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                       help="total duration of trace, in seconds")
        p.add_argument("-T", "--top", type=top_value, default=10,
                       help="print only the top syscalls by count or latency (default 10)")
        fail = p.add_mutually_exclusive_group()
        fail.add_argument("-x", "--failures", action="store_true",
                          help="trace only failed syscalls (return < 0)")
        fail.add_argument("-e", "--errno", type=errno_value,
                          help="trace only syscalls that return this error (numeric or "
                               "EPERM, etc.)")
        p.add_argument("-L", "--latency", action="store_true", help="collect syscall latency")
        p.add_argument("-m", "--milliseconds", action="store_true",
                       help="display latency in milliseconds (default: microseconds)")
        p.add_argument("-P", "--process", action="store_true",
                       help="count by process and not by syscall")
        p.add_argument("-l", "--list", action="store_true",
                       help="print list of recognized syscalls and exit")
        p.add_argument("--syscall", type=syscall_value,
                       help="trace this syscall only (use -l to list them)")

    def parse_args(self, argv, prog=None):
        args = Tool.parse_args(self, argv, prog)
        if args.list:
            self.list_syscalls()
            raise SystemExit(0)
        return args

    @staticmethod
    def list_syscalls():
        names = syscall_table().names()
        if not names:
            raise UsageError("no system call table for this architecture (%s)" % os.uname()[4])
        for i in range(0, len(names), 4):
            print("   ".join("%-22s" % n for n in names[i:i + 4]).rstrip())

    def measurement(self, args):
        if not getattr(args, "input_file", None):
            for what in ("pid", "tid"):
                value = getattr(args, what)
                if value is not None and not os.path.exists("/proc/%d" % value):
                    raise UsageError("no process with %s %d" % (what.upper(), value))
        keys = ("pid", "comm") if args.process else ("id",)
        filters = []
        if not getattr(args, "input_file", None):
            # Not the tracer's own calls: on ftrace each read of the trace
            # buffer would add the events it reads, without end.  kerntrace
            # runs in one thread (its id is the pid), so a thread-id filter
            # says the same as a process one, and the kernel applies it
            # exactly (common_pid): nothing needs each event's process.
            filters.append(Filter("tid", "!=", os.getpid()))
        if args.pid is not None:
            filters.append(Filter("pid", "==", args.pid))
        if args.tid is not None:
            filters.append(Filter("tid", "==", args.tid))
        if args.syscall is not None:
            filters.append(Filter("id", "==", syscall_table().number(args.syscall)))
        if args.failures:
            filters.append(Filter("ret", "<", 0, events=(EXIT,)))
        if args.errno is not None:
            filters.append(Filter("ret", "==", -args.errno, events=(EXIT,)))
        interval = args.interval if args.interval is not None else args.duration
        schedule = report_every(interval, duration=args.duration)
        if args.latency:
            return Measurement(
                events=[enter_event(), exit_event()],
                pair=Pair(ENTER, EXIT, key=("tid",)),
                aggregate=Histogram(LATENCY, scale=LOG2, unit="nsecs", keys=keys),
                filters=filters, schedule=schedule)
        return Measurement(events=[exit_event()], aggregate=Count(keys=keys),
                           filters=filters, schedule=schedule)

    def formatters(self, args):
        return {"id": syscall_table().name}

    def printer(self, args, out, err):
        what = "failed " if args.failures or args.errno is not None else ""
        if args.syscall is not None:
            banner = "Tracing %ssyscall '%s'... Ctrl+C to quit." % (what, args.syscall)
        else:
            banner = "Tracing %ssyscalls, printing top %d... Ctrl+C to quit." % (what, args.top)
        return SyscountPrinter(out, err, top=args.top, latency=args.latency,
                               milliseconds=args.milliseconds, process=args.process,
                               banner=banner)


@hookimpl
def kerntrace_tools():
    return [Syscount()]
