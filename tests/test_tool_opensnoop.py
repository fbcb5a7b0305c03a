"""opensnoop without a live kernel: which probe the ftrace backend takes
for the path on each kernel era (fake tracefs trees), per-probe field
sources in the model, its columns and its command line."""

import importlib
import os

import pytest

import clirun
from fake_tracefs import COMMON_FIELDS, FakeTracefs, make_elf
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.core import tracefs as core_tracefs
from kerntrace.core.errors import InvalidSpec, UsageError
from kerntrace.core.host import Host
from kerntrace.core.model import (USTR, Event, Field, KernelFunction, SyscallEntry, SyscallExit,
                                  Tracepoint, UserFunction)
from kerntrace.core.output.table import EventTablePrinter
from kerntrace.core.results import Record
from kerntrace.plugins import opensnoop

# Modules a run may import, imported before pyfakefs starts (it patches the
# os module of the modules present when it starts).
for _name in ("kerntrace.backends.ftrace.probes", "kerntrace.core.elfsym",
              "kerntrace.backends.ftrace.kfilter", "kerntrace.backends.ftrace.tasks"):
    importlib.import_module(_name)

STT_FUNC, STB_GLOBAL = 2, 1

# The syscall tracepoints as every era lays them out since v3.x: the path
# is a pointer (an integer field), never a string.
ENTER_FORMAT = ("name: sys_enter_openat\nID: 600\nformat:\n" + COMMON_FIELDS + "\n"
                "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n"
                "\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;\n"
                "\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n"
                "\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;\n"
                "\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;\n\n"
                "print fmt: \"dfd: 0x%08lx, filename: 0x%08lx\", ((unsigned long)(REC->dfd)), "
                "((unsigned long)(REC->filename))\n")
EXIT_FORMAT = ("name: sys_exit_openat\nID: 601\nformat:\n" + COMMON_FIELDS + "\n"
               "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n"
               "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\n"
               "print fmt: \"0x%lx\", REC->ret\n")
SYSCALLS = {("syscalls", "sys_enter_openat"): ENTER_FORMAT,
            ("syscalls", "sys_exit_openat"): EXIT_FORMAT}
# open has the same fields without dfd; creat calls its path "pathname"
for _sc, _path in (("open", "filename"), ("creat", "pathname")):
    SYSCALLS[("syscalls", "sys_enter_" + _sc)] = ENTER_FORMAT.replace(
        "sys_enter_openat", "sys_enter_" + _sc).replace("* filename", "* " + _path)
    SYSCALLS[("syscalls", "sys_exit_" + _sc)] = EXIT_FORMAT.replace(
        "sys_exit_openat", "sys_exit_" + _sc)
# (no openat2: a kernel before v5.6)
NO_OPENAT2 = ("event enter without t:syscalls:sys_enter_openat2: no tracepoint "
              "syscalls:sys_enter_openat2 (syscall tracepoints need CONFIG_FTRACE_SYSCALLS)")
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


@pytest.fixture
def era_host(fs, monkeypatch):
    """make(era, kallsyms functions, **era overrides) -> FakeTracefs with
    the openat tracepoints, /proc/kallsyms and a C library mapped by us."""
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    monkeypatch.setattr(opensnoop.os.path, "exists", os.path.exists)
    fs.create_dir("/var/tmp")

    def make(era, functions=("do_sys_open", "do_sys_openat2"), **overrides):
        t = FakeTracefs(fs, era, extra_events=SYSCALLS, **overrides).install(monkeypatch)
        fs.create_file("/proc/kallsyms", contents="".join(
            "ffffffff81%06x T %s\n" % (i, f) for i, f in enumerate(functions)))
        fs.create_file(LIBC, contents=make_elf([("open", 0x11a0, STT_FUNC, STB_GLOBAL)]))
        fs.create_file("/proc/self/maps", contents=(
            "7f0000000000-7f0000020000 r-xp 00000000 fe:01 1234 %s\n" % LIBC))
        return t
    return make


def check(argv=()):
    tool = opensnoop.OpenSnoop()
    args = tool.parse_args(list(argv))
    args.pid = args.tid = None
    return FtraceBackend().check(tool.measurement(args), Host(mount_tracefs=False))


def enter_of(verdict):
    return [e for e in verdict.plan.events if e.name == opensnoop.ENTER][0]


