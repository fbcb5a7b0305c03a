"""Nothing a dependency prints reaches stdout, whatever the output format.

With kernel headers bcc cannot use (BCC_KERNEL_SOURCE pointing nowhere),
libbcc prints "Unable to find kernel headers ..." with std::cout on file
descriptor 1 at every compile: it used to become the first line of the
tool's output (so --json and --prometheus did not parse) and doctor's
output 17 times.  The user is told once, on stderr, in kerntrace's words;
--backend auto runs the tool on ftrace.
"""

import json
import os
import threading

import pytest

import clirun
import workloads
from test_output_prometheus import parse as parse_prometheus

pytestmark = [pytest.mark.live, pytest.mark.ebpf]

NOWHERE = "/nonexistent-kerntrace-headers"
BCC_WORDS = "Unable to find kernel headers"


@pytest.fixture(autouse=True)
def no_usable_headers(monkeypatch):
    """Every tool run here sees headers bcc cannot use."""
    monkeypatch.setenv("BCC_KERNEL_SOURCE", NOWHERE)


def told_once(err):
    """The one stderr line about the headers, in our words."""
    assert BCC_WORDS not in err, err
    lines = [l for l in err.splitlines() if "kernel headers" in l]
    assert len(lines) == 1, err
    assert lines[0].startswith("kerntrace: ") and NOWHERE in lines[0], err
    return lines[0]


def with_io(dev):
    """Direct writes on our loop device while a tool runs: output to parse."""
    stop = threading.Event()

    def work():
        while not stop.is_set():
            workloads.direct_writes(dev, 8)
            stop.wait(0.05)
    t = threading.Thread(target=work)
    t.start()
    return lambda: (stop.set(), t.join())


@pytest.mark.parametrize("tool, args", [("biolatency", ["1", "2"]), ("biosnoop", ["2"]),
                                        ("iolatency", ["1", "2"])])
@pytest.mark.parametrize("fmt", ["table", "--json", "--prometheus"])
def test_output_is_only_the_tools_own(tool, args, fmt):
    with workloads.loop_device() as (dev, major, minor):
        disk = os.path.basename(dev) if tool != "iolatency" else "%d,%d" % (major, minor)
        argv = [tool, "-d", disk] + ([] if fmt == "table" else [fmt]) + args
        done = with_io(dev)
        try:
            rc, out, err = clirun.run(argv)
            if fmt == "table":
                ref = clirun.run(argv[:1] + ["--backend", "ftrace"] + argv[1:])
        finally:
            done()
    assert rc == 0, err
    assert BCC_WORDS not in out
    line = told_once(err)
    assert line.endswith("; running on ftrace"), err
    if fmt == "--json":
        objs = [json.loads(l) for l in out.splitlines()]
        assert objs and all(o["backend"] == "ftrace" for o in objs), out
    elif fmt == "--prometheus":
        samples, meta = parse_prometheus(out)
        assert samples and meta, out
    else:
        # It starts as a run on ftrace starts.
        assert ref[0] == 0, ref[2]
        first = [l for l in out.splitlines() if l.strip()][0]
        assert first == [l for l in ref[1].splitlines() if l.strip()][0], (out, ref[1])


def test_doctor_json_parses_and_says_it_once():
    rc, out, err = clirun.run(["doctor", "--json"], timeout=300)
    assert rc == 0, err
    report = json.loads(out)
    told_once(err)
    headers = [c for c in report["capabilities"]
               if c["backend"] == "ebpf" and c["name"] == "kernel_headers"]
    assert len(headers) == 1 and not headers[0]["ok"] and NOWHERE in headers[0]["detail"]
    assert all(t["backend"] != "ebpf" for t in report["tools"]), report["tools"]


def test_doctor_text_never_shows_bccs_words():
    rc, out, err = clirun.run(["doctor"], timeout=300)
    assert rc == 0, err
    assert BCC_WORDS not in out
    assert out.startswith("kerntrace doctor: ")
    told_once(err)
