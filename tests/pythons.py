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


def make_test_venv(python, path, project):
    """A venv of `python` at `path` with `project` and its test extra
    installed (not editable: old setuptools cannot map kerntrace.* onto
    this checkout's folders in place)."""
    subprocess.check_call([python, "-m", "venv", "--clear", path])
    pip = [os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q"]
    env = pip_env()
    # Python 3.6's bundled pip 18 has no dependency resolver; the newest pip
    # for the interpreter picks test tools that still run on it.
    subprocess.check_call(pip + ["--upgrade", "pip"], env=env)
    subprocess.check_call(pip + [project + "[test]"], env=env)


def main(argv):
    """tests/run's helper:
        pythons.py find 3.6|newest      print the interpreter's path
        pythons.py venv 3.6|newest DIR  make DIR a test venv of it (prints its python)"""
    if len(argv) < 2 or argv[0] not in ("find", "venv") or (argv[0] == "venv") != (len(argv) == 3):
        sys.stderr.write(main.__doc__ + "\n")
        return 2
    which = argv[1]
    if which == "newest":
        python = newest()
    else:
        minor = int(which.split(".")[1])
        python = find(minor)
        if python is None:
            sys.stderr.write("tests/run: %s\n" % missing(minor))
            return 1
    if argv[0] == "venv":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        make_test_venv(python, argv[2], root)
        python = os.path.join(argv[2], "bin", "python")
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