@pytest.mark.parametrize("era,fetch", [("3.4", "string"), ("3.10", "string"),
                                       ("5.10", "ustring"), ("6.11", "ustring")])
def test_kprobe_fetches_the_path_where_the_kernel_has_kprobes(era_host, era, fetch):
    era_host(era, kprobes=True)
    v = check(["-e"])
    assert v.ok, v.reasons
    enter = enter_of(v)
    assert enter.probe == KernelFunction("do_sys_open", sources={"path": "arg1",
                                                                 "flags": "arg2"})
    # do_sys_open(dfd, filename, flags, mode): the path is the second argument
    assert enter.probe_def == "p:%s/%s do_sys_open path=+0(%%si):%s flags=%%dx:s64\n" % (
        enter.system, enter.event, fetch)
    # -e: the syscalls whose flags are an argument
    exits = [(e.system, e.event, e.fields) for e in v.plan.events if e.name == opensnoop.EXIT]
    assert exits == [("syscalls", "sys_exit_openat", {"ret": "ret"}),
                     ("syscalls", "sys_exit_open", {"ret": "ret"})]
    # --explain and doctor say which probe runs, and why not the tracepoints
    assert list(v.choices) == [
        "event enter from k:do_sys_open (not each(t:syscalls:sys_enter_openat, "
        "t:syscalls:sys_enter_open): t:syscalls:sys_enter_openat: tracepoint "
        "syscalls:sys_enter_openat has no string field filename/pathname; "
        "t:syscalls:sys_enter_open: tracepoint syscalls:sys_enter_open has no string field "
        "filename/pathname)"]
    assert v.choices[0] in v.reasons


def test_every_open_syscall_the_kernel_has_ends_a_pair(era_host):
    era_host("5.10", kprobes=True)
    v = check()
    assert v.ok, v.reasons
    exits = [e.event for e in v.plan.events if e.name == opensnoop.EXIT]
    assert exits == ["sys_exit_openat", "sys_exit_open", "sys_exit_creat"]
    assert ("event exit without t:syscalls:sys_exit_openat2: no tracepoint "
            "syscalls:sys_exit_openat2 (syscall tracepoints need CONFIG_FTRACE_SYSCALLS)"
            in v.choices)


def test_do_sys_openat2_where_do_sys_open_is_gone(era_host):
    era_host("6.11", functions=("do_sys_openat2",), kprobes=True)
    v = check()
    assert v.ok, v.reasons
    assert enter_of(v).probe_def.endswith(" do_sys_openat2 path=+0(%si):ustring\n")
    # the flags are inside struct open_how: with -e the uprobe reads them instead
    v = check(["-e"])
    assert enter_of(v).probe.kind == "uprobe"


def test_uprobe_on_the_c_library_without_kprobes(era_host):
    era_host("6.11", kprobes=False)
    v = check(["-e"])
    assert v.ok, v.reasons
    enter = enter_of(v)
    assert enter.probe == UserFunction("c", "open", sources={"path": "arg0", "flags": "arg1"})
    # open(path, flags, mode): the path is the first argument
    assert enter.probe_def == "p:%s/%s %s:0x11a0 path=+0(%%di):ustring flags=%%si:s64\n" % (
        enter.system, enter.event, LIBC)
    assert v.choices[0].startswith("event enter from each(u:c:open) (not "
                                   "each(t:syscalls:sys_enter_openat, t:syscalls:sys_enter_open)")
    assert "k:do_sys_open: no kprobe support" in v.choices[0]
    # without -e creat() too; this fake C library has no creat
    v = check()
    assert [e.probe.symbol for e in v.plan.events if e.name == opensnoop.ENTER] == ["open"]
    assert "event enter without u:c:creat: %s: no function symbol 'creat'" % LIBC in v.choices


