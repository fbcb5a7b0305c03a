"""Loading tools and backends through pluggy.

Every tool and backend is a plugin named by an entry point in the group
`kerntrace.plugins` (hookspecs.ENTRY_POINT_GROUP), the built-in ones too:
they are the entry points of kerntrace's own distribution (setup.cfg), so
core names none of them.  Those register first (they win name clashes),
then every other distribution's, one at a time: a plugin that fails to
import, declares an API version this kerntrace does not provide, or whose
hook raises or returns something that is not a tool/backend, is reported in
one warning line naming it, and everything else keeps working.

A command that runs one tool names it (PluginHost(tool=...)): of
kerntrace's own tool plugins, each a module of one package providing only
tools, only the entry point of that name is imported, not its siblings
(importing all of them cost an eBPF start ~20 ms and their memory).  When
no own entry point of that name provides the tool, all are loaded.

Disable third-party plugins with KERNTRACE_DISABLE_PLUGINS=1 (all) or
KERNTRACE_DISABLE_PLUGINS=name1,name2, or the --no-plugins flag; kerntrace's
own entry points always load.
"""

import os
import re
import sys
import warnings

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import one_line
from .tool import Tool

DISTRIBUTION = "kerntrace"
DISABLE_ENV = "KERNTRACE_DISABLE_PLUGINS"
# Registration names of kerntrace's own plugins start with this.
BUILTIN_PREFIX = "builtin:"


def _metadata_module():
    """importlib.metadata (3.8+), else its backport importlib_metadata (which
    pluggy requires on 3.6/3.7, so it is there), else None."""
    try:
        from importlib import metadata  # novm (Python 3.8+; 3.6/3.7 fall back below)
        return metadata
    except ImportError:  # pragma: no cover - Python 3.6/3.7
        pass
    try:
        import importlib_metadata
        return importlib_metadata
    except ImportError:
        return None


def _normalized(name):
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name or "").lower()


def _group_of(dist, group):
    """(name, loader) pairs of one distribution's entry points in group."""
    return [(ep.name, _loader(ep.value)) for ep in dist.entry_points if ep.group == group]


# group -> (builtin, third_party), found once per process.
_FOUND = {}


def installed_entry_points(group=hookspecs.ENTRY_POINT_GROUP):
    """(builtin, third_party): the (name, loader) pairs of the entry-point
    group from kerntrace's own distribution and from every other one, each
    name once (the first found on sys.path wins), on Python 3.6 to 3.13.
    Read from the installed metadata once per process (a command asks once;
    tests that fake the file system rely on it having been read before)."""
    if group not in _FOUND:
        found = _entry_points(group)
        if not found[0]:
            return found        # kerntrace's own missing: look again next time
        _FOUND[group] = found
    return _FOUND[group]


def _entry_points(group):
    found = _scanned_entry_points(group)
    if found is not None:
        return found
    return _metadata_entry_points(group)


# Where installers put a distribution's metadata on a sys.path directory.
_METADATA_DIRS = (".dist-info", ".egg-info")


def _scanned_entry_points(group):
    """_entry_points() read straight from the entry_points.txt files of the
    dist-info/egg-info directories on sys.path, in sys.path order as
    importlib.metadata finds them, or None when a sys.path entry is not a
    directory (a zip: the single-file build) and importlib.metadata must
    look.  Importing importlib.metadata (email, zipfile, pathlib, csv ...)
    and building a Distribution per installed package costs a tool's start
    more than all its own modules; this reads one small file per package."""
    dists = []
    for entry in sys.path:
        entry = entry or "."
        try:
            names = os.listdir(entry)
        except OSError:
            if os.path.exists(entry):
                return None     # a zip or some other importer's entry
            continue
        for name in names:
            if not name.endswith(_METADATA_DIRS):
                continue
            info = os.path.join(entry, name)
            pairs = _group_in_file(os.path.join(info, "entry_points.txt"), group)
            if pairs:
                dists.append((lambda info=info, name=name: _distribution_name(info, name),
                              [(ep_name, _loader(value)) for ep_name, value in pairs]))
    return _builtin_and_third_party(dists)


