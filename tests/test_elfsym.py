"""ELF symbol -> file offset (core/elfsym.py), the address a
uprobe needs.  Real binaries of this machine are checked against what
binutils (readelf) computes at test time; synthetic files cover 32-bit and
big-endian objects the machine does not have."""

import os
import re
import shutil
import subprocess

import pytest

import workloads
from fake_tracefs import (STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FUNC, STT_GNU_IFUNC,
                          STT_OBJECT, make_elf)
from kerntrace.backends.ftrace import probes
from kerntrace.core import elfsym

needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf not installed")


def _readelf_loads(path):
    """[(offset, vaddr, filesz)] of the PT_LOAD headers, per readelf -lW."""
    out = subprocess.check_output(["readelf", "-lW", path], universal_newlines=True)
    loads = []
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["LOAD"]:
            loads.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
    return loads


def _readelf_functions(path, dynamic):
    """{name: value} of defined FUNC symbols, per readelf."""
    args = ["readelf", "-Ws", "--dyn-syms" if dynamic else "--syms", path]
    out = subprocess.check_output(args, universal_newlines=True)
    funcs = {}
    section = None
    for line in out.splitlines():
        if line.startswith("Symbol table"):
            section = ".dynsym" if ".dynsym" in line else ".symtab"
        parts = line.split()
        if len(parts) >= 8 and parts[3] == "FUNC" and parts[6] != "UND" \
                and (section == ".dynsym") == dynamic:
            funcs.setdefault(parts[7].split("@")[0], int(parts[1], 16))
    return funcs


def _expected_offset(loads, vaddr):
    for off, va, size in loads:
        if va <= vaddr < va + size:
            return vaddr - va + off
    return None


def libc_path():
    return probes.resolve_library("c")


@needs_readelf
@pytest.mark.parametrize("symbol", ["malloc", "getppid", "open", "free"])
def test_libc_symbols_match_readelf(symbol):
    path = libc_path()
    expected = _expected_offset(_readelf_loads(path), _readelf_functions(path, True)[symbol])
    sym = elfsym.find_symbol(path, symbol)
    assert sym.offset == expected
    assert sym.table == ".dynsym"


@needs_readelf
def test_stripped_binary_uses_dynsym():
    path = os.path.realpath("/bin/ls")
    funcs = _readelf_functions(path, True)
    if not funcs:
        pytest.skip("/bin/ls exports no functions here")
    loads = _readelf_loads(path)
    for name, value in sorted(funcs.items())[:5]:
        assert elfsym.find_symbol(path, name).offset == _expected_offset(loads, value)
    with pytest.raises(elfsym.ElfError, match="no function symbol 'main'"):
        elfsym.find_symbol(path, "main")    # stripped: main is not exported


@needs_readelf
def test_compiled_caller_symtab(tmp_path):
    exe = workloads.build_caller(tmp_path)
    if exe is None:
        pytest.skip("no C compiler")
    funcs = _readelf_functions(exe, False)
    loads = _readelf_loads(exe)
    for name in ("kerntrace_work", "main"):
        sym = elfsym.find_symbol(exe, name)
        assert sym.offset == _expected_offset(loads, funcs[name])
        assert sym.table == ".symtab"


def test_ifunc_is_flagged_and_refused_for_probes():
    path = libc_path()
    # strlen is an IFUNC in glibc on x86_64: probing the resolver would count
    # symbol bindings, not calls.
    sym = elfsym.find_symbol(path, "strlen")
    if not sym.is_ifunc:
        pytest.skip("strlen is not an IFUNC in this libc")
    with pytest.raises(probes.ProbeError, match="IFUNC"):
        probes.resolve_symbol(path, "strlen")


# -- synthetic objects ---------------------------------------------------------
@pytest.mark.parametrize("bits,little", [(64, True), (64, False), (32, True), (32, False)])
@pytest.mark.parametrize("table", ["dynsym", "symtab"])
def test_synthetic_classes_and_byte_orders(tmp_path, bits, little, table):
    base = 0x400000
    data = make_elf([("f_global", base + 0x1010, STT_FUNC, STB_GLOBAL),
                     ("f_weak", base + 0x1020, STT_FUNC, STB_WEAK),
                     ("an_object", base + 0x1030, STT_OBJECT, STB_GLOBAL),
                     ("imported", 0, STT_FUNC, None)],
                    bits=bits, little=little, table=table,
                    segments=[(0, base, 0x2000, 5)])
    p = tmp_path / "lib.so"
    p.write_bytes(data)
    f = elfsym.ElfFile(str(p))
    assert f.is64 == (bits == 64) and f.little_endian == little
    assert elfsym.find_symbol(str(p), "f_global").offset == 0x1010
    assert elfsym.find_symbol(str(p), "f_weak").offset == 0x1020
    assert elfsym.find_symbol(str(p), "f_global").table == "." + table
    with pytest.raises(elfsym.ElfError, match="no function symbol"):
        elfsym.find_symbol(str(p), "an_object")     # not a function
    with pytest.raises(elfsym.ElfError, match="no function symbol"):
        elfsym.find_symbol(str(p), "imported")      # undefined here


