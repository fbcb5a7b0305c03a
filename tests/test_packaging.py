"""Installed names live under kerntrace.* only; never generic top-level
packages like core or plugins in site-packages."""

import glob
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_installs_only_the_kerntrace_namespace(tmp_path):
    subprocess.check_call([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "-w", str(tmp_path), ROOT],
                          stdout=subprocess.DEVNULL)
    wheel = glob.glob(str(tmp_path / "kerntrace-*.whl"))[0]
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"kerntrace", [t for t in tops if t.endswith(".dist-info")][0]}
    for pkg in ("core", "core/output", "backends/ebpf", "backends/ftrace", "plugins"):
        assert "kerntrace/%s/__init__.py" % pkg in names
    assert "kerntrace/__init__.py" not in names  # a namespace, shared with nobody else
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for cmd in ("kerntrace", "iolatency", "biolatency", "biosnoop", "iosnoop", "bitesize"):
        assert "\n%s = kerntrace.core." % cmd in "\n" + text


@pytest.mark.skipif(not os.path.isdir("/opt/kerntrace"), reason="install.sh has not been run on this host")
def test_user_install_has_no_generic_top_level_packages():
    site = glob.glob("/opt/kerntrace/lib/python3*/site-packages")[0]
    for generic in ("core", "plugins", "backends"):
        assert not os.path.exists(os.path.join(site, generic))
    assert os.path.isdir(os.path.join(site, "kerntrace", "core"))
    out = subprocess.check_output(["/opt/kerntrace/bin/kerntrace", "version"], universal_newlines=True)
    assert out.startswith("kerntrace ")
