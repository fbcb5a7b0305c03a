"""funccount and funclatency on kernel functions, in fake kernel eras
(tests/fake_tracefs.py): this machine has neither kprobes nor filtered
function tracing, the fleet's kernels do.  What is checked is what the
kernel would be told (kprobe_events definitions, set_ftrace_filter,
current_tracer), that all of it is undone at the end, and the one line a
host that cannot trace a kernel function gets."""

import os

import pytest

import fake_tracefs
from fake_tracefs import ERAS
from test_ftrace_era_tools import host_of, run  # noqa: F401  (host_of: a fixture)

KALLSYMS = ("ffffffff81000000 T vfs_read\nffffffff81000100 T vfs_write\n"
            "ffffffff81000200 t vfs_notraced\nffffffff81000300 T do_nanosleep\n")
TRACEABLE = "vfs_read\nvfs_write\ndo_nanosleep\n"


@pytest.fixture(autouse=True)
def exit_tracepoint(fs, monkeypatch):
    """sched:sched_process_exit (in every era: funclatency gives up the
    calls of exiting threads there), laid out after the era's common
    fields.  (fs first: monkeypatch must be undone before pyfakefs is, or
    it would put pyfakefs's os module back into the modules it patched.)"""
    extra = fake_tracefs._extra_formats

    def with_exit(formats_era):
        out = extra(formats_era)
        getppid = out[("syscalls", "sys_enter_getppid")]
        common = getppid[getppid.index("format:\n") + 8:getppid.index("\n\n")] + "\n"
        signed = "signed:" in common
        base = 12 if ("common_lock_depth" in common or "common_padding" in common) else 8

        def field(decl, off, size, sign):
            return "\tfield:%s;\toffset:%d;\tsize:%d;%s\n" % (
                decl, off, size, "\tsigned:%d;" % sign if signed else "")
        out[("sched", "sched_process_exit")] = (
            "name: sched_process_exit\nID: 302\nformat:\n%s\n%s%s%s\nprint fmt: "
            "\"comm=%%s pid=%%d prio=%%d\", REC->comm, REC->pid, REC->prio\n"
            % (common, field("char comm[16]", base, 16, 0), field("pid_t pid", base + 16, 4, 1),
               field("int prio", base + 20, 4, 1)))
        return out
    monkeypatch.setattr(fake_tracefs, "_extra_formats", with_exit)


def kernel(host_of, fs, era, writable_filter=False):  # noqa: F811
    t = host_of(era, "raw")
    t.ftrace_filter_writable = writable_filter
    fs.create_file("/proc/kallsyms", contents=KALLSYMS)
    fs.create_file(t.root + "/available_filter_functions", contents=TRACEABLE)
    return t


def probe_writes(t, fname):
    return [text.strip() for path, text, _append in t.writes if path.endswith("/" + fname)]


KPROBE_ERAS = sorted(e for e in ERAS if ERAS[e].kprobes)


@pytest.mark.parametrize("era", KPROBE_ERAS)
def test_funccount_defines_a_kprobe_per_function_and_removes_them(host_of, fs, era):  # noqa: F811
    t = kernel(host_of, fs, era)
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc == 0, err
    assert err.startswith('Tracing 2 functions for "vfs_*"... Hit Ctrl-C to end.\n')
    assert out.splitlines()[:2] == ["", "FUNC                                    COUNT"]
    writes = probe_writes(t, "kprobe_events")
    defs = [w for w in writes if w.startswith("p:")]
    assert sorted(d.split()[1] for d in defs) == ["vfs_read", "vfs_write"], writes
    for d in defs:
        assert "-:%s" % d.split()[0][2:] in writes        # each removed by name
    assert t.read("kprobe_events") == ""


@pytest.mark.parametrize("era", KPROBE_ERAS)
def test_funclatency_defines_entry_and_return_probes(host_of, fs, era):  # noqa: F811
    t = kernel(host_of, fs, era)
    rc, out, err = run("funclatency", ["-d", "0.2", "-u", "do_nanosleep"])
    assert rc == 0, err
    defs = sorted(w.split()[0][0] + " " + w.split()[1]
                  for w in probe_writes(t, "kprobe_events") if w[:2] in ("p:", "r:"))
    assert defs == ["p do_nanosleep", "r do_nanosleep"]
    # a thread's exit ends the calls it has pending
    assert any(p.endswith("events/sched/sched_process_exit/enable") and text.strip() == "1"
               for p, text, _a in t.writes)
    assert t.read("kprobe_events") == ""


def test_function_tracer_counts_one_function_where_the_filter_is_writable(host_of, fs):  # noqa: F811
    t = kernel(host_of, fs, "2.6.32", writable_filter=True)
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_read"])
    assert rc == 0, err
    writes = [(p.rsplit("/", 1)[1], text.strip()) for p, text, _a in t.writes]
    assert ("set_ftrace_filter", "vfs_read") in writes
    assert ("current_tracer", "function") in writes
    assert writes.index(("current_tracer", "nop")) > writes.index(("current_tracer", "function"))
    assert t.read("current_tracer").strip() == "nop"


def test_function_tracer_refuses_several_functions_in_one_line(host_of, fs):  # noqa: F811
    kernel(host_of, fs, "2.6.32", writable_filter=True)
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1
    assert "only one kernel function can be counted with the function tracer" in err


