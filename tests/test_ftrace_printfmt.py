"""Decoding text payloads with the event's own print fmt."""

import pytest

from kerntrace.core import known_formats
from kerntrace.backends.ftrace.printfmt import (PrintFmtError, classify_arg, compile_print_fmt,
                                                split_args, split_print_fmt)
from kerntrace.core.tracefs import parse_format

DEV_254_0 = 254 << 20
DEV_202_1 = (202 << 20) | 1
FLUSH = 18446744073709551615


def fmt(fields, print_fmt, name="ev", system="test"):
    """A format file text from (declaration, offset, size, signed) tuples."""
    text = "name: %s\nID: 42\nformat:\n" % name
    text += "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    text += "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
    for decl, off, size, signed in fields:
        text += "\tfield:%s;\toffset:%d;\tsize:%d;\tsigned:%d;\n" % (decl, off, size, signed)
    text += "\nprint fmt: %s\n" % print_fmt
    return parse_format(text, system)


def decode(event_format, payload):
    return compile_print_fmt(event_format).decode(payload)


# ---------------------------------------------------------------------------
# block_rq_* payloads from every era, through each era's own format file
ISSUE = dict((era, "202,1 W 4096 () 12862464 + 8 [supervise]") for era in known_formats.ERAS)
ISSUE["6.18"] = "202,1 W 4096 () 12862464 + 8 be,0,4 [supervise]"
COMPLETE = dict((era, "202,1 W () 12862464 + 8 [0]") for era in known_formats.ERAS)
COMPLETE.update({"4.19": "202,1 W () 12862464 + 8 [-5]",
                 "6.18": "202,1 W () 12862464 + 8 be,0,4 [-11]"})
# block_rq_complete's status field: "errors" until v4.12, "error" from v4.13
OLD_ERAS = ("2.6.32", "rhel6", "3.4", "3.10", "4.4")
ERROR_FIELD = dict((era, "errors" if era in OLD_ERAS else "error") for era in known_formats.ERAS)
ERROR_VALUE = dict((era, 0) for era in known_formats.ERAS)
ERROR_VALUE.update({"4.19": -5, "6.18": -11})
# sched_process_exec exists since v3.4
EXEC_ERAS = [era for era in known_formats.ERAS if era not in ("2.6.32", "rhel6")]


@pytest.mark.parametrize("era", known_formats.ERAS)
@pytest.mark.parametrize("event", ["block_rq_issue", "block_rq_insert"])
def test_issue_and_insert_every_era(era, event):
    f = known_formats.event_format(era, "block", event)
    assert decode(f, ISSUE[era]) == {"dev": DEV_202_1, "rwbs": "W", "bytes": 4096, "cmd": "",
                                     "sector": 12862464, "nr_sector": 8, "comm": "supervise"}


@pytest.mark.parametrize("era", known_formats.ERAS)
def test_complete_every_era_error_or_errors(era):
    f = known_formats.event_format(era, "block", "block_rq_complete")
    assert decode(f, COMPLETE[era]) == {"dev": DEV_202_1, "rwbs": "W", "cmd": "",
                                        "sector": 12862464, "nr_sector": 8,
                                        ERROR_FIELD[era]: ERROR_VALUE[era]}


@pytest.mark.parametrize("era", known_formats.ERAS)
def test_flush_request_every_era(era):
    f = known_formats.event_format(era, "block", "block_rq_issue")
    prio = " none,0,0" if era == "6.18" else ""
    got = decode(f, "254,0 FWS 0 () 18446744073709551615 + 0%s [kworker/0:2]" % prio)
    assert got["sector"] == FLUSH and got["bytes"] == 0 and got["nr_sector"] == 0
    assert got["rwbs"] == "FWS" and got["dev"] == DEV_254_0


@pytest.mark.parametrize("era", known_formats.ERAS)
def test_comm_with_spaces_and_brackets(era):
    f = known_formats.event_format(era, "block", "block_rq_issue")
    prio = " be,0,4" if era == "6.18" else ""
    got = decode(f, "254,0 R 512 () 7 + 1%s [Web Content] x]" % prio)
    assert got["comm"] == "Web Content] x"


def test_ioprio_token_shapes_6_18():
    f = known_formats.event_format("6.18", "block", "block_rq_issue")
    for token in ("be,0,4", "none,0,0", "rt,0,1", "idle,0,7", "invalid,1023,7"):
        assert decode(f, "254,0 RA 4096 () 29947720 + 8 %s [bash]" % token)["sector"] == 29947720


def test_wrong_era_shapes_do_not_decode():
    new = known_formats.event_format("6.18", "block", "block_rq_issue")
    old = known_formats.event_format("5.15", "block", "block_rq_issue")
    assert decode(new, ISSUE["5.15"]) is None
    assert decode(old, ISSUE["6.18"]) is None


