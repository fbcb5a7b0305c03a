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