def test_proc_lookup_where_nothing_can_fetch_the_string(era_host):
    era_host("6.11", kprobes=False, uprobes=False)
    v = check()
    assert v.ok, v.reasons
    enter = enter_of(v)
    # the tracepoint, its path left unread: looked up when reported
    assert (enter.system, enter.event) == ("syscalls", "sys_enter_openat")
    assert "path" not in enter.fields
    assert v.choices[0].startswith(
        "event enter from each(t:syscalls:sys_enter_openat, t:syscalls:sys_enter_open, "
        "t:syscalls:sys_enter_openat2, t:syscalls:sys_enter_creat), path from "
        "/proc/<pid>/fd/<ret> after the fact (best-effort) (not each("), v.choices
    assert "k:do_sys_open: no kprobe support" in v.choices[0]
    assert "no uprobe support" in v.choices[0]
    assert [e.event for e in v.plan.events if e.name == opensnoop.ENTER] == [
        "sys_enter_openat", "sys_enter_open", "sys_enter_creat"]
    assert v.choices[1] == NO_OPENAT2


def test_no_proc_lookup_under_a_path_filter(era_host):
    """A FILENAME filter needs the path when the open starts."""
    era_host("6.11", kprobes=False, uprobes=False)
    v = check(["/etc/*"])
    assert not v.ok
    assert v.reasons[0].startswith("event enter: t:syscalls:sys_enter_openat: tracepoint "
                                   "syscalls:sys_enter_openat has no string field filename/"
                                   "pathname; ")
    assert "no uprobe support" in v.reasons[0]


def test_lookups_fill_unread_paths_best_effort(tmp_path):
    from kerntrace.core.lookups import Lookups
    proc = tmp_path / "proc"
    (proc / "42" / "fd").mkdir(parents=True)
    os.symlink("/etc/hostname", str(proc / "42" / "fd" / "3"))
    tool = opensnoop.OpenSnoop()
    args = tool.parse_args([])
    lookups = Lookups(tool.measurement(args), proc=str(proc))
    read = Record(1, {"pid": 42, "ret": 3, "path": "/read/by/a/probe"})
    unread = Record(2, {"pid": 42, "ret": 3, "path": None})
    closed = Record(3, {"pid": 42, "ret": 4, "path": None})
    failed = Record(4, {"pid": 42, "ret": -2, "path": None})
    lookups.apply([read, unread, closed, failed])
    assert read["path"] == "/read/by/a/probe" and not read.best_effort
    assert unread["path"] == "/etc/hostname" and unread.best_effort == {"path"}
    assert closed["path"] is None and closed.best_effort == {"path"}
    assert failed["path"] is None and failed.best_effort == {"path"}
    rows = [opensnoop.path_text(r, None) for r in (read, unread, closed)]
    assert rows == ["/read/by/a/probe", "/etc/hostname (from /proc)", "? (not in /proc)"]


def test_a_lookup_needs_records_with_its_fields():
    from kerntrace.core.model import Count, Measurement, Pair, ProcFdPath, Records
    path = Field("path", USTR, lookup=ProcFdPath("pid", "ret"))
    ev = [Event("a", SyscallEntry("openat"), fields=[path]),
          Event("b", SyscallExit("openat"), fields=[Field("ret")])]
    pair = Pair("a", "b", key=("tid",), carry=("path", "pid"))
    Measurement(ev, Records(("path", "pid", "ret")), pair=pair)
    with pytest.raises(InvalidSpec):
        Measurement(ev, Count(), pair=pair)
    with pytest.raises(InvalidSpec):
        Measurement(ev, Records(("path", "pid")), pair=Pair("a", "b", key=("tid",),
                                                           carry=("path", "pid")))
    with pytest.raises(InvalidSpec):
        Field("ret", lookup=ProcFdPath())


# ---------------------------------------------------------------------------
# The model: a probe's own sources for a field
def test_probe_sources_override_the_fields():
    path = Field("path", USTR, sources=("filename",))
    k = KernelFunction("do_sys_open", sources={"path": "arg1"})
    assert k.sources_for(path) == ("arg1",)
    assert SyscallEntry("openat").sources_for(path) == ("filename",)
    assert k == KernelFunction("do_sys_open", sources={"path": ("arg1",)})
    assert k != KernelFunction("do_sys_open")
    assert hash(k) == hash(KernelFunction("do_sys_open", sources={"path": "arg1"}))
    assert Tracepoint("a", "b", sources={"x": ("y", "z")}).sources_for(Field("x")) == ("y", "z")


@pytest.mark.parametrize("bad", [{"path": "arg 1"}, {"pa-th": "arg1"}, {"path": ("ok", "$x")}])
def test_probe_sources_are_identifiers(bad):
    with pytest.raises(InvalidSpec):
        UserFunction("c", "open", sources=bad)


