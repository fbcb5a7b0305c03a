"""--print-program prints exactly what a run loads or writes, byte for byte.

Each test takes one plan (check() of a real tool's measurement for the same
arguments on a loop device of our own), prints it as --print-program does,
then runs it for real while recording what actually reaches the kernel:
the C text handed to bcc, or every write through tracefs (and the instance
mkdir).  The run must also count the workload's I/O, so a session that
loaded or wrote something else would fail.

The plan decides every name it creates (the ftrace instance, probe names),
so within one plan nothing needs normalising.  Between processes only the
PID-bearing names differ: the CLI comparison replaces
`kerntrace-<pid>-<tool><n>` by `kerntrace-PID-<tool>N` (normalise()).
"""

import os
import re

import pytest

from kerntrace.core import tracefs as core_tracefs
from kerntrace.core.backend import RunOptions
from kerntrace.core.host import Host
from kerntrace.core.pluginhost import PluginHost

import clirun
import kernstate
import workloads

N = 24


def plugin_backend(name):
    for b in PluginHost(load_third_party=False).backends():
        if b.name == name:
            return b
    pytest.skip("the %s backend is not installed" % name)


def tool_run(tool_name, argv, backend_name):
    """(backend, measurement, verdict, options) as `kerntrace <tool> argv
    --backend <backend>` would make them."""
    tool = PluginHost(load_third_party=False).tools()[tool_name]
    args = tool.parse_args(argv)
    m = tool.measurement(args)
    options = RunOptions(tool=tool.name)
    b = plugin_backend(backend_name)
    v = b.check(m, Host(), options)
    if not v.ok:
        reason = kernstate.ebpf_skip_reason() if backend_name == "ebpf" else None
        if reason or (backend_name == "ebpf" and any("headers" in r for r in v.reasons)):
            pytest.skip("the eBPF backend cannot run here: %s" % (reason or v.reasons))
        pytest.fail("%s cannot run %s: %s" % (backend_name, tool_name, v.reasons))
    return b, m, v, options


def total(report):
    d = report.data
    if isinstance(d, list):
        return len(d)
    if hasattr(d, "histograms"):
        return sum(h.count for h in d.histograms.values())
    return sum(d.counts.values())


def run_counting(session, dev_path, n):
    """Trace n direct writes with an already started session."""
    session.wait(0.2)
    workloads.direct_writes(dev_path, n)
    seen = 0
    for _ in range(40):
        session.wait(0.1)
        seen += total(session.collect())
        if seen >= n:
            break
    session.wait(0.2)
    return seen + total(session.collect())


# ---------------------------------------------------------------------------
class TracefsWrites(object):
    """Every write under the tracefs root while installed, as the lines
    --print-program uses (instance.ControlFiles): the real writes go on."""

    def __init__(self, monkeypatch, root):
        self.root = root.rstrip("/") + "/"
        self.lines = []
        self.recording = True
        real_write, real_mkdir = core_tracefs.write_text, os.mkdir

        def write_text(path, text, append=False):
            if self.recording and path.startswith(self.root):
                value = text[:-1] if text.endswith("\n") else text
                if os.path.basename(path) == "trace" and not value:
                    self.lines.append("echo > %s" % path)
                else:
                    self.lines.append("echo '%s' %s %s" % (value, ">>" if append else ">", path))
            return real_write(path, text, append=append)

        def mkdir(path, *a, **kw):
            if self.recording and str(path).startswith(self.root):
                self.lines.append("mkdir %s" % path)
            return real_mkdir(path, *a, **kw)
        monkeypatch.setattr(core_tracefs, "write_text", write_text)
        monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.live
@pytest.mark.parametrize("tool_name", ["iolatency", "biosnoop"])
def test_ftrace_print_program_is_every_write_of_the_run(monkeypatch, tool_name):
    with workloads.loop_device() as (path, major, minor):
        name = path.rsplit("/", 1)[1]
        argv = ["-d", "%d,%d" % (major, minor)] if tool_name == "iolatency" else ["-d", name]
        b, m, v, options = tool_run(tool_name, argv, "ftrace")
        printed = b.open(m, v, options).program_text()
        s = b.open(m, v, options)
        spy = TracefsWrites(monkeypatch, v.plan.tracefs_root)
        with s:
            spy.recording = False           # start() is over: what it wrote is complete
            seen = run_counting(s, path, N)
        monkeypatch.undo()
    assert seen == N
    # what start() recorded is what --print-program printed, byte for byte ...
    assert "\n".join(s.ops.log) + "\n" == printed
    # ... and the kernel saw exactly those writes, in that order
    assert spy.lines == [l for l in printed.splitlines() if not l.startswith("#")]
    assert spy.lines[0] == "mkdir %s" % os.path.join(v.plan.tracefs_root, "instances",
                                                     v.plan.instance_name)
    assert any(l.endswith("/filter") and "dev == %d" % ((major << 20) | minor) in l
               for l in spy.lines)
    # (iolatency: an instance per event, every one of them in the record)
    mkdirs = [l for l in spy.lines if l.startswith("mkdir ")]
    assert mkdirs == ["mkdir %s" % os.path.join(v.plan.tracefs_root, "instances", n)
                      for n in (v.plan.event_instances or (v.plan.instance_name,))]
    assert len(mkdirs) == (2 if tool_name == "iolatency" else 1)


