"""The single-file build (scripts/build-zipapp -> kerntrace.pyz) runs from a
bare directory with a python3 that has no kerntrace installed, on Python
3.6 and on the newest Python of this host; a symlink named iolatency is
iolatency, traced live on the kernel."""

import configparser
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

import kernstate
import pythons
import workloads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY36 = pythons.find(6)
PYTHONS = [pytest.param(PY36, id="python3.6",
                        marks=pytest.mark.skipif(PY36 is None, reason=pythons.missing(6))),
           pytest.param(pythons.newest(), id="newest")]

pytestmark = pytest.mark.slow


def version():
    about = {}
    with open(os.path.join(ROOT, "core", "__init__.py")) as f:
        exec(f.read(), about)
    return about["__version__"]


def setup_cfg_tools():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = cfg.get("options.entry_points", "console_scripts").strip().splitlines()
    return {line.split("=")[0].strip() for line in lines} - {"kerntrace"}


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist") / "kerntrace.pyz")
    subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "build-zipapp"), out],
                          stdout=subprocess.DEVNULL)
    return out


@pytest.fixture
def bare(tmp_path, pyz, request):
    """A directory holding only kerntrace.pyz and an `iolatency` symlink to
    it, and an environment whose `python3` is the Python under test."""
    python = request.param
    probe = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('kerntrace') is None)"],
                           stdout=subprocess.PIPE, universal_newlines=True, cwd=str(tmp_path))
    if probe.stdout.strip() != "True":
        pytest.skip("%s has kerntrace installed: it could not show the archive is "
                    "self-contained" % python)
    app = tmp_path / "app"
    app.mkdir()
    target = str(app / "kerntrace.pyz")
    with open(pyz, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read())
    os.chmod(target, 0o755)
    os.symlink("kerntrace.pyz", str(app / "iolatency"))
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    os.symlink(python, str(pybin / "python3"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PATH"] = str(pybin) + os.pathsep + "/usr/sbin:/usr/bin:/sbin:/bin"
    return str(app), env


def run(app, env, argv):
    p = subprocess.run(argv, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("bare", PYTHONS, indirect=True)
def test_runs_as_kerntrace(bare):
    app, env = bare
    assert run(app, env, ["./kerntrace.pyz", "version"]) == (0, "kerntrace %s\n" % version(), "")
    # The archive carries setup.cfg's entry points: every tool is there,
    # also with third-party plugins disabled.
    for extra in ({}, {"KERNTRACE_DISABLE_PLUGINS": "1"}):
        rc, out, err = run(app, dict(env, **extra), ["./kerntrace.pyz", "list"])
        assert (rc, err) == (0, "")
        assert {line.split()[0] for line in out.splitlines()} == setup_cfg_tools()
    rc, out, err = run(app, env, ["./kerntrace.pyz", "--help"])
    assert rc == 0 and "kerntrace" in out and err == ""


@pytest.mark.parametrize("bare", PYTHONS, indirect=True)
def test_runs_as_the_tool_it_is_named(bare):
    app, env = bare
    rc, out, err = run(app, env, ["./iolatency", "-h"])
    assert (rc, out) == (0, "") and err.startswith("USAGE: iolatency ")
    os.rename(os.path.join(app, "iolatency"), os.path.join(app, "nosuchtool"))
    rc, out, err = run(app, env, ["./nosuchtool"])
    assert rc == 2 and err.count("\n") == 1 and "nosuchtool" in err


WRITES = 200


@pytest.mark.live
@pytest.mark.parametrize("bare", PYTHONS, indirect=True)
def test_iolatency_symlink_traces_the_kernel(bare):
    app, env = bare
    why = kernstate.live_skip_reason()
    if why:
        pytest.skip(why)
    with workloads.loop_device() as (dev, major, minor):
        time.sleep(0.3)        # let the kernel finish reading the new device
        p = subprocess.Popen(["./iolatency", "-d", "%d,%d" % (major, minor), "1"], cwd=app,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen = b""
            end = time.time() + 60
            while b"Tracing block I/O." not in seen and time.time() < end and p.poll() is None:
                if select.select([p.stdout], [], [], 0.2)[0]:
                    seen += os.read(p.stdout.fileno(), 65536)
            assert b"Tracing block I/O." in seen, p.stderr.read() if p.poll() is not None else seen
            workloads.direct_writes(dev, WRITES)
            time.sleep(0.5)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    out = (seen + out).decode()
    assert (p.returncode, err.decode()) == (0, "")
    assert out.endswith("\nEnding tracing...\n")
    counts = [int(line.split(":")[1].split("|")[0]) for line in out.splitlines()
              if "->" in line and ":" in line]
    assert sum(counts) == WRITES, out


@pytest.mark.parametrize("bare", PYTHONS, indirect=True)
def test_replays_a_plain_trace_with_the_formats_in_the_archive(bare):
    """The stored kernel formats (package data, core/formats/) load from the
    archive: a plain `cat trace` file replays with them."""
    app, env = bare
    trace = os.path.join(ROOT, "tests", "data", "traces", "replay-block-6.18.txt")
    rc, out, err = run(app, env, ["./iolatency", "--input", trace])
    # (the file has a lost-events marker, which the replay reports)
    assert (rc, err) == (0, "WARNING: 5 events lost in this interval (dropped by the kernel)\n")
    assert sum(int(line.split(":")[1].split("|")[0]) for line in out.splitlines()
               if "->" in line and ":" in line) > 0, out


@pytest.mark.parametrize("bare", PYTHONS, indirect=True)
def test_carries_the_json_schema_and_merges(bare, tmp_path):
    """The JSON Schema (package data, core/schema/) is in the archive, and
    a host with only the archive can merge hosts' --json files."""
    app, env = bare
    with open(os.path.join(ROOT, "core", "schema", "output-v1.json")) as f:
        assert run(app, env, ["./kerntrace.pyz", "schema"]) == (0, f.read(), "")
    trace = os.path.join(ROOT, "tests", "data", "traces", "replay-block-6.18.txt")
    rc, out, err = run(app, env, ["./iolatency", "--json", "--input", trace])
    assert rc == 0 and json.loads(out.splitlines()[0])["schema_version"] == 1
    (tmp_path / "a.json").write_text(out)
    rc, merged, err = run(app, env, ["./kerntrace.pyz", "merge", "--json", "--per-host",
                                     str(tmp_path / "a.json"), str(tmp_path / "a.json")])
    assert rc == 0, err
    (obj,) = [json.loads(line) for line in merged.splitlines()]
    assert obj["hosts"][0]["files"] == 2
