"""Helpers the block tool tests share (imported from tests/test_tool_*.py
and tests/test_block_live.py): running a tool as a user would, the fake
traces in this directory, a fake /sys/class/block, and perf-tools' own awk
program run on a trace text."""

import io
import os
import shutil
import subprocess

DATA = os.path.dirname(os.path.abspath(__file__))
PERF_TOOLS_IOLATENCY = "/usr/sbin/iolatency-perf"


def trace(name):
    """Path of a fake trace in tests/data/block (see make_traces.py)."""
    path = os.path.join(DATA, name)
    assert os.path.isfile(path), "missing %s: run tests/data/block/make_traces.py" % path
    return path


def run_tool(name, argv):
    """Run a tool in this process, as its console script would;
    returns (exit status, stdout text, stderr text)."""
    from kerntrace.core.cli import run_tool as cli_run_tool
    out, err = io.StringIO(), io.StringIO()
    os.environ.setdefault("KERNTRACE_DISABLE_PLUGINS", "1")
    rc = cli_run_tool(name, list(argv), out=out, err=err, prog=name)
    return rc, out.getvalue(), err.getvalue()


def fake_disks(monkeypatch, tmp_path, disks, partitions=()):
    """Point the block tools' disk table at a fake /sys/class/block holding
    `disks` (name -> (major, minor)); names in `partitions` are partitions."""
    from kerntrace.plugins import blockdev
    root = tmp_path / "sys-class-block"
    for name, (major, minor) in disks.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "dev").write_text("%d:%d\n" % (major, minor))
        if name in partitions:
            (d / "partition").write_text("1\n")
    root.mkdir(exist_ok=True)
    monkeypatch.setattr(blockdev, "SYS_CLASS_BLOCK", str(root))
    monkeypatch.setattr(blockdev, "PROC_PARTITIONS", str(tmp_path / "no-proc-partitions"))
    return root


def perf_tools_awk_program():
    """The awk program inside Debian's perf-tools iolatency script (read at
    test time, never copied into the repository), or None."""
    try:
        with open(PERF_TOOLS_IOLATENCY) as f:
            src = f.read()
    except (IOError, OSError):
        return None
    marker = "$awk -v o=$offset -v opt_timestamp=$opt_timestamp -v b_start=$b_start '"
    start = src.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = src.find("\n'\n", start)
    return src[start:end] if end > 0 else None


def awk_binary():
    # perf-tools prefers mawk, else awk.
    return shutil.which("mawk") or shutil.which("awk")


def run_perf_tools_awk(program, trace_path, b_start="block_rq_issue", tmp_path=None):
    """Feed a saved trace to perf-tools' iolatency awk as its script would
    (trace text, then the "tick" line that prints a summary); the offset
    o=1 is what the script computes for a trace with a flags column."""
    prog = os.path.join(str(tmp_path), "iolatency-perf.awk")
    with open(prog, "w") as f:
        f.write(program)
    with open(trace_path) as f:
        text = f.read()
    p = subprocess.run([awk_binary(), "-v", "o=1", "-v", "opt_timestamp=0", "-v",
                        "b_start=" + b_start, "-f", prog],
                       input=text + "tick\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout, p.stderr


def histogram_blocks(text):
    """The perf-tools histograms in a tool's stdout, each as a list of lines
    (header and rows)."""
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("  >=(ms) .. <(ms)"):
            cur = [line]
            blocks.append(cur)
        elif cur is not None and " -> " in line and line.rstrip().endswith("|"):
            cur.append(line)
        else:
            cur = None
    return blocks


def run_cli(argv, timeout=120):
    """Run `kerntrace <argv>` in a subprocess, as a user would; returns
    (exit status, stdout, stderr)."""
    import clirun   # tests/clirun.py (tests/ is on sys.path via conftest)
    return clirun.run(list(argv), timeout=timeout)


MAN_SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "REQUIREMENTS", "OPTIONS", "EXAMPLES",
                "FIELDS", "OVERHEAD", "SOURCE", "SEE ALSO")


def check_man_page(tool):
    """The tool's man page exists, has the project's sections, and renders
    with `man -l` (or at least formats with groff/nroff) without warnings.
    Returns the rendered text (or None without a formatter)."""
    page = os.path.join(DATA, "..", "..", "..", "man", "man8", tool + ".8")
    page = os.path.normpath(page)
    assert os.path.isfile(page), page
    with open(page) as f:
        src = f.read()
    headings = [line[4:].strip().strip('"') for line in src.splitlines() if line.startswith(".SH ")]
    for section in MAN_SECTIONS:
        assert section in headings, "%s: no %s section" % (page, section)
    assert src.startswith(".TH %s 8 " % tool)
    man = shutil.which("man")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    if man:
        p = subprocess.run([man, "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stderr.strip() == "", p.stderr
        return p.stdout
    fmt = shutil.which("groff") or shutil.which("nroff")
    if fmt:
        args = [fmt, "-ww", "-man", "-Tutf8"] if fmt.endswith("groff") else [fmt, "-man"]
        p = subprocess.run(args + [page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=60)
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
        return p.stdout
    # No formatter: at least every request line is a known man macro.
    for line in src.splitlines():
        if line.startswith("."):
            assert line.split()[0] in (".TH", ".SH", ".SS", ".TP", ".PP", ".B", ".I", ".br",
                                       ".BR", ".IR", ".RS", ".RE", ".IP", ".nf", ".fi"), line
    return None
