"""runqlat on a recorded trace and on events written by hand, with
kerntrace's `kerntrace_offline` pytest fixture: no root, no kernel.

data/sleeper.rec is a real recording (data/README.md says how it was
made).  The expected histogram is not written down here: it is computed
from the recording's trace text by read_wakeups_and_switches() and pair(),
which share nothing with kerntrace."""

import os
import re

import pytest

from kerntrace_runqlat.kerntrace_api import LATENCY

RECORDING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sleeper.rec")

# One trace line: "<comm>-<tid> (<tgid>) [<cpu>] <flags> <secs>.<usecs>: <event>: <payload>"
_LINE = re.compile(r"\s(\d+)\.(\d{6}): (sched_wakeup|sched_wakeup_new|sched_switch): (.*)$")


def read_wakeups_and_switches(path):
    """(ns, "wakeup" or "switch", woken or switched-in thread id) for each
    event line of the recording's trace text, in file order."""
    events = []
    with open(path) as f:
        for line in f:
            if line == "trace\n":
                break
        for line in f:
            m = _LINE.search(line)
            if m is None:
                continue
            ns = int(m.group(1)) * 10 ** 9 + int(m.group(2)) * 1000
            if m.group(3) == "sched_switch":
                events.append((ns, "switch", int(re.search(r"next_pid=(\d+)", m.group(4)).group(1))))
            else:
                events.append((ns, "wakeup", int(re.search(r" pid=(\d+)", m.group(4)).group(1))))
    return events


def pair(events):
    """runqlat by hand: each switch to a thread is timed from that thread's
    last wakeup (or not at all, and counted unmatched, when it has none
    pending).  The microseconds of each latency, and the unmatched count."""
    woken, usecs, unmatched = {}, [], 0
    for ns, what, tid in events:
        if tid == 0:
            continue
        if what == "wakeup":
            woken[tid] = ns
        elif tid in woken:
            usecs.append((ns - woken.pop(tid)) // 1000)
        else:
            unmatched += 1
    return usecs, unmatched


@pytest.fixture(scope="module")
def expected():
    usecs, unmatched = pair(read_wakeups_and_switches(RECORDING))
    # The workload woke its thread 41 times; each wakeup ends in a switch.
    assert len(usecs) >= 40
    return usecs, unmatched


def test_the_recording_replays_to_the_latencies_in_its_trace(kerntrace_offline, expected):
    usecs, unmatched = expected
    run = kerntrace_offline.replay("runqlat", RECORDING)
    report = run.report
    assert (report.tool, report.backend) == ("runqlat", "ftrace")
    assert (report.lost, report.unmatched) == (0, unmatched)
    hist = report.data.histograms[()]
    assert (hist.unit, hist.count, hist.total) == ("usecs", len(usecs), sum(usecs))
    for index, count in hist.buckets.items():
        low, high = hist.bounds(index)
        assert count == len([u for u in usecs if low <= u <= high]), (low, high)
    # What the user reads: bcc's rows, "low -> high : count |***|".
    rows = re.findall(r"^\s+(\d+) -> (\d+)\s+: (\d+)\s+\|", run.out, re.M)
    assert rows and sum(int(c) for _, _, c in rows) == len(usecs)
    for low, high, count in rows:
        assert int(count) == len([u for u in usecs if int(low) <= u <= int(high)])


def test_one_histogram_per_thread_in_milliseconds(kerntrace_offline, expected):
    usecs, _unmatched = expected
    with open(RECORDING) as f:
        # (the thread the recording was filtered on, from its header)
        tid = int(re.search(r'^args \["-t", "(\d+)"\]$', f.read(), re.M).group(1))
    run = kerntrace_offline.replay("runqlat", RECORDING, "-L", "-m")
    hists = run.report.data.histograms
    assert list(hists) == [(tid,)] and hists[(tid,)].unit == "msecs"
    assert "tid = %d" % tid in run.out
    # (whole milliseconds of each latency: its nanoseconds // 10**6)
    assert hists[(tid,)].total == sum(u // 1000 for u in usecs)


def test_json_lines_from_a_recording(kerntrace_offline, expected):
    import json
    run = kerntrace_offline.replay("runqlat", RECORDING, "--json")
    (line,) = [json.loads(l) for l in run.out.splitlines()]
    assert line["histograms"][0]["count"] == len(expected[0])


def test_hand_written_events(kerntrace_offline):
    """The model's rules on a stream written by hand (the reference
    evaluator, which every backend is held to)."""
    TraceEvent = kerntrace_offline.TraceEvent

    def wakeup(ts, task, new=False):
        return TraceEvent("wakeup_new" if new else "wakeup", ts, fields={"task": task})

    def run(ts, task, comm="worker"):
        return TraceEvent("run", ts, fields={"task": task, "task_comm": comm})

    m = kerntrace_offline.measurement("runqlat", "-C")
    reports = kerntrace_offline.evaluate(m, [
        wakeup(1000, 7, new=True), wakeup(4000, 7), run(9000, 7),   # 5 us from the last wakeup
        wakeup(10000, 8), wakeup(12000, 8), run(15000, 8, "other"),  # woken twice: 3 us
        run(20000, 9),                                                # never woken: unmatched
        wakeup(21000, 0), run(22000, 0),                              # the idle task: ignored
    ])
    (report,) = reports
    assert report.unmatched == 1
    hists = report.data.histograms
    assert {k: (h.count, h.total) for k, h in hists.items()} == {
        ("worker",): (1, 5), ("other",): (1, 3)}
    assert m.aggregate.value == LATENCY
