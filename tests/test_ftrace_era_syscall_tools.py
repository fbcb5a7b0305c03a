"""The system call and process tools through the ftrace backend on every
kernel era of the corpus (fake tracefs trees, tests/fake_tracefs.py), as a
user runs them: killsnoop, syscount, execsnoop and exitsnoop read a known
workload raw (trace_pipe_raw pages in the era's layout) and as text
(trace_pipe lines as the era prints them); a plain saved trace of their
events is refused in one line (the stored formats hold no such event), and
a `kerntrace record` file of the era, which carries them, replays as the
live run printed.  The fakes have no task events (task:task_newtask), so
process ids come from what the tools can tell without them.

The events' formats are laid out as each era's kernel lays them out: the
era's common fields (with `common_lock_depth` on 2.6.32 and RHEL 6,
`common_padding` on 3.0-3.6: payload from offset 12, else 8), its syscall
number field (`nr` up to v4.4, `__syscall_nr` later, none on RHEL 6), the
syscall arguments as unsigned longs from offset 16, and `signed:` columns
only where the era prints them (not on mainline 2.6.32).  They are derived
from the era's stored sys_enter_openat format
(core/formats), the ones checked against the kernel sources.

The workload (each tool must pick its own events out of it):
  bash    100  forks 4242 (execs sleep) and 5000 (yes); kill(4242, SIGKILL) = 0,
               tgkill(4242, 4243, SIGTERM) = -ESRCH, SIGKILL to 5000
  yes     5000 dies of the SIGKILL
  sleep   4242 exit_group(3)
"""

import importlib
import io
import json
import os
import re

import pytest

import kerntrace.backends.ftrace.record  # noqa: F401  (imported before pyfakefs starts)
import kerntrace.core.record  # noqa: F401
from fake_tracefs import ERAS as FAKE_ERAS, FakeTracefs, era_host
from kerntrace.backends.ftrace.rawparse import PageBuilder, encode_payload
from kerntrace.core import known_formats
from kerntrace.core.tracefs import parse_format
from test_ftrace_era_tools import ERAS as BLOCK_ERAS, run

for _name in ("kerntrace.plugins.killsnoop", "kerntrace.plugins.syscount",
              "kerntrace.plugins.exitsnoop", "kerntrace.plugins.execsnoop",
              "kerntrace.core.syscalls"):
    importlib.import_module(_name)

ERAS = sorted(FAKE_ERAS)
T0 = 1000 * 1000000000
ESRCH = 3
NR = {"kill": 62, "tgkill": 234, "exit_group": 231}     # x86_64


def _era_parts(fe):
    """(common field lines, syscall number line or "") of era `fe`, from
    its stored sys_enter_openat format."""
    text = known_formats.FORMATS[fe][("syscalls", "sys_enter_openat")]
    lines = text[text.index("format:\n") + len("format:\n"):].splitlines()
    common = [l for l in lines if "common_" in l]
    nr = [l for l in lines if re.search(r"int (__syscall_)?nr;", l)]
    return common, (nr[0] if nr else "")


def _signed_col(sign):
    return "\tsigned:%d;" % sign


def _field(decl, off, size, sign):
    return "\tfield:%s;\toffset:%d;\tsize:%d;%s" % (decl, off, size, _signed_col(sign))


def syscall_formats(fe, name, args, ids):
    """sys_enter_<name> with `args` [(decl, signed)], sys_exit_<name>.
    (The kernel stores every argument as an unsigned long and prints
    signed:0 for each, as the stored sys_enter_openat formats show.)"""
    common, nr = _era_parts(fe)
    head = "\n".join(common) + "\n\n" + (nr + "\n" if nr else "")
    enter = [_field(decl, 16 + 8 * i, 8, sign) for i, (decl, sign) in enumerate(args)]
    argnames = [d.split()[-1] for d, _s in args]
    fmt = ", ".join("%s: 0x%%08lx" % a for a in argnames)
    vals = ", ".join("((unsigned long)(REC->%s))" % a for a in argnames)
    return {
        ("syscalls", "sys_enter_" + name):
            "name: sys_enter_%s\nID: %d\nformat:\n%s%s\n\nprint fmt: \"%s\", %s\n"
            % (name, ids, head, "\n".join(enter), fmt, vals),
        ("syscalls", "sys_exit_" + name):
            "name: sys_exit_%s\nID: %d\nformat:\n%s%s\n\nprint fmt: \"0x%%lx\", REC->ret\n"
            % (name, ids + 1, head, _field("long ret", 16, 8, 1)),
    }


