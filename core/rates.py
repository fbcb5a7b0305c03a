"""Per-second rates: an interval's counts divided by the interval's real
length (Report.start to Report.end, wall clock), not by the interval the
user asked for.  The first interval starts when tracing went live and the
last one may be cut short by Ctrl-C or a duration; both are divided by the
time they really covered, so a rate never over- or under-states.

Printers use these for any count tool; JSON carries the seconds and the
rate beside each count; Prometheus exposes counters (_total) only, as
Prometheus computes rates itself."""


def interval_seconds(report):
    """The real length of the report's interval in seconds (float), or None
    when it is unknown (a report without wall-clock bounds, or with an end
    not after its start)."""
    start, end = getattr(report, "start", None), getattr(report, "end", None)
    if start is None or end is None:
        return None
    seconds = float(end) - float(start)
    return seconds if seconds > 0 else None


def per_second(count, seconds):
    """count / seconds as a float; None when seconds is unknown."""
    if seconds is None:
        return None
    return count / seconds


def rates(counts, seconds):
    """{key: per-second rate} of a CountSet's non-zero counts."""
    return {key: per_second(n, seconds) for key, n in counts.counts.items() if n}


def report_seconds(report, ctx):
    """The seconds a report's counts are divided by: its real length when
    traced live; for a replayed recording (ctx.replay), whose reports are
    cut by the trace's own timestamps, the schedule's interval."""
    if getattr(ctx, "replay", False):
        schedule = getattr(ctx, "schedule", None)
        interval = getattr(schedule, "interval", None)
        return float(interval) if interval else None
    return interval_seconds(report)
