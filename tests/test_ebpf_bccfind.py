"""Finding the distribution's bcc from a virtualenv (or any CPython),
without --system-site-packages and without putting dist-packages on
sys.path; ignoring the unrelated PyPI package named "bcc"; saying why not
in one line when it cannot.

Each case runs in a fresh interpreter (this venv's Python), so what it puts
in sys.modules cannot leak into other tests.
"""

import json
import os
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


def run_py(code, pythonpath=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


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