def tracepoint_format(fe, system, name, ev_id, payload, print_fmt):
    """A tracepoint's format: the era's common fields, then `payload`
    [(decl, size, align, signed)] laid out from where they end."""
    common, _nr = _era_parts(fe)
    off = 12 if any("lock_depth" in l or "padding" in l for l in common) else 8
    lines = []
    for decl, size, align, sign in payload:
        off += -off % align
        lines.append(_field(decl, off, size, sign))
        off += size
    return {(system, name): "name: %s\nID: %d\nformat:\n%s\n\n%s\n\nprint fmt: %s\n"
            % (name, ev_id, "\n".join(common), "\n".join(lines), print_fmt)}


def era_formats(fe):
    char = 0 if fe == "6.18" else 1          # `char` is unsigned on x86 since v6.2
    out = {}
    out.update(syscall_formats(fe, "kill", [("pid_t pid", 0), ("int sig", 0)], 700))
    out.update(syscall_formats(fe, "tkill", [("pid_t pid", 0), ("int sig", 0)], 702))
    out.update(syscall_formats(fe, "tgkill", [("pid_t tgid", 0), ("pid_t pid", 0),
                                              ("int sig", 0)], 704))
    out.update(syscall_formats(fe, "exit_group", [("int error_code", 0)], 706))
    out.update(syscall_formats(fe, "exit", [("int error_code", 0)], 708))
    out.update(tracepoint_format(fe, "raw_syscalls", "sys_exit", 710,
                                 [("long id", 8, 8, 1), ("long ret", 8, 8, 1)],
                                 "\"NR %ld = %ld\", REC->id, REC->ret"))
    out.update(tracepoint_format(fe, "sched", "sched_process_exit", 712,
                                 [("char comm[16]", 16, 1, char), ("pid_t pid", 4, 4, 1),
                                  ("int prio", 4, 4, 1)],
                                 "\"comm=%s pid=%d prio=%d\", REC->comm, REC->pid, REC->prio"))
    out.update(syscall_formats(fe, "execve", [("const char * filename", 0),
                                              ("const char *const * argv", 0),
                                              ("const char *const * envp", 0)], 714))
    out.update(tracepoint_format(fe, "sched", "sched_process_fork", 716,
                                 [("char parent_comm[16]", 16, 1, char),
                                  ("pid_t parent_pid", 4, 4, 1),
                                  ("char child_comm[16]", 16, 1, char),
                                  ("pid_t child_pid", 4, 4, 1)],
                                 "\"comm=%s pid=%d child_comm=%s child_pid=%d\", "
                                 "REC->parent_comm, REC->parent_pid, REC->child_comm, "
                                 "REC->child_pid"))
    # The signal tracepoints as v3.5 and later lay them out (signal_generate
    # with group and result); older eras are left out of the exit tests.
    out.update(tracepoint_format(fe, "signal", "signal_generate", 718,
                                 [("int sig", 4, 4, 1), ("int errno", 4, 4, 1),
                                  ("int code", 4, 4, 1), ("char comm[16]", 16, 1, char),
                                  ("pid_t pid", 4, 4, 1), ("int group", 4, 4, 1),
                                  ("int result", 4, 4, 1)],
                                 "\"sig=%d errno=%d code=%d comm=%s pid=%d grp=%d res=%d\", "
                                 "REC->sig, REC->errno, REC->code, REC->comm, REC->pid, "
                                 "REC->group, REC->result"))
    out.update(tracepoint_format(fe, "signal", "signal_deliver", 720,
                                 [("int sig", 4, 4, 1), ("int errno", 4, 4, 1),
                                  ("int code", 4, 4, 1), ("unsigned long sa_handler", 8, 8, 0),
                                  ("unsigned long sa_flags", 8, 8, 0)],
                                 "\"sig=%d errno=%d code=%d sa_handler=%lx sa_flags=%lx\", "
                                 "REC->sig, REC->errno, REC->code, REC->sa_handler, "
                                 "REC->sa_flags"))
    return out


