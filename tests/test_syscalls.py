"""The system call tables (core/syscalls.py, core/syscall_tables/)."""

import glob
import os
import re

import pytest

from kerntrace.core import syscalls
from kerntrace.core.api import syscall_name, syscall_number, syscall_table
from kerntrace.core.errors import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))


# Numbers every Linux release since the syscall's introduction has kept (the
# ABI never renumbers): a wrong row or an off-by-one in the data shows here.
KNOWN = {
    "x86_64": {"read": 0, "getpid": 39, "kill": 62, "getppid": 110, "tkill": 200,
               "exit_group": 231, "tgkill": 234, "openat": 257, "newfstatat": 262,
               "rseq": 334, "pidfd_send_signal": 424, "openat2": 437, "mseal": 462},
    "aarch64": {"io_setup": 0, "openat": 56, "read": 63, "newfstatat": 79, "kill": 129,
                "tkill": 130, "tgkill": 131, "getppid": 173, "mmap": 222,
                "recvmmsg": 243, "wait4": 260, "kexec_file_load": 294,
                "pidfd_send_signal": 424, "openat2": 437, "memfd_secret": 447,
                "mseal": 462},
}


@pytest.mark.parametrize("arch", sorted(KNOWN))
def test_known_numbers(arch):
    table = syscall_table(arch)
    for name, number in KNOWN[arch].items():
        assert table.number(name) == number, name
        assert table.name(number) == name


def test_aarch64_has_no_legacy_calls():
    """arm64 uses the generic table: no open(), fork() or getdents()."""
    table = syscall_table("arm64")
    for name in ("open", "fork", "getdents", "stat", "time"):
        assert name not in table
    assert table.name(42) == "[unknown: 42]"       # a hole in the generic table


def test_x86_64_is_the_64_bit_abi_not_x32():
    table = syscall_table("x86_64")
    assert table.name(13) == "rt_sigaction"
    assert table.name(512) == "[unknown: 512]"     # x32's compat rt_sigaction
    assert table.number("rt_sigaction") == 13


def test_unknown_name_is_one_line():
    with pytest.raises(UsageError) as e:
        syscall_number("getppidd", "x86_64")
    assert "\n" not in str(e.value) and "getppidd" in str(e.value)
    with pytest.raises(UsageError) as e:
        syscall_number("kill:traceoff\nx", "x86_64")
    assert "\n" not in str(e.value)


def test_unknown_architecture_names_nothing():
    table = syscall_table("sparc64")
    assert len(table) == 0 and table.name(1) == "[unknown: 1]"
    with pytest.raises(UsageError) as e:
        table.number("read")
    assert "no system call table" in str(e.value)


def test_this_host_has_a_table():
    if os.uname()[4] not in ("x86_64", "aarch64"):
        pytest.skip("no table for %s" % os.uname()[4])
    assert len(syscall_table()) > 300
    assert syscall_name(syscall_number("getppid")) == "getppid"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(
    HERE, "..", "core", "syscall_tables", "*.tbl"))))
def test_data_files_cite_their_source_and_parse(path):
    text = open(path).read()
    assert re.search(r"commit [0-9a-f]{40}", text), "no kernel commit cited"
    names = syscalls.parse_table(text)
    assert len(set(names.values())) == len(names)  # one number per name
    assert all(re.match(r"^[a-z_][a-z0-9_]*\Z", n) for n in names.values())


def test_parse_refuses_duplicates_and_junk():
    with pytest.raises(ValueError):
        syscalls.parse_table("0 read\n0 write\n")
    with pytest.raises(ValueError):
        syscalls.parse_table("x read\n")
