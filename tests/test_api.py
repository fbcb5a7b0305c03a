"""kerntrace.core.api is the plugin authors' one import: it exports what
its docstring (and the docs) promise, the built-in plugins import nothing
else of kerntrace, and every hook spec is documented and tested."""

import ast
import glob
import os
import re

import pytest

from kerntrace.core import api, hookspecs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))


def documented_names():
    """The names api's docstring lists under its headings (indented lines)."""
    names = []
    for line in api.__doc__.splitlines():
        if line.startswith("    ") and not line.strip().startswith("KERNTRACE_API_VERSION"):
            names.extend(n.strip() for n in line.split(",") if n.strip())
    return names


def test_the_surface_exports_what_its_docstring_lists():
    documented = documented_names()
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(api.__all__)
    for name in api.__all__:
        assert getattr(api, name, None) is not None, name


def test_the_surface_has_what_a_tool_needs():
    """The pieces issue 9 names: model classes, option helpers, printers,
    result types, hook markers and the API version."""
    for name in ("Measurement", "Event", "Tracepoint", "UserFunction", "Histogram", "Filter",
                 "pid_value", "report_at_end", "report_every", "FOREVER", "getopts",
                 "parse_options", "EventTablePrinter", "PerfToolsEventTablePrinter",
                 "BccHistogramPrinter", "Report", "HistogramSet", "Record", "hookimpl",
                 "API_VERSION", "Tool", "replay", "evaluate", "TraceEvent", "Lost",
                 "IntervalEnd"):
        assert name in api.__all__, name
    assert re.match(r"^\d+\.\d+\Z", api.API_VERSION)


def test_option_helpers():
    assert api.pid_value("181") == 181
    for bad in ("0", "-1", "\u00b2", "12x", str(api.PID_MAX_LIMIT), "", None):
        with pytest.raises(api.UsageError, match="invalid PID"):
            api.pid_value(bad)
    at_end = api.report_at_end()
    assert at_end.interval == api.FOREVER and at_end.count == 0
    assert api.report_every(None, 3).interval == api.FOREVER
    every = api.report_every(2.5, 4, duration=30)
    assert (every.interval, every.count, every.duration) == (2.5, 4, 30)
    options, operands, ns = api.getopts(["-Qd", "202,1", "--json", "5"], "hQd:", "USAGE")
    assert options == [("Q", None), ("d", "202,1")] and operands == ["5"] and ns.json


def imports_of(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "plugins", "*.py"))),
                         ids=os.path.basename)
def test_builtin_plugins_import_only_the_public_api(path):
    for module in imports_of(path):
        if module.startswith("kerntrace"):
            assert module == "kerntrace.core.api" or module == "kerntrace.core", (path, module)
        else:
            assert not module.startswith(".") or module in (".", ".blockdev"), (path, module)
    with open(path) as f:
        text = f.read()
    assert not re.search(r"from kerntrace\.core import (?!api\b)", text), path


def doc_files():
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "core", "tool.py")]
    for pattern in ("docs/**/*.md", "docs/**/*.py", "examples/**/*.py", "examples/**/*.md"):
        files.extend(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return [f for f in files if os.path.isfile(f)]


def test_the_docs_use_only_names_the_surface_exports():
    """Every `api.NAME` and every name imported from kerntrace.core.api in
    README, docs/ and examples/ exists (a rename cannot strand the guide)."""
    used = set()
    for path in doc_files():
        with open(path) as f:
            text = f.read()
        used.update((path, n) for n in re.findall(r"\bapi\.([A-Za-z_][A-Za-z0-9_]*)", text))
        groups = re.findall(r"from kerntrace\.core\.api import \(([^)]*)\)", text)
        groups += re.findall(r"from kerntrace\.core\.api import ([^(\n]+)", text)
        for group in groups:
            names = re.sub(r"#[^\n]*", "", group).split(",")
            used.update((path, n.split(" as ")[0].strip()) for n in names if n.strip())
    missing = sorted((os.path.relpath(p, ROOT), n) for p, n in used if n not in api.__all__)
    assert not missing


def hookspec_functions():
    return sorted(name for name, obj in vars(hookspecs).items()
                  if callable(obj) and getattr(obj, hookspecs.PROJECT + "_spec", None) is not None)


def guide_hooks_section():
    """The text of docs/plugins.md's hooks section (its last "## N. Hooks")."""
    with open(os.path.join(ROOT, "docs", "plugins.md")) as f:
        guide = f.read()
    heading = re.search(r"^## \d+\. Hooks$", guide, re.M)
    assert heading, "docs/plugins.md has no Hooks section"
    following = re.search(r"^## ", guide[heading.end():], re.M)
    return guide[heading.end():heading.end() + following.start() if following else None]


def test_every_hook_spec_is_documented_and_tested():
    """A new hook spec needs a docstring, an entry in the plugin author's
    guide's Hooks section (plugin authors read both) and a test that calls
    or implements it (a test file other than this one names it)."""
    specs = hookspec_functions()
    assert {"kerntrace_tools", "kerntrace_backends", "kerntrace_select_backend"} <= set(specs)
    hooks = guide_hooks_section()
    undocumented = [name for name in specs if not re.search(r"^\* `%s\(" % name, hooks, re.M)]
    assert not undocumented, "docs/plugins.md, Hooks: no entry for %s" % undocumented
    tests = {}
    for path in glob.glob(os.path.join(HERE, "test_*.py")):
        if os.path.basename(path) != os.path.basename(__file__):
            with open(path) as f:
                tests[os.path.basename(path)] = f.read()
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.split()) >= 8, "hook spec %s has no docstring" % name
        assert any(re.search(r"\b%s\b" % name, text) for text in tests.values()), \
            "no test exercises hook spec %s" % name