def test_ebpf_plan_reads_a_probe_own_argument():
    from kerntrace.backends.ebpf import plan as eplan
    path = Field("path", USTR, sources=("filename",))
    fs = eplan._function_field(path, UserFunction("c", "open", sources={"path": "arg0"}))
    assert (fs.kind, fs.member) == ("arg_ustr", 0)
    fs = eplan._function_field(path, KernelFunction("do_sys_open", sources={"path": "arg1"}))
    assert (fs.kind, fs.member) == ("arg_ustr", 1)


# ---------------------------------------------------------------------------
# Columns (bcc 0.26 opensnoop: "%-6s %-16s %4s %3s " then PATH)
def table(argv, records):
    import io
    tool = opensnoop.OpenSnoop()
    args = tool.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    p = tool.printer(args, out, err)
    assert isinstance(p, EventTablePrinter)
    lines = [p.header()] + [p.row(Record(ts, f), None) for ts, f in records]
    return lines


def test_columns_as_bcc_prints_them():
    rec = {"comm": "cat", "pid": 4242, "tid": 4243, "path": "/etc/hostname", "ret": 3}
    bad = dict(rec, path="/etc/nosuch", ret=-2)
    assert table([], [(1000, rec), (2000, bad)]) == [
        "PID    COMM               FD ERR PATH",
        "4242   cat                 3   0 /etc/hostname",
        "4242   cat                -1   2 /etc/nosuch"]
    assert table(["-t", "1"], [(1000, rec)])[1].startswith("4243   cat ")
    assert table(["-L", "1"], [(1000, rec)])[0].startswith("TID    COMM ")
    flags = dict(rec, flags=0o2000001)
    assert table(["-Te"], [(1000000000, flags), (1500000000, flags)]) == [
        "TIME(s)       PID    COMM               FD ERR FLAGS    PATH",
        "0.000000000   4242   cat                 3   0 02000001 /etc/hostname",
        "0.500000000   4242   cat                 3   0 02000001 /etc/hostname"]
    # bcc's -U: "%-6d" UID first (after TIME); "?" where /proc had none
    assert table(["-U"], [(1000, dict(rec, uid=1000)), (2000, dict(rec, uid=None))]) == [
        "UID   PID    COMM               FD ERR PATH",
        "1000  4242   cat                 3   0 /etc/hostname",
        "?     4242   cat                 3   0 /etc/hostname"]


def test_uid_filter_and_column_read_the_uid_context_field():
    tool = opensnoop.OpenSnoop()
    m = tool.measurement(tool.parse_args(["-u", "1000"]))
    assert [(f.field, f.op, f.value, f.events) for f in m.filters] == [("uid", "==", 1000, None)]
    assert "uid" in m.aggregate.fields
    assert "uid" in tool.measurement(tool.parse_args(["-U"])).aggregate.fields
    assert "uid" not in tool.measurement(tool.parse_args([])).aggregate.fields


# ---------------------------------------------------------------------------
# Bad input: one line on stderr, a non-zero exit, nothing traced
@pytest.mark.parametrize("argv,message", [
    (["-p", "abc"], "opensnoop: invalid PID 'abc': expected a process id"),
    (["-p", "0"], "opensnoop: invalid PID '0': expected a process id"),
    (["-t", "-5"], "opensnoop: invalid TID '-5': expected a process id"),
    (["-n", "a:traceoff"], "opensnoop: invalid process name 'a:traceoff'"),
    (["-n", "x!"], "opensnoop: invalid process name 'x!'"),
    (["-n", "a\nb"], "opensnoop: invalid process name 'a\\nb'"),
    (["/etc/*/passwd"], "opensnoop: invalid file name pattern '/etc/*/passwd'"),
    (["-:x"], "opensnoop: unrecognized arguments: -:x"),
    (["-d", "0"], "opensnoop: invalid duration '0'"),
    (["-p", "1", "-t", "1"], "opensnoop: argument -t/-L/--tid: not allowed with argument -p/--pid"),
    (["-f", "O_NOPE"], "opensnoop: invalid open flag 'O_NOPE'"),
    (["-u", "-1"], "opensnoop: invalid UID '-1'"),
    (["-u", "4294967295"], "opensnoop: invalid UID '4294967295'"),
    (["-u", "0:traceoff"], "opensnoop: invalid UID '0:traceoff'"),
    (["-u", "root"], "opensnoop: invalid UID 'root'"),
    (["-f", "O_WRONLY:traceoff"], "opensnoop: invalid open flag 'O_WRONLY:traceoff'"),
    (["-f", "WRONLY"], "opensnoop: invalid open flag 'WRONLY'"),
    (["-f", "O_WRONLY\n"], "opensnoop: invalid open flag 'O_WRONLY?'"),
    (["-f", "O_RDONLY"], "opensnoop: open flag O_RDONLY is 0"),
])
def test_bad_input_is_one_line(argv, message):
    rc, out, err = clirun.run(["opensnoop"] + argv)
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith(message), err
    assert "Traceback" not in err


