"""Finding the distribution's bcc Python module from any Python.

kerntrace may run from a virtualenv or from a CPython that is not the
distribution's, so the `bcc` package the distribution installed (Debian and
Ubuntu: /usr/lib/python3/dist-packages/bcc; Fedora/RHEL:
/usr/lib/python3.X/site-packages/bcc or /usr/lib64/...) is not on sys.path.
We do not add the whole dist-packages directory (that would drag in every
other distro package, built for another interpreter); we load only the
`bcc` package from its directory and register it in sys.modules as "bcc",
so its own `from .libbcc import ...` imports work.

The PyPI project named "bcc" is an unrelated library.  If it (or anything
else) is what `import bcc` finds, we ignore it: the real bcc is recognised by
its files (libbcc.py, table.py) and, once loaded, by BPF and libbcc.lib.

bcc is imported as a guest (see _as_guest): the distribution compiled it for
its own Python, so another one compiles it afresh, and that must neither warn
the user about bcc's source nor write caches into the distribution's files.
"""

import contextlib
import glob
import importlib.util
import os
import sys
import warnings

from kerntrace.core.errors import one_line

from . import bccfixes

PACKAGE = "bcc"
# Files every real bcc package has since its first Python bindings.
_SIGNATURE_FILES = ("__init__.py", "libbcc.py", "table.py")


class BccStatus(object):
    """What the search found.

    module   the real bcc module, or None
    how      one line: where it was loaded from and how (for doctor)
    why_not  one line: why there is none (None when found)
    """

    __slots__ = ("module", "how", "why_not")

    def __init__(self, module=None, how=None, why_not=None):
        self.module = module
        self.how = how
        self.why_not = why_not

    @property
    def ok(self):
        return self.module is not None

    def __repr__(self):
        return "BccStatus(%s)" % (self.how if self.ok else "missing: %s" % self.why_not)


def candidate_dirs():
    """Directories that may hold the distribution's bcc package, most
    likely first."""
    dirs = ["/usr/lib/python3/dist-packages"]                   # Debian, Ubuntu
    ver = "python%d.%d" % sys.version_info[:2]
    for base in ("/usr/lib64", "/usr/lib"):                      # Fedora, RHEL, SUSE, Arch
        dirs.append(os.path.join(base, ver, "site-packages"))
        dirs.extend(sorted(glob.glob(os.path.join(base, "python3.*", "site-packages")),
                           reverse=True))
    dirs.extend(sorted(glob.glob("/usr/local/lib/python3*/dist-packages"), reverse=True))
    dirs.extend(sorted(glob.glob("/usr/local/lib/python3*/site-packages"), reverse=True))
    dirs.append("/usr/share/bcc/python")                          # some source installs
    seen = set()
    out = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def looks_like_bcc(pkg_dir):
    """True if pkg_dir is the real bcc package (by its files, without
    executing anything)."""
    return all(os.path.isfile(os.path.join(pkg_dir, f)) for f in _SIGNATURE_FILES)


def is_real_bcc(module):
    """True for the real bcc module: it has BPF and its libbcc binding."""
    if module is None or not hasattr(module, "BPF"):
        return False
    libbcc = sys.modules.get(PACKAGE + ".libbcc") or getattr(module, "libbcc", None)
    return libbcc is not None and hasattr(libbcc, "lib")


def _forget_bcc():
    """Drop `bcc` and its submodules from sys.modules (an impostor, or a
    real one that failed half way through its import)."""
    for name in list(sys.modules):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            del sys.modules[name]


def _why(exc):
    """One line for an import failure; names libbcc when that is what is
    missing (python bindings installed without the shared library)."""
    text = one_line(exc)
    if "libbcc" in text:
        return "bcc's shared library is missing or unusable (%s); install libbcc " \
               "(Debian/Ubuntu: libbpfcc, Fedora/RHEL: bcc)" % text
    return "%s: %s" % (type(exc).__name__, text)


