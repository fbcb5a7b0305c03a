"""Installed names live under kerntrace.* only; never generic top-level
packages like core or plugins in site-packages.  The entry points installed
are setup.cfg's, and every tool's command is the one generic launcher."""

import configparser
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry_point_groups(text):
    """{group: {name: value}} of an entry_points.txt (or setup.cfg's
    [options.entry_points] values)."""
    cfg = configparser.ConfigParser()
    cfg.read_string(text)
    return {g: dict(cfg.items(g)) for g in cfg.sections()}


def declared():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return {group: dict((part.strip() for part in line.split("="))
                        for line in text.strip().splitlines())
            for group, text in cfg.items("options.entry_points")}


def test_installed_entry_points_are_setup_cfgs():
    """The tests run the installed kerntrace: one installed before setup.cfg
    gained a tool would not know it (re-run pip install -e .)."""
    from kerntrace.core.pluginhost import _metadata_module
    dist = _metadata_module().distribution("kerntrace")
    installed = entry_point_groups(dist.read_text("entry_points.txt"))
    assert installed == declared(), "stale install: run pip install -e . again"


def test_each_tool_command_is_the_tool_it_is_named():
    """One launcher behind every tool's console script: a copy of the
    iolatency script named bitesize is bitesize."""
    bindir = os.path.dirname(sys.executable)
    tools = [n for n in declared()["console_scripts"] if n != "kerntrace"]
    for name in tools:
        script = os.path.join(bindir, name)
        if not os.path.exists(script):
            pytest.skip("%s has no console scripts next to it (not a venv install)"
                        % sys.executable)
        p = subprocess.run([script, "-h"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        assert p.returncode == 0, (name, p.stderr)
        assert name in (p.stdout + p.stderr).splitlines()[0], (name, p.stdout, p.stderr)


def test_the_launcher_takes_the_tool_from_the_script_name(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "iolatency")
    if not os.path.exists(script):
        pytest.skip("%s has no console scripts next to it (not a venv install)" % sys.executable)
    renamed = str(tmp_path / "bitesize")
    shutil.copy(script, renamed)
    p = subprocess.run([renamed, "-h"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "") and p.stdout.startswith("usage: bitesize ")


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
    assert entry_point_groups(zipfile.ZipFile(wheel).read(entry).decode()) == declared()


@pytest.mark.skipif(not os.path.isdir("/opt/kerntrace"), reason="install.sh has not been run on this host")
def test_user_install_has_no_generic_top_level_packages():
    site = glob.glob("/opt/kerntrace/lib/python3*/site-packages")[0]
    for generic in ("core", "plugins", "backends"):
        assert not os.path.exists(os.path.join(site, generic))
    assert os.path.isdir(os.path.join(site, "kerntrace", "core"))
    out = subprocess.check_output(["/opt/kerntrace/bin/kerntrace", "version"], universal_newlines=True)
    assert out.startswith("kerntrace ")


def project_files():
    """The project's files: tracked, or new and not ignored (no venvs,
    builds or caches)."""
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")) \
            and not os.path.isfile(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout: cannot tell project files from build output")
    out = subprocess.check_output(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                                  universal_newlines=True)
    return [os.path.join(ROOT, name) for name in out.splitlines()
            if os.path.isfile(os.path.join(ROOT, name))]


# Folders every Linux machine has (the FHS): a checkout under /tmp does not
# make "/tmp/x" in a test or an example this machine's path.
SHARED_FOLDERS = frozenset(("/tmp/", "/var/", "/var/tmp/", "/usr/", "/usr/local/", "/usr/lib/",
                            "/usr/share/", "/opt/", "/srv/", "/home/", "/mnt/", "/media/",
                            "/run/", "/dev/", "/dev/shm/"))


def machine_paths():
    """Absolute paths of this machine a file could have quoted: the
    checkout, the folders above it (the root itself and the folders every
    machine has aside), the home directory and the Pythons' prefixes."""
    paths = set()
    here = ROOT
    while os.path.dirname(here) != here:
        paths.add(here + "/")
        here = os.path.dirname(here)
    home = os.path.expanduser("~")
    for p in (home, sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        if p and p != "/":
            paths.add(p.rstrip("/") + "/")
    return sorted(p for p in paths if p.count("/") >= 2 and p not in SHARED_FOLDERS)


def test_no_absolute_path_of_this_machine_in_the_project():
    """Project files refer to ../shared/... or a public URL, never to where
    this checkout, its home directory or its Pythons happen to be."""
    needles = [p.encode() for p in machine_paths()]
    found = []
    for path in project_files():
        with open(path, "rb") as f:
            data = f.read()
        for n, line in enumerate(data.splitlines(), 1):
            for needle in needles:
                if needle in line:
                    found.append("%s:%d: %s" % (os.path.relpath(path, ROOT), n,
                                                line.decode(errors="replace").strip()))
    assert not found, "\n".join(found)
