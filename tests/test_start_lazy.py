"""What a tool's start imports: a run on the ftrace backend never imports
the eBPF backend's code (its generator, bcc finder, session), and plugins
are found without importlib.metadata; both cost a tool's start more than
the modules it runs (bench/block_live.py's ftrace start section measures
the time).  Checked in a fresh interpreter, where nothing was imported yet."""

import json
import os
import subprocess
import sys

from test_pluginhost import plugin_dir, GOOD, BROKEN_IMPORT

ROOT = os.path.dirname(os.path.abspath(__file__))
TRACE = os.path.join(ROOT, "data", "block", "iolatency_boundary_4x.trace")

PROBE = r'''
import io, json, sys
from kerntrace.core import cli
out, err = io.StringIO(), io.StringIO()
sys.stdout, sys.stderr = out, err
try:
    rc = cli.main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
print(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue(),
                  "modules": sorted(m for m in sys.modules
                                    if m.startswith(("kerntrace.backends", "kerntrace.plugins.",
                                                     "importlib.metadata",
                                                     "importlib_metadata")))}))
'''


def imported_by_pluggy():
    """The metadata modules `import pluggy` itself brings in: none on Python
    3.8+, the importlib_metadata backport on 3.6 and 3.7 (pluggy imports it
    at import time there), which kerntrace cannot avoid."""
    code = ("import json, sys, pluggy\n"
            "print(json.dumps(sorted(m for m in sys.modules if 'metadata' in m)))\n")
    return set(json.loads(subprocess.check_output([sys.executable, "-c", code],
                                                  universal_newlines=True)))


def imported_by(args, env=None):
    proc = subprocess.run([sys.executable, "-c", PROBE] + args, stdout=subprocess.PIPE,
                          env=env, universal_newlines=True, check=True, timeout=120)
    return json.loads(proc.stdout)


def test_an_ftrace_run_imports_nothing_of_the_ebpf_backend():
    r = imported_by(["iolatency", "--backend", "ftrace", "--input", TRACE])
    assert r["rc"] == 0, r["err"]
    assert "Tracing" in r["err"] or r["out"].strip()
    assert "kerntrace.backends.ftrace.backend" in r["modules"]
    ebpf = [m for m in r["modules"] if m.startswith("kerntrace.backends.ebpf")]
    assert ebpf == ["kerntrace.backends.ebpf"], ebpf
    assert not [m for m in r["modules"] if "metadata" in m and m not in imported_by_pluggy()], \
        r["modules"]


def test_a_tool_run_imports_its_own_plugin_not_the_other_tools_and_third_party_ones(
        tmp_path):
    env = dict(os.environ, PYTHONPATH=plugin_dir(tmp_path, {"kt_good": GOOD,
                                                            "kt_broken": BROKEN_IMPORT}))
    env.pop("KERNTRACE_DISABLE_PLUGINS", None)
    r = imported_by(["iolatency", "--backend", "ftrace", "--input", TRACE], env=env)
    assert r["rc"] == 0, r["err"]
    assert "kerntrace.plugins.iolatency" in r["modules"]
    assert "kerntrace.plugins.opensnoop" not in r["modules"], r["modules"]
    # third-party plugins still load, and a broken one is still one line
    assert r["err"].count("'broken' failed to load: RuntimeError: boom") == 1, r["err"]
    # a tool only a third-party plugin provides still runs (all are loaded)
    r = imported_by(["hellotool", "-h"], env=env)
    assert "hellotool" in r["out"] + r["err"] and "unknown tool" not in r["err"], r["err"]
    assert "kerntrace.plugins.opensnoop" in r["modules"]
    r = imported_by(["nosuchtool"], env=env)
    assert r["rc"] == 2 and "unknown tool 'nosuchtool'" in r["err"]


def test_list_imports_no_backend_code_and_still_names_both_backends():
    r = imported_by(["list"])
    assert r["rc"] == 0 and "iolatency" in r["out"], r["err"]
    assert "kerntrace.backends.ebpf.backend" not in r["modules"]
    assert "kerntrace.backends.ftrace.backend" not in r["modules"]
    r = imported_by(["iolatency", "--help"])
    assert "ebpf" in r["out"] + r["err"]