# (us, cpu, comm, pid, (system, event), fields)
def workload():
    ev = []

    def sc(us, cpu, comm, pid, name, nr, enter, ret):
        ev.append((us, cpu, comm, pid, ("syscalls", "sys_enter_" + name),
                   dict(enter, nr=nr, __syscall_nr=nr)))
        ev.append((us + 20, cpu, comm, pid, ("syscalls", "sys_exit_" + name),
                   dict(ret=ret, nr=nr, __syscall_nr=nr)))
        ev.append((us + 21, cpu, comm, pid, ("raw_syscalls", "sys_exit"),
                   dict(id=nr, ret=ret)))

    sc(1000, 0, "bash", 100, "kill", NR["kill"], dict(pid=4242, sig=9), 0)
    sc(2000, 1, "bash", 100, "tgkill", NR["tgkill"], dict(tgid=4242, pid=4243, sig=15), -ESRCH)
    # bash forks 4242, which execs sleep; bash forks 5000 (yes), killed
    ev.append((500, 1, "bash", 100, ("sched", "sched_process_fork"),
               dict(parent_comm="bash", parent_pid=100, child_comm="bash", child_pid=4242)))
    ev.append((600, 0, "bash", 4242, ("syscalls", "sys_enter_execve"),
               dict(filename=0x55e0, argv=0x7ff0, envp=0x7ff8, nr=59, __syscall_nr=59)))
    ev.append((700, 0, "sleep", 4242, ("syscalls", "sys_exit_execve"),
               dict(ret=0, nr=59, __syscall_nr=59)))
    ev.append((800, 1, "bash", 100, ("sched", "sched_process_fork"),
               dict(parent_comm="bash", parent_pid=100, child_comm="bash", child_pid=5000)))
    ev.append((1500, 1, "bash", 100, ("signal", "signal_generate"),
               dict(sig=9, errno=0, code=0, comm="yes", pid=5000, group=1, result=0)))
    ev.append((1550, 0, "yes", 5000, ("signal", "signal_deliver"),
               dict(sig=9, errno=0, code=0, sa_handler=0, sa_flags=0)))
    ev.append((1600, 0, "yes", 5000, ("sched", "sched_process_exit"),
               dict(comm="yes", pid=5000, prio=120)))
    ev.append((3000, 0, "sleep", 4242, ("syscalls", "sys_enter_exit_group"),
               dict(error_code=3, nr=NR["exit_group"], __syscall_nr=NR["exit_group"])))
    ev.append((3010, 0, "sleep", 4242, ("sched", "sched_process_exit"),
               dict(comm="sleep", pid=4242, prio=120)))
    return sorted(ev, key=lambda e: e[0])


def _syscall_arg(fe, value):
    # Since "tracing: Have syscall trace events show "0x" for values greater
    # than 10" (v6.18): decimal below 10, 0x-hex from 10; bare hex before.
    if fe == "6.18":
        return "%d" % value if 0 <= value < 10 else "0x%x" % value
    return "%x" % value


