"""The decoders never crash, whatever the kernel (or a file) hands them, and
decode the longest line the kernel prints in work linear in its length."""

import functools
import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.plan import Lost, RawEvent
from kerntrace.backends.ftrace.printfmt import PrintFmtError, compile_print_fmt
from kerntrace.backends.ftrace.rawparse import PageBuilder, RawDecoder, encode_payload
from kerntrace.backends.ftrace.textlines import MAX_LINE_BYTES
from kerntrace.backends.ftrace.textparse import TextDecoder, TraceLine, parse_line
from kerntrace.core.tracefs import parse_format
from timelimit import alarm

ERA_FORMATS = {key: known_formats.event_format("6.18", *key) for key in known_formats.FORMATS["6.18"]}
CANDIDATES = {key: known_formats.candidates(*key) for key in known_formats.FORMATS["6.18"]}
HEADER_PAGE = known_formats.HEADER_PAGE["6.18"]
HEADER_EVENT = known_formats.HEADER_EVENT["6.18"]
BY_ID = {f.id: f for f in ERA_FORMATS.values()}

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Lines that look like trace lines, with mutations in every column.
HEADS = st.sampled_from(["          <idle>-0       [001] ..s1.   673.772100: ",
                         "  my app-1-x-12-4242    [000] DBZff 1.000001: ",
                         "       supervise-1697  [000] d... 7270545.340856: ",
                         "          vmstat-11789 [000] 1763207.021204: ",
                         "              dd-13535   (  13535) [001] .....  1361.233911: ",
                         "            true-5985    [000] .....            4: ", ""])
EVENTS = st.sampled_from(["block_rq_issue: ", "block_rq_complete: ", "block_rq_insert: ",
                          "sched_process_exec: ", "sys_openat(", "sys_openat -> ", "x: ", ""])
PAYLOADS = st.sampled_from(["254,0 RA 16384 () 30300536 + 32 be,0,4 [bash]",
                            "254,0 RA () 30300536 + 32 be,0,4 [0]",
                            "202,1 W 0 () 12862464 + 8 [supervise]",
                            "dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x80000, mode: 0)",
                            "0xfffffffffffffffe", "filename=/bin/true pid=5 old_pid=5"])


@st.composite
def trace_like_lines(draw):
    text = draw(HEADS) + draw(EVENTS) + draw(PAYLOADS)
    cut = draw(st.integers(0, len(text)))
    junk = draw(st.text(max_size=12))
    how = draw(st.sampled_from(["keep", "cut", "insert", "replace"]))
    if how == "cut":
        return text[:cut]
    if how == "insert":
        return text[:cut] + junk + text[cut:]
    if how == "replace":
        return text[:cut] + junk + text[cut + len(junk):]
    return text


def _check_line_result(r):
    assert r is None or isinstance(r, (TraceLine, Lost))


@FUZZ
@given(st.text())
def test_parse_line_any_text(line):
    _check_line_result(parse_line(line))


@FUZZ
@given(st.binary())
def test_parse_line_any_bytes(line):
    _check_line_result(parse_line(line))


@FUZZ
@given(trace_like_lines())
def test_parse_line_mutated_trace_lines(line):
    _check_line_result(parse_line(line))


def test_absurd_digit_runs_are_not_lines():
    huge = "9" * 5000
    for line in ("a-%s [000] ..... 1.0: block_rq_issue: x" % huge,
                 "a-1 [%s] ..... 1.0: block_rq_issue: x" % huge,
                 "a-1 (%s) [000] ..... %s.5: block_rq_issue: x" % (huge, huge)):
        assert parse_line(line) is None
        assert TextDecoder({}, candidates=CANDIDATES).decode(line) is None
    lost = parse_line("CPU:1 [LOST %s EVENTS]" % huge)
    assert (lost.cpu, lost.count) == (None, None)
    issue = ERA_FORMATS[("block", "block_rq_issue")]
    assert compile_print_fmt(issue).decode(
        "254,0 RA 16384 () %s + 32 be,0,4 [bash]" % huge) is None


@FUZZ
@given(st.one_of(st.text(), st.binary(), trace_like_lines()))
def test_text_decoder_any_input(line):
    for dec in (TextDecoder(ERA_FORMATS), TextDecoder({}, candidates=CANDIDATES)):
        r = dec.decode(line)
        assert r is None or isinstance(r, (RawEvent, Lost))
        if isinstance(r, RawEvent):
            assert isinstance(r.fields, dict) and isinstance(r.ts, int)


@FUZZ
@given(st.text(max_size=200))
def test_payload_decoders_any_payload(payload):
    for fmt in ERA_FORMATS.values():
        r = compile_print_fmt(fmt).decode(payload)
        assert r is None or isinstance(r, dict)


@FUZZ
@given(st.text(max_size=120))
def test_print_fmt_compiler_raises_only_its_error(print_fmt):
    fmt = parse_format("name: f\nID: 1\nformat:\n"
                       "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
                       "\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n\n"
                       "print fmt: x\n", "t")
    fmt.print_fmt = '"' + print_fmt.replace("\\", "") + '", REC->a, REC->b'
    try:
        d = compile_print_fmt(fmt)
    except PrintFmtError:
        return
    assert d.decode("1") is None or isinstance(d.decode("1"), dict)


