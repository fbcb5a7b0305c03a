"""docs/plugins.md shows only code that works.

Every python code block runs, in order, in one namespace (the guide's first
block has the imports).  A block that mentions Measurement( must leave a
valid Measurement behind (a new one, or a Tool whose measurement() builds
one); every Tool class the guide defines passes the checks plugin loading
applies and builds its measurement and printer from its own examples.  A
block after an HTML comment "verbatim: PATH" is a quotation of the example
package instead: it must appear in PATH character for character."""

import io
import os
import re
import shlex
import sys

import pytest

from kerntrace.core.model import Measurement
from kerntrace.core.output.base import Printer
from kerntrace.core.pluginhost import _check
from kerntrace.core.tool import Tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "docs", "plugins.md")
EXAMPLE = os.path.join(ROOT, "examples", "runqlat")

_BLOCK = re.compile(r"^(?:<!-- verbatim: (?P<path>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$",
                    re.S | re.M)


def blocks():
    """(language, verbatim path or None, text, line number) of each fenced
    block of the guide."""
    with open(GUIDE) as f:
        text = f.read()
    return [(m.group("lang"), m.group("path"), m.group("body"), text.count("\n", 0, m.start()) + 1)
            for m in _BLOCK.finditer(text)]


def python_blocks():
    return [(body, line) for lang, path, body, line in blocks() if lang == "python" and not path]


def quoted_blocks():
    return [(path, body, line) for lang, path, body, line in blocks() if path]


@pytest.fixture(scope="module")
def guide_namespace():
    """The guide's code run as a reader would paste it, block by block:
    (namespace, [(block, line, names it bound)])."""
    namespace = {"__name__": "kerntrace_guide"}
    created = []
    for body, line in python_blocks():
        before = dict(namespace)
        exec(compile(body, "%s:%d" % (GUIDE, line), "exec"), namespace)
        new = {k: v for k, v in namespace.items() if before.get(k) is not v}
        created.append((body, line, new))
    return namespace, created


def guide_tools(namespace):
    return [v for v in namespace.values()
            if isinstance(v, type) and issubclass(v, Tool) and v is not Tool
            and v.__module__ == "kerntrace_guide"]


def test_the_guide_has_code_to_check():
    assert len(python_blocks()) >= 8
    assert len(quoted_blocks()) >= 4


@pytest.mark.parametrize("path, body, line", quoted_blocks(),
                         ids=lambda v: v if isinstance(v, str) and "\n" not in v else None)
def test_quoted_code_is_the_example_package(path, body, line):
    with open(os.path.join(ROOT, path)) as f:
        source = f.read()
    assert body in source, "docs/plugins.md line %d is not in %s any more" % (line, path)


def test_every_measurement_block_builds_a_valid_measurement(guide_namespace):
    _ns, created = guide_namespace
    for body, line, new in created:
        if "Measurement(" not in body:
            continue
        built = [v for v in new.values() if isinstance(v, Measurement)]
        tools = [v for v in new.values() if isinstance(v, type) and issubclass(v, Tool)]
        assert built or tools, "block at line %d builds no Measurement" % line


def _tool_argvs(tool):
    """The argument lists of the tool's own -h examples (or none)."""
    argvs = []
    for command, _what in tool.examples or (("%s" % tool.name, ""),):
        words = shlex.split(command)
        assert words[0] == tool.name, "example %r does not start with %s" % (command, tool.name)
        argvs.append(words[1:])
    return argvs


def test_every_guide_tool_works(guide_namespace):
    namespace, _created = guide_namespace
    tools = guide_tools(namespace)
    assert {t.name for t in tools} >= {"execcount", "syscallcount", "execsnoop_lite"}
    for cls in tools:
        tool = cls()
        assert _check(tool, Tool) is None, cls.name
        for argv in _tool_argvs(tool):
            args = tool.parse_args(argv, prog=tool.name)
            assert isinstance(tool.measurement(args), Measurement)
            assert isinstance(tool.printer(args, io.StringIO(), io.StringIO()), Printer)


def test_the_hook_in_the_guide_returns_its_tool(guide_namespace):
    namespace, _created = guide_namespace
    tools = namespace["kerntrace_tools"]()
    assert [t.name for t in tools] == ["execcount"]


def test_the_runqlat_measurement_is_the_one_the_guide_describes():
    sys.path.insert(0, EXAMPLE)
    try:
        from kerntrace_runqlat.runqlat import RunqLat
        tool = RunqLat()
        m = tool.measurement(tool.parse_args([]))
    finally:
        sys.path.remove(EXAMPLE)
        for name in [n for n in sys.modules if n.split(".")[0] == "kerntrace_runqlat"]:
            del sys.modules[name]
    assert [e.name for e in m.events] == ["wakeup_new", "wakeup", "run"]
    assert [(p.category, p.name) for e in m.events for p in e.probes] == [
        ("sched", "sched_wakeup_new"), ("sched", "sched_wakeup"), ("sched", "sched_switch")]
    assert [f.sources for e in m.events for f in e.fields] == [
        ("pid",), ("pid",), ("next_pid",), ("next_comm",)]
    assert (m.pair.start, m.pair.mark, m.pair.end) == ("wakeup_new", "wakeup", "run")


