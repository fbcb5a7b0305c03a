"""biolatency (bcc-compatible) and the block knowledge the block tools share
(plugins/blockdev.py): disk names and device numbers, rwbs decoding into
bcc's -F flag names, -d validation; bcc-format golden output from fed-in
events (a fake 6.18 trace replayed with --input)."""

import json
import os
import sys

import pytest

from kerntrace.core import api
from kerntrace.core.errors import UsageError
from kerntrace.core.model import LATENCY, LOG2, Tracepoint

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

from kerntrace.plugins import biolatency, blockdev  # noqa: E402

TOOL = biolatency.BioLatency()
MIXED = "block_mixed_618tgid.trace"
DISKS = {"vda": (254, 0), "vdb": (254, 16), "vdb1": (254, 17)}

BANNER = "Tracing block device I/O... Hit Ctrl-C to end.\n"

# block_mixed_618tgid.trace: 10 x 300 us, 1 flush of 700 us, 7 x 1500 us,
# 5 x 3000 us (and a completion without a start, not counted).
ALL_USECS = """
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 10       |****************************************|
       512 -> 1023       : 1        |****                                    |
      1024 -> 2047       : 7        |****************************            |
      2048 -> 4095       : 5        |********************                    |
"""

PER_DISK_MSECS = """

disk = vda
     msecs               : count     distribution
         0 -> 1          : 11       |****************************************|
         2 -> 3          : 5        |******************                      |

disk = vdb
     msecs               : count     distribution
         0 -> 1          : 7        |****************************************|
"""

PER_FLAGS_USECS = """

flags = Flush
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 1        |****************************************|

flags = Read
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 10       |****************************************|
       512 -> 1023       : 0        |                                        |
      1024 -> 2047       : 7        |****************************            |

flags = Sync-Write
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 0        |                                        |
      1024 -> 2047       : 0        |                                        |
      2048 -> 4095       : 5        |****************************************|
"""


@pytest.fixture
def disks(monkeypatch, tmp_path):
    return blocktest.fake_disks(monkeypatch, tmp_path, DISKS, partitions=("vdb1",))


def replay(argv):
    return blocktest.run_tool("biolatency", ["--input", blocktest.trace(MIXED)] + argv)


# ---------------------------------------------------------------------------
# Golden output (bcc's print_log2_hist layout)
def test_golden_usecs_histogram(disks):
    rc, out, err = replay(["1", "1"])
    assert rc == 0, err
    assert out == ALL_USECS
    assert err == BANNER


def test_golden_per_disk_milliseconds(disks):
    rc, out, err = replay(["-mD", "1", "1"])
    assert rc == 0, err
    assert out == PER_DISK_MSECS


def test_golden_per_flags_with_bcc_names(disks):
    rc, out, err = replay(["-F", "1", "1"])
    assert rc == 0, err
    assert out == PER_FLAGS_USECS


def test_extension_prints_bcc_average_line(disks):
    rc, out, err = replay(["-e", "1", "1"])
    assert rc == 0, err
    # total 10*300 + 700 + 7*1500 + 5*3000 = 29200 us over 23 I/O
    assert out == ALL_USECS + "\navg = 1269 usecs, total: 29200 usecs, count: 23\n\n"


def test_disk_filter_by_name(disks):
    rc, out, err = replay(["-d", "vdb", "1", "1"])
    assert rc == 0, err
    assert "      1024 -> 2047       : 7        |****************************************|\n" in out
    assert "       256 -> 511        : 0        |" in out
    assert out.count(" -> ") == 11


def test_queued_time_uses_insert_or_io_start_and_the_timestamp_line(disks):
    # The fake trace has no insert events: -Q sees no starts, so no I/O.
    rc, out, err = replay(["-QT", "1", "1"])
    assert rc == 0, err
    lines = out.splitlines()
    import re
    assert lines[0] == "" and re.match(r"^\d\d:\d\d:\d\d$", lines[1]), out
    assert " -> " not in out, out     # issues are no -Q starts: no I/O counted


