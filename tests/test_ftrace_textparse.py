"""Trace line parsing and decoding for every kernel era (tests/data/traces)."""

import os

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.plan import Lost, RawEvent
from kerntrace.backends.ftrace.textparse import TextDecoder, TraceLine, parse_line, timestamp_ns

TRACES = os.path.join(os.path.dirname(__file__), "data", "traces")
DEV_202_1 = (202 << 20) | 1
DEV_254_0 = 254 << 20
DEV_7_0 = 7 << 20


def lines_of(name):
    with open(os.path.join(TRACES, name)) as f:
        return f.read().splitlines()


def era_formats(era):
    return {key: known_formats.event_format(era, *key) for key in known_formats.FORMATS[era]}


def decode_file(name, era):
    d = TextDecoder(era_formats(era))
    return d, [r for r in (d.decode(line) for line in lines_of(name)) if r is not None]


# ---------------------------------------------------------------------------
# parse_line: the header columns
@pytest.mark.parametrize("line, expected", [
    # 3.2 era: no flags column; the function tracer's "func <-parent"
    ("          vmstat-11789 [000] 1763207.021204: do_nanosleep <-hrtimer_nanosleep",
     TraceLine("vmstat", 11789, None, 0, None, 1763207021204000, "function",
               "do_nanosleep <-hrtimer_nanosleep")),
    # 3.x-5.14: 4 flag characters
    ("         supervise-1697  [000] d... 7270545.340856: block_rq_issue: 202,1 W 0 () 12862464 + 8 [supervise]",
     TraceLine("supervise", 1697, None, 0, "d...", 7270545340856000, "block_rq_issue",
               "202,1 W 0 () 12862464 + 8 [supervise]")),
    # 5.15+: 5 flag characters
    ("              dd-4011    [001] ...1.   238.399719: block_rq_insert: 254,0 RA 4096 () 29947720 + 8 be,0,4 [bash]",
     TraceLine("dd", 4011, None, 1, "...1.", 238399719000, "block_rq_insert",
               "254,0 RA 4096 () 29947720 + 8 be,0,4 [bash]")),
    # newer flag letters in the same width
    ("    kworker/u8:3-1187    [000] DBZff   900.000001: block_rq_issue: x",
     TraceLine("kworker/u8:3", 1187, None, 0, "DBZff", 900000001000, "block_rq_issue", "x")),
    ("          <idle>-0       [000] .Ns1.   900.000201: block_rq_complete: y",
     TraceLine("<idle>", 0, None, 0, ".Ns1.", 900000201000, "block_rq_complete", "y")),
    # record-tgid column; dashes when the tgid is unknown
    ("              dd-13535   (  13535) [001] .....  1361.233911: sched_process_exec: z",
     TraceLine("dd", 13535, 13535, 1, ".....", 1361233911000, "sched_process_exec", "z")),
    ("           <...>-77      (-------) [001] .....  1361.233911: sched_process_exec: z",
     TraceLine("<...>", 77, None, 1, ".....", 1361233911000, "sched_process_exec", "z")),
    # comm with spaces and dashes: the PID is the last -digits
    ("   my-app 2-x-12-4242    [001] ..s1.   900.100000: block_rq_issue: p",
     TraceLine("my-app 2-x-12", 4242, None, 1, "..s1.", 900100000000, "block_rq_issue", "p")),
    ("  jbd2/xvda1-8-245   [001] ...1 7270546.100000: block_rq_insert: q",
     TraceLine("jbd2/xvda1-8", 245, None, 1, "...1", 7270546100000000, "block_rq_insert", "q")),
    # counter / x86-tsc trace clocks print integers
    ("            true-5985    [000] .....            4: sched_process_exec: c",
     TraceLine("true", 5985, None, 0, ".....", 4, "sched_process_exec", "c")),
    ("            true-5987    [000] ..... 1926525391961: sched_process_exec: c",
     TraceLine("true", 5987, None, 0, ".....", 1926525391961, "sched_process_exec", "c")),
    # syscall events print their own way
    ("        truncate-5553    [001] .....   673.772796: sys_openat(dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x80000, mode: 0)",
     TraceLine("truncate", 5553, None, 1, ".....", 673772796000, "sys_enter_openat",
               "dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x80000, mode: 0")),
    ("        truncate-5553    [001] .....   673.773101: sys_openat -> 0xfffffffffffffffe",
     TraceLine("truncate", 5553, None, 1, ".....", 673773101000, "sys_exit_openat",
               "0xfffffffffffffffe")),
    ("            bash-1       [000] .....     1.000000: sys_getppid()",
     TraceLine("bash", 1, None, 0, ".....", 1000000000, "sys_enter_getppid", "")),
])
def test_parse_line_header_columns(line, expected):
    assert parse_line(line) == expected