class _RecordingBcc(object):
    """The distro's bcc module; BPF(text=...) records the text it is given."""

    def __init__(self, bcc):
        self._bcc = bcc
        self.texts = []

    def __getattr__(self, name):
        return getattr(self._bcc, name)

    def BPF(self, *args, **kwargs):  # noqa: N802 (bcc's name)
        self.texts.append(kwargs.get("text"))
        return self._bcc.BPF(*args, **kwargs)


@pytest.mark.live
@pytest.mark.ebpf
@pytest.mark.parametrize("tool_name", ["iolatency", "biosnoop"])
def test_ebpf_print_program_is_the_c_bcc_compiles(tool_name, monkeypatch):
    # bcc compiles (a cached compiled object is loaded without bcc, under
    # a key made from this same text: test_ebpf_cache_live.py).
    monkeypatch.setenv("KERNTRACE_BPF_CACHE", "off")
    with workloads.loop_device() as (path, major, minor):
        name = path.rsplit("/", 1)[1]
        argv = ["-d", "%d,%d" % (major, minor)] if tool_name == "iolatency" else ["-d", name]
        b, m, v, options = tool_run(tool_name, argv, "ebpf")
        printed = b.open(m, v, options).program_text()
        s = b.open(m, v, options)
        s.bcc = spy = _RecordingBcc(s.bcc)
        with s:
            seen = run_counting(s, path, N)
        # what the user sees with --print-program for the same arguments
        rc, out, err = clirun.run([tool_name, "--backend", "ebpf", "--print-program"] + argv)
    assert seen == N
    assert spy.texts == [printed.encode()]
    assert rc == 0, err
    assert out == printed


def normalise(text):
    """PID-bearing names (only those differ between two processes)."""
    text = re.sub(r"kerntrace-\d+-([a-z0-9_]*?)\d+\b", r"kerntrace-PID-\1N", text)
    return re.sub(r"kerntrace_\d+(_\d+)?", "kerntrace_PID", text)


def test_normalise_replaces_only_pid_bearing_names():
    assert normalise("mkdir /t/instances/kerntrace-4242-iolatency0\n"
                     "echo '1' > /t/instances/kerntrace-4242-iolatency0/events/block/x/enable"
                     ) == ("mkdir /t/instances/kerntrace-PID-iolatencyN\n"
                           "echo '1' > /t/instances/kerntrace-PID-iolatencyN/events/block/x/enable")
    assert normalise("p:kerntrace_77/kerntrace_77_3 /bin/x:0x10") == \
        "p:kerntrace_PID/kerntrace_PID /bin/x:0x10"
    assert normalise("echo 'dev == 7340032' > filter") == "echo 'dev == 7340032' > filter"


@pytest.mark.live
def test_ftrace_cli_print_program_is_the_plan_of_the_same_arguments():
    with workloads.loop_device() as (path, major, minor):
        argv = ["-d", "%d,%d" % (major, minor)]
        b, m, v, options = tool_run("iolatency", argv, "ftrace")
        printed = b.open(m, v, options).program_text()
        rc, out, err = clirun.run(["iolatency", "--backend", "ftrace", "--print-program"] + argv)
    assert rc == 0, err
    assert normalise(out) == normalise(printed)


@pytest.mark.live
def test_explain_and_print_program_of_one_run_describe_one_plan():
    """One process, one plan: the instance and filters --explain names are
    the ones --print-program writes (nothing is decided twice)."""
    with workloads.loop_device() as (path, major, minor):
        dev = (major << 20) | minor
        rc, out, err = clirun.run(["iolatency", "--backend", "ftrace", "--explain",
                                   "--print-program", "-d", "%d,%d" % (major, minor)])
    assert rc == 0, err
    # (bulk pairing: an instance per event)
    m = re.search(r"^kerntrace: ftrace: instances (kerntrace-\d+-iolatency\d+) \(start\), "
                  r"(kerntrace-\d+-iolatency\d+) \(done\) \(one per event\), "
                  r"(\d+) KB per CPU each", err, re.M)
    assert m, err
    assert "kerntrace: ftrace: event start <- block:block_rq_issue; kernel filter dev == %d" \
        % dev in err.splitlines(), err
    insts = ["/instances/%s" % m.group(i) for i in (1, 2)]
    lines = out.splitlines()
    assert [l for l in lines if l.startswith("mkdir ")] == [
        l for l in lines[:2] if l.endswith(insts[0]) or l.endswith(insts[1])]
    assert lines[0].endswith(insts[0]) and lines[1].endswith(insts[1])
    for inst in insts:
        assert any(l.startswith("echo '%s' > " % m.group(3)) and
                   l.endswith(inst + "/buffer_size_kb") for l in lines)
    assert any(l.startswith("echo 'dev == %d' > " % dev) and
               l.endswith(insts[0] + "/events/block/block_rq_issue/filter") for l in lines)
    assert any(l.endswith(insts[1] + "/events/block/block_rq_complete/enable") for l in lines)
