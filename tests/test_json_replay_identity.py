"""A replay (--input) reports the traced host, not the replaying one: the
recording's host name and kernel release, or nothing for a plain trace
file, which does not say where it was taken."""

import json
import os
import socket

from clirun import run
from kerntrace.core import known_formats
from kerntrace.core.recording import header_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "tests", "data", "traces", "replay-block-6.18.txt")


def _objects(out):
    objs = [json.loads(line) for line in out.splitlines()]
    assert objs
    return objs


def _trace_text():
    with open(TRACE) as f:
        return f.read()


def test_a_recording_replays_with_the_recording_hosts_identity(tmp_path):
    formats = [("block", e, known_formats.FORMATS["6.18"][("block", e)])
               for e in ("block_rq_issue", "block_rq_complete")]
    meta = {"kerntrace": "0.1.0", "release": "6.18.0-db7", "hostname": "db7.example",
            "clock": "local", "tool": "biolatency", "args": [],
            "started": "2026-01-01T00:00:00Z"}
    rec = tmp_path / "db7.rec"
    rec.write_text(header_text(meta, formats, known_formats.HEADER_PAGE["6.18"],
                               known_formats.HEADER_EVENT["6.18"]) + _trace_text())
    rc, out, err = run(["biolatency", "--json", "--input", str(rec)])
    assert rc == 0, err
    for obj in _objects(out):
        assert (obj["host"], obj["kernel"]) == ("db7.example", "6.18.0-db7")


def test_a_plain_trace_file_claims_no_host():
    rc, out, err = run(["biolatency", "--json", "--input", TRACE])
    assert rc == 0, err
    assert socket.gethostname() != ""
    for obj in _objects(out):
        assert (obj["host"], obj["kernel"]) == ("", "")