def _builtin_and_third_party(dists):
    """(builtin, third_party) of [(name(), [(entry-point name, loader)])]
    of the distributions with entry points in the group, in sys.path
    order: each entry-point name once (the first found wins), kerntrace's
    own from its first copy only.  name() is called once per distribution
    (it may read its METADATA)."""
    found = {True: [], False: []}
    seen = {True: set(), False: set()}
    own_seen = False
    for name, pairs in dists:
        own = _normalized(name()) == DISTRIBUTION
        if own:
            if own_seen:
                continue    # a second, shadowed copy of kerntrace
            own_seen = True
        for ep_name, load in pairs:
            if ep_name not in seen[own]:
                seen[own].add(ep_name)
                found[own].append((ep_name, load))
    return found[True], found[False]


def _group_in_file(path, group):
    """[(name, value)] of `group` in an entry_points.txt (an INI file:
    "[group]" then "name = value" lines), [] if there is none."""
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError, UnicodeDecodeError):
        return []
    pairs, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, value = line.split("=", 1)
            pairs.append((name.strip(), value.strip()))
    return pairs


def _distribution_name(info, dirname):
    """The Name: of a dist-info/egg-info's METADATA/PKG-INFO, else the
    directory name's part before the version."""
    for fname in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info, fname)) as f:
                for line in f:
                    if not line.strip():
                        break       # the end of the headers
                    if line.lower().startswith("name:"):
                        return line.split(":", 1)[1].strip()
        except (IOError, OSError, UnicodeDecodeError):
            continue
    return dirname.rsplit(".", 1)[0].split("-", 1)[0]


def _loader(value):
    """What EntryPoint.load() does for "module[:attr.attr] [extras]"; the
    function's `module` is the module it imports."""
    module, _, attrs = value.split("[", 1)[0].strip().partition(":")
    module = module.strip()

    def load():
        import importlib
        obj = importlib.import_module(module)
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj
    load.module = module
    return load


def _package(load):
    module = getattr(load, "module", None)
    return module.rpartition(".")[0] if module else None


def _siblings_of(builtin, tool):
    """The names of kerntrace's own entry points that a run of `tool` need
    not import: those whose module is in the same package as the entry
    point named `tool` (kerntrace's tool plugins: one module per tool),
    other than that one."""
    own = [load for name, load in builtin if name == tool]
    package = _package(own[0]) if own else None
    if not package:
        return set()
    return set(name for name, load in builtin if name != tool and _package(load) == package)


def _metadata_entry_points(group):
    metadata = _metadata_module()
    if metadata is None:  # pragma: no cover - an old pluggy on 3.6/3.7
        return _pkg_resources_entry_points(group)
    # only the distributions with entry points in the group: most need no
    # parse of their METADATA
    return _builtin_and_third_party(
        (lambda dist=dist: dist.metadata["Name"], pairs)
        for dist, pairs in ((d, _group_of(d, group)) for d in metadata.distributions())
        if pairs)


def _pkg_resources_entry_points(group):  # pragma: no cover - an old pluggy on 3.6/3.7
    # pkg_resources warns (UserWarning) about what it finds on sys.path
    # while it builds its working set: not the user's concern here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pkg_resources
        except ImportError:
            return [], []
        builtin, third_party = [], []
        for ep in pkg_resources.iter_entry_points(group):
            own = ep.dist is not None and _normalized(ep.dist.project_name) == DISTRIBUTION
            (builtin if own else third_party).append((ep.name, ep.load))
        return builtin, third_party


def _parse_version(text):
    """"MAJOR.MINOR" (or "MAJOR") -> (major, minor), or None."""
    m = re.match(r"^(\d+)(?:\.(\d+))?\Z", text) if isinstance(text, str) else None
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def api_version_problem(plugin):
    """Why `plugin` (what its entry point loaded) cannot be used with this
    kerntrace's plugin API, or None.  See hookspecs.API_VERSION."""
    declared = getattr(plugin, hookspecs.API_VERSION_ATTRIBUTE, "1.0")
    wanted = _parse_version(declared)
    have = _parse_version(hookspecs.API_VERSION)
    if wanted is None:
        return "declares %s = %r, not a \"MAJOR.MINOR\" version (this kerntrace " \
               "provides %s)" % (hookspecs.API_VERSION_ATTRIBUTE, declared, hookspecs.API_VERSION)
    if wanted[0] != have[0] or wanted[1] > have[1]:
        return "was written for kerntrace plugin API %s; this kerntrace %s provides %s" % (
            declared, _version(), hookspecs.API_VERSION)
    return None


