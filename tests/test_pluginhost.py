"""Plugins load from the `kerntrace.plugins` entry-point group through real
package metadata, the built-in ones (kerntrace's own entry points) as any
other; third-party ones (a dist-info directory on PYTHONPATH) one by one: a
broken one, or one written for an API version this kerntrace does not
provide, is one warning line naming it, and the rest keep working."""

import configparser
import glob
import importlib
import io
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD = '''
from kerntrace.core.hookspecs import hookimpl
from kerntrace.core.tool import Tool
from kerntrace.core.model import Measurement, Event, Tracepoint, Count
from kerntrace.core.output.table import CountTablePrinter

class Hello(Tool):
    name = "hellotool"
    summary = "A third-party test tool."
    def measurement(self, args):
        return Measurement([Event("e", Tracepoint("sched", "sched_switch"))], Count())
    def printer(self, args, out, err):
        return CountTablePrinter(out, err, key_header="X")

@hookimpl
def kerntrace_tools():
    return [Hello()]
'''
BROKEN_IMPORT = "raise RuntimeError('boom at import')\n"
RAISING_HOOK = '''
from kerntrace.core.hookspecs import hookimpl
@hookimpl
def kerntrace_tools():
    raise ValueError("hook exploded")
'''
NOT_A_TOOL = '''
from kerntrace.core.hookspecs import hookimpl
@hookimpl
def kerntrace_tools():
    return ["i am a string"]
'''
SHADOWING = '''
from kerntrace.core.hookspecs import hookimpl
from kerntrace.plugins.tpcount import TpCount
@hookimpl
def kerntrace_tools():
    return [TpCount()]
'''


def plugin_dir(tmp_path, mods):
    """A directory with the modules `mods` (name -> source) and a dist-info
    naming each in the kerntrace.plugins group (entry point: the module
    name less its "kt_" prefix), as a pip-installed package has."""
    for name, src in mods.items():
        (tmp_path / (name + ".py")).write_text(textwrap.dedent(src))
    dist = tmp_path / "kt_testplugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kt-testplugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[kerntrace.plugins]\n" + "".join("%s = %s\n" % (n.replace("kt_", ""), n) for n in mods))
    return str(tmp_path)


@pytest.fixture
def plugin_path(tmp_path):
    return plugin_dir(tmp_path, {"kt_good": GOOD, "kt_broken": BROKEN_IMPORT,
                                 "kt_raising": RAISING_HOOK, "kt_notatool": NOT_A_TOOL,
                                 "kt_shadow": SHADOWING})


