"""Decoding trace_pipe_raw pages: synthetic pages of every entry type, and
real pages from an instance of our own on the live kernel."""

import errno
import os
import struct

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.plan import RawEvent
from kerntrace.backends.ftrace.rawparse import (PageBuilder, RawDecoder, RawFormatError,
                                                encode_payload, parse_header_event,
                                                parse_header_page)
from kerntrace.backends.ftrace.textparse import TextDecoder
from kerntrace.core import tracefs
from kerntrace.core.tracefs import parse_format

import kernstate
import workloads

HEADER_PAGE = known_formats.HEADER_PAGE["6.18"]
HEADER_EVENT = known_formats.HEADER_EVENT["6.18"]
ISSUE = known_formats.event_format("6.18", "block", "block_rq_issue")
DONE = known_formats.event_format("6.18", "block", "block_rq_complete")
EXEC = known_formats.event_format("6.18", "sched", "sched_process_exec")
FORMATS = {ISSUE.id: ISSUE, DONE.id: DONE, EXEC.id: EXEC}
DEV = (254 << 20) | 0


def header_page(data_size, commit_size=8, data_offset=16):
    return ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:%d;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            "\tfield: char data;\toffset:%d;\tsize:%d;\tsigned:0;\n"
            % (commit_size, data_offset, data_size))


def issue(sector, comm="dd", pid=4011, rwbs="WS", nbytes=4096):
    return encode_payload(ISSUE, pid, {"dev": DEV, "sector": sector, "nr_sector": nbytes // 512,
                                       "bytes": nbytes, "ioprio": 0x4004, "rwbs": rwbs,
                                       "comm": comm, "cmd": ""})


def done(sector, error=0):
    return encode_payload(DONE, 0, {"dev": DEV, "sector": sector, "nr_sector": 8, "error": error,
                                    "ioprio": 0x4004, "rwbs": "WS", "cmd": ""})


def decoder(**kw):
    return RawDecoder(kw.pop("hp", HEADER_PAGE), kw.pop("he", HEADER_EVENT),
                      kw.pop("formats", FORMATS), **kw)


# ---------------------------------------------------------------------------
# headers
def test_header_page_and_event_from_the_files():
    ph = parse_header_page(HEADER_PAGE)
    assert (ph.ts_offset, ph.commit_offset, ph.commit_size, ph.data_offset, ph.data_size) == (
        0, 8, 8, 16, 4080)
    assert ph.page_size == 4096
    eh = parse_header_event(HEADER_EVENT)
    assert (eh.padding, eh.time_extend, eh.time_stamp, eh.data_max) == (29, 30, 31, 28)
    # before v4.17 header_event had no time_stamp line: type 31 stays reserved
    old = parse_header_event(known_formats.HEADER_EVENT["3.10"])
    assert (old.padding, old.time_extend, old.time_stamp) == (29, 30, 31)
    assert parse_header_page(header_page(8176)).page_size == 8192


@pytest.mark.parametrize("text", ["", "field: u64 timestamp; offset:0; size:8; signed:0;",
                                  header_page(4080).replace("size:8;\tsigned:0", "size:4;\tsigned:0")])
def test_unusable_header_page(text):
    with pytest.raises(RawFormatError):
        parse_header_page(text)


def test_unusable_header_event():
    with pytest.raises(RawFormatError):
        parse_header_event(HEADER_EVENT.replace("5 bits", "6 bits"))


# ---------------------------------------------------------------------------
# synthetic pages
def test_small_events_fields_and_timestamps():
    pb = PageBuilder(HEADER_PAGE)
    assert pb.add(issue(8), 1000000)
    assert pb.add(done(8), 1001500)
    assert pb.add(issue(16, comm="my app-1"), 1002000)
    events, lost = decoder().decode_page(pb.page(), 1)
    assert lost == 0
    assert [(e.event, e.ts, e.tid, e.cpu) for e in events] == [
        ("block_rq_issue", 1000000, 4011, 1), ("block_rq_complete", 1001500, 0, 1),
        ("block_rq_issue", 1002000, 4011, 1)]
    assert events[0].fields == {"dev": DEV, "sector": 8, "nr_sector": 8, "bytes": 4096,
                                "ioprio": 0x4004, "rwbs": "WS", "comm": "dd", "cmd": ""}
    assert events[1].fields["error"] == 0 and events[1].comm is None and events[1].tgid is None
    assert events[2].fields["comm"] == "my app-1"


