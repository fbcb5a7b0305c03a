"""Finding the distribution's bcc from a virtualenv (or any CPython),
without --system-site-packages and without putting dist-packages on
sys.path; ignoring the unrelated PyPI package named "bcc"; saying why not
in one line when it cannot.

Each case runs in a fresh interpreter (this venv's Python), so what it puts
in sys.modules cannot leak into other tests.

Also, without a kernel: the other prerequisites bcc needs from the host
(kernel headers and whether they match, privileges from CapEff) and the
removal of probe definitions bcc leaves in tracefs (pyfakefs).
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from kerntrace.backends.ebpf import bccfind

REAL_BCC_DIRS = [d for d in bccfind.candidate_dirs()
                 if bccfind.looks_like_bcc(os.path.join(d, "bcc"))]
needs_distro_bcc = pytest.mark.skipif(not REAL_BCC_DIRS,
                                      reason="the distribution's bcc is not installed")

IMPOSTOR = '''"""A lattice library that happens to be called bcc (like the PyPI one)."""
LATTICE = True
'''


def run_py(code, pythonpath=None, python_opts=(), env_drop=()):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    for name in env_drop:
        env.pop(name, None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    r = subprocess.run([sys.executable] + list(python_opts) + ["-c", textwrap.dedent(code)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["stderr"] = r.stderr
    return result


REPORT = """
import json, sys
from kerntrace.backends.ebpf import bccfind
st = bccfind.find_bcc(%s)
mod = st.module
import_bcc = None
if mod is not None:
    import bcc
    import_bcc = bcc is mod
