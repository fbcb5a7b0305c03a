"""The era corpus and the decoders against output captured on real kernels
(tests/data/formats, tests/data/traces; origins in their README files)."""

import os
import re
import sys

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.textparse import TextDecoder
from kerntrace.core.tracefs import parse_format

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data", "block"))
import blocktest  # noqa: E402

FORMAT_3_16 = os.path.join(HERE, "data", "formats", "linux-3.16-block_rq_issue.format")
TRACE_3_16 = os.path.join(HERE, "data", "traces", "perf-tools-3.16-tpoint.txt")
DEV_202_1 = (202 << 20) | 1


def real_format():
    with open(FORMAT_3_16) as f:
        return parse_format(f.read(), "block")


def layout(fmt):
    return [(f.name, f.offset, f.size, f.signed) for f in fmt.fields]


@pytest.mark.parametrize("era", ["3.10", "4.4"])
def test_corpus_lays_out_block_rq_issue_as_a_real_3_16_kernel(era):
    """3.10 to 4.12 kernels print this file as 3.16 does: the four common
    fields only (dev at 8), then the same payload and print fmt."""
    real = real_format()
    ours = known_formats.event_format(era, "block", "block_rq_issue")
    assert layout(ours) == layout(real)
    assert ours.print_fmt == real.print_fmt


def test_padded_era_is_four_bytes_off_the_real_3_16_layout():
    """The 3.0-3.6 padding: every payload field before the first 8-byte
    one is 4 bytes further than on 3.16."""
    real = dict((n, off) for n, off, _s, _g in layout(real_format()))
    padded = known_formats.event_format("3.4", "block", "block_rq_issue")
    assert padded.field("common_padding").offset == 8
    assert padded.field("dev").offset == real["dev"] + 4
    assert padded.field("sector").offset == real["sector"]


def test_raw_records_decode_through_the_real_format():
    real = real_format()
    hp, he = known_formats.HEADER_PAGE["3.10"], known_formats.HEADER_EVENT["3.10"]
    pb = PageBuilder(hp)
    pb.add(encode_payload(real, 12994, dict(dev=DEV_202_1, sector=9357056, nr_sector=72,
                                            bytes=0, rwbs="R", comm="cksum", cmd="")),
           7269913317924000)
    d = RawDecoder(hp, he, {real.id: real})
    events, lost = d.decode_page(pb.page(), 0)
    assert lost == 0
    assert len(events) == 1
    ev = events[0]
    assert ev.tid == 12994 and ev.ts == 7269913317924000
    assert ev.fields["dev"] == DEV_202_1 and ev.fields["sector"] == 9357056
    assert ev.fields["nr_sector"] == 72 and ev.fields["bytes"] == 0
    assert ev.fields["rwbs"] == "R" and ev.fields["comm"] == "cksum"


def test_real_3_16_trace_text_decodes_with_zero_bytes():
    d = TextDecoder({("block", "block_rq_issue"): real_format()})
    with open(TRACE_3_16) as f:
        events = [e for e in (d.decode(line) for line in f) if e is not None]
    assert len(events) == 13 and d.undecodable == 0
    assert all(e.fields["bytes"] == 0 for e in events)
    first = events[0]
    assert (first.comm, first.tid, first.cpu) == ("supervise", 1692, 1)
    assert first.fields["sector"] == 17039656 and first.fields["nr_sector"] == 8


def _sections(out):
    sections, cur = {}, None
    for line in out.splitlines():
        if line.startswith("Process Name = "):
            cur = sections.setdefault(line[len("Process Name = "):], {})
        elif cur is not None:
            m = re.match(r"^\s*(\d+) -> (\d+)\s*: (\d+)\s", line)
            if m and int(m.group(3)):
                cur["%s -> %s" % (m.group(1), m.group(2))] = int(m.group(3))
    return sections


def test_bitesize_on_the_real_3_16_trace_shows_real_sizes():
    """The kernel printed 0 bytes for every request; the sizes are
    nr_sector * 512, as perf-tools' iosnoop computes them.  (One interval
    holding the ten minutes the file spans.)"""
    rc, out, err = blocktest.run_tool("bitesize", ["--input", TRACE_3_16, "100000", "1"])
    assert rc == 0, err
    # cksum: 72, 144, 216, 56, 88, 248, 256, 256 sectors = 36, 72, 108, 28,
    # 44, 124, 128, 128 KB; supervise: 5 x 8 sectors = 4 KB
    assert _sections(out) == {
        "cksum": {"16 -> 31": 1, "32 -> 63": 2, "64 -> 127": 3, "128 -> 255": 2},
        "supervise": {"4 -> 7": 5}}


def test_real_3_2_function_trace_lines_without_flags_column():
    """3.2 prints no flags column; a truncated task name ends in '.'."""
    from kerntrace.backends.ftrace.textparse import parse_line
    path = os.path.join(HERE, "data", "traces", "perf-tools-3.2-functrace.txt")
    with open(path) as f:
        lines = [parse_line(l) for l in f if not l.startswith("#")]
    assert len(lines) == 10 and all(l is not None for l in lines)
    first, ext3 = lines[0], lines[3]
    assert (first.comm, first.tid, first.cpu, first.ts_ns, first.event) == (
        "vmstat", 11789, 0, 1763207021204000, "function")
    assert (ext3.comm, ext3.tid, ext3.ts_ns) == ("register_start.", 17008, 1763557577985000)


def test_corpus_header_page_matches_a_real_3_10_capture():
    """The ring-buffer page layout of a real 3.10 kernel (Android, ARM) is
    the corpus's 3.10 one; only char's signedness differs (x86's is signed
    before v6.2, ARM's never)."""
    from kerntrace.backends.ftrace.rawparse import parse_header_page
    with open(os.path.join(HERE, "data", "formats", "android-3.10.49-header_page")) as f:
        real = f.read()
    ours = known_formats.HEADER_PAGE["3.10"]
    assert vars(parse_header_page(real)) == vars(parse_header_page(ours))
    strip = lambda text: [l.rsplit("signed:", 1)[0] for l in text.splitlines() if l.strip()]
    assert strip(real) == strip(ours)
    assert "size:4080;\tsigned:0;" in real and "size:4080;\tsigned:1;" in ours
