"""`kerntrace record` on fake hosts of every kernel era (tests/fake_tracefs.py):
the recording carries that era's format files as its tracefs shows them,
and replaying it prints what the live text run printed.  On eras without
instances it records through the top-level buffer, under the lock, and
restores it."""

import io
import os

import pytest

import kerntrace.backends.ftrace.record  # noqa: F401  (imported before pyfakefs starts)
import kerntrace.core.record  # noqa: F401
from kerntrace.core.pluginhost import PluginHost
from kerntrace.core.recording import open_saved_trace
from test_ftrace_era_tools import ERAS, host_of, run, table_rows  # noqa: F401

REC = "/home/u/era.rec"


def record(argv):
    from kerntrace.core.record import record as record_cmd
    err = io.StringIO()
    rc = record_cmd(PluginHost(load_third_party=False), argv, err)
    return rc, err.getvalue()


@pytest.mark.parametrize("era", sorted(ERAS))
def test_a_recording_of_every_era_replays_as_the_live_run(host_of, fs, era):
    t = host_of(era, "text")
    fs.create_dir("/home/u")
    rc, live_out, err = run("iosnoop", ["0.2"])
    assert rc == 0, err
    before = t.snapshot()
    rc, err = record(["-o", REC, "-d", "0.2", "iosnoop"])
    assert rc == 0, err
    assert t.snapshot() == before                  # the kernel as it was
    saved = open_saved_trace(REC)
    with saved.open_trace() as f:
        trace = f.read().decode()
    assert trace and trace.splitlines() == [l for l in trace.splitlines() if ": block_rq_" in l]
    assert err.endswith("kerntrace: recorded %d trace lines to %s\n"
                        % (len(trace.splitlines()), REC))
    for event in ("block_rq_issue", "block_rq_complete"):
        assert saved.format_texts[("block", event)] == t.read(
            os.path.join("events", "block", event, "format"))
    assert saved.header_page == t.read(os.path.join("events", "header_page"))
    rc, replay_out, err = run("iosnoop", ["0.2"], input_file=REC)
    assert rc == 0, err
    # (the PID column aside: these eras' trace text has no record-tgid
    # column, and a replay does not ask this host's /proc)
    rows = [r[:1] + r[2:] for r in table_rows(live_out, "COMM")]
    assert len(rows) >= 3 and [r[:1] + r[2:] for r in table_rows(replay_out, "COMM")] == rows
