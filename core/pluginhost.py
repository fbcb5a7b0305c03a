"""Loading tools and backends through pluggy.

Built-ins register first, then third-party plugins from the entry-point group,
one at a time: a plugin that fails to import, or whose hook raises or returns
something that is not a tool/backend, is reported in one warning line naming
it, and everything else keeps working.

Disable third-party plugins with KERNTRACE_DISABLE_PLUGINS=1 (all) or
KERNTRACE_DISABLE_PLUGINS=name1,name2, or the --no-plugins flag.
"""

import os
import sys
import warnings

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import one_line
from .tool import Tool

BUILTIN_MODULES = (
    "kerntrace.backends.ebpf",
    "kerntrace.backends.ftrace",
    "kerntrace.plugins",
)
DISABLE_ENV = "KERNTRACE_DISABLE_PLUGINS"


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


def _entry_points(group):
    """(name, loader) pairs for an entry-point group, on Python 3.6 to 3.13."""
    metadata = _metadata_module()
    if metadata is None:  # pragma: no cover - an old pluggy on 3.6/3.7
        # pkg_resources warns (UserWarning) about what it finds on sys.path
        # while it builds its working set: not the user's concern here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import pkg_resources
            except ImportError:
                return []
            return [(ep.name, ep.load) for ep in pkg_resources.iter_entry_points(group)]
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        selected = eps.select(group=group)
    else:  # pragma: no cover - Python 3.8/3.9 dict interface
        selected = eps.get(group, [])
    seen = set()
    out = []
    for ep in selected:
        if ep.name in seen:
            continue
        seen.add(ep.name)
        out.append((ep.name, ep.load))
    return out


class PluginHost(object):
    def __init__(self, load_third_party=True, warn=None, entry_points=None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.warnings = []
        self._warn_stream = warn if warn is not None else sys.stderr
        self._tools = None
        self._backends = None
        for modname in BUILTIN_MODULES:
            __import__(modname)
            self.pm.register(sys.modules[modname], name="builtin:" + modname)
        disabled = os.environ.get(DISABLE_ENV, "").strip()
        if load_third_party and disabled not in ("1", "all", "*"):
            skip = set(n.strip() for n in disabled.split(",") if n.strip())
            eps = entry_points if entry_points is not None else _entry_points(hookspecs.ENTRY_POINT_GROUP)
            for name, load in eps:
                if name not in skip:
                    self._load_one(name, load)

    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn_stream is not None:
            self._warn_stream.write("kerntrace: warning: %s\n" % msg)

    def _load_one(self, name, load):
        try:
            plugin = load()
            self.pm.register(plugin, name=name)
        except Exception as e:  # a broken third-party plugin is reported, not fatal
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
