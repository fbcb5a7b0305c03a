"""biosnoop (bcc-compatible): one line per I/O, golden output from fed-in
events (a fake 6.18 trace with record-tgid, names with spaces and dashes,
two disks, a flush and a completion without a start)."""

import json
import os
import sys

import pytest

from kerntrace.core.model import LATENCY, Tracepoint
from kerntrace.core.results import Record

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

from kerntrace.plugins import biosnoop  # noqa: E402

TOOL = biosnoop.BioSnoop()
MIXED = "block_mixed_618tgid.trace"

# Every I/O of block_mixed_618tgid.trace, in completion order; the
# completion at sector 42 has no start and is not shown.
GOLDEN = """\
TIME(s)     COMM           PID     DISK      T SECTOR     BYTES   LAT(ms)
0.000000    my app         700     vda       R 800        4096       0.30
0.010000    my app         700     vda       R 808        4096       0.30
0.020000    my app         700     vda       R 816        4096       0.30
0.030000    my app         700     vda       R 824        4096       0.30
0.040000    my app         700     vda       R 832        4096       0.30
0.050000    my app         700     vda       R 840        4096       0.30
0.060000    my app         700     vda       R 848        4096       0.30
0.070000    my app         700     vda       R 856        4096       0.30
0.080000    my app         700     vda       R 864        4096       0.30
0.090000    my app         700     vda       R 872        4096       0.30
0.202700    jbd2/vda1-8    81      vda       W 90000      8192       3.00
0.212700    jbd2/vda1-8    81      vda       W 90016      8192       3.00
0.222700    jbd2/vda1-8    81      vda       W 90032      8192       3.00
0.232700    jbd2/vda1-8    81      vda       W 90048      8192       3.00
0.242700    jbd2/vda1-8    81      vda       W 90064      8192       3.00
0.401200    dd             900     vdb       R 0          65536      1.50
0.411200    dd             900     vdb       R 64         65536      1.50
0.421200    dd             900     vdb       R 128        65536      1.50
0.431200    dd             900     vdb       R 192        65536      1.50
0.441200    dd             900     vdb       R 256        65536      1.50
0.451200    dd             900     vdb       R 320        65536      1.50
0.461200    dd             900     vdb       R 384        65536      1.50
0.600400    jbd2/vda1-8    81      vda       F -          0          0.70
"""


@pytest.fixture
def disks(monkeypatch, tmp_path):
    return blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0), "vdb": (254, 16)})


def replay(argv):
    # A duration ends the run once the file is read.
    return blocktest.run_tool("biosnoop", ["--input", blocktest.trace(MIXED)] + argv + ["1"])


def test_golden_bcc_columns(disks):
    rc, out, err = replay([])
    assert rc == 0, err
    assert out == GOLDEN


def test_disk_filter(disks):
    rc, out, err = replay(["-d", "vdb"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == GOLDEN.splitlines()[0]
    assert len(lines) == 8 and all(" vdb " in line for line in lines[1:])
    assert lines[1].startswith("0.000000    dd ")


def test_pattern_column(disks):
    rc, out, err = replay(["-P", "-d", "vda"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("TIME(s)     COMM           PID     DISK      T SECTOR     BYTES   P "
                        "LAT(ms)")
    patterns = [line.split()[-2] for line in lines[1:]]
    # 10 sequential 4 KB reads, a jump to the writes, 4 more sequential, flush
    assert patterns == ["?"] + ["S"] * 9 + ["R"] + ["S"] * 4 + ["?"]


def test_json_events_carry_raw_fields_and_disk_labels(disks):
    rc, out, err = replay(["--json"])
    assert rc == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    events = [e for e in events if e["type"] == "event"]
    assert len(events) == 23
    first = events[0]
    assert first["fields"]["comm"] == "my app" and first["fields"]["pid"] == 700
    assert first["fields"]["latency"] == 300000 and first["fields"]["bytes"] == 4096
    assert first["labels"]["dev"] == "vda"
    flush = events[-1]["fields"]
    assert flush["sector"] == (1 << 64) - 1 and flush["bytes"] == 0 and flush["rwbs"] == "FF"


def test_measurement_carries_issuer_and_size():
    m = TOOL.measurement(TOOL.parse_args([]))
    assert m.event("start").probes == (Tracepoint("block", "block_rq_issue"),)
    assert m.pair.key == ("dev", "sector")
    assert m.pair.carry == ("comm", "pid", "bytes")
    assert set(m.aggregate.fields) >= {"comm", "pid", "dev", "rwbs", "sector", "bytes", LATENCY}
    assert m.schedule.duration is None
    m = TOOL.measurement(TOOL.parse_args(["-Q", "5"]))
    assert m.event("start").probes == (Tracepoint("block", "block_io_start"),
                                       Tracepoint("block", "block_rq_insert"))
    assert m.schedule.duration == 5.0


def test_pattern_tracker_per_disk():
    p = biosnoop.AccessPattern()

    def rec(dev, sector, nbytes=4096):
        return Record(0, {"dev": dev, "sector": sector, "bytes": nbytes})
    assert p(rec(1, 0)) == "?"
    assert p(rec(2, 100)) == "?"
    assert p(rec(1, 8)) == "S"
    assert p(rec(1, 100)) == "R"
    assert p(rec(2, 108)) == "S"


@pytest.mark.parametrize("argv, status, words", [
    (["-d", "nosuchdisk"], 1, "no such disk 'nosuchdisk'"),
    (["-d", "a b"], 2, "invalid disk name"),
    (["-3"], 2, "invalid duration '-3'"),
    (["0"], 2, "invalid duration '0'"),
])
def test_bad_input(disks, argv, status, words):
    rc, out, err = blocktest.run_tool("biosnoop", argv)
    assert rc == status
    assert out == "" and len(err.splitlines()) == 1 and words in err, err


def test_help_shows_examples():
    rc, out, err = blocktest.run_cli(["biosnoop", "-h"])
    assert rc == 0 and "examples:" in out + err and "biosnoop -Q" in out + err


def test_man_page_renders():
    text = blocktest.check_man_page("biosnoop")
    if text is not None:
        assert "biosnoop" in text and "EXAMPLES" in text