def test_no_kprobes_and_no_function_filter_says_why(host_of, fs):  # noqa: F811
    kernel(host_of, fs, "2.6.32")
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_read"])
    assert rc != 0 and len(err.splitlines()) == 1
    assert ("no kprobe support (kprobe_events missing); function tracer: set_ftrace_filter "
            "not writable: EPERM (Operation not permitted)") in err


def test_a_notrace_function_is_refused_before_anything_is_written(host_of, fs):  # noqa: F811
    t = kernel(host_of, fs, "5.10")
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_notraced"])
    assert rc != 0
    assert err == ("funccount: kernel function vfs_notraced is not traceable (notrace or "
                   "inlined: not in %s/available_filter_functions)\n" % t.root)
    assert probe_writes(t, "kprobe_events") == []


def kprobe_records(t):
    """What the kernel recorded for the kprobes defined so far: dd (4011)
    calling vfs_read 3 times and vfs_write twice, 100 us each, returning
    4096, as pages in the era's layout (the probe formats as the fake
    kernel made them)."""
    from kerntrace.core import known_formats
    from kerntrace.backends.ftrace.rawparse import PageBuilder, encode_payload
    from kerntrace.core.tracefs import parse_format
    defs = {}
    path = t.root + "/kprobe_events"
    for line in (open(path).read().splitlines() if os.path.exists(path) else []):
        kind, place = line.split()[0], line.split()[1]
        group, event = kind[2:].split("/")
        with open("%s/events/%s/%s/format" % (t.root, group, event)) as f:
            defs[(kind[0], place)] = parse_format(f.read(), group)
    calls = [("vfs_read", 0), ("vfs_write", 1), ("vfs_read", 0), ("vfs_read", 1),
             ("vfs_write", 0)]
    pages = {}
    for cpu in range(t.ncpus):
        pb = PageBuilder(known_formats.HEADER_PAGE[t.era.formats_era])
        for i, (func, c) in enumerate(calls):
            start = 1000 * 1000000000 + i * 1000000
            for kind, ts in (("p", start), ("r", start + 100000)):
                fmt = defs.get((kind, func))
                if fmt is not None and c == cpu:
                    # each call returns 4096 (the return probe's fetched value)
                    values = dict((f.name, 4096) for f in fmt.fields
                                  if kind == "r" and not f.name.startswith(("common_", "__")))
                    values.update(__probe_ip=0xffffffff81000000,
                                  __probe_func=0xffffffff81000000,
                                  __probe_ret_ip=0xffffffff81100000)
                    pb.add(encode_payload(fmt, 4011, values), ts)
        pages["per_cpu/cpu%d/trace_pipe_raw" % cpu] = pb.page() if len(pb) else b""
    return pages


@pytest.fixture
def recording_kernel(fs, monkeypatch):
    """make(era): a fake kernel of that era that records the calls above
    once kprobes on them are defined (tests/fake_tracefs.py: FakeTracefs)."""
    fake_tracefs.era_host(fs, monkeypatch, tasks=(("dd", 4011),))

    def make(era):
        t = fake_tracefs.FakeTracefs(fs, era, preload=kprobe_records).install(monkeypatch)
        fs.create_file("/proc/kallsyms", contents=KALLSYMS)
        fs.create_file(t.root + "/available_filter_functions", contents=TRACEABLE)
        return t
    return make


@pytest.mark.parametrize("era", KPROBE_ERAS)
def test_funccount_counts_the_kprobe_hits_of_every_era(recording_kernel, era):
    """The kprobe events' records decode in each era's layout (the payload
    after a lock_depth or padding field on RHEL 6 and 3.0-3.6)."""
    recording_kernel(era)
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc == 0, err
    rows = [l.split() for l in out.splitlines()[2:] if l.strip()]
    assert sorted(rows) == [["vfs_read", "3"], ["vfs_write", "2"]], out


@pytest.mark.parametrize("era", KPROBE_ERAS)
def test_funclatency_times_the_kprobe_pairs_of_every_era(recording_kernel, era):
    recording_kernel(era)
    rc, out, err = run("funclatency", ["-d", "0.2", "-u", "vfs_read"])
    assert rc == 0, err
    # three calls of 100 us: the 64 -> 127 row
    rows = [l.split() for l in out.splitlines() if "->" in l]
    assert [r[:4] for r in rows if r[4] != "0"] == [["64", "->", "127", ":"]], out
    assert [r[4] for r in rows if r[4] != "0"] == ["3"], out


@pytest.mark.parametrize("era", KPROBE_ERAS)
def test_funcslower_prints_the_slow_kprobe_pairs_of_every_era(recording_kernel, era):
    recording_kernel(era)
    rc, out, err = run("funcslower", ["-d", "0.2", "-u", "50", "vfs_read"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["COMM", "PID", "LAT(us)", "RVAL", "FUNC"]
    # (RVAL in hex, as bcc's funcslower prints it: 4096 is 1000)
    assert [l.split() for l in lines[1:]] == [["dd", "4011", "100.00", "1000", "vfs_read"]] * 3
    rc, out, err = run("funcslower", ["-d", "0.2", "-u", "150", "vfs_read"])
    assert rc == 0, err
    assert out.splitlines()[1:] == []