def test_timestamps_keep_nanoseconds():
    assert timestamp_ns("673.770523") == 673770523000
    assert timestamp_ns("673.770523123") == 673770523123
    assert timestamp_ns("0.000001") == 1000
    assert timestamp_ns("12") == 12


@pytest.mark.parametrize("line, expected", [
    ("CPU:1 [LOST 12 EVENTS]", (1, 12)),
    ("CPU:0 [LOST EVENTS]", (0, None)),
    ("[LOST EVENTS]", (None, None)),
    ("CPU:3 [LOST 4294967296 EVENTS]\n", (3, 4294967296)),
])
def test_lost_markers(line, expected):
    lost = parse_line(line)
    assert isinstance(lost, Lost) and (lost.cpu, lost.count) == expected


@pytest.mark.parametrize("line", [
    "", "\n", "   ", "# tracer: nop",
    "#           TASK-PID    CPU#    TIMESTAMP  FUNCTION",
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION",
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
    "##### CPU 1 buffer started ####",
    "garbage without structure",
])
def test_headers_and_noise_are_none(line):
    assert parse_line(line) is None


def test_bytes_lines_are_accepted():
    tl = parse_line(b"              dd-1    [001] .....   1.000001: sched_process_exec: x\n")
    assert tl.comm == "dd" and tl.event == "sched_process_exec" and tl.ts_ns == 1000001000


# ---------------------------------------------------------------------------
# TextDecoder on the era corpus: exact decodes
def test_era_3_2_no_flags_column():
    d, events = decode_file("era-3.2.txt", "3.10")
    issue, complete, issue2, complete2, exec_ = events
    assert (issue.system, issue.event, issue.tid, issue.cpu, issue.comm, issue.ts) == (
        "block", "block_rq_issue", 1697, 0, "supervise", 7270545340856000)
    assert issue.fields == {"dev": DEV_202_1, "rwbs": "W", "bytes": 0, "cmd": "",
                            "sector": 12862464, "nr_sector": 8, "comm": "supervise"}
    assert complete.fields == {"dev": DEV_202_1, "rwbs": "W", "cmd": "", "sector": 12862464,
                               "nr_sector": 8, "errors": 0}
    assert complete.comm == "<idle>" and complete.tid == 0
    # "<...>": the name was not in saved_cmdlines; the decoder reports None
    assert issue2.comm is None and issue2.fields["comm"] == "cat"
    assert complete2.comm == "kworker/1:1"
    assert exec_.fields == {"filename": "/bin/ls", "pid": 2285, "old_pid": 2285}
    assert d.undecodable == 0


def test_era_3_16_four_flags_lost_and_flush():
    d, events = decode_file("era-3.16.txt", "3.10")
    kinds = [type(e).__name__ if not isinstance(e, RawEvent) else e.event for e in events]
    assert kinds == ["block_rq_issue", "block_rq_complete", "block_rq_insert", "block_rq_issue",
                     "Lost", "block_rq_complete", "block_rq_issue", "block_rq_complete",
                     "sched_process_exec"]
    lost = events[4]
    assert (lost.cpu, lost.count) == (1, 3)
    insert = events[2]
    assert insert.comm == "jbd2/xvda1-8" and insert.tid == 245
    assert insert.fields["comm"] == "jbd2/xvda1-8" and insert.fields["rwbs"] == "WS"
    flush_issue, flush_done = events[6], events[7]
    assert flush_issue.fields["sector"] == 18446744073709551615
    assert flush_issue.fields["bytes"] == 0 and flush_issue.fields["nr_sector"] == 0
    assert flush_done.fields["rwbs"] == "FWS"
    assert d.undecodable == 0 and d.lost_markers == 1


def test_era_5_15_five_flags_and_bare_hex_syscalls():
    d, events = decode_file("era-5.15.txt", "5.15")
    insert, issue, done, wc_issue, wc_done, enter, exit_ = events
    assert insert.fields == {"dev": DEV_254_0, "rwbs": "RA", "bytes": 4096, "cmd": "",
                             "sector": 29947720, "nr_sector": 8, "comm": "bash"}
    assert insert.comm == "dd"
    assert done.fields["error"] == 0 and done.cpu == 2
    assert wc_issue.comm == "Web Content" and wc_issue.fields["comm"] == "Web Content"
    assert wc_done.fields["error"] == -5
    # before v6.18 syscall arguments print as bare hex
    assert enter.event == "sys_enter_openat" and enter.fields == {
        "dfd": 0xffffff9c, "filename": 0x7ffc1a2b3c40, "flags": 0x80000, "mode": 0}
    assert exit_.event == "sys_exit_openat" and exit_.fields == {"ret": 3}
    assert d.undecodable == 0


