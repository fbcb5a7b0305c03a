"""Finding the other CPython versions of this host (3.6, the newest) for
tests of what runs on them: pyenv's versions directory first, then
`python3.X` on PATH.  Each candidate is run once to check it really is
that version (a pyenv shim for a version that is not installed fails)."""

import glob
import os
import re
import shutil
import subprocess
import sys


def _pyenv_root():
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    exe = shutil.which("pyenv")
    if exe:
        try:
            return subprocess.check_output([exe, "root"], universal_newlines=True,
                                           stderr=subprocess.DEVNULL, timeout=30).strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return os.path.expanduser("~/.pyenv")


def _version_of(exe):
    try:
        out = subprocess.check_output(
            [exe, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            universal_newlines=True, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(x) for x in out.strip().split("."))


def _pyenv_pythons():
    """(version, path) of pyenv's CPython 3 builds, newest first."""
    found = []
    for d in glob.glob(os.path.join(_pyenv_root(), "versions", "3.*")):
        m = re.match(r"^3\.(\d+)\.(\d+)$", os.path.basename(d))
        exe = os.path.join(d, "bin", "python3.%s" % m.group(1)) if m else None
        if exe and os.access(exe, os.X_OK):
            found.append(((3, int(m.group(1)), int(m.group(2))), exe))
    return sorted(found, reverse=True)


def find(minor):
    """The interpreter for Python 3.<minor>, or None."""
    candidates = [exe for v, exe in _pyenv_pythons() if v[:2] == (3, minor)]
    on_path = shutil.which("python3.%d" % minor)
    if on_path:
        candidates.append(on_path)
    for exe in candidates:
        v = _version_of(exe)
        if v and v[:2] == (3, minor):
            return exe
    return None


def newest():
    """The newest CPython 3 of this host (maybe the one running us)."""
    best = (tuple(sys.version_info[:3]), sys.executable)
    for v, exe in _pyenv_pythons():
        if v > best[0] and _version_of(exe) == v:
            best = (v, exe)
        if v <= best[0]:
            break
    return best[1]


def missing(minor):
    """The skip reason when Python 3.<minor> is not on this host."""
    return ("Python 3.%d not found (looked in %s/versions and for python3.%d on PATH)"
            % (minor, _pyenv_root(), minor))


def pip_env():
    """Environment for a pip that must behave as on a plain host: no pip
    configuration of this machine (local wheel directories, extra indexes,
    constraints), only the network settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for k in ("PIP_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env