def test_flag_filter_is_one_mask_on_the_open_flags():
    tool = opensnoop.OpenSnoop()
    m = tool.measurement(tool.parse_args(["-f", "O_WRONLY", "-f", "O_RDWR", "-f", "O_WRONLY"]))
    [flt] = m.filters
    assert (flt.field, flt.op, flt.value, flt.events) == ("flags", "&", os.O_WRONLY | os.O_RDWR,
                                                          ("enter",))
    # open and openat only: their flags are an argument
    syscalls = [p.syscall for p in m.events[0].probes[0].probes]
    assert syscalls == ["openat", "open"]
    assert m.event("enter").field("flags") is not None


def test_parse_rejects_what_a_filter_cannot_carry():
    for text in ("", "a*", "a:b", "x" * 63):
        with pytest.raises(UsageError):
            opensnoop.name_value(text)
    assert opensnoop.path_pattern("*.conf") == "*.conf"
    assert opensnoop.path_pattern("/tmp/a file") == "/tmp/a file"


# ---------------------------------------------------------------------------
# Each: several probes as one alternative
def test_each_is_one_alternative_of_plain_probes():
    from kerntrace.core.model import Each, members
    e = Each(SyscallEntry("openat"), SyscallEntry("creat", sources={"path": "pathname"}))
    assert e.describe() == "each(t:syscalls:sys_enter_openat, t:syscalls:sys_enter_creat)"
    assert members(e) == e.probes and members(SyscallEntry("open")) == (SyscallEntry("open"),)
    assert e == Each(SyscallEntry("openat"), SyscallEntry("creat", sources={"path": "pathname"}))
    assert hash(e) == hash(Each(SyscallEntry("openat"),
                                SyscallEntry("creat", sources={"path": "pathname"})))
    for bad in ((), (e,), (SyscallEntry("open"), SyscallEntry("open")), ("open",)):
        with pytest.raises(InvalidSpec):
            Each(*bad)


def test_ebpf_gives_each_member_its_own_handler():
    """Every member of an Each alternative is a handler of its own (C
    names that do not collide), all in the same role of the pair."""
    from kerntrace.backends.ebpf import codegen
    from kerntrace.backends.ebpf import plan as eplan
    tool = opensnoop.OpenSnoop()
    m = tool.measurement(tool.parse_args([]))
    enter, exit_ = m.events
    planned = []
    for index, ev, field, kind in ((0, enter, "path", "tp_ustr"), (1, exit_, "ret", "tp")):
        for member, probe in enumerate(ev.probes[0].probes):
            src = eplan.FieldSource(field, ev.field(field).type, kind,
                                    "pathname" if probe.name.endswith("creat") else
                                    ("filename" if field == "path" else "ret"),
                                    eplan.STRING_MAX if kind == "tp_ustr" else 8, True)
            planned.append(eplan.PlannedEvent(index, ev, probe, {field: src}, member=member))
    program = codegen.generate(m, eplan.EbpfPlan(planned, output="ringbuf"))
    names = [a.fn_name for a in program.attachments]
    assert len(names) == len(set(names)) == 8
    assert [a.event.probe.name for a in program.attachments] == [
        "sys_enter_openat", "sys_enter_open", "sys_enter_openat2", "sys_enter_creat",
        "sys_exit_openat", "sys_exit_open", "sys_exit_openat2", "sys_exit_creat"]
    assert "args->pathname" in program.text and "args->filename" in program.text
