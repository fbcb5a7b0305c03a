"""System call numbers and names, per architecture.

raw_syscalls:sys_enter and sys_exit record a system call by number; what
that number means depends on the architecture.  The tables are data files
(syscall_tables/ARCH.tbl, "NUMBER NAME" lines), generated from the
kernel's own tables, which each file cites.  Any tool uses them:

    table = syscall_table()          # this host's architecture
    table.name(110)                  # "getppid" on x86_64
    table.number("getppid")          # 110 on x86_64, 173 on aarch64
    table.number("nosuchcall")       # UsageError, one line

The files are read with pkgutil, so they load the same from a source
checkout, an installed package and the single-file zipapp.
"""

import os
import pkgutil

from .errors import UsageError
from .errors import shown

_PACKAGE = __name__.rpartition(".")[0]

# uname -m values -> the table that serves them.
_MACHINES = {
    "x86_64": "x86_64", "amd64": "x86_64",
    "aarch64": "aarch64", "arm64": "aarch64",
}

_cache = {}


def architecture(machine=None):
    """The table name for a `uname -m` machine (this host's by default), or
    None when kerntrace has no table for it."""
    machine = machine if machine is not None else os.uname()[4]
    return _MACHINES.get(machine)


def parse_table(text):
    """{number: name} from a table file's text; '#' lines are comments."""
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError("syscall table line %d: expected NUMBER NAME, got %r"
                             % (lineno, line))
        number = int(parts[0])
        if number in out:
            raise ValueError("syscall table line %d: number %d listed twice" % (lineno, number))
        out[number] = parts[1]
    return out


class SyscallTable(object):
    """The system calls of one architecture (an empty table for an
    architecture kerntrace has none for: every number is then unknown)."""

    def __init__(self, arch, names):
        self.arch = arch
        self._names = dict(names)
        self._numbers = dict((name, nr) for nr, name in self._names.items())

    def name(self, number):
        """The name of syscall `number`, or "[unknown: N]" (as bcc's
        syscount shows a number it has no name for)."""
        try:
            return self._names[int(number)]
        except (KeyError, TypeError, ValueError):
            return "[unknown: %s]" % (number,)

    def number(self, name):
        """The number of syscall `name`; UsageError (one line) if there is
        none on this architecture."""
        if name in self._numbers:
            return self._numbers[name]
        if not self._names:
            raise UsageError("no system call table for this architecture (%s): cannot "
                             "look up %r" % (self.arch or os.uname()[4], shown(name)))
        raise UsageError("unknown system call %r on %s" % (shown(name), self.arch))

    def names(self):
        return sorted(self._numbers)

    def __contains__(self, name):
        return name in self._numbers

    def __len__(self):
        return len(self._names)


def syscall_table(machine=None):
    """The SyscallTable of `machine` (uname -m; default: this host)."""
    arch = architecture(machine)
    if arch not in _cache:
        names = {}
        if arch is not None:
            data = pkgutil.get_data(_PACKAGE, "syscall_tables/%s.tbl" % arch)
            names = parse_table(data.decode("utf-8"))
        _cache[arch] = SyscallTable(arch, names)
    return _cache[arch]


def syscall_name(number, machine=None):
    return syscall_table(machine).name(number)


def syscall_number(name, machine=None):
    return syscall_table(machine).number(name)
