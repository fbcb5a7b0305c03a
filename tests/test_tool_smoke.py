"""Every built-in tool ships like a bcc tool: -h with examples, a man page
that renders, and an example output file."""

import os
import shutil
import subprocess

import pytest

from clirun import run
from kerntrace.core.pluginhost import PluginHost

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(PluginHost(load_third_party=False).tools())


def test_builtin_tools_present():
    assert set(TOOLS) >= {"tpcount", "iolatency", "biolatency", "biosnoop", "iosnoop", "bitesize"}


@pytest.mark.parametrize("tool", TOOLS)
def test_help_has_examples(tool):
    rc, out, err = run([tool, "-h"])
    assert rc == 0
    text = out + err  # iolatency prints its perf-tools usage on stderr
    assert "eg," in text or "examples:" in text
    assert tool in text


def assert_man_page_renders(page):
    """groff renders the page without a warning, with the sections a man
    page of a tool has (skips where groff is not installed)."""
    assert os.path.isfile(page)
    if not shutil.which("groff"):
        pytest.skip("groff is not installed: rendering not checked")
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", page], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES"):
        assert section in text


@pytest.mark.parametrize("tool", TOOLS + ["kerntrace"])
def test_man_page_renders(tool):
    assert_man_page_renders(os.path.join(ROOT, "man", "man8", tool + ".8"))


@pytest.mark.parametrize("tool", TOOLS)
def test_example_file_exists(tool):
    path = os.path.join(ROOT, "examples", tool + "_example.txt")
    assert os.path.isfile(path), "examples/%s_example.txt missing" % tool
    with open(path) as f:
        assert tool in f.read()