def test_cmd_with_content():
    f = known_formats.event_format("3.10", "block", "block_rq_issue")
    assert decode(f, "8,0 N 0 (12 00 00 00 24 00) 0 + 0 [sg_inq]")["cmd"] == "12 00 00 00 24 00"


def test_sched_process_exec_every_era():
    assert known_formats.event_format("2.6.32", "sched", "sched_process_exec") is None
    for era in EXEC_ERAS:
        f = known_formats.event_format(era, "sched", "sched_process_exec")
        assert decode(f, "filename=/usr/bin/my prog pid=12 old_pid=11") == {
            "filename": "/usr/bin/my prog", "pid": 12, "old_pid": 11}


@pytest.mark.parametrize("era", known_formats.ERAS)
def test_syscall_enter_hex_with_and_without_0x(era):
    f = known_formats.event_format(era, "syscalls", "sys_enter_openat")
    want = {"dfd": 0xffffff9c, "filename": 0x7f19e89d60b1, "flags": 0x80000, "mode": 0x1b6}
    # before v6.18: bare hex; since: 0x from 10 up, decimal below
    assert decode(f, "dfd: ffffff9c, filename: 7f19e89d60b1, flags: 80000, mode: 1b6") == want
    assert decode(f, "dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x80000, mode: 0x1b6") == want
    assert decode(f, "dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x80000, mode: 0")["mode"] == 0
    # the print fmt's own zero padding is accepted too
    assert decode(f, "dfd: 0xffffff9c, filename: 0x7f19e89d60b1, flags: 0x00080000, "
                     "mode: 0x00000000")["flags"] == 0x80000


@pytest.mark.parametrize("era", known_formats.ERAS)
def test_syscall_exit_ret_is_signed(era):
    f = known_formats.event_format(era, "syscalls", "sys_exit_openat")
    assert decode(f, "0xfffffffffffffffe") == {"ret": -2}
    assert decode(f, "0x3") == {"ret": 3}
    assert decode(f, "3") == {"ret": 3}


# ---------------------------------------------------------------------------
# conversions, widths and flags
def test_integer_conversions_respect_field_width_and_sign():
    f = fmt([("int a", 8, 4, 1), ("unsigned int b", 12, 4, 0), ("u8 c", 16, 1, 0),
             ("short d", 18, 2, 1), ("u64 e", 24, 8, 0)],
            '"a=%d b=%u c=%hhu d=%hd e=%llu", REC->a, REC->b, REC->c, REC->d, REC->e')
    assert decode(f, "a=-7 b=4294967295 c=255 d=-2 e=18446744073709551615") == {
        "a": -7, "b": 4294967295, "c": 255, "d": -2, "e": 18446744073709551615}
    # a negative value printed into an unsigned field wraps as the raw path reads it
    g = fmt([("unsigned int b", 8, 4, 0)], '"b=%d", REC->b')
    assert decode(g, "b=-1") == {"b": 0xffffffff}


def test_hex_octal_char_percent_and_widths():
    f = fmt([("unsigned long x", 8, 8, 0), ("unsigned int o", 16, 4, 0), ("char c", 20, 1, 1),
             ("int w", 24, 4, 1), ("char name[8]", 28, 8, 1), ("u32 y", 36, 4, 0)],
            '"x=%#llx o=%o c=%c 100%% w=[%5d] n=[%-6s] y=%08X", REC->x, REC->o, REC->c, REC->w, '
            'REC->name, REC->y')
    assert decode(f, "x=0xdeadbeef o=755 c=A 100% w=[   42] n=[ab    ] y=0000BEEF") == {
        "x": 0xdeadbeef, "o": 0o755, "c": 65, "w": 42, "name": "ab", "y": 0xbeef}


def test_string_precision_and_pointer_extensions():
    f = fmt([("char name[16]", 8, 16, 1), ("void * p", 24, 8, 0), ("void * ip", 32, 8, 0)],
            '"%.3s|%p|%pS|end", REC->name, REC->p, REC->ip')
    assert decode(f, "abc|00000000deadbeef|do_sys_open+0x0/0x30 [kernel]|end") == {"name": "abc"}
    # pointers are matched, never assigned
    assert decode(f, "abcd|x|y|end") is None


def test_print_symbolic_and_flags_are_matched_not_assigned():
    f = fmt([("unsigned int state", 8, 4, 0), ("unsigned long flags", 16, 8, 0),
             ("int prio", 24, 4, 1)],
            '"state=%s flags=%s prio=%d", __print_symbolic(REC->state, { 0, "R" }, { 1, "S" }), '
            '__print_flags(REC->flags, "|", { 1, "A" }, { 2, "B" }), REC->prio')
    assert decode(f, "state=S flags=A|B prio=120") == {"prio": 120}