def test_json_lines_are_real_json_with_disk_labels(disks):
    rc, out, err = replay(["-j", "-D", "1", "1"])
    assert rc == 0, err
    objs = [json.loads(line) for line in out.splitlines() if line.strip()]
    hists = [o for o in objs if o["type"] == "histogram"]
    assert len(hists) == 1
    by_disk = {h["labels"]["dev"]: h for h in hists[0]["histograms"]}
    assert sorted(by_disk) == ["vda", "vdb"]
    assert by_disk["vdb"]["count"] == 7 and by_disk["vda"]["count"] == 16
    assert by_disk["vda"]["unit"] == "usecs"


# ---------------------------------------------------------------------------
# Command line and measurement
def test_measurement_defaults_and_options(disks):
    m = TOOL.measurement(TOOL.parse_args([]))
    assert m.event("start").probes == (Tracepoint("block", "block_rq_issue"),)
    assert (m.aggregate.value, m.aggregate.scale, m.aggregate.unit) == (LATENCY, LOG2, "usecs")
    assert m.aggregate.keys == ()
    # no interval: one histogram at Ctrl-C, as bcc
    assert m.schedule.interval >= api.FOREVER and m.schedule.count == 0
    m = TOOL.measurement(TOOL.parse_args(["-QmD", "-d", "vda", "2", "5"]))
    # -Q: the request-accounting start where the kernel has it, else insert
    assert m.event("start").probes == (Tracepoint("block", "block_io_start"),
                                       Tracepoint("block", "block_rq_insert"))
    assert (m.aggregate.unit, m.aggregate.keys) == ("msecs", ("dev",))
    assert [(f.field, f.value, f.events) for f in m.filters] == [
        ("dev", 254 << 20, ("start", "done"))]
    assert (m.schedule.interval, m.schedule.count) == (2.0, 5)
    assert TOOL.measurement(TOOL.parse_args(["-F"])).aggregate.keys == ("rwbs",)


@pytest.mark.parametrize("argv, status, words", [
    (["-d", "nosuchdisk"], 1, "no such disk 'nosuchdisk'"),
    (["-d", "vdb1"], 2, "vdb1 is a partition"),
    (["-d", "../vda"], 2, "invalid disk name"),
    (["-D", "-F"], 2, "can only use -D or -F"),
    (["-1"], 2, "invalid interval '-1'"),
    (["0"], 2, "invalid interval '0'"),
    (["1", "x"], 2, "invalid count 'x'"),
    (["--nosuch"], 2, "unrecognized arguments"),
])
def test_bad_input_is_one_clear_line(disks, argv, status, words):
    rc, out, err = blocktest.run_tool("biolatency", argv)
    assert rc == status, err
    assert out == ""
    assert len(err.splitlines()) == 1 and words in err and err.startswith("biolatency: "), err


def test_help_shows_examples():
    rc, out, err = blocktest.run_cli(["biolatency", "-h"])
    assert rc == 0
    text = out + err
    assert "usage: biolatency" in text and "examples:" in text and "biolatency -D" in text


# ---------------------------------------------------------------------------
# Shared block knowledge
def test_dev_numbers_round_trip():
    dev = blockdev.make_dev(254, 16)
    assert dev == (254 << 20) | 16
    assert (blockdev.dev_major(dev), blockdev.dev_minor(dev)) == (254, 16)
    assert blockdev.dev_string(dev) == "254,16"
    assert blockdev.parse_majmin("202,1") == (202 << 20) + 1
    assert blockdev.parse_majmin("8:0") == 8 << 20


@pytest.mark.parametrize("text", ["", "202", "202,", ",1", "a,b", "4096,0", "1,1048576", "-1,2"])
def test_bad_device_numbers(text):
    with pytest.raises(UsageError):
        blockdev.parse_majmin(text)