def test_signed_fields_and_flush_sector():
    pb = PageBuilder(HEADER_PAGE)
    pb.add(done(18446744073709551615, error=-5), 10)
    (ev,), _ = decoder().decode_page(pb.page(), 0)
    assert ev.fields["error"] == -5 and ev.fields["sector"] == 18446744073709551615


def test_long_event_uses_type_len_zero_and_data_loc():
    name = "/usr/lib/" + "x" * 200
    pb = PageBuilder(HEADER_PAGE)
    payload = encode_payload(EXEC, 77, {"filename": name, "pid": 77, "old_pid": 76})
    assert len(payload) > 112          # beyond RB_MAX_SMALL_DATA: length in array[0]
    pb.add(payload, 5)
    pb.add(issue(8), 6)
    data = pb.page()
    assert struct.unpack_from("<I", data, 16)[0] & 31 == 0
    events, _ = decoder().decode_page(data, 0)
    assert events[0].fields == {"filename": name, "pid": 77, "old_pid": 76}
    assert events[1].fields["sector"] == 8 and events[1].ts == 6


def test_time_extend_for_large_deltas():
    pb = PageBuilder(HEADER_PAGE)
    pb.add(issue(8), 1000)
    pb.add(done(8), 1000 + (5 << 27) + 12345)      # needs a time_extend entry
    pb.add(issue(16), 1000 + (5 << 27) + 12346)
    events, _ = decoder().decode_page(pb.page(), 0)
    assert [e.ts for e in events] == [1000, 1000 + (5 << 27) + 12345, 1000 + (5 << 27) + 12346]