def test_an_ebpf_run_imports_nothing_of_the_ftrace_backend_but_its_cleanup():
    """(Whether this host can run it or not: an explicit --backend ebpf
    never falls back, so it never probes ftrace.)"""
    r = imported_by(["iolatency", "--backend", "ebpf", "--print-program"])
    ftrace = [m for m in r["modules"] if m.startswith("kerntrace.backends.ftrace")]
    assert "kerntrace.backends.ftrace.backend" not in ftrace, (r["rc"], r["err"])
    assert "kerntrace.backends.ebpf.backend" in r["modules"]


def test_the_ebpf_backend_is_imported_when_probed():
    from kerntrace.core.pluginhost import PluginHost
    (ebpf,) = [b for b in PluginHost(load_third_party=False).backends() if b.name == "ebpf"]
    assert (ebpf.name, ebpf.preference) == ("ebpf", 10)
    from kerntrace.backends.ebpf.backend import EbpfBackend
    assert isinstance(ebpf.loaded(), EbpfBackend)
    assert (ebpf.loaded().name, ebpf.loaded().preference) == (ebpf.name, ebpf.preference)


def test_cleaning_up_after_killed_ebpf_runs_imports_only_the_probe_remover(tmp_path):
    """Every run cleans up after killed runs of every backend; for eBPF
    that is bcc's probe definitions in kprobe_events/uprobe_events."""
    (tmp_path / "kprobe_events").write_text("p:kprobes/p_do_sys_open_bcc_%d do_sys_open\n"
                                            % (4 * 1024 * 1024 + 1))
    (tmp_path / "uprobe_events").write_text("")
    code = ("import sys\nfrom kerntrace.core.pluginhost import PluginHost\n"
            "class H(object):\n    def tracefs_path(self): return %r\n"
            "(b,) = [b for b in PluginHost(load_third_party=False).backends() if b.name == 'ebpf']\n"
            "problems = []\n"
            "print(len(b.cleanup_stale(H(), problems=problems)), len(problems),\n"
            "      'kerntrace.backends.ebpf.backend' in sys.modules)\n" % str(tmp_path))
    out = subprocess.check_output([sys.executable, "-c", code], universal_newlines=True)
    # (a regular file takes the "-:" write as its content: removed)
    assert out.split() == ["1", "0", "False"]


def test_entry_points_are_found_as_importlib_metadata_finds_them(tmp_path):
    """The sys.path scan finds the same entry points, kerntrace's own and a
    third-party package's, in the same order, and a broken one is still
    one warning line."""
    path = plugin_dir(tmp_path, {"kt_good": GOOD, "kt_broken": BROKEN_IMPORT})
    code = ("import io, json, sys\nfrom kerntrace.core import pluginhost as p\n"
            "names = lambda f: [[n for n, _ in half] for half in f('kerntrace.plugins')]\n"
            "fast = names(p._scanned_entry_points)\n"
            "modules = sorted(m for m in sys.modules if 'metadata' in m)\n"
            "w = io.StringIO(); tools = p.PluginHost(warn=w).tools()\n"
            "print(json.dumps([fast, names(p._metadata_entry_points), modules,\n"
            "                  'hellotool' in tools, w.getvalue()]))\n")
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("KERNTRACE_DISABLE_PLUGINS", None)
    out = subprocess.check_output([sys.executable, "-c", code], env=env, universal_newlines=True)
    fast, slow, modules, hello, warnings = json.loads(out)
    assert fast == slow and "iolatency" in fast[0] and "ebpf" in fast[0]
    assert fast[1] == ["good", "broken"] or fast[1] == ["broken", "good"]
    assert set(modules) <= imported_by_pluggy(), modules
    assert hello
    assert warnings.count("\n") == 1 and "'broken' failed to load: RuntimeError: boom" in warnings
