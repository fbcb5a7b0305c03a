"""Third-party plugins load from the `kerntrace.plugins` entry-point group
through real package metadata (a dist-info directory on PYTHONPATH), one by
one: a broken one is one warning line naming it, the rest keep working."""

import os
import subprocess
import sys
import textwrap

import pytest

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


@pytest.fixture
def plugin_path(tmp_path):
    mods = {"kt_good": GOOD, "kt_broken": BROKEN_IMPORT, "kt_raising": RAISING_HOOK,
            "kt_notatool": NOT_A_TOOL, "kt_shadow": SHADOWING}
    for name, src in mods.items():
        (tmp_path / (name + ".py")).write_text(textwrap.dedent(src))
    dist = tmp_path / "kt_testplugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kt-testplugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[kerntrace.plugins]\n" + "".join("%s = %s\n" % (n.replace("kt_", ""), n) for n in mods))
    return str(tmp_path)


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


def test_builtins_register_through_the_public_hooks():
    from kerntrace.core.pluginhost import PluginHost
    host = PluginHost(load_third_party=False)
    names = [host.pm.get_name(p) for p in host.pm.get_plugins()]
    assert "builtin:kerntrace.plugins" in names
    assert {b.name for b in host.backends()} >= {"ebpf", "ftrace"}
    assert "tpcount" in host.tools()
    assert all(n.startswith("kerntrace_") for n in dir(host.pm.hook) if not n.startswith("_"))


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