def test_dev_rebuilt_from_major_minor_in_either_spelling():
    f = fmt([("dev_t dev", 8, 4, 0), ("u64 ino", 16, 8, 0)],
            '"dev %d,%d ino %lu", MAJOR(REC->dev), MINOR(REC->dev), (unsigned long)REC->ino')
    assert decode(f, "dev 254,1 ino 1234") == {"dev": (254 << 20) | 1, "ino": 1234}
    g = fmt([("dev_t dev", 8, 4, 0)],
            '"%d:%d", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1)))')
    assert decode(g, "8:16") == {"dev": (8 << 20) | 16}


def test_get_str_and_rel_str():
    f = fmt([("__data_loc char[] name", 8, 4, 0), ("__rel_loc char[] other", 12, 4, 0)],
            '"n=%s o=%s", __get_str(name), __get_rel_str(other)')
    assert decode(f, "n=a b o=c") == {"name": "a b", "other": "c"}


def test_uprobe_style_hex_with_0x_in_text_only():
    # uprobe output prints "(0x...)" though the print fmt says "(%lx)"
    f = fmt([("unsigned long __probe_ip", 8, 8, 0), ("u64 arg1", 16, 8, 0)],
            '"(%lx) arg1=0x%Lx", REC->__probe_ip, REC->arg1', name="p_kerntrace_1_malloc")
    assert decode(f, "(0x7f1234) arg1=0x10") == {"__probe_ip": 0x7f1234, "arg1": 16}


def test_unknown_field_and_extra_text():
    f = fmt([("int a", 8, 4, 1)], '"a=%d b=%d", REC->a, REC->gone')
    assert decode(f, "a=1 b=2") == {"a": 1}
    assert decode(f, "a=1 b=2 trailing") is None
    assert decode(f, "a=1 b=2   ") == {"a": 1}


def test_star_width_consumes_an_argument():
    f = fmt([("int w", 8, 4, 1), ("int v", 12, 4, 1)], '"[%*d]", REC->w, REC->v')
    assert decode(f, "[    7]") == {"v": 7}


# ---------------------------------------------------------------------------
# the pieces
def test_split_print_fmt_handles_escapes_and_nested_commas():
    text, args = split_print_fmt(r'"a \"%s\" b\\%d", __print_symbolic(REC->x, { 1, "a,b" }), '
                                 r'f(REC->y, 2)')
    assert text == 'a "%s" b\\%d'
    assert args == ['__print_symbolic(REC->x, { 1, "a,b" })', "f(REC->y, 2)"]
    assert split_args("a, (b, c), {d, e}, 'f,'") == ["a", "(b, c)", "{d, e}", "'f,'"]


@pytest.mark.parametrize("expr, expected", [
    ("REC->sector", ("field", "sector")),
    ("(unsigned long long)REC->sector", ("field", "sector")),
    ("((unsigned long)(REC->dfd))", ("field", "dfd")),
    ("(const char *)REC->name", ("field", "name")),
    ("__get_str(cmd)", ("field", "cmd")),
    ("((unsigned int) ((REC->dev) >> 20))", ("major", "dev")),
    ("((unsigned int) ((REC->dev) & ((1U << 20) - 1)))", ("minor", "dev")),
    ("MINOR(REC->dev)", ("minor", "dev")),
    ("(((REC->ioprio) >> 3) & ((1 << 10) - 1))", ("ignore", None)),
    ("REC->a + REC->b", ("ignore", None)),
    ("__print_symbolic(REC->x, { 1, \"a\" })", ("ignore", None)),
])
def test_classify_arg(expr, expected):
    assert classify_arg(expr) == expected


@pytest.mark.parametrize("bad", ["no quote", '"unterminated', '"ok" garbage'])
def test_unparsable_print_fmt_raises_printfmterror(bad):
    f = fmt([("int a", 8, 4, 1)], '"x"')
    f.print_fmt = bad
    with pytest.raises(PrintFmtError):
        compile_print_fmt(f)


def test_empty_print_fmt_decodes_only_an_empty_payload():
    f = fmt([("int a", 8, 4, 1)], '"x"')
    f.print_fmt = ""
    d = compile_print_fmt(f)
    assert d.decode("") == {} and d.decode("a=1") is None


def test_real_6_18_formats_compile():
    for key in known_formats.FORMATS["6.18"]:
        assert compile_print_fmt(known_formats.event_format("6.18", *key)) is not None


@pytest.mark.parametrize("decl, is_string, rel_loc", [
    ("char comm[16]", True, False),
    ("__data_loc char[] cmd", True, False),
    ("__rel_loc char[] name", True, True),        # v5.17+
    ("__rel_loc u8[] buf", False, True),
    ("unsigned int bytes", False, False),
])
def test_format_fields_know_every_string_kind(decl, is_string, rel_loc):
    from kerntrace.core.tracefs import FormatField, parse_field_decl
    ctype, name, array_len, data_loc = parse_field_decl(decl)
    f = FormatField(name, ctype, 8, 4, False, array_len, data_loc)
    assert (f.is_string, f.rel_loc) == (is_string, rel_loc)