@FUZZ
@given(st.binary(max_size=4096 + 64), st.integers(0, 3))
def test_decode_page_any_bytes(data, cpu):
    d = RawDecoder(HEADER_PAGE, HEADER_EVENT, BY_ID)
    events, lost = d.decode_page(data, cpu)
    assert isinstance(events, list) and (lost is None or isinstance(lost, int))


@st.composite
def page_with_garbage(draw):
    """A valid header and some valid entries, then random words (lengths,
    types and ids that point anywhere)."""
    pb = PageBuilder(HEADER_PAGE)
    issue = ERA_FORMATS[("block", "block_rq_issue")]
    for i in range(draw(st.integers(0, 5))):
        pb.add(encode_payload(issue, 1, {"sector": i, "rwbs": "W", "comm": "x"}), i * 1000)
    words = draw(st.lists(st.integers(0, 0xffffffff), max_size=64))
    pb.add_raw(b"".join(struct.pack("<I", w) for w in words))
    commit = draw(st.one_of(st.none(), st.integers(0, 0xffffffffffffffff)))
    data = bytearray(pb.page(lost=draw(st.sampled_from([0, 3, None]))))
    if commit is not None:
        struct.pack_into("<Q", data, 8, commit)
    return bytes(data)


@FUZZ
@given(page_with_garbage())
def test_decode_page_structured_garbage(data):
    d = RawDecoder(HEADER_PAGE, HEADER_EVENT, BY_ID)
    events, _lost = d.decode_page(data, 0)
    for e in events:
        assert isinstance(e, RawEvent) and isinstance(e.fields, dict)
    got = []
    binding = d.compile_sinks({f.id: (tuple(x.name for x in f.payload_fields()),
                                      lambda ts, cpu, v: got.append(v)) for f in BY_ID.values()})
    n, _ = d.decode_page_into(data, 0, binding)
    assert n == len(got) == len(events)


# -- time: a line as long as the kernel can print costs work linear in it ----------
# Every era's decoders, not only the newest: their print fmts differ.
ALL_DECODERS = [compile_print_fmt(known_formats.event_format(era, *key))
                for era in sorted(known_formats.FORMATS) for key in known_formats.FORMATS[era]]
# Pieces of headers and payloads whose repetition makes a backtracking
# matcher try every split of the line.
PIECES = st.sampled_from([" ", "  ", "-", "-1", "-12 ", "[0]", "[000] ", "(", ")", "( 1) ",
                          "() ", ".....", "1.5: ", ": ", "block_rq_issue: ", "254,0 ", "W ",
                          "+ ", "8 ", "[", "]", ",", ",0,", "be,0,4 ", "sys_openat(", " -> ",
                          "0x", "0xff", "filename=", " pid=", " old_pid=", "9", "\t", "CPU:1 ",
                          "[LOST ", " EVENTS]"])
TIME_FUZZ = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _slice(text, ij):
    i, j = sorted(ij)
    return text[i:j]


# a payload's first part, and a part of one to repeat: the shapes that make
# a backtracking payload matcher try every split
PAYLOAD_HEADS = st.tuples(PAYLOADS, st.integers(0, 80)).map(lambda t: t[0][:t[1]])
def _slices_of(payload):
    # A named function, not a lambda: hypothesis 6.31 (the last for Python
    # 3.6) fails reading the source of a lambda spread over two lines.
    n = len(payload)
    return st.tuples(st.integers(0, n), st.integers(0, n)).map(functools.partial(_slice, payload))


PAYLOAD_PARTS = PAYLOADS.flatmap(_slices_of)


@st.composite
def longest_lines(draw):
    """A header (or none), the start of a payload, one short unit repeated
    to the longest line the kernel prints, and a tail."""
    head = draw(st.one_of(st.just(""), HEADS, st.tuples(HEADS, EVENTS).map("".join)))
    start = draw(st.one_of(st.just(""), PAYLOAD_HEADS))
    unit = draw(st.one_of(
        PAYLOAD_PARTS,
        st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=2)),
                 min_size=1, max_size=6).map("".join)).filter(len))
    tail = draw(st.one_of(st.just(""), PAYLOADS, st.text(max_size=8)))
    body = unit * ((MAX_LINE_BYTES - len(head) - len(start) - len(tail)) // len(unit))
    return head, start + body, tail


@TIME_FUZZ
@given(longest_lines())
def test_decoding_the_longest_line_is_linear_work(parts):
    head, body, tail = parts
    line = head + body + tail
    with alarm(20):
        _check_line_result(parse_line(line))
        for dec in (TextDecoder(ERA_FORMATS), TextDecoder({}, candidates=CANDIDATES)):
            dec.decode(line)
        for payload in (body + tail, body):
            for d in ALL_DECODERS:
                r = d.decode(payload)
                assert r is None or isinstance(r, dict)


@TIME_FUZZ
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([4096, 64 * 1024, 1 << 20]),
       st.integers(0, 0xffffffff))
def test_decoding_the_largest_page_is_linear_work(seed, size, word):
    """A sub-buffer as large as buffer_subbuf_size_kb allows (1 MB), of
    random words or one word repeated, its commit claiming all of it."""
    import random
    if seed % 2:
        body = random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")
    else:
        body = struct.pack("<I", word) * (size // 4)
    data = bytearray(16) + body
    struct.pack_into("<Q", data, 8, len(body))
    d = RawDecoder(HEADER_PAGE, HEADER_EVENT, BY_ID)
    with alarm(20):
        events, _lost = d.decode_page(bytes(data), 0)
    assert isinstance(events, list)
