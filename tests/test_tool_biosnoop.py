"""biosnoop (bcc-compatible): one line per I/O, golden output from fed-in
events (a fake 6.18 trace with record-tgid, names with spaces and dashes,
two disks, a flush and a completion without a start)."""

import json
import os
import sys

import pytest

from kerntrace.core.model import LATENCY, QUEUED, Tracepoint
from kerntrace.core.results import Record

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402
import make_traces  # noqa: E402

from kerntrace.plugins import biosnoop  # noqa: E402

TOOL = biosnoop.BioSnoop()
MIXED = "block_mixed_618tgid.trace"

# Every I/O of block_mixed_618tgid.trace, in completion order; the
# completion at sector 42 has no start and is not shown.
GOLDEN = """\
TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  LAT(ms)
0.000000    my app         700     vda       R 800        4096      0.30
0.010000    my app         700     vda       R 808        4096      0.30
0.020000    my app         700     vda       R 816        4096      0.30
0.030000    my app         700     vda       R 824        4096      0.30
0.040000    my app         700     vda       R 832        4096      0.30
0.050000    my app         700     vda       R 840        4096      0.30
0.060000    my app         700     vda       R 848        4096      0.30
0.070000    my app         700     vda       R 856        4096      0.30
0.080000    my app         700     vda       R 864        4096      0.30
0.090000    my app         700     vda       R 872        4096      0.30
0.202700    jbd2/vda1-8    81      vda       W 90000      8192      3.00
0.212700    jbd2/vda1-8    81      vda       W 90016      8192      3.00
0.222700    jbd2/vda1-8    81      vda       W 90032      8192      3.00
0.232700    jbd2/vda1-8    81      vda       W 90048      8192      3.00
0.242700    jbd2/vda1-8    81      vda       W 90064      8192      3.00
0.401200    dd             900     vdb       R 0          65536     1.50
0.411200    dd             900     vdb       R 64         65536     1.50
0.421200    dd             900     vdb       R 128        65536     1.50
0.431200    dd             900     vdb       R 192        65536     1.50
0.441200    dd             900     vdb       R 256        65536     1.50
0.451200    dd             900     vdb       R 320        65536     1.50
0.461200    dd             900     vdb       R 384        65536     1.50
0.600400    jbd2/vda1-8    81      vda       F -          0         0.70
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
    assert lines[0] == ("TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  P "
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
    assert m.pair.mark is None and QUEUED not in m.aggregate.fields
    m = TOOL.measurement(TOOL.parse_args(["-Q", "5"]))
    # -Q: from the insert into the queue, split at the issue to the driver
    assert m.event("start").probes == (Tracepoint("block", "block_rq_insert"),)
    assert m.event("issue").probes == (Tracepoint("block", "block_rq_issue"),)
    assert m.pair.mark == "issue" and m.pair.carry == ("comm", "pid", "bytes")
    assert m.aggregate.fields[-2:] == (LATENCY, QUEUED)
    assert m.schedule.duration == 5.0


def test_disk_filter_applies_to_every_event_of_the_pair(disks):
    m = TOOL.measurement(TOOL.parse_args(["-Q", "-d", "vdb"]))
    (f,) = m.filters
    assert (f.field, f.op, f.value) == ("dev", "==", (254 << 20) | 16)
    assert all(m.filters_for(e) == [f] for e in m.events) and len(m.events) == 3


# ---------------------------------------------------------------------------
# -Q: QUE(ms) from block_rq_insert to block_rq_issue, LAT(ms) from there to
# block_rq_complete, from a fake 6.18 trace with exact times.
VDA, VDB = (254, 0), (254, 16)


def queue_trace(path):
    tr = make_traces.Trace("618tgid")
    t = 12000000000

    def req(t_insert, queue_us, lat_us, sector, comm, pid, dev=VDA, rwbs="R", nbytes=4096,
            issuer=None):
        if t_insert is not None:
            tr.start("block_rq_insert", t_insert, 0, comm, pid, dev, rwbs, nbytes, sector)
            t_issue = t_insert + queue_us
        else:
            t_issue = queue_us
        # the issue may run in another task (a kworker dispatching the queue)
        icomm, ipid = issuer or (comm, pid)
        tr.start("block_rq_issue", t_issue, 1, icomm, ipid, dev, rwbs, nbytes, sector)
        tr.complete(t_issue + lat_us, 1, dev, rwbs, sector, nbytes // 512)
    tr.complete(t + 5, 1, VDA, "R", 42, 8)                       # began before tracing
    req(t + 100, 200, 300, 800, "my app", 700)                  # queued 0.2, 0.3 ms
    req(t + 10000, 2500, 3000, 90000, "jbd2/vda1-8", 81, rwbs="WS", nbytes=8192,
        issuer=("kworker/0:1H", 44))                            # dispatched by a kworker
    req(None, t + 20000, 1500, 128, "dd", 900, dev=VDB, nbytes=65536)   # never inserted
    req(t + 30000, 10, 20, 808, "my app", 700)
    req(None, t + 40000, 700, make_traces.FLUSH_SECTOR, "jbd2/vda1-8", 81, rwbs="FF",
        nbytes=0)                                               # a flush: issued directly
    req(t + 50000, 1250, 4000, 816, "my app", 700)              # completes after the next
    req(t + 51000, 0, 250, 824, "my app", 700)
    return tr.write(path)


QUEUE_GOLDEN = """\
TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  QUE(ms) LAT(ms)
0.000000    my app         700     vda       R 800        4096      0.20    0.30
0.014900    jbd2/vda1-8    81      vda       W 90000      8192      2.50    3.00
0.020900    dd             900     vdb       R 128        65536     0.00    1.50
0.029430    my app         700     vda       R 808        4096      0.01    0.02
0.040100    jbd2/vda1-8    81      vda       F -          0         0.00    0.70
0.050650    my app         700     vda       R 824        4096      0.00    0.25
0.054650    my app         700     vda       R 816        4096      1.25    4.00
"""


@pytest.fixture
def queue_trace_file(tmp_path, monkeypatch):
    monkeypatch.setattr(make_traces, "HERE", str(tmp_path))
    return queue_trace("queue_618tgid.trace")


def replay_queue(path, argv):
    return blocktest.run_tool("biosnoop", ["--input", path] + argv + ["1"])


def test_queue_column_golden(disks, queue_trace_file):
    rc, out, err = replay_queue(queue_trace_file, ["-Q"])
    assert rc == 0, err
    assert out == QUEUE_GOLDEN


def test_without_queue_latency_is_from_issue_and_no_que_column(disks, queue_trace_file):
    rc, out, err = replay_queue(queue_trace_file, [])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == GOLDEN.splitlines()[0]
    assert [line.split()[-1] for line in lines[1:]] == [
        "0.30", "3.00", "1.50", "0.02", "0.70", "0.25", "4.00"]
    # the issuing task, not the one that queued the request
    assert lines[2].split()[1] == "kworker/0:1H"


def test_queue_column_after_pattern_and_disk_filter(disks, queue_trace_file):
    rc, out, err = replay_queue(queue_trace_file, ["-Q", "-P", "-d", "vda"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("TIME(s)     COMM           PID     DISK      T SECTOR     BYTES  P "
                        "QUE(ms) LAT(ms)")
    assert lines[1] == ("0.000000    my app         700     vda       R 800        4096   ? "
                        "   0.20    0.30")
    assert len(lines) == 7 and all(" vda " in line for line in lines[1:])


def test_queue_json_in_nanoseconds(disks, queue_trace_file):
    rc, out, err = replay_queue(queue_trace_file, ["-Q", "--json"])
    assert rc == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    fields = [e["fields"] for e in events if e["type"] == "event"]
    assert [(f["sector"], f[QUEUED], f[LATENCY]) for f in fields][:3] == [
        (800, 200000, 300000), (90000, 2500000, 3000000), (128, 0, 1500000)]
    assert fields[1]["comm"] == "jbd2/vda1-8"


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


def test_header_is_what_the_installed_bcc_biosnoop_prints():
    """bcc's biosnoop prints its header with these printf calls (its BYTES
    "%-7s" is followed directly by "%7s" LAT(ms)); checked against the
    installed bcc tool's source when there is one (bcc's biosnoop itself
    cannot run on kernels without its kprobes, so its formats are read)."""
    import shutil
    base = "%-11s %-14s %-7s %-9s %-1s %-10s %-7s" % (
        "TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES")
    expected = {(): base + "%7s" % "LAT(ms)",
                ("-P",): base + "%-1s " % "P" + "%7s" % "LAT(ms)",
                ("-Q",): base + "%7s " % "QUE(ms)" + "%7s" % "LAT(ms)"}
    for flags, header in expected.items():
        args = TOOL.parse_args(list(flags))
        printer = TOOL.printer(args, None, None)
        assert printer.header() == header, flags
    script = shutil.which("biosnoop-bpfcc") or shutil.which("biosnoop", path="/usr/share/bcc/tools")
    if script is None:
        return
    with open(script) as f:
        source = f.read()
    assert '"%-11s %-14s %-7s %-9s %-1s %-10s %-7s" % ("TIME(s)"' in source
    assert 'print("%7s" % "LAT(ms)")' in source