print(json.dumps({
    "ok": st.ok, "how": st.how, "why_not": st.why_not,
    "file": getattr(mod, "__file__", None),
    "has_bpf": hasattr(mod, "BPF"),
    "table": "bcc.table" in sys.modules,
    "import_bcc_is_it": import_bcc,
    "dist_on_path": [p for p in sys.path if p.rstrip("/").endswith(("dist-packages", "site-packages"))
                     and not p.startswith(sys.prefix)],
    "partial": [m for m in sys.modules if m == "bcc" or m.startswith("bcc.")] if mod is None else [],
}))
"""


@needs_distro_bcc
def test_finds_the_distro_bcc_from_the_venv():
    r = run_py(REPORT % "")
    assert r["ok"] and r["has_bpf"] and r["table"]          # its own submodule imports work
    assert any(r["file"].startswith(d) for d in REAL_BCC_DIRS)
    assert r["import_bcc_is_it"]                            # `import bcc` now gives the real one
    assert r["dist_on_path"] == []                          # nothing added to sys.path
    assert "\n" not in r["how"] and "bcc" in r["how"]


@needs_distro_bcc
def test_ignores_the_pypi_impostor_on_sys_path(tmp_path):
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text(IMPOSTOR)
    r = run_py(REPORT % "", pythonpath=[str(tmp_path)])
    assert r["ok"] and r["has_bpf"]
    assert not r["file"].startswith(str(tmp_path))
    assert r["import_bcc_is_it"]


@needs_distro_bcc
def test_replaces_an_impostor_already_imported(tmp_path):
    (tmp_path / "bcc.py").write_text(IMPOSTOR)
    r = run_py("import bcc\nassert bcc.LATTICE\n" + REPORT % "", pythonpath=[str(tmp_path)])
    assert r["ok"] and r["has_bpf"] and not r["file"].startswith(str(tmp_path))


@needs_distro_bcc
def test_bcc_loads_without_warnings_or_bytecode_left_in_its_directory(tmp_path):
    # A copy of the distribution's bcc without its caches stands for the
    # distribution's directory as an interpreter other than the distro's
    # sees it: no valid cache, so the source compiles (bcc's invalid
    # escapes: DeprecationWarning, SyntaxWarning on 3.12+) and, as root,
    # Python would write __pycache__ there.
    copy = str(tmp_path / "bcc")
    shutil.copytree(os.path.join(REAL_BCC_DIRS[0], "bcc"), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = run_py(REPORT % ("dirs=[%r]" % str(tmp_path)), python_opts=["-W", "always"],
               env_drop=["PYTHONDONTWRITEBYTECODE"])
    assert r["ok"] and r["has_bpf"] and r["file"].startswith(copy)
    assert r["stderr"] == ""
    assert not os.path.exists(os.path.join(copy, "__pycache__"))
    r = run_py("import json, sys\nfrom kerntrace.backends.ebpf import bccfind\n"
               "bccfind.find_bcc(dirs=[%r])\n"
               "print(json.dumps({'after': sys.dont_write_bytecode}))" % str(tmp_path),
               env_drop=["PYTHONDONTWRITEBYTECODE"])
    assert r["after"] is False          # only bcc's import is kept from writing bytecode


def test_no_bcc_anywhere_says_what_to_install(tmp_path):
    r = run_py(REPORT % ("dirs=[%r]" % str(tmp_path)))
    assert not r["ok"] and r["partial"] == []
    assert "python3-bpfcc" in r["why_not"] and "\n" not in r["why_not"]


def test_missing_libbcc_is_named(tmp_path):
    pkg = tmp_path / "bcc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .libbcc import lib\nclass BPF(object):\n    pass\n")
    (pkg / "libbcc.py").write_text(
        "raise OSError('libbcc.so.0: cannot open shared object file: No such file or directory')\n")
    (pkg / "table.py").write_text("")
    r = run_py(REPORT % ("dirs=[%r]" % str(tmp_path)))
    assert not r["ok"]
    assert "libbcc.so.0" in r["why_not"] and "install libbcc" in r["why_not"]
    assert r["partial"] == []                              # nothing half-imported left behind


def test_a_bcc_without_bpf_is_not_accepted(tmp_path):
    pkg = tmp_path / "bcc"
    pkg.mkdir()
    for f in ("__init__.py", "libbcc.py", "table.py"):
        (pkg / f).write_text("")
    r = run_py(REPORT % ("dirs=[%r]" % str(tmp_path)))
    assert not r["ok"] and "not a usable bcc" in r["why_not"]


def test_candidate_dirs_cover_debian_and_fedora_layouts():
    dirs = bccfind.candidate_dirs()
    assert dirs[0] == "/usr/lib/python3/dist-packages"
    ver = "python%d.%d" % sys.version_info[:2]
    assert "/usr/lib64/%s/site-packages" % ver in dirs
    assert "/usr/lib/%s/site-packages" % ver in dirs


# ---------------------------------------------------------------------------
# The other things bcc needs from the host, found without a kernel.
from kerntrace.backends.ebpf import headers, sysbpf, tracefs_probes  # noqa: E402


def _headers_tree(root, release, uts=None, name=None):
    build = root / (name or ("linux-headers-" + (uts or release)))
    (build / "include" / "generated").mkdir(parents=True)
    (build / "include" / "linux").mkdir()
    (build / "include" / "linux" / "kconfig.h").write_text("")
    if uts:
        (build / "include" / "generated" / "utsrelease.h").write_text(
            '#define UTS_RELEASE "%s"\n' % uts)
    mods = root / "modules" / release
    mods.mkdir(parents=True)
    (mods / "build").symlink_to(build)
    return str(root / "modules")


def test_headers_of_another_release_are_reported(tmp_path):
    mods = _headers_tree(tmp_path, "6.18.4-custom", uts="6.1.0-56-amd64")
    h = headers.locate(release="6.18.4-custom", environ={}, modules_root=mods)
    assert h.found and h.version == "6.1.0-56-amd64" and h.matches is False
    assert h.describe() == "headers 6.1.0-56-amd64 for kernel 6.18.4-custom: " \
                           "tracepoint/uprobe args only"


def test_matching_headers(tmp_path):
    mods = _headers_tree(tmp_path, "6.1.0-56-amd64", uts="6.1.0-56-amd64")
    h = headers.locate(release="6.1.0-56-amd64", environ={}, modules_root=mods)
    assert h.matches is True and "6.1.0-56-amd64" in h.describe()


def test_headers_version_from_the_directory_name(tmp_path):
    mods = _headers_tree(tmp_path, "5.15.0-1", name="linux-headers-5.10.0-9-amd64")
    h = headers.locate(release="5.15.0-1", environ={}, modules_root=mods)
    assert h.version == "5.10.0-9-amd64" and h.matches is False


def test_no_headers_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(headers, "KHEADERS", str(tmp_path / "no-kheaders.tar.xz"))
    h = headers.locate(release="6.18.4-custom", environ={}, modules_root=str(tmp_path))
    assert not h.found and "linux-headers" in h.describe() and "\n" not in h.describe()


def test_bcc_kernel_source_wins(tmp_path):
    src = tmp_path / "src"
    (src / "include" / "config").mkdir(parents=True)
    (src / "include" / "linux").mkdir()
    (src / "include" / "linux" / "kconfig.h").write_text("")
    (src / "include" / "config" / "kernel.release").write_text("6.18.4-custom\n")
    h = headers.locate(release="6.18.4-custom", environ={"BCC_KERNEL_SOURCE": str(src)},
                       modules_root=str(tmp_path))
    assert h.source == "BCC_KERNEL_SOURCE" and h.matches is True


STATUS = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t%016x\nCapEff:\t%016x\n"


@pytest.mark.parametrize("caps, ok, detail", [
    (0, False, "not root"),
    ((1 << 39) | (1 << 38), True, "CAP_BPF and CAP_PERFMON"),
    (1 << 39, False, "not root"),
    (1 << 21, True, "CAP_SYS_ADMIN"),
])
def test_privileges_from_capabilities(tmp_path, monkeypatch, caps, ok, detail):
    status = tmp_path / "status"
    status.write_text(STATUS % (caps, caps))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    a = sysbpf.privileges(str(status))
    assert a.ok is ok and detail in a.detail


def test_bcc_probe_events_of_dead_processes_are_removed(fs):
    # pyfakefs: tracefs files are plain files here; removal is an appended
    # "-:group/name" line, exactly what the kernel is given.
    t = "/sys/kernel/tracing"
    me = os.getpid()
    fs.create_file(t + "/uprobe_events", contents=(
        "p:uprobes/p__tmp_x_0x1139_bcc_%d /tmp/x:0x0000000000001139\n"
        "p:uprobes/p__tmp_y_0x1139_bcc_999999 /tmp/y:0x0000000000001139\n"
        "p:uprobes/someone_else /tmp/z:0x10\n" % me))
    fs.create_file(t + "/kprobe_events", contents=(
        # a number no PID can be: dead, never an OverflowError
        "p:kprobes/p_vfs_read_bcc_%s vfs_read\n" % ("9" * 25)))
    assert len(tracefs_probes.remove_dead(t)) == 2
    fs.remove_object(t + "/kprobe_events")
    fs.remove_object(t + "/uprobe_events")
    fs.create_file(t + "/uprobe_events", contents=(
        "p:uprobes/p__tmp_x_0x1139_bcc_%d /tmp/x:0x0000000000001139\n"
        "p:uprobes/p__tmp_y_0x1139_bcc_999999 /tmp/y:0x0000000000001139\n"
        "p:uprobes/someone_else /tmp/z:0x10\n" % me))
    fs.create_file(t + "/kprobe_events", contents="")
    assert [e[2] for e in tracefs_probes.bcc_events(t)] == [
        "p__tmp_x_0x1139_bcc_%d" % me, "p__tmp_y_0x1139_bcc_999999"]
    done = tracefs_probes.remove_dead(t)
    assert len(done) == 1 and "999999" in done[0]
    text = open(t + "/uprobe_events").read()
    assert text.endswith("-:uprobes/p__tmp_y_0x1139_bcc_999999\n")
    assert tracefs_probes.remove_own(t, ["p__tmp_x_0x1139"]) == []
    assert open(t + "/uprobe_events").read().endswith(
        "-:uprobes/p__tmp_x_0x1139_bcc_%d\n" % me)


def test_cleanup_reports_bcc_probes_once_worded_and_failures_as_problems(fs, monkeypatch):
    """`kerntrace cleanup` prints "removed <what>" once (not "removed
    removed ..."), and a definition the kernel refuses to remove is a
    problem (cleanup exits 1), never listed as removed."""
    import io
    from kerntrace.backends.ebpf.backend import EbpfBackend
    from kerntrace.core.host import Host
    t = "/sys/kernel/tracing"
    fs.create_file(t + "/uprobe_events",
                   contents="p:uprobes/p__tmp_y_0x1139_bcc_999999 /tmp/y:0x0000000000001139\n")
    host = Host()
    monkeypatch.setattr(host, "tracefs_path", lambda: t)
    err, problems = io.StringIO(), []
    removed = EbpfBackend().cleanup_stale(host, stderr=err, problems=problems)
    assert removed == ["uprobes/p__tmp_y_0x1139_bcc_999999 from uprobe_events "
                       "(bcc probe of dead PID 999999)"]
    assert err.getvalue() == "kerntrace: removed %s left by a process that is gone\n" % removed[0]
    assert problems == []

    def refused(path, text, append=False):
        raise OSError(errno.EBUSY, "busy")
    monkeypatch.setattr(tracefs_probes.tracefs, "write_text", refused)
    problems = []
    assert EbpfBackend().cleanup_stale(host, problems=problems) == []
    assert problems == ["uprobe_events: cannot remove uprobes/p__tmp_y_0x1139_bcc_999999: "
                        "Device or resource busy"]
