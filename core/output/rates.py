"""Rate rows: one line per interval with a per-second rate per column, in
bcc's vfsstat layout:

    TIME         READ/s  WRITE/s  FSYNC/s   OPEN/s CREATE/s
    18:35:32:       231       12        4        8        0

The header ("%-8s  " then " %8s" per column) is printed once, each row is
"HH:MM:SS: " (local time at the end of the interval) then " %8d" per
column: the column's count divided by the interval's real length
(core.rates), truncated as bcc's "%d" does.  A column whose events the
running measurement does not have (ctx.measurement) prints "-": it is not
measured, which is not the same as zero."""

from ..results import CountSet
from ..rates import per_second, report_seconds
from .base import Printer, time_line


class RateColumn(object):
    """A column: its header and the logical event names it sums (counts
    keyed by the event name, Count(keys=(EVENT_NAME,)))."""

    def __init__(self, header, events):
        self.header = header
        self.events = tuple(events)


class RateTablePrinter(Printer):
    def __init__(self, out, err, columns, banner=None):
        Printer.__init__(self, out, err)
        self.columns = list(columns)
        self.banner = banner

    def banner_text(self, ctx):
        """The stderr line printed when tracing is live (a callable banner
        gets the RunContext)."""
        return self.banner(ctx) if callable(self.banner) else self.banner

    def start(self, ctx):
        text = self.banner_text(ctx)
        if text:
            self.err.write(text + "\n")
            self.err.flush()
        self.out.write("%-8s  %s\n" % ("TIME", "".join(" %8s" % c.header for c in self.columns)))

    def measured(self, column, ctx):
        m = getattr(ctx, "measurement", None)
        if m is None:
            return True
        names = set(e.name for e in m.events)
        return any(name in names for name in column.events)

    def cells(self, report, ctx):
        """The text of each column for one report."""
        seconds = report_seconds(report, ctx)
        counts = report.data.counts
        out = []
        for column in self.columns:
            if not self.measured(column, ctx):
                out.append("-")
                continue
            n = sum(counts.get((name,), 0) for name in column.events)
            rate = per_second(n, seconds)
            out.append("%d" % int(rate) if rate is not None else "-")
        return out

    def report(self, report, ctx):
        if not isinstance(report.data, CountSet):
            raise TypeError("RateTablePrinter prints CountSet reports, got %s"
                            % type(report.data).__name__)
        self.lost(report, ctx)
        self.out.write("%-8s: %s\n" % (time_line(report.end, colon=False),
                                       "".join(" %8s" % c for c in self.cells(report, ctx))))