def test_absolute_time_stamp_and_restored_top_bits():
    pb = PageBuilder(HEADER_PAGE, start_ts=1000)
    absolute = 50000000000
    pb.add_raw(pb.word(31, absolute & ((1 << 27) - 1), absolute >> 27))
    pb.add_raw(pb.word(2, 7) + issue(8)[:8])       # too short for the format: stops there
    events, _ = decoder().decode_page(pb.page(), 0)
    assert events == []
    pb = PageBuilder(HEADER_PAGE, start_ts=1000)
    pb.add_raw(pb.word(31, absolute & ((1 << 27) - 1), absolute >> 27))
    payload = issue(8)
    pb.add_raw(pb.word(len(payload) // 4, 7) + payload)
    (ev,), _ = decoder().decode_page(pb.page(), 0)
    assert ev.ts == absolute + 7
    # a clock using the top 5 bits (TAI): the stamp keeps 59, the page has all
    top = 0x18 << 56
    pb = PageBuilder(HEADER_PAGE, start_ts=top | 10)
    pb.add_raw(pb.word(31, 500, 0))
    pb.add_raw(pb.word(len(payload) // 4, 1) + payload)
    (ev,), _ = decoder().decode_page(pb.page(), 0)
    assert ev.ts == (top | 500) + 1


def test_discarded_events_and_null_padding():
    pb = PageBuilder(HEADER_PAGE, start_ts=100)
    # a discarded (filtered) event: array[0] counts the bytes after the header
    pb.add_raw(pb.word(29, 5, 8) + b"\xff" * 4)
    payload = issue(8)
    pb.add_raw(pb.word(len(payload) // 4, 10) + payload)
    pb.add_raw(pb.word(29, 0))                      # null padding: nothing after it counts
    pb.add_raw(pb.word(len(payload) // 4, 10) + issue(16))
    events, _ = decoder().decode_page(pb.page(), 0)
    assert [(e.fields["sector"], e.ts) for e in events] == [(8, 115)]


@pytest.mark.parametrize("lost", [0, 7, None])
def test_missed_events_from_the_commit_flags(lost):
    pb = PageBuilder(HEADER_PAGE)
    pb.add(issue(8), 1)
    events, got = decoder().decode_page(pb.page(lost=lost), 0)
    assert got == lost and len(events) == 1


def test_missed_events_without_room_for_the_count():
    pb = PageBuilder(HEADER_PAGE)
    while pb.add(issue(8), 1):
        pass
    pb.add_raw(b"\0" * (4080 - len(pb)))          # page full to the last byte
    events, got = decoder().decode_page(pb.page(lost=3), 0)
    assert got is None and len(events) == 4080 // (4 + len(issue(8)))


def test_unknown_event_ids_are_counted_and_skipped():
    d = RawDecoder(HEADER_PAGE, HEADER_EVENT, {ISSUE.id: ISSUE})
    pb = PageBuilder(HEADER_PAGE)
    pb.add(done(8), 1)
    pb.add(issue(8), 2)
    events, _ = d.decode_page(pb.page(), 0)
    assert [e.event for e in events] == ["block_rq_issue"] and d.unknown == 1


def test_truncated_page_stops_without_raising():
    pb = PageBuilder(HEADER_PAGE)
    for s in range(10):
        pb.add(issue(s * 8), s)
    data = pb.page()
    d = decoder()
    events, _ = d.decode_page(data[:16 + 3 * 68 + 20], 0)
    assert [e.fields["sector"] for e in events] == [0, 8, 16]
    assert d.malformed == 1
    assert d.decode_page(data[:10], 0) == ([], 0)


def test_larger_sub_buffers_take_their_size_from_header_page():
    hp = header_page(8176)
    pb = PageBuilder(hp)
    n = 0
    while pb.add(issue(n * 8), n):
        n += 1
    assert len(pb) > 4096
    events, _ = decoder(hp=hp).decode_page(pb.page(), 0)
    assert len(events) == n and events[-1].fields["sector"] == (n - 1) * 8


def test_32_bit_page_header():
    hp = header_page(4084, commit_size=4, data_offset=12)
    pb = PageBuilder(hp)
    pb.add(issue(8), 3)
    events, lost = decoder(hp=hp).decode_page(pb.page(lost=9), 0)
    assert [e.fields["sector"] for e in events] == [8] and lost == 9


def test_big_endian_kernel():
    pb = PageBuilder(HEADER_PAGE, byteorder="big")
    pb.add(encode_payload(ISSUE, 5, {"dev": DEV, "sector": 123456789, "bytes": 512,
                                     "rwbs": "R", "comm": "be"}, byteorder="big"), 1 << 30)
    events, _ = decoder(byteorder="big").decode_page(pb.page(), 0)
    assert events[0].fields["sector"] == 123456789 and events[0].tid == 5
    assert events[0].ts == 1 << 30 and events[0].fields["comm"] == "be"


def test_rel_loc_strings():
    f = parse_format("name: relev\nID: 9\nformat:\n"
                     "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                     "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
                     "\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;\n"
                     "\tfield:__rel_loc char[] name;\toffset:12;\tsize:4;\tsigned:0;\n\n"
                     'print fmt: "%d %s", REC->x, __get_rel_str(name)\n', "t")
    pb = PageBuilder(HEADER_PAGE)
    pb.add(encode_payload(f, 1, {"x": -3, "name": "relative"}), 1)
    (ev,), _ = RawDecoder(HEADER_PAGE, HEADER_EVENT, {9: f}).decode_page(pb.page(), 0)
    assert ev.fields == {"x": -3, "name": "relative"}


def test_sinks_get_selected_fields_in_the_asked_order():
    d = decoder()
    got = []
    binding = d.compile_sinks({ISSUE.id: (("sector", "comm", "dev"),
                                          lambda ts, cpu, v: got.append((ts, cpu, tuple(v))))})
    pb = PageBuilder(HEADER_PAGE)
    pb.add(issue(8), 11)
    pb.add(done(8), 12)
    n, lost = d.decode_page_into(pb.page(), 3, binding)
    assert (n, lost) == (1, 0)
    assert got == [(11, 3, (4011, 8, "dd", DEV))]


def test_held_events_are_appended_undelivered_with_their_callback():
    # the time-ordered path: (callback, ts, cpu, values) per event, short
    # and long (type_len 0) entries alike, strings decoded, nothing called
    d = decoder()
    called = []

    def on_issue(ts, cpu, v):
        called.append(v)
    binding = d.compile_sinks({ISSUE.id: (("rwbs", "comm", "sector"), on_issue),
                               EXEC.id: (("filename",), on_issue)})
    name = "/bin/" + "y" * 150
    pb = PageBuilder(HEADER_PAGE)
    pb.add(issue(8, comm="fio", rwbs="RA"), 11)
    pb.add(encode_payload(EXEC, 5, {"filename": name, "pid": 5, "old_pid": 5}), 12)
    pb.add(issue(16, comm="fio", rwbs="RA"), 13)
    held = []
    n, lost = d.decode_page_into(pb.page(), 1, binding, held.append)
    assert (n, lost, called) == (3, 0, [])
    assert held == [(on_issue, 11, 1, (4011, "RA", "fio", 8)), (on_issue, 12, 1, (5, name)),
                    (on_issue, 13, 1, (4011, "RA", "fio", 16))]


def test_sinks_with_integer_fields_only_get_the_unpacked_tuple():
    d = decoder()
    got = []
    binding = d.compile_sinks({DONE.id: (("dev", "sector"), lambda ts, cpu, v: got.append(v))})
    pb = PageBuilder(HEADER_PAGE)
    pb.add(done(64), 1)
    d.decode_page_into(pb.page(), 0, binding)
    assert got == [(0, DEV, 64)] and type(got[0]) is tuple


# ---------------------------------------------------------------------------
# real pages from the live kernel
def _read_all_pages(inst, page_size, ncpu):
    pages = []
    for cpu in range(ncpu):
        path = os.path.join(inst, "per_cpu", "cpu%d" % cpu, "trace_pipe_raw")
        if not os.path.exists(path):
            continue
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    data = os.read(fd, page_size)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        break
                    raise
                if not data:
                    break
                pages.append((cpu, data))
        finally:
            os.close(fd)
    return pages


def _write(path, text):
    tracefs.write_text(path, text)


@pytest.mark.live
@pytest.mark.parametrize("subbuf_kb", [None, 8])
def test_real_pages_from_our_own_instance(subbuf_kb):
    """Our instance, block tracepoints, N direct writes on our own loop
    device: the raw decode has exactly N issues and N completions on it,
    and agrees with the text the kernel prints for the same buffer."""
    root = kernstate.tracefs()
    inst = os.path.join(root, "instances", "kerntrace-%d-rawtest" % os.getpid())
    n = 24
    os.mkdir(inst)
    try:
        if subbuf_kb:
            if not os.path.exists(os.path.join(inst, "buffer_subbuf_size_kb")):
                pytest.skip("no buffer_subbuf_size_kb (kernel before 6.7)")
            try:
                _write(os.path.join(inst, "buffer_subbuf_size_kb"), str(subbuf_kb))
            except PermissionError:
                # Seen on some machines of the development kind: the kernel
                # refuses any write there, even of the current value.
                pytest.skip("this host refuses writes to buffer_subbuf_size_kb "
                            "(EPERM, probed): larger sub-buffers cannot be made")
        events_dir = os.path.join(inst, "events")
        with open(os.path.join(events_dir, "header_page")) as f:
            hp = f.read()
        with open(os.path.join(events_dir, "header_event")) as f:
            he = f.read()
        formats = {}
        for name in ("block_rq_issue", "block_rq_complete"):
            fmt = tracefs.read_format(root, "block", name)
            formats[fmt.id] = fmt
        dec = RawDecoder(hp, he, formats)
        if subbuf_kb:
            assert dec.page_size == subbuf_kb * 1024
        with workloads.loop_device() as (path, major, minor):
            dev = (major << 20) | minor
            for name in ("block_rq_issue", "block_rq_complete"):
                _write(os.path.join(events_dir, "block", name, "enable"), "1")
            workloads.direct_writes(path, n, seek=3)
            _write(os.path.join(events_dir, "enable"), "0")
        with open(os.path.join(inst, "trace")) as f:
            text = f.read()            # before the raw reads consume the buffer
        pages = _read_all_pages(inst, dec.page_size, os.cpu_count() or 1)
    finally:
        try:
            _write(os.path.join(inst, "events", "enable"), "0")
        finally:
            os.rmdir(inst)

    raw = []
    lost = 0
    for cpu, data in pages:
        evs, page_lost = dec.decode_page(data, cpu)
        raw.extend(evs)
        lost += page_lost or 0
    assert lost == 0 and dec.malformed == 0
    ours = [e for e in raw if e.fields["dev"] == dev and e.fields["rwbs"].startswith("W")]
    issues = [e for e in ours if e.event == "block_rq_issue"]
    dones = [e for e in ours if e.event == "block_rq_complete"]
    assert len(issues) == n and len(dones) == n
    assert sorted(e.fields["sector"] for e in issues) == [(3 + i) * 8 for i in range(n)]
    assert all(e.fields["bytes"] == 4096 and e.fields["comm"] == "dd" for e in issues)
    assert all(e.fields["error"] == 0 for e in dones)
    issued_at = {e.fields["sector"]: e.ts for e in issues}
    assert all(e.ts >= issued_at[e.fields["sector"]] for e in dones)

    # the same buffer as text: same events, same microseconds
    tdec = TextDecoder({(f.system, f.name): f for f in formats.values()})
    from_text = [r for r in map(tdec.decode, text.splitlines()) if isinstance(r, RawEvent)]
    assert tdec.undecodable == 0

    def key(e, usecs):
        return (e.event, e.tid, e.cpu, usecs, e.fields["dev"], e.fields["sector"],
                e.fields["rwbs"])
    # the text rounds nanoseconds to the nearest microsecond (ns2usecs)
    assert (sorted(key(e, e.ts // 1000) for e in from_text)
            == sorted(key(e, (e.ts + 500) // 1000) for e in raw))


@pytest.mark.parametrize("edit, why", [
    (("common_type;\toffset:0;\tsize:2;", "common_type;\toffset:0;\tsize:4;"),
     "common_type is not the first 2 bytes"),
    (("\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n", ""), "no common_pid field"),
])
def test_a_format_without_the_usual_common_fields_is_not_decoded(edit, why):
    text = known_formats.FORMATS["6.18"][("block", "block_rq_issue")]
    assert edit[0] in text
    fmt = parse_format(text.replace(*edit), "block")
    d = RawDecoder(known_formats.HEADER_PAGE["6.18"], known_formats.HEADER_EVENT["6.18"],
                   {fmt.id: fmt})
    assert why in d.unsupported[fmt.id]


def test_formats_without_the_signed_column_keep_all_ones_sectors():
    """Mainline 2.6.32 prints no signed: column: signedness is guessed from
    the C type, and an unknown typedef (sector_t, dev_t) is unsigned, so a
    flush's (sector_t)-1 stays all-ones instead of turning into -1."""
    fmt = known_formats.event_format("2.6.32", "block", "block_rq_complete")
    assert "signed:" not in known_formats.FORMATS["2.6.32"][("block", "block_rq_complete")]
    signed = dict((f.name, f.signed) for f in fmt.fields)
    assert signed["sector"] is False and signed["dev"] is False
    assert signed["errors"] is True and signed["common_pid"] is True
    assert signed["nr_sector"] is False
    hp, he = known_formats.HEADER_PAGE["2.6.32"], known_formats.HEADER_EVENT["2.6.32"]
    pb = PageBuilder(hp)
    pb.add(encode_payload(fmt, 0, dict(dev=(8 << 20) | 16, sector=(1 << 64) - 1, nr_sector=0,
                                       errors=-5, rwbs="FWS", cmd="")), 10 ** 9)
    (ev,), lost = RawDecoder(hp, he, {fmt.id: fmt}).decode_page(pb.page(), 0)
    assert ev.fields["sector"] == (1 << 64) - 1 and ev.fields["errors"] == -5
    assert ev.fields["dev"] == (8 << 20) | 16 and lost == 0


@pytest.mark.parametrize("era,signed", [("2.6.32", None), ("rhel6", "1"), ("4.19", "1"),
                                        ("6.18", "0")])
def test_header_page_char_data_signedness_per_era(era, signed):
    """x86 char is signed until v6.2 (header_page's data too); 2.6.32 has
    three lines, without `overwrite` (mainline: without signed:)."""
    text = known_formats.HEADER_PAGE[era]
    data = [l for l in text.splitlines() if "char data" in l][0]
    if signed is None:
        assert "signed" not in data
    else:
        assert data.endswith("signed:%s;" % signed)
    assert ("overwrite" in text) == (era not in ("2.6.32", "rhel6"))
    assert parse_header_page(text).page_size == 4096


def _exec_with_loc(name, pid, loc_len=None):
    """A sched_process_exec payload; loc_len: the length its __data_loc
    word claims (beyond the event: a string cut at the event's end)."""
    payload = bytearray(encode_payload(EXEC, pid, {"filename": name, "pid": pid, "old_pid": 1}))
    if loc_len is not None:
        (word,) = struct.unpack_from("<I", payload, 8)
        struct.pack_into("<I", payload, 8, (word & 0xffff) | (loc_len << 16))
        # no NUL up to the event's end: only that end stops the string
        start = word & 0xffff
        payload[start:] = payload[start:].replace(b"\0", b"Z")
    return bytes(payload)


@pytest.mark.parametrize("as_type", [bytes, bytearray])
def test_data_loc_strings_decoded_inline_and_cached_are_exact(as_type):
    # The sinks decode __data_loc strings inline through a string cache:
    # repeated, long (beyond the cache's), empty, undecodable and cut
    # strings must come out as each event's own, in every page type.
    names = ["/tmp/a", "/tmp/a", "", "/usr/lib/" + "y" * 300, "/usr/lib/" + "y" * 300,
             "caf\xe9", "/tmp/a\x1b", "/tmp/b"]
    pb = PageBuilder(HEADER_PAGE)
    for i, name in enumerate(names):
        assert pb.add(_exec_with_loc(name, 100 + i), 10 + i)
    # a length running past the event: cut at the event's end
    cut = _exec_with_loc("/tmp/cut", 200, loc_len=200)
    assert pb.add(cut, 30)
    assert pb.add(_exec_with_loc("/tmp/after", 201), 31)
    names.append("/tmp/after")
    page = as_type(pb.page())
    d = decoder()
    got = []
    binding = d.compile_sinks({EXEC.id: (("filename", "pid"),
                                         lambda ts, cpu, v: got.append(tuple(v)))})
    for _ in range(2):      # the second time from the cache
        del got[:]
        n, lost = d.decode_page_into(page, 0, binding)
        assert (n, lost) == (len(names) + 1, 0)
        cut_at = len(names) - 1
        assert got[:cut_at] + got[cut_at + 1:] == [
            (100 + i, name, 100 + i) for i, name in enumerate(names[:-1])] + [
            (201, "/tmp/after", 201)]
        # cut at the event's end (its payload, padded to 4 bytes)
        assert got[cut_at] == (200, "/tmp/cut" + "Z" * (len(cut) - 20 - 8), 200)
    # the events RawDecoder.decode_page() makes say the same
    events, _ = d.decode_page(page, 0)
    assert [ev.fields["filename"] for ev in events] == [v[1] for v in got]
