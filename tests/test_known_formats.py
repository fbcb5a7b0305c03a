"""The stored kernel format files (core/formats/) are package data: the
index and the tree agree, every file parses, and the installed package
(a wheel) carries all of them."""

import configparser
import fnmatch
import glob
import os
import subprocess
import sys
import zipfile

import pytest

from kerntrace.core import known_formats
from kerntrace.core.tracefs import parse_format

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "core", "formats")


def tree_files():
    out = set()
    for dirpath, _dirs, files in os.walk(DATA):
        for name in files:
            out.add(os.path.relpath(os.path.join(dirpath, name), DATA).replace(os.sep, "/"))
    return out


def test_index_lists_exactly_the_event_files_of_the_tree():
    listed = set()
    with open(os.path.join(DATA, "INDEX")) as f:
        for line in f:
            era, system, event = line.split()
            listed.add("%s/%s/%s/format" % (era, system, event))
    events = {p for p in tree_files() if p.endswith("/format")}
    assert listed == events


def test_every_era_has_its_headers_and_every_format_parses():
    assert known_formats.ERAS == ("2.6.32", "rhel6", "3.4", "3.10", "4.4", "4.19", "5.10",
                                  "5.15", "6.18")
    for era in known_formats.ERAS:
        assert known_formats.HEADER_PAGE[era].startswith("\tfield: u64 timestamp;")
        assert "type_len" in known_formats.HEADER_EVENT[era]
        for (system, event), text in known_formats.FORMATS[era].items():
            fmt = parse_format(text, system)
            assert (fmt.system, fmt.name) == (system, event)
            assert fmt.print_fmt.startswith('"')
            assert known_formats.event_format(era, system, event).fields


def test_candidates_are_newest_era_first():
    cands = known_formats.candidates("block", "block_rq_complete")
    assert len(cands) == len(known_formats.ERAS)
    assert cands[0].field("ioprio") is not None           # 6.18
    assert cands[-1].field("common_lock_depth") is not None   # 2.6.32
    assert known_formats.candidates("sched", "sched_process_fork") == []


def test_package_data_globs_cover_every_data_file():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    globs = [g.strip() for g in cfg.get("options.package_data", "kerntrace.core").split("\n")
             if g.strip()]
    for rel in tree_files():
        assert any(fnmatch.fnmatch("formats/" + rel, g) for g in globs), rel


@pytest.mark.slow
def test_an_installed_wheel_loads_the_formats(tmp_path):
    subprocess.check_call([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "-w", str(tmp_path), ROOT], stdout=subprocess.DEVNULL)
    wheel = glob.glob(str(tmp_path / "kerntrace-*.whl"))[0]
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(str(target))
    # the same answers from the installed copy, in a Python that has only it
    code = ("import sys; sys.path.insert(0, %r); "
            "from kerntrace.core import known_formats as k; "
            "print(sum(len(v) for v in k.FORMATS.values()), len(k.HEADER_PAGE))" % str(target))
    out = subprocess.check_output([sys.executable, "-S", "-c", code], cwd=str(tmp_path),
                                  universal_newlines=True)
    assert out.split() == [str(sum(len(v) for v in known_formats.FORMATS.values())),
                           str(len(known_formats.ERAS))]


# ---------------------------------------------------------------------------
# The era layouts as the kernel sources and real captures have them
# (../shared/reference/kernel-eras.md of the development tree, "Checked
# against kernel sources and real captures"): pinned here, so the corpus
# the era tests derive their fixtures from cannot drift from them.
def _layout(era, system, event):
    fmt = known_formats.event_format(era, system, event)
    return dict((f.name, (f.ctype, f.offset, f.size)) for f in fmt.fields)


# era -> (the extra common field at offset 8 or None, payload start,
#         rwbs (declaration, offset, size), comm offset, syscall nr field,
#         complete's error field, sched_process_exec, openat mode type)
ERA_FACTS = {
    "2.6.32": ("common_lock_depth", 12, ("char", 32, 6), 38, "nr", "errors", False, "int"),
    "rhel6": ("common_lock_depth", 12, ("char", 32, 8), 40, None, "errors", False, "int"),
    "3.4": ("common_padding", 12, ("char", 32, 8), 40, "nr", "errors", True, "umode_t"),
    "3.10": (None, 8, ("char", 32, 8), 40, "nr", "errors", True, "umode_t"),
    "4.4": (None, 8, ("char", 32, 8), 40, "nr", "errors", True, "umode_t"),
    "4.19": (None, 8, ("char", 32, 8), 40, "__syscall_nr", "error", True, "umode_t"),
    "5.10": (None, 8, ("char", 32, 8), 40, "__syscall_nr", "error", True, "umode_t"),
    "5.15": (None, 8, ("char", 32, 8), 40, "__syscall_nr", "error", True, "umode_t"),
    # (~v6.11: unsigned short ioprio at 32 before a 10-byte rwbs)
    "6.18": (None, 8, ("char", 34, 10), 44, "__syscall_nr", "error", True, "umode_t"),
}


@pytest.mark.parametrize("era", sorted(ERA_FACTS))
def test_era_layouts_are_the_kernel_sources(era):
    extra, start, rwbs, comm, nr, error, exec_event, mode = ERA_FACTS[era]
    issue = _layout(era, "block", "block_rq_issue")
    common = sorted(n for n in issue if n.startswith("common_"))
    assert common == sorted(["common_type", "common_flags", "common_preempt_count",
                             "common_pid"] + ([extra] if extra else []))
    if extra:
        assert issue[extra][1:] == (8, 4)
    assert issue["dev"][1] == start
    assert (issue["rwbs"][0].split()[0],) + issue["rwbs"][1:] == rwbs
    assert issue["comm"][1] == comm
    assert "bytes" in issue and error in _layout(era, "block", "block_rq_complete")
    openat = _layout(era, "syscalls", "sys_enter_openat")
    assert [n for n in openat if n in ("nr", "__syscall_nr")] == ([nr] if nr else [])
    if nr:
        assert openat[nr][1] == start
    assert openat["mode"][0] == mode
    has_exec = ("sched", "sched_process_exec") in known_formats.FORMATS[era]
    assert has_exec == exec_event
    if exec_event:
        assert _layout(era, "sched", "sched_process_exec")["filename"][1] == start


@pytest.mark.parametrize("era", sorted(known_formats.HEADER_PAGE))
def test_header_pages_of_the_eras(era):
    """Three lines (no `overwrite`) on 2.6.32 and RHEL 6; `char data`
    signed:1 on x86 until v6.2, no signed: column on mainline 2.6.32; the
    `signed:` column and RHEL 6's literal RWBS_LEN in its block formats."""
    text = known_formats.HEADER_PAGE[era]
    assert ("overwrite" in text) == (era not in ("2.6.32", "rhel6"))
    data = [l for l in text.splitlines() if "char data" in l][0]
    want = {"2.6.32": "", "6.18": "\tsigned:0;"}.get(era, "\tsigned:1;")
    assert data.endswith("size:4080;" + want)
    block = known_formats.FORMATS[era][("block", "block_rq_issue")]
    assert ("signed:" in block) == (era != "2.6.32")
    assert ("rwbs[RWBS_LEN]" in block) == (era == "rhel6")
