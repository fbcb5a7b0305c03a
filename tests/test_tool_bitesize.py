"""bitesize (bcc-compatible): I/O size histograms per process, golden output
from fed-in events (a fake 6.18 trace replayed with --input)."""

import json
import os
import sys

import pytest

from kerntrace.core.model import LOG2, Tracepoint

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data", "block"))
import blocktest  # noqa: E402

from kerntrace.plugins import bitesize  # noqa: E402

TOOL = bitesize.BiteSize()
MIXED = "block_mixed_618tgid.trace"

# block_mixed_618tgid.trace issues: "dd" 7 x 64 KB, "jbd2/vda1-8" 5 x 8 KB
# and a flush (0 bytes), "my app" 10 x 4 KB.  Sections in name order.
GOLDEN = """

Process Name = dd
     Kbytes              : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 7        |****************************************|

Process Name = jbd2/vda1-8
     Kbytes              : count     distribution
         0 -> 1          : 1        |********                                |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 5        |****************************************|

Process Name = my app
     Kbytes              : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 10       |****************************************|
"""


@pytest.fixture
def disks(monkeypatch, tmp_path):
    return blocktest.fake_disks(monkeypatch, tmp_path, {"vda": (254, 0), "vdb": (254, 16)})


def replay(argv):
    return blocktest.run_tool("bitesize", ["--input", blocktest.trace(MIXED)] + argv)


def test_golden_per_process_size_histograms(disks):
    rc, out, err = replay(["1", "1"])
    assert rc == 0, err
    assert out == GOLDEN
    assert err == "Tracing block I/O... Hit Ctrl-C to end.\n"


def test_disk_filter(disks):
    rc, out, err = replay(["-d", "vdb", "1", "1"])
    assert rc == 0, err
    assert out.count("Process Name = ") == 1 and "Process Name = dd\n" in out


def test_json_keeps_the_unit_and_process_names(disks):
    rc, out, err = replay(["--json", "1", "1"])
    assert rc == 0, err
    hist = [json.loads(line) for line in out.splitlines() if line.strip()][0]
    assert hist["type"] == "histogram" and hist["key_names"] == ["comm"]
    by_comm = {h["key"]["comm"]: h for h in hist["histograms"]}
    assert sorted(by_comm) == ["dd", "jbd2/vda1-8", "my app"]
    assert by_comm["dd"]["unit"] == "kbytes"
    assert by_comm["dd"]["count"] == 7 and by_comm["dd"]["sum"] == 7 * 64


def test_measurement():
    m = TOOL.measurement(TOOL.parse_args([]))
    assert [e.name for e in m.events] == ["start"]
    assert m.events[0].probes == (Tracepoint("block", "block_rq_issue"),)
    agg = m.aggregate
    assert (agg.value, agg.scale, agg.divisor, agg.keys) == ("bytes", LOG2, 1024, ("comm",))
    assert m.pair is None


@pytest.mark.parametrize("argv, status, words", [
    (["-d", "nosuchdisk"], 1, "no such disk 'nosuchdisk'"),
    (["-5"], 2, "invalid interval '-5'"),
    (["1", "-1"], 2, "invalid count '-1'"),
])
def test_bad_input(disks, argv, status, words):
    rc, out, err = blocktest.run_tool("bitesize", argv)
    assert rc == status
    assert out == "" and len(err.splitlines()) == 1 and words in err, err


def test_help_shows_examples():
    rc, out, err = blocktest.run_cli(["bitesize", "-h"])
    assert rc == 0 and "examples:" in out + err and "bitesize -d vda" in out + err


def test_man_page_renders():
    text = blocktest.check_man_page("bitesize")
    if text is not None:
        assert "bitesize" in text and "EXAMPLES" in text
