"""`pip install` with the pips that Python 3.6 hosts have: the pip bundled
with Python 3.6 (18.1, as `python3.6 -m venv` installs it) and RHEL 7/8's
pip 9 with setuptools 39.2.  Both predate PEP 517 and build only through
a setup.py.  Each installs into a fresh venv from this checkout, and the
installed commands must run."""

import os
import subprocess

import pytest

import pythons

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY36 = pythons.find(6)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(PY36 is None, reason=pythons.missing(6))]


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=pythons.pip_env(), timeout=600, **kw)
    assert p.returncode == 0, "%s failed:\n%s%s" % (" ".join(cmd), p.stdout, p.stderr)
    return p.stdout, p.stderr


def fresh_venv(path):
    run([PY36, "-m", "venv", str(path)])
    return str(path / "bin")


def check_installed_commands(bindir):
    out, err = run([os.path.join(bindir, "kerntrace"), "list"], cwd="/")
    assert err == ""
    assert "iolatency" in out.split() and "biolatency" in out.split()
    out, err = run([os.path.join(bindir, "iolatency"), "-h"], cwd="/")
    assert (out + err).startswith("USAGE: iolatency ")      # perf-tools' usage, on stderr


def test_python36_bundled_pip_installs(tmp_path):
    bindir = fresh_venv(tmp_path / "venv")
    version, _ = run([os.path.join(bindir, "pip"), "--version"])
    assert int(version.split()[1].split(".")[0]) < 19       # pre-PEP 517: needs setup.py
    run([os.path.join(bindir, "pip"), "install", "-q", ROOT])
    check_installed_commands(bindir)


def test_rhel_pip9_with_setuptools_39_installs(tmp_path):
    bindir = fresh_venv(tmp_path / "venv")
    pip = os.path.join(bindir, "pip")
    wheels = str(tmp_path / "wheels")
    # The bundled pip fetches kerntrace's dependencies (pip 9's default
    # index address no longer answers everywhere); pip 9 then builds and
    # installs kerntrace itself with setuptools 39.2, as on RHEL 7/8.
    run([pip, "download", "-q", "-d", wheels, ROOT])
    run([pip, "install", "-q", "pip==9.0.3", "setuptools==39.2.0"])
    version, _ = run([pip, "--version"])
    assert version.startswith("pip 9.0.3 ")
    run([pip, "install", "-q", "--no-index", "--find-links", wheels, ROOT])
    check_installed_commands(bindir)