def text_lines(era):
    fe = FAKE_ERAS[era].formats_era
    flags = BLOCK_ERAS[era][2]
    formats = era_formats(fe)
    lines = []
    for us, cpu, comm, pid, key, f in workload():
        sec, usec = divmod(T0 // 1000 + us, 1000000)
        if flags == 0:
            head = "%16s-%-5d [%03d] %5d.%06d: " % (comm, pid, cpu, sec, usec)
        elif flags == 4:
            head = "%16s-%-5d [%03d] .... %5d.%06d: " % (comm, pid, cpu, sec, usec)
        else:
            head = "%16s-%-7d [%03d] ..... %5d.%06d: " % (comm, pid, cpu, sec, usec)
        system, event = key
        if event.startswith("sys_enter_"):
            fmt = parse_format(formats[key], system)
            args = [x.name for x in fmt.fields if x.offset >= 16]
            body = "sys_%s(%s)" % (event[len("sys_enter_"):],
                               ", ".join("%s: %s" % (a, _syscall_arg(fe, f[a] & (2**64 - 1)))
                                         for a in args))
        elif event.startswith("sys_exit_"):
            body = "sys_%s -> 0x%x" % (event[len("sys_exit_"):], f["ret"] & (2**64 - 1))
        elif key == ("raw_syscalls", "sys_exit"):
            body = "sys_exit: NR %d = %d" % (f["id"], f["ret"])
        elif event == "sched_process_exit":
            body = "%s: comm=%s pid=%d prio=%d" % (event, f["comm"], f["pid"], f["prio"])
        elif event == "sched_process_fork":
            body = "%s: comm=%s pid=%d child_comm=%s child_pid=%d" % (
                event, f["parent_comm"], f["parent_pid"], f["child_comm"], f["child_pid"])
        elif event == "signal_deliver":
            body = "%s: sig=%d errno=0 code=0 sa_handler=%x sa_flags=%x" % (
                event, f["sig"], f["sa_handler"], f["sa_flags"])
        else:
            body = "%s: sig=%d errno=0 code=0 comm=%s pid=%d grp=%d res=%d" % (
                event, f["sig"], f["comm"], f["pid"], f["group"], f["result"])
        lines.append(head + body)
    return "".join(l + "\n" for l in lines)


def raw_pages(era, ncpus=2):
    fe = FAKE_ERAS[era].formats_era
    formats = dict((k, parse_format(v, k[0])) for k, v in era_formats(fe).items())
    pages = {}
    for cpu in range(ncpus):
        pb = PageBuilder(known_formats.HEADER_PAGE[fe])
        for us, c, comm, pid, key, f in workload():
            if c == cpu:
                assert pb.add(encode_payload(formats[key], pid, f), T0 + us * 1000)
        pages["per_cpu/cpu%d/trace_pipe_raw" % cpu] = pb.page() if len(pb) else b""
    return pages


@pytest.fixture
def host_of(fs, monkeypatch):
    era_host(fs, monkeypatch, tasks=(("bash", 100),))
    fs.create_dir("/home/u")

    def make(era, path):
        preload = raw_pages(era) if path == "raw" else {"trace_pipe": text_lines(era)}
        t = FakeTracefs(fs, era, preload=preload, raw=(path == "raw"),
                        extra_events=era_formats(FAKE_ERAS[era].formats_era)
                        ).install(monkeypatch)
        # The kernel's cache of task names (every era has it): raw records
        # carry no name, and these kernels' fakes have no task events.
        fs.create_file(os.path.join(t.root, "saved_cmdlines"),
                       contents="100 bash\n4242 sleep\n5000 yes\n")
        return t
    return make


def killsnoop_rows(out):
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"], out
    return [l.split()[1:] for l in lines[1:] if l.strip()]


@pytest.mark.parametrize("path", ("raw", "text"))
@pytest.mark.parametrize("era", ERAS)
def test_killsnoop_every_era(host_of, era, path):
    host_of(era, path)
    rc, out, err = run("killsnoop", ["-d", "0.2"])
    assert rc == 0, err
    assert killsnoop_rows(out) == [["100", "bash", "9", "4242", "0"],
                                   ["100", "bash", "15", "4242", "-3"]]


@pytest.mark.parametrize("path", ("raw", "text"))
@pytest.mark.parametrize("era", ERAS)
def test_syscount_every_era(host_of, era, path):
    host_of(era, path)
    rc, out, err = run("syscount", ["-d", "0.2"])
    assert rc == 0, err
    rows = dict((l.split()[0], int(l.split()[1])) for l in out.splitlines()
                if l.split()[:1] in (["kill"], ["tgkill"]))
    assert rows == {"kill": 1, "tgkill": 1}, out



def record(argv):
    from kerntrace.core.pluginhost import PluginHost
    from kerntrace.core.record import record as record_cmd
    err = io.StringIO()
    rc = record_cmd(PluginHost(load_third_party=False), argv, err)
    return rc, err.getvalue()



@pytest.mark.parametrize("era", ERAS)
def test_a_plain_saved_trace_is_refused_in_one_line(host_of, fs, era):
    """The stored formats (core/formats) hold no syscall event but openat:
    a plain `cat trace` file of kill() cannot be decoded, and says how."""
    host_of(era, "text")
    fs.create_file("/home/u/plain.trace", contents="# tracer: nop\n#\n" + text_lines(era))
    for tool in ("killsnoop", "syscount"):
        rc, out, err = run(tool, ["--input", "/home/u/plain.trace"])
        assert rc != 0 and out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "no known format for" in err and "kerntrace record" in err


@pytest.mark.parametrize("era", ERAS)
def test_a_recording_of_every_era_replays_as_the_live_run(host_of, fs, era):
    host_of(era, "text")
    rc, live, err = run("killsnoop", ["-d", "0.2"])
    assert rc == 0, err
    rc, err = record(["-o", "/home/u/k.rec", "-d", "0.2", "killsnoop"])
    assert rc == 0, err
    rc, out, err = run("killsnoop", ["--input", "/home/u/k.rec"])
    assert rc == 0, err
    # (a replay does not ask this host's /proc for the sender's PID)
    assert killsnoop_rows(out) == [["-"] + r[1:] for r in killsnoop_rows(live)]
    rc, err = record(["-o", "/home/u/s.rec", "-d", "0.2", "syscount"])
    assert rc == 0, err
    rc, out, err = run("syscount", ["--input", "/home/u/s.rec"])
    assert rc == 0, err
    rows = dict((l.split()[0], int(l.split()[1])) for l in out.splitlines()
                if l.split()[:1] in (["kill"], ["tgkill"]))
    assert rows == {"kill": 1, "tgkill": 1}, out


def run_until_stopped(tool, argv, seconds=0.3):
    """A tool without a duration option, run as its console script would,
    and stopped as a user stops it (^C): `seconds` after it says it is
    tracing (however long its start takes on a busy machine)."""
    import signal
    import threading
    import time
    from kerntrace.core.cli import run_tool as cli_run_tool
    out, err = io.StringIO(), io.StringIO()
    done = threading.Event()

    def interrupt():
        deadline = time.time() + 60
        while "Tracing" not in err.getvalue() and time.time() < deadline:
            if done.wait(0.01):
                return
        if not done.wait(seconds):
            os.kill(os.getpid(), signal.SIGINT)
    stopper = threading.Thread(target=interrupt)
    stopper.start()
    try:
        rc = cli_run_tool(tool, ["--backend", "ftrace"] + list(argv), out=out, err=err,
                          prog=tool)
    finally:
        done.set()
        stopper.join()
    return rc, out.getvalue(), err.getvalue()


# signal_generate's group and result fields arrived in v3.5: the 3.0-3.6,
# RHEL 6 and 2.6.32 eras are left out of the exit tests (their signal
# events are not modelled here).
SIGNAL_ERAS = [e for e in ERAS if e not in ("2.6.32", "rhel6", "3.4")]


@pytest.mark.parametrize("path", ("raw", "text"))
@pytest.mark.parametrize("era", SIGNAL_ERAS)
def test_exitsnoop_every_era(host_of, era, path):
    host_of(era, path)
    rc, out, err = run_until_stopped("exitsnoop", [])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE"]
    # no task events on these fakes: process ids are taken from thread ids
    assert [l.split() for l in lines[1:]] == [
        ["yes", "5000", "100", "5000", "0.00", "signal", "9", "(KILL)"],
        ["sleep", "4242", "100", "4242", "0.00", "code", "3"]]


@pytest.mark.parametrize("path", ("raw", "text"))
@pytest.mark.parametrize("era", ERAS)
def test_execsnoop_every_era(host_of, era, path):
    host_of(era, path)
    rc, out, err = run_until_stopped("execsnoop", [])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PCOMM", "PID", "PPID", "RET", "ARGS"]
    # (ARGS: /proc has no 4242 here, and the syscall event holds pointers)
    assert [l.split() for l in lines[1:]] == [["sleep", "4242", "100", "0", "?"]]


@pytest.mark.parametrize("era", SIGNAL_ERAS)
def test_recordings_of_exits_and_execs_replay_as_the_live_runs(host_of, fs, era):
    host_of(era, "text")
    for tool in ("exitsnoop", "execsnoop"):
        rc, live, err = run_until_stopped(tool, [])
        assert rc == 0, err
        rc, err = record(["-o", "/home/u/%s.rec" % tool, "-d", "0.2", tool])
        assert rc == 0, err
        rc, out, err = run(tool, ["--input", "/home/u/%s.rec" % tool])
        assert rc == 0, err
        assert len(live.splitlines()) > 1 and out == live


# ---------------------------------------------------------------------------
# opensnoop: the path from a kprobe's string fetch (do_sys_open), the result
# from the open syscalls' exits, on every era with kprobes
OPENS = [("/etc/passwd", 3), ("/nonexistent", -2)]


def open_records(t):
    """cat (300) opening OPENS, as the kernel records them once the run
    defined its kprobe: its records and the openat exits, in the era's
    layout."""
    defs = {}
    path = t.root + "/kprobe_events"
    for line in (open(path).read().splitlines() if os.path.exists(path) else []):
        group, event = line.split()[0][2:].split("/")
        if line.split()[1] == "do_sys_open":
            with open("%s/events/%s/%s/format" % (t.root, group, event)) as f:
                defs["enter"] = parse_format(f.read(), group)
    if "enter" not in defs:
        return {}
    fe = t.era.formats_era
    exit_fmt = parse_format(t.formats[("syscalls", "sys_exit_openat")], "syscalls")
    pb = PageBuilder(known_formats.HEADER_PAGE[fe])
    for i, (name, ret) in enumerate(OPENS):
        ts = T0 + i * 1000000
        pb.add(encode_payload(defs["enter"], 300, {"__probe_ip": 0xffffffff81000000,
                                                   "path": name, "flags": 0}), ts)
        pb.add(encode_payload(exit_fmt, 300, {"nr": 257, "__syscall_nr": 257, "ret": ret}),
               ts + 20000)
    return {"per_cpu/cpu0/trace_pipe_raw": pb.page(), "per_cpu/cpu1/trace_pipe_raw": b""}


@pytest.mark.parametrize("era", [e for e in ERAS if FAKE_ERAS[e].kprobes])
def test_opensnoop_every_kprobe_era(fs, monkeypatch, era):
    era_host(fs, monkeypatch, tasks=(("cat", 300),))
    fe = FAKE_ERAS[era].formats_era
    t = FakeTracefs(fs, era, preload=open_records,
                    extra_events=syscall_formats(fe, "open", [("const char * filename", 0),
                                                              ("int flags", 0),
                                                              ("umode_t mode", 0)], 730)
                    ).install(monkeypatch)
    fs.create_file("/proc/kallsyms", contents="ffffffff81000000 T do_sys_open\n")
    fs.create_file(t.root + "/available_filter_functions", contents="do_sys_open\n")
    rc, out, err = run("opensnoop", ["-d", "0.2"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "COMM", "FD", "ERR", "PATH"], out
    assert [l.split() for l in lines[1:]] == [["300", "cat", "3", "0", "/etc/passwd"],
                                              ["300", "cat", "-1", "2", "/nonexistent"]]


@pytest.mark.parametrize("era", ERAS)
def test_doctor_says_the_ftrace_backend_runs_them_on_every_era(host_of, era):
    host_of(era, "raw")
    from kerntrace.core import doctor as doctor_mod
    from kerntrace.core.pluginhost import PluginHost
    out, err = io.StringIO(), io.StringIO()
    assert doctor_mod.doctor(PluginHost(), ["--json"], out, err) == 0
    tools = dict((t["tool"], t) for t in json.loads(out.getvalue())["tools"])
    runs = ["killsnoop", "syscount", "execsnoop", "opensnoop"]
    if era in SIGNAL_ERAS:
        runs.append("exitsnoop")
    for name in runs:
        assert tools[name]["verdicts"]["ftrace"]["ok"], tools[name]