def test_era_6_18_ioprio_token_new_flags_and_spaces():
    d, events = decode_file("era-6.18-flags.txt", "6.18")
    flush, flush_done, app, lost, app_done, unknown, lost2, enter, exit_ = events
    # a flush: issued at sector 0, completed at all-ones (decoded as printed)
    assert flush.fields == {"dev": DEV_254_0, "rwbs": "FF", "bytes": 0, "cmd": "",
                            "sector": 0, "nr_sector": 0, "comm": "kworker/u8:3"}
    assert flush_done.tid == 0 and flush_done.fields["error"] == 0
    assert flush_done.fields["sector"] == 18446744073709551615
    assert app.comm == "my-app 2-x-12" and app.tid == 4242
    assert app.fields["comm"] == "my-app 2-x-12" and app.fields["bytes"] == 16384
    assert (lost.cpu, lost.count) == (0, 4) and (lost2.cpu, lost2.count) == (None, None)
    assert app_done.fields["sector"] == 30300536
    assert unknown.comm is None and unknown.fields["comm"] == "<...>"
    assert enter.fields == {"dfd": 0xffffff9c, "filename": 0x7f19e89d60b1, "flags": 0x80000,
                            "mode": 0}
    # sys_exit ret is a signed long: -ENOENT
    assert exit_.fields == {"ret": -2}
    assert d.undecodable == 0


def test_real_6_18_capture_decodes_every_block_line():
    d, events = decode_file("era-6.18-loop.txt", "6.18")
    blocks = [e for e in events if e.system == "block"]
    assert len(blocks) == 24
    writes = [e for e in blocks if e.event == "block_rq_issue" and e.fields["rwbs"] == "WS"]
    assert [e.fields["sector"] for e in writes] == list(range(0, 64, 8))
    assert all(e.fields["dev"] == DEV_7_0 and e.fields["bytes"] == 4096 for e in writes)
    reads = [e for e in blocks if e.event == "block_rq_issue" and e.fields["rwbs"] == "RS"]
    assert [e.fields["bytes"] for e in reads] == [65536] * 4
    assert all(e.comm.startswith("ksoftirqd/") for e in blocks if e.event == "block_rq_complete")
    assert d.undecodable == 0


def test_real_6_18_record_tgid_column():
    _d, events = decode_file("era-6.18-record-tgid.txt", "6.18")
    assert events[0].tgid == events[0].tid and events[0].event == "sched_process_exec"
    done = [e for e in events if e.event == "block_rq_complete"]
    assert done and all(e.tgid == e.tid and e.comm.startswith("ksoftirqd/") for e in done)


def test_payload_of_another_era_is_counted_undecodable():
    # a 6.18 line (ioprio token) read with a 5.15 format does not decode
    d = TextDecoder(era_formats("5.15"))
    line = ("              dd-4011    [001] ...1.   238.399719: block_rq_insert: "
            "254,0 RA 4096 () 29947720 + 8 be,0,4 [bash]")
    assert d.decode(line) is None and d.undecodable == 1


def test_events_outside_the_formats_are_ignored_not_counted():
    d = TextDecoder({("block", "block_rq_issue"): known_formats.event_format("6.18", "block",
                                                                              "block_rq_issue")})
    assert d.decode("     kworker/0:1-9  [000] ..... 1.0: workqueue_execute_start: x") is None
    assert d.decode("          vmstat-11789 [000] 1763207.021204: do_nanosleep <-h") is None
    assert d.undecodable == 0


def test_event_without_format_is_counted_with_no_fields():
    d = TextDecoder({("sched", "sched_switch"): None})
    r = d.decode("     kworker/0:1-9  [000] ..... 1.5: sched_switch: prev_comm=a ==> next_comm=b")
    assert isinstance(r, RawEvent) and r.fields == {} and r.event == "sched_switch"
    assert r.system == "sched" and r.ts == 1500000000


def test_candidates_pick_the_format_that_decodes():
    cands = {("block", "block_rq_issue"): known_formats.candidates("block", "block_rq_issue")}
    d = TextDecoder({}, candidates=cands)
    r = d.decode("         supervise-1697  [000] d... 7270545.340856: block_rq_issue: "
                 "202,1 W 0 () 12862464 + 8 [supervise]")
    assert r.fields["sector"] == 12862464
    chosen = d.chosen[("block", "block_rq_issue")]
    assert chosen.field("ioprio") is None      # not the 6.18 format
    # a line of the other shape is now undecodable: the choice is made once
    assert d.decode("              dd-1    [001] ...1.   1.0: block_rq_issue: "
                    "254,0 RA 4096 () 29947720 + 8 be,0,4 [bash]") is None
    assert d.undecodable == 1