def test_disk_table_reads_sysfs_and_knows_partitions(disks):
    table = blockdev.DiskTable()
    assert table.name_of(254 << 20) == "vda"
    assert table.dev_of("vdb") == (254 << 20) | 16
    assert table.is_partition("vdb1") and not table.is_partition("vdb")
    assert table.name_of(blockdev.make_dev(7, 9)) is None
    fmt = blockdev.DiskNameFormatter(table)
    assert fmt(254 << 20) == "vda"
    assert fmt(blockdev.make_dev(7, 9)) == "7,9"
    assert fmt(0) == "<unknown>"


def test_disk_table_falls_back_to_proc_partitions(monkeypatch, tmp_path):
    parts = tmp_path / "partitions"
    parts.write_text("major minor  #blocks  name\n\n 254        0  268435456 vda\n"
                     "   8       16    1000 sdb\n")
    table = blockdev.DiskTable(sys_class_block=str(tmp_path / "none"),
                               proc_partitions=str(parts))
    assert table.dev_of("sdb") == (8 << 20) | 16
    assert table.name_of(254 << 20) == "vda"


def test_disk_table_rereads_when_a_disk_appears(disks):
    table = blockdev.DiskTable()
    assert table.dev_of("loop9") is None
    (disks / "loop9").mkdir()
    (disks / "loop9" / "dev").write_text("7:9\n")
    assert table.dev_of("loop9") == blockdev.make_dev(7, 9)
    assert table.name_of(blockdev.make_dev(7, 9)) == "loop9"


def test_resolve_disk_forms(disks):
    assert blockdev.resolve_disk("vda") == 254 << 20
    assert blockdev.resolve_disk("/dev/vdb") == (254 << 20) | 16
    assert blockdev.resolve_disk("254,16") == (254 << 20) | 16
    with pytest.raises(blockdev.NoSuchDisk):
        blockdev.resolve_disk("sdz")
    with pytest.raises(blockdev.NoSuchDisk):
        blockdev.resolve_disk("999,999")
    for bad in ("a/b", "..", "x" * 65, "vda;rm", ""):
        with pytest.raises(UsageError):
            blockdev.resolve_disk(bad)


@pytest.mark.parametrize("rwbs, name, letter", [
    ("R", "Read", "R"),
    ("W", "Write", "W"),
    ("WS", "Sync-Write", "W"),
    ("RA", "ReadAhead-Read", "R"),
    ("RM", "Metadata-Read", "R"),
    ("WFSM", "ForcedUnitAccess-Metadata-Sync-Write", "W"),
    ("FWS", "PreFlush-Sync-Write", "W"),
    ("FWFS", "PreFlush-ForcedUnitAccess-Sync-Write", "W"),
    ("FF", "Flush", "F"),
    ("F", "Flush", "F"),
    ("D", "Discard", "D"),
    ("DS", "Sync-Discard", "D"),
    ("DE", "SecureErase", "D"),
    ("N", "Unknown", "N"),
    ("ZA", "ZoneAppend", "W"),
    ("ZRA", "ZoneResetAll", "Z"),
    ("WSa", "Atomic-Sync-Write", "W"),
    ("", "Unknown", "?"),
])
def test_rwbs_decodes_to_bcc_flag_names(rwbs, name, letter):
    assert blockdev.Rwbs(rwbs).bcc_name() == name
    assert blockdev.rwbs_flags_name(rwbs) == name
    assert blockdev.Rwbs(rwbs).type_letter() == letter


def test_rwbs_glob_validation():
    assert blockdev.rwbs_glob("*R*") == "*R*"
    assert blockdev.rwbs_glob("W") == "W"
    assert blockdev.rwbs_glob("*") == "*"
    for bad in ("", "R*W", "R?", "[RW]", "R\"", "R'"):
        with pytest.raises(UsageError):
            blockdev.rwbs_glob(bad)


def test_man_page_renders():
    text = blocktest.check_man_page("biolatency")
    if text is not None:
        assert "biolatency" in text and "EXAMPLES" in text