def _version():
    from . import __version__
    return __version__


class PluginHost(object):
    """The plugins of one command.  `entry_points` (tests): the third-party
    (name, loader) pairs to use instead of the installed ones.  `tool`: the
    one tool the command runs (see the module's docstring)."""

    def __init__(self, load_third_party=True, warn=None, entry_points=None, tool=None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.warnings = []
        self._warn_stream = warn if warn is not None else sys.stderr
        self._tools = None
        self._backends = None
        builtin, third_party = installed_entry_points()
        if not builtin:
            self.warn("kerntrace's own entry points (%s) are missing: no built-in tools "
                      "or backends (reinstall kerntrace)" % hookspecs.ENTRY_POINT_GROUP)
        skipped = _siblings_of(builtin, tool) if tool else set()
        for name, load in builtin:
            if name not in skipped:
                self._load_one(BUILTIN_PREFIX + name, load)
        if skipped and not self._provides(BUILTIN_PREFIX + tool, tool):
            for name, load in builtin:      # not there: the run gets them all
                if name in skipped:
                    self._load_one(BUILTIN_PREFIX + name, load)
        disabled = os.environ.get(DISABLE_ENV, "").strip()
        if load_third_party and disabled not in ("1", "all", "*"):
            skip = set(n.strip() for n in disabled.split(",") if n.strip())
            eps = entry_points if entry_points is not None else third_party
            for name, load in eps:
                if name not in skip:
                    self._load_one(name, load)

    def _provides(self, plugin_name, tool):
        """Whether the registered plugin provides a tool of that name (its
        own problems are reported when the tools are collected)."""
        plugin = self.pm.get_plugin(plugin_name)
        try:
            return any(getattr(t, "name", None) == tool
                       for t in getattr(plugin, "kerntrace_tools", lambda: [])() or [])
        except Exception:
            return False

    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn_stream is not None:
            self._warn_stream.write("kerntrace: warning: %s\n" % msg)

    def _load_one(self, name, load):
        try:
            plugin = load()
            problem = api_version_problem(plugin)
            if problem:
                self.warn("plugin %r not loaded: it %s" % (name, problem))
                return
            self.pm.register(plugin, name=name)
        except Exception as e:  # a broken plugin is reported, not fatal
            self.warn("plugin %r failed to load: %s: %s" % (name, type(e).__name__, one_line(e, "")))

    def _collect(self, hook_name, kind):
        found = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            pname = self.pm.get_name(impl.plugin) or "?"
            try:
                items = impl.function() or []
                items = list(items)
            except Exception as e:
                self.warn("plugin %r: %s() raised %s: %s"
                          % (pname, hook_name, type(e).__name__, one_line(e, "")))
                continue
            for item in items:
                problem = _check(item, kind)
                if problem:
                    self.warn("plugin %r: ignoring %s: %s" % (pname, kind.__name__.lower(), problem))
                    continue
                if item.name in found:
                    self.warn("plugin %r: %s %r already registered by %r; ignored"
                              % (pname, kind.__name__.lower(), item.name, found[item.name][1]))
                    continue
                found[item.name] = (item, pname)
        return found

    def tools(self):
        if self._tools is None:
            # get_hookimpls() lists plugins in registration order, so the
            # built-ins (registered first) win name clashes.
            self._tools = self._collect("kerntrace_tools", Tool)
        return {name: t for name, (t, _p) in self._tools.items()}

    def tool_origin(self, name):
        """The registration name of the plugin that provides tool `name`
        (BUILTIN_PREFIX + entry-point name for kerntrace's own)."""
        self.tools()
        return self._tools[name][1]

    def backends(self):
        if self._backends is None:
            self._backends = self._collect("kerntrace_backends", Backend)
        items = [b for b, _p in self._backends.values()]
        return sorted(items, key=lambda b: (b.preference, b.name))


def _check(item, kind):
    if not isinstance(item, kind):
        return "%r is not a %s" % (item, kind.__name__)
    name = getattr(item, "name", None)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
        return "%r has no valid name" % (item,)
    if kind is Tool:
        return item.self_check()
    return None