def test_offset_comes_from_the_segment_not_the_address(tmp_path):
    # Second segment: file offset 0x1000 mapped at 0x201000 (delta != 0).
    data = make_elf([("in_text", 0x840, STT_FUNC, STB_GLOBAL),
                     ("in_second", 0x201080, STT_FUNC, STB_GLOBAL),
                     ("nowhere", 0x900000, STT_FUNC, STB_GLOBAL)],
                    segments=[(0, 0, 0x1000, 5), (0x1000, 0x201000, 0x100, 5)])
    p = tmp_path / "seg.so"
    p.write_bytes(data)
    assert elfsym.find_symbol(str(p), "in_text").offset == 0x840
    assert elfsym.find_symbol(str(p), "in_second").offset == 0x1080
    with pytest.raises(elfsym.ElfError, match="no loadable segment"):
        elfsym.find_symbol(str(p), "nowhere")


def test_global_preferred_over_local_duplicate(tmp_path):
    data = make_elf([("dup", 0x100, STT_FUNC, STB_LOCAL),
                     ("dup", 0x200, STT_FUNC, STB_GLOBAL)], table="symtab")
    p = tmp_path / "dup.so"
    p.write_bytes(data)
    assert elfsym.find_symbol(str(p), "dup").offset == 0x200


def test_synthetic_ifunc(tmp_path):
    data = make_elf([("pick", 0x300, STT_GNU_IFUNC, STB_GLOBAL)])
    p = tmp_path / "ifunc.so"
    p.write_bytes(data)
    assert elfsym.find_symbol(str(p), "pick").is_ifunc


@pytest.mark.parametrize("content,message", [
    (b"#!/bin/sh\necho hi\n" + b"\0" * 64, "not an ELF file"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00" + b"\0" * 40, "truncated"),
    (b"\x7fELF\x09\x01\x01" + b"\0" * 60, "unsupported ELF class"),
])
def test_bad_files_raise_one_line(tmp_path, content, message):
    p = tmp_path / "bad"
    p.write_bytes(content)
    with pytest.raises(elfsym.ElfError, match=message) as exc:
        elfsym.find_symbol(str(p), "x")
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(elfsym.ElfError, match="cannot read"):
        elfsym.find_symbol(str(tmp_path / "nope"), "x")


# -- library names -------------------------------------------------------------
def test_short_library_names_resolve_to_real_paths():
    path = probes.resolve_library("c")
    assert os.path.isabs(path) and os.path.realpath(path) == path
    assert re.match(r"^libc[-.]", os.path.basename(path))
    assert probes.resolve_library(path) == path


@pytest.mark.parametrize("name,message", [
    ("relative/libc.so", "must be absolute"),
    ("no_such_library_kerntrace", "not found"),
    ("/etc/hostname", "not an ELF"),
])
def test_library_errors(name, message):
    with pytest.raises(probes.ProbeError, match=message):
        probes.resolve_library(name)


def test_unsafe_path_is_refused(tmp_path):
    d = tmp_path / "a b"          # a blank would split the uprobe_events line
    d.mkdir()
    p = d / "lib.so"
    p.write_bytes(make_elf([("f", 0x10, STT_FUNC, STB_GLOBAL)]))
    with pytest.raises(probes.ProbeError, match="unusual characters"):
        probes.resolve_library(str(p))


# ---------------------------------------------------------------------------
# USDT probe notes (.note.stapsdt)
def _readelf_usdt(path):
    """[(provider, name, pc, semaphore vaddr)] per readelf -nW."""
    text = subprocess.check_output(["readelf", "-nW", path], universal_newlines=True)
    return [(m.group(1), m.group(2), int(m.group(3), 16), int(m.group(4), 16))
            for m in re.finditer(r"Provider: (\S+)\s+Name: (\S+)\s+Location: (0x[0-9a-f]+), "
                                 r"Base: 0x[0-9a-f]+, Semaphore: (0x[0-9a-f]+)", text)]


def _check_usdt_against_readelf(path):
    ref = _readelf_usdt(path)
    elf = elfsym.ElfFile(path)
    ours = elf.usdt_probes()
    assert [(p.provider, p.name, p.pc) for p in ours] == [r[:3] for r in ref]
    loads = _readelf_loads(path)

    def offset(vaddr):
        return next(off + vaddr - va for off, va, size in loads if va <= vaddr < va + size)
    for p, (_prov, _name, pc, sem) in zip(ours, ref):
        assert p.offset == offset(pc)
        assert p.semaphore == (offset(sem) if sem else 0)
    return ours


@needs_readelf
def test_usdt_sites_and_semaphores_of_a_compiled_program_match_readelf(tmp_path):
    import usdtworkload
    exe, why = usdtworkload.build(tmp_path)
    if exe is None:
        pytest.skip("cannot build the USDT workload: %s" % why)
    ours = _check_usdt_against_readelf(exe)
    # kt:tick at two places, kt:guarded once and with a semaphore
    assert [(p.name, bool(p.semaphore)) for p in ours] == [
        ("tick", False), ("tick", False), ("guarded", True)]


@needs_readelf
def test_usdt_probes_of_this_machines_binaries_match_readelf():
    checked = 0
    for path in ("/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                 "/usr/lib/aarch64-linux-gnu/libstdc++.so.6"):
        path = os.path.realpath(path)
        if os.path.isfile(path) and _readelf_usdt(path):
            _check_usdt_against_readelf(path)
            checked += 1
    if not checked:
        pytest.skip("no binary with USDT probes among python3 and libstdc++")


def test_a_file_without_usdt_notes_has_no_probes(tmp_path):
    path = tmp_path / "plain.so"
    path.write_bytes(make_elf([("f", 0x1000, STT_FUNC, STB_GLOBAL)]))
    assert elfsym.ElfFile(str(path)).usdt_probes() == []
