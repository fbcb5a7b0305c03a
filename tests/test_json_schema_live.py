"""Every built-in tool's --json output, traced live on each backend that
can run it here, validates against the documented schema
(core/schema/, docs/json.md) with the jsonschema validator; and both
backends give the same structure (keys and value types) for the same
workload."""

import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

import kernstate
import workloads
from clirun import finish_interrupted, run, start, wait_for_stderr_line
from kerntrace.core.output.jsonlines import schema
from kerntrace.core.pluginhost import PluginHost

pytestmark = [pytest.mark.live, pytest.mark.slow]

TOOLS = PluginHost(load_third_party=False).tools()
VALIDATOR = jsonschema.Draft7Validator(schema())


@pytest.fixture(scope="module")
def loop():
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    with workloads.loop_device(size_mb=8) as dev:
        yield dev


def workload(dev):
    """Something for every tool to see: block writes, opens, an exec and
    exit, a signal, getppid calls (the sample uprobe target)."""
    workloads.direct_writes(dev, 8)
    workloads.open_file_n_times(4)
    subprocess.check_call(["true"])
    os.kill(os.getpid(), 0)
    subprocess.check_call([sys.executable, "-c", "import os\nfor _ in range(50): os.getppid()"])


def traced_json(tool, backend, dev):
    """(stdout lines, stderr) of `tool` traced with --json around the
    workload, ended by Ctrl-C (every tool prints its unfinished interval);
    None when the backend cannot run the tool on this host."""
    argv = [tool] + list(TOOLS[tool].sample_args) + ["--backend", backend, "--json"]
    p = start(argv)
    try:
        wait_for_stderr_line(p, "Tracing with", timeout=120)
    except AssertionError:
        p.send_signal(signal.SIGINT)
        out, err = finish_interrupted(p)
        if p.returncode not in (0, 130, -signal.SIGINT):
            return None, err    # the backend says why it cannot run the tool here
        raise
    workload(dev)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = finish_interrupted(p)
    assert p.returncode == 0, (argv, err)
    return out.splitlines(), err


def backends():
    names = ["ftrace"]
    if kernstate.ebpf_skip_reason() is None:
        names.append("ebpf")
    return names


@pytest.mark.parametrize("backend", ["ftrace", "ebpf"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tools_json_validates(tool, backend, loop, tmp_path):
    if backend not in backends():
        pytest.skip("eBPF: %s" % kernstate.ebpf_skip_reason())
    lines, err = traced_json(tool, backend, loop[0])
    if lines is None:
        pytest.skip("%s cannot run %s on this host: %s" % (backend, tool, err.strip()))
    assert lines, "%s on %s printed nothing: %s" % (tool, backend, err)
    objs = [json.loads(line) for line in lines]
    for obj in objs:
        VALIDATOR.validate(obj)
        assert obj["tool"] == tool and obj["backend"] == backend
    if objs[0]["type"] in ("histogram", "counts"):
        check_merge_of_two_copies(tool, objs, tmp_path)


def check_merge_of_two_copies(tool, objs, tmp_path):
    """The tool's real output, as two hosts' files, merges: printed by the
    tool's own printer without an error, and as JSON with twice each total."""
    path = tmp_path / "host.json"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    rc, text, err = run(["merge", str(path), str(path)])
    # (stderr: at most the lost-events warnings of the merged data)
    assert rc == 0 and all(line.startswith("WARNING") for line in err.splitlines()), err
    assert text.strip() or not any(o.get("histograms") or o.get("counts") for o in objs)
    rc, out, err = run(["merge", "--json", str(path), str(path)])
    assert rc == 0, err
    (merged,) = [json.loads(line) for line in out.splitlines()]
    VALIDATOR.validate(merged)
    if merged["type"] == "counts":
        total = sum(c["count"] for o in objs for c in o["counts"])
        assert sum(c["count"] for c in merged["counts"]) == 2 * total
    else:
        total = sum(h["count"] for o in objs for h in o["histograms"])
        assert sum(h["count"] for h in merged["histograms"]) == 2 * total


def shape(value):
    """The structure of a JSON value: objects by their keys, arrays by the
    union of their items' shapes, scalars by type (int and float alike)."""
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, shape(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(sorted(set(shape(v) for v in value), key=repr)))
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


@pytest.mark.parametrize("argv", [["biolatency", "-D"], ["tpcount", "block:block_rq_issue"],
                                  ["biosnoop"]])
def test_both_backends_give_the_same_structure(argv, loop):
    if "ebpf" not in backends():
        pytest.skip("eBPF: %s" % kernstate.ebpf_skip_reason())
    dev, major, minor = loop
    shapes = {}
    for backend in ("ftrace", "ebpf"):
        p = start(argv + ["--backend", backend, "--json"])
        wait_for_stderr_line(p, "Tracing with", timeout=120)
        workloads.direct_writes(dev, 8)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = finish_interrupted(p)
        assert p.returncode == 0, err
        objs = [json.loads(line) for line in out.splitlines()]
        if objs and objs[0]["type"] == "event":
            # events of our loop device only: other I/O may lack a field's value
            objs = [o for o in objs if o["fields"].get("comm") == "dd"]
        assert objs, (backend, err)
        for o in objs:
            o.pop("backend")
        shapes[backend] = set(shape(o) for o in objs)
    assert shapes["ftrace"] == shapes["ebpf"]
