"""RecordingSession: a tool's events traced into a file, not aggregated
(`kerntrace record`).

It is a LiveSession (the same private instance, filters, probes-free
tracepoints and restore on every path) that reads the text trace_pipe and
hands the lines on as the kernel printed them, with the `format` files of
the events it enabled and the host's ring-buffer headers for the file's
header (core.recording).
"""

import os
import re
import time

from kerntrace.core import tracefs
from kerntrace.core.errors import Unsupported
from kerntrace.core.stopsignals import SignalsDeferred

from .session import MAX_PAGES_PER_ROUND, POLL_S, LiveSession

_CURRENT_CLOCK = re.compile(r"\[([A-Za-z0-9_-]+)\]")


def recording_plan(plan):
    """The live plan, read as text (the file holds trace text) and without
    the task-name events (every text line names its task).  Probes we
    define (uprobes, kprobes) are recorded as the events they are, with
    what each probes (RecordingSession.probes()); the function tracer's
    records are not events of a format a replay could tell apart."""
    for ev in plan.events:
        if ev.system == "ftrace":
            raise Unsupported("event %s: this host provides it as %s through the function "
                              "tracer; a recording holds tracepoints and probe events only"
                              % (ev.name, ev.probe.describe()))
    # (one buffer: its trace_pipe holds every event in time order)
    return plan.replace(read_path="text", task_events=None, event_instances=())


class RecordingSession(LiveSession):
    """Enter it to start tracing; pump(out, timeout) writes trace lines."""

    lines = 0

    def _build_pipeline(self):
        """Nothing decodes or aggregates: the lines go to the file."""

    def header(self):
        """(clock, [(system, event, format text)], header_page, header_event)
        of what start() enabled, as tracefs shows them."""
        formats = []
        for ev in self._events():
            text = tracefs.read_text(os.path.join(self.root, "events", ev.system, ev.event,
                                                  "format"))
            if text:
                formats.append((ev.system, ev.event, text))
        clock = tracefs.read_text(os.path.join(self.buffer_path, "trace_clock")) or ""
        m = _CURRENT_CLOCK.search(clock)
        hp = tracefs.read_text(os.path.join(self.root, "events", "header_page"))
        he = tracefs.read_text(os.path.join(self.root, "events", "header_event"))
        return (m.group(1) if m else "unknown"), formats, hp, he

    def _events(self):
        """The events as start() set them up (a probe under the name it
        got, when another run held the planned one)."""
        return self.configured.events if self.configured is not None else self.plan.events

    def probes(self):
        """[(system, event, what it probes)] of the probe events we defined:
        what a replay matches its tool's probes against (the names are
        this run's own)."""
        return [(ev.system, ev.event, ev.probe.describe()) for ev in self._events()
                if ev.probe_def]

    def _pump_round(self, out):
        n = 0
        # Held off for the round: lines read from trace_pipe are consumed in
        # the kernel and must reach the file whole.
        with SignalsDeferred():
            for r in self.readers:
                lines = r.read_lines(MAX_PAGES_PER_ROUND)
                if lines:
                    out.write("".join(line + "\n" for line in lines).encode("utf-8"))
                    n += len(lines)
        self.lines += n
        return n

    def pump(self, out, timeout):
        """Copy trace lines to binary file `out` for up to `timeout` s."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            got = self._pump_round(out) if self.readers else 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not got:
                time.sleep(min(POLL_S, remaining))

    def drain(self, out, bound_s=0.25):
        """What the buffer still holds after stop_recording(), bounded in time."""
        deadline = time.monotonic() + bound_s
        while self.readers and self._pump_round(out) and time.monotonic() < deadline:
            pass