@pytest.mark.live
@pytest.mark.ebpf
def test_each_backend_takes_the_alternative_the_guide_says(guide_namespace):
    """Section 4: for the openat path string the eBPF backend reads the
    syscall tracepoint's pointer; the ftrace backend cannot, and takes the
    kprobe where the kernel has kprobe_events, else the uprobe on libc."""
    from kerntrace.core.host import Host
    from kerntrace.core.model import KernelFunction, SyscallEntry, UserFunction
    from kerntrace.core.pluginhost import PluginHost
    namespace, _created = guide_namespace
    measurement = namespace["opens"]
    host = Host()
    backends = {b.name: b for b in PluginHost(load_third_party=False).backends()}
    chosen = {}
    for name in ("ebpf", "ftrace"):
        verdict = backends[name].check(measurement, host)
        assert verdict.ok, "%s: %s" % (name, verdict.reasons)
        chosen[name] = verdict.plan.events[0].probe
    assert isinstance(chosen["ebpf"], SyscallEntry)
    kprobe_events = os.path.exists(os.path.join(host.tracefs_path(), "kprobe_events"))
    assert type(chosen["ftrace"]) is (KernelFunction if kprobe_events else UserFunction)


# The guide's tools, run as a plugin's would be: in a process of their own,
# stopped with Ctrl-C (SIGINT) where they have no count.
_RUN_GUIDE_TOOL = """
import sys
sys.path[:0] = [{tests!r}, {example!r}]
import test_example_plugin_docs as docs
from kerntrace.core.pluginhost import PluginHost
from kerntrace.core.runner import run
namespace = docs.run_guide()
tools = dict((cls.name, cls()) for cls in docs.guide_tools(namespace))
tools["opens"] = docs.records_tool(namespace["opens"])
tool = tools[sys.argv[1]]
args = tool.parse_args(sys.argv[2:], prog=tool.name)
sys.exit(run(tool, args, PluginHost(load_third_party=False)))
"""


def records_tool(measurement):
    """A tool printing the records of one of the guide's Records
    measurements, one column per field."""
    from kerntrace.core.api import Column, EventTablePrinter, Tool

    class GuideRecords(Tool):
        name = "opens"
        summary = "The guide's measurement."

        def measurement(self, args):
            return measurement

        def printer(self, args, out, err):
            return EventTablePrinter(out, err, banner="Tracing... Hit Ctrl-C to end.",
                                     columns=[Column(f.upper(), f, 0)
                                              for f in measurement.aggregate.fields])

    return GuideRecords()


def run_guide():
    """The guide's code run as a module would (for the subprocesses)."""
    namespace = {"__name__": "kerntrace_guide"}
    for body, line in python_blocks():
        exec(compile(body, "%s:%d" % (GUIDE, line), "exec"), namespace)
    return namespace


def run_guide_tool(name, argv, workload, stop):
    import signal
    import subprocess
    import clirun
    code = _RUN_GUIDE_TOOL.format(tests=os.path.dirname(os.path.abspath(__file__)),
                                  example=EXAMPLE)
    p = subprocess.Popen([sys.executable, "-c", code, name] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, cwd="/")
    try:
        clirun.wait_for_stderr_line(p, "Ctrl-C")
        workload()
        if stop:
            import time
            time.sleep(1.0)             # let the last events reach the reader
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:            # a failed check: stop it as a user would
            p.send_signal(signal.SIGINT)
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert p.returncode == 0 and "Traceback" not in err, err
    return out


@pytest.mark.live
@pytest.mark.parametrize("backend", [pytest.param("ftrace", marks=pytest.mark.live),
                                     pytest.param("ebpf", marks=pytest.mark.ebpf)])
def test_the_guide_tools_run_live(backend, tmp_path):
    """execcount, syscallcount and execsnoop_lite as the guide writes them,
    over 5 executions of a program with a name of its own."""
    import shutil
    import subprocess
    comm = "ktguide%d" % (os.getpid() % 10 ** 7)
    prog = str(tmp_path / comm)
    shutil.copy(shutil.which("true"), prog)

    def five_execs():
        for _ in range(5):
            subprocess.check_call([prog])

    common = ["--backend", backend]
    out = run_guide_tool("execcount", common + ["-i", "60"], five_execs, stop=True)
    rows = [l.split() for l in out.splitlines() if l.split()[:1] == [comm]]
    assert rows == [[comm, "5"]], out

    out = run_guide_tool("execsnoop_lite", common, five_execs, stop=True)
    rows = [l.split() for l in out.splitlines() if comm in l]
    assert len(rows) == 5 and all(r[1:] == [comm, prog] for r in rows), out

    out = run_guide_tool("syscallcount", common + ["-c", comm, "3", "1"], five_execs,
                         stop=False)
    counts = dict((tuple(l.split()[:2]), int(l.split()[2])) for l in out.splitlines()
                  if len(l.split()) == 3 and l.split()[1] == comm)
    # Each run of the program opens and reads its libraries the same way.
    assert set(counts) == {("openat", comm), ("read", comm)}, out
    assert all(n > 0 and n % 5 == 0 for n in counts.values()), out


@pytest.mark.live
@pytest.mark.parametrize("backend", [pytest.param("ftrace", marks=pytest.mark.live),
                                     pytest.param("ebpf", marks=pytest.mark.ebpf)])
def test_the_guide_path_alternatives_see_a_programs_opens(backend, tmp_path):
    """Section 4's `opens`, whichever alternative the backend takes here
    (on ftrace without kprobes the uprobe on libc): cat's open() of each
    of three files is one record with its path."""
    import shutil
    import subprocess
    comm = "ktopen%d" % (os.getpid() % 10 ** 7)
    prog = str(tmp_path / comm)
    shutil.copy(shutil.which("cat"), prog)
    paths = [str(tmp_path / ("file%d" % i)) for i in range(3)]
    for path in paths:
        with open(path, "w") as f:
            f.write("x\n")

    def cat_files():
        for path in paths:
            subprocess.check_call([prog, path], stdout=subprocess.DEVNULL)

    out = run_guide_tool("opens", ["--backend", backend], cat_files, stop=True)
    rows = [l.split() for l in out.splitlines() if comm in l and str(tmp_path) in l]
    assert [r[1:] for r in rows] == [[comm, path] for path in paths], out