@contextlib.contextmanager
def _as_guest():
    """Import bcc without leaving a trace of it.

    Warnings are off: bcc's source has regexes with invalid escapes, which
    Python reports as DeprecationWarning (3.6-3.11, seen under pytest or -W)
    and as SyntaxWarning on every fresh compile (3.12+), from a file that
    is not ours.  Bytecode writing is off: an interpreter other than the
    distribution's has no valid cache there, and as root it would write
    __pycache__/bcc*.cpython-3X.pyc into the distribution's package
    directory, files no package owns.  Both only for this import."""
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.dont_write_bytecode = saved


def load_from(pkg_dir):
    """Load the bcc package in pkg_dir as sys.modules["bcc"].  Returns the
    module; raises on failure, leaving no partial `bcc` in sys.modules."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        with _as_guest():
            spec.loader.exec_module(module)
    except BaseException:
        _forget_bcc()
        raise
    return module


def _importable_bcc_dir():
    """The directory of the `bcc` that a plain `import bcc` would load, and
    whether it is the real bcc; found without executing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None, False
    if spec is None:
        return None, False
    if not spec.submodule_search_locations:
        return spec.origin, False     # a plain module named bcc: not the real one
    for d in spec.submodule_search_locations:
        if looks_like_bcc(d):
            return d, True
    return list(spec.submodule_search_locations)[0], False


def find_bcc(dirs=None):
    """Locate and import the real bcc.  Returns a BccStatus; never raises."""
    already = sys.modules.get(PACKAGE)
    if already is not None and is_real_bcc(already):
        return BccStatus(already, "bcc %s already imported from %s"
                         % (_version(already), _where(already)))
    if already is not None:
        _forget_bcc()   # an impostor someone imported before us
    notes = []
    if dirs is None:
        path_dir, real = _importable_bcc_dir()
        if path_dir and real:
            try:
                with _as_guest():
                    import bcc as module  # noqa: F401  (on sys.path: distro Python or --system-site-packages)
                if is_real_bcc(module):
                    return BccStatus(module, "bcc %s imported from %s (on sys.path)"
                                     % (_version(module), path_dir))
                _forget_bcc()
            except Exception as e:  # a broken bcc is an answer, not a crash
                _forget_bcc()
                notes.append(_why(e))
        elif path_dir:
            notes.append("ignored %s: not the bcc tracing package (the PyPI 'bcc' is an "
                         "unrelated library)" % path_dir)
        dirs = candidate_dirs()
    for d in dirs:
        pkg = os.path.join(d, PACKAGE)
        if not looks_like_bcc(pkg):
            continue
        try:
            module = load_from(pkg)
        except Exception as e:
            notes.append(_why(e))
            continue
        if is_real_bcc(module):
            return BccStatus(module, "bcc %s loaded from %s (distribution package, by path)"
                             % (_version(module), pkg))
        _forget_bcc()
        notes.append("%s is not a usable bcc (no BPF/libbcc)" % pkg)
    if notes:
        return BccStatus(why_not=notes[-1])
    return BccStatus(why_not="no bcc Python package found (install python3-bpfcc on "
                             "Debian/Ubuntu, python3-bcc on Fedora/RHEL)")


def _version(module):
    return getattr(module, "__version__", None) or getattr(
        sys.modules.get(PACKAGE + ".version"), "__version__", "?")


def _where(module):
    f = getattr(module, "__file__", None)
    return os.path.dirname(f) if f else "?"


_found = []


def status():
    """The BccStatus of this process.  A found bcc is kept; a failed search
    is repeated next time (it is cheap, and a test run under a fake
    filesystem must not decide for the rest of the process)."""
    if _found:
        return _found[0]
    st = find_bcc()
    if st.ok:
        bccfixes.apply(st.module)
        _found.append(st)
    return st


def package_dir():
    """The directory of the bcc package status() loads (or loaded), found
    without importing it; None when there is none to be found."""
    module = sys.modules.get(PACKAGE)
    if module is not None and is_real_bcc(module):
        return _where(module)
    path_dir, real = _importable_bcc_dir()
    if path_dir and real:
        return path_dir
    for d in candidate_dirs():
        pkg = os.path.join(d, PACKAGE)
        if looks_like_bcc(pkg):
            return pkg
    return None


def import_bcc():
    """The real bcc module, or None."""
    return status().module