def kerntrace(args, path, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = path
    env.pop("KERNTRACE_DISABLE_PLUGINS", None)
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-m", "kerntrace.core"] + args, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return p.returncode, p.stdout, p.stderr


def test_good_plugin_listed_and_broken_ones_reported(plugin_path):
    rc, out, err = kerntrace(["list"], plugin_path)
    assert rc == 0
    assert "hellotool" in out and "[good]" in out
    assert "tpcount" in out  # built-ins keep working
    warnings = [l for l in err.splitlines() if l.startswith("kerntrace: warning:")]
    joined = "\n".join(warnings)
    assert "'broken' failed to load: RuntimeError: boom at import" in joined
    assert "'raising'" in joined and "hook exploded" in joined
    assert "'notatool'" in joined
    assert "'shadow'" in joined and "already registered" in joined
    assert all("Traceback" not in l for l in err.splitlines())
    assert len(warnings) == 4


def test_disable_all_plugins_by_env_and_flag(plugin_path):
    for args, env in ((["list"], {"KERNTRACE_DISABLE_PLUGINS": "1"}), (["--no-plugins", "list"], {})):
        rc, out, err = kerntrace(args, plugin_path, env)
        assert rc == 0 and "hellotool" not in out and "tpcount" in out and err == ""


def test_disable_named_plugins(plugin_path):
    rc, out, err = kerntrace(["list"], plugin_path,
                             {"KERNTRACE_DISABLE_PLUGINS": "broken,raising,notatool,shadow"})
    assert rc == 0 and "hellotool" in out and err == ""


def setup_cfg_entry_points(group):
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = cfg.get("options.entry_points", group).strip().splitlines()
    return dict((part.strip() for part in line.split("=")) for line in lines)


def test_builtins_register_through_the_public_entry_points():
    from kerntrace.core.pluginhost import PluginHost
    host = PluginHost(load_third_party=False)
    declared = setup_cfg_entry_points("kerntrace.plugins")
    names = {host.pm.get_name(p) for p in host.pm.get_plugins()}
    assert names == {"builtin:" + n for n in declared}
    assert {b.name for b in host.backends()} >= {"ebpf", "ftrace"}
    # Each built-in tool comes from its own entry point, as a plugin's does.
    for tool in ("tpcount", "iolatency", "biolatency", "biosnoop", "iosnoop", "bitesize"):
        assert host.tool_origin(tool) == "builtin:" + tool
        assert declared[tool] == "kerntrace.plugins." + tool
    assert all(n.startswith("kerntrace_") for n in dir(host.pm.hook) if not n.startswith("_"))


def test_core_names_no_builtin_tool_or_backend():
    """No module list, no function per tool: core imports no plugin or
    backend module by name (only what an entry point names: pluginhost's
    loader imports a variable), and every tool's console script is the one
    launcher."""
    pattern = re.compile(r"kerntrace\.(plugins|backends)\.|from \.\.?(plugins|backends)\b"
                         r"|import_module\(\s*[\"'\[(]")
    for path in sorted(glob.glob(os.path.join(ROOT, "core", "**", "*.py"), recursive=True)):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                assert not pattern.search(line), "%s:%d: %s" % (path, n, line.strip())
    scripts = setup_cfg_entry_points("console_scripts")
    assert scripts.pop("kerntrace") == "kerntrace.core.commands:kerntrace"
    assert set(scripts.values()) == {"kerntrace.core.commands:tool"}
    from kerntrace.core import commands
    assert [n for n in vars(commands) if n in scripts] == []


def test_every_builtin_tool_module_is_an_entry_point():
    """A tool module in plugins/ without its entry point would never load."""
    declared = set(setup_cfg_entry_points("kerntrace.plugins").values())
    for path in glob.glob(os.path.join(ROOT, "plugins", "*.py")):
        with open(path) as f:
            text = f.read()
        module = "kerntrace.plugins." + os.path.basename(path)[:-3]
        assert ("def kerntrace_tools" in text) == (module in declared), module


def test_builtins_load_with_third_party_plugins_disabled(plugin_path):
    rc, out, err = kerntrace(["--no-plugins", "list"], plugin_path,
                             {"KERNTRACE_DISABLE_PLUGINS": "tpcount,ebpf,ftrace"})
    assert rc == 0 and err == ""
    assert "tpcount" in out.split() and "hellotool" not in out
    code = ("from kerntrace.core.pluginhost import PluginHost\n"
            "print(sorted(b.name for b in PluginHost().backends()))")
    env = dict(os.environ, PYTHONPATH=plugin_path, KERNTRACE_DISABLE_PLUGINS="1")
    out = subprocess.check_output([sys.executable, "-c", code], env=env, universal_newlines=True)
    assert out.strip() == "['ebpf', 'ftrace']"


def tool_plugin(name, declared=None):
    """A plugin module with tool `name`, declaring the API version given."""
    return GOOD.replace("hellotool", name) + (
        "KERNTRACE_API_VERSION = %r\n" % (declared,) if declared is not None else "")


def test_plugin_for_an_incompatible_api_version_is_one_warning_naming_it(tmp_path):
    from kerntrace.core.api import API_VERSION
    major, minor = (int(x) for x in API_VERSION.split("."))
    path = plugin_dir(tmp_path, {
        "kt_current": tool_plugin("currenttool", API_VERSION),
        "kt_undeclared": tool_plugin("undeclaredtool"),
        "kt_nextmajor": tool_plugin("nextmajortool", "%d.0" % (major + 1)),
        "kt_newerminor": tool_plugin("newerminortool", "%d.%d" % (major, minor + 1)),
        "kt_nonsense": tool_plugin("nonsensetool", "latest"),
    })
    for args in (["list"], ["currenttool", "-h"]):
        rc, out, err = kerntrace(args, path)
        assert rc == 0 and "Traceback" not in err
        lines = err.splitlines()
        assert len(lines) == 3, err
        for plugin, wording in (("nextmajor", "was written for kerntrace plugin API %d.0"
                                 % (major + 1)),
                                ("newerminor", "was written for kerntrace plugin API %d.%d"
                                 % (major, minor + 1)),
                                ("nonsense", "'latest', not a \"MAJOR.MINOR\" version")):
            mine = [l for l in lines if "'%s'" % plugin in l]
            assert len(mine) == 1, err
            assert mine[0].startswith("kerntrace: warning: plugin '%s' not loaded: " % plugin)
            assert wording in mine[0] and API_VERSION in mine[0], mine[0]
    rc, out, err = kerntrace(["list"], path)
    listed = {line.split()[0] for line in out.splitlines()}
    assert {"currenttool", "undeclaredtool", "tpcount"} <= listed
    assert not {"nextmajortool", "newerminortool", "nonsensetool"} & listed


def test_builtin_plugins_declare_the_api_version_of_what_they_import():
    """Each built-in plugin declares a version this kerntrace loads, at
    least the minor that added each API name it imports (a plugin copied
    out of the tree must not claim an older API than it uses)."""
    import ast
    import inspect
    from kerntrace.core import api, hookspecs

    def version(text):
        return tuple(int(x) for x in text.split("."))
    major, minor = version(api.API_VERSION)
    assert all(version(v) <= (major, minor) for v in hookspecs.API_NAMES_SINCE.values())
    for module in setup_cfg_entry_points("kerntrace.plugins").values():
        if module.startswith("kerntrace.plugins."):
            plugin = importlib.import_module(module)
            declared = version(plugin.KERNTRACE_API_VERSION)
            assert declared[0] == major and declared <= (major, minor), module
            used = {alias.name for node in ast.walk(ast.parse(inspect.getsource(plugin)))
                    if isinstance(node, ast.ImportFrom) and node.module == "kerntrace.core.api"
                    for alias in node.names}
            needed = [(name, since) for name, since in hookspecs.API_NAMES_SINCE.items()
                      if name in used and version(since) > declared]
            assert not needed, (module, needed)


SELECTING = '''
from kerntrace.core.api import hookimpl
from kerntrace.core.backend import Backend, Verdict

class Fake(Backend):
    def __init__(self, name, preference):
        self.name, self.preference = name, preference
    def check(self, measurement, host):
        return Verdict(self.name, True, [])

@hookimpl
def kerntrace_backends():
    return [Fake("first", 1), Fake("second", 2)]

@hookimpl
def kerntrace_select_backend(tool, measurement, verdicts, requested):
    return "second" if tool.name == "tpcount" and "first" in verdicts else None
'''


def test_select_backend_hook_picks_among_the_backends_that_can(monkeypatch):
    """A plugin's kerntrace_select_backend overrides the preference order
    for --backend auto, never a backend the user named."""
    import types
    from kerntrace.core.pluginhost import PluginHost
    from kerntrace.core.selector import select
    monkeypatch.delenv("KERNTRACE_DISABLE_PLUGINS", raising=False)   # (blocktest sets it)
    module = types.ModuleType("kt_selecting")
    exec(SELECTING, module.__dict__)
    warnings = io.StringIO()
    host = PluginHost(entry_points=[("selecting", lambda: module)], warn=warnings)
    tools = host.tools()
    backends = [b for b in host.backends() if b.name in ("first", "second")]
    assert len(backends) == 2, warnings.getvalue()
    hook = host.pm.hook.kerntrace_select_backend
    for tool, requested, chosen in (("tpcount", "auto", "second"), ("biolatency", "auto", "first"),
                                    ("tpcount", "first", "first")):
        t = tools[tool]
        m = t.measurement(t.parse_args(list(t.sample_args)))
        assert select(t, m, backends, None, requested, hook=hook).backend.name == chosen


def test_entry_points_are_read_without_pkg_resources(plugin_path):
    # On 3.6/3.7 the importlib_metadata backport (pluggy's dependency there)
    # reads them; pkg_resources would scan all of sys.path, slowly, and warn.
    code = ("import io, sys\nfrom kerntrace.core.pluginhost import PluginHost\n"
            "tools = PluginHost(warn=io.StringIO()).tools()\n"
            "print('hellotool' in tools, 'pkg_resources' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=plugin_path)
    env.pop("KERNTRACE_DISABLE_PLUGINS", None)
    out = subprocess.check_output([sys.executable, "-c", code], env=env, universal_newlines=True)
    assert out.split() == ["True", "False"]
