"""USDT probe arguments: the operand descriptors of a .note.stapsdt note.

sys/sdt.h writes each argument of a probe as `SIZE@OPERAND`, the operand
as the compiler's assembler prints it (its "nor" constraint: a register, a
memory operand or a constant), the size in bytes negative for a signed
type (`-4@%eax` is an int in eax).  A tracer reads them at the probe's nop
from the registers and the memory they address:

    x86-64    -4@%eax   8@%rdi   8@-16(%rbp)   4@(%rax)   -4@$-5   8@$10
    aarch64   8@x0   -4@w1   8@[sp, 16]   8@[x29]   -4@-5

Kept here: a register, a register plus a displacement (memory), and a
constant.  Refused with the reason: an indexed memory operand
(`8(%rax,%rdx,8)`), one addressed by a symbol (`sym(%rip)`), segment
registers, floating-point and vector registers, and high-byte registers.
Nothing of the descriptor text reaches generated code: a backend uses the
canonical register name (from the tables here), the integers and the type.
"""

import re

# Canonical register: the kernel's pt_regs name (the uprobe fetch arg is
# "%" + it; documented in Documentation/trace/uprobetracer.rst).
_X86_64 = {}
for _n in ("ax", "bx", "cx", "dx"):
    _X86_64.update({"r" + _n: _n, "e" + _n: _n, _n: _n, _n[0] + "l": _n})
for _n in ("si", "di", "bp", "sp"):
    _X86_64.update({"r" + _n: _n, "e" + _n: _n, _n: _n, _n + "l": _n})
for _i in range(8, 16):
    _r = "r%d" % _i
    _X86_64.update({_r: _r, _r + "d": _r, _r + "w": _r, _r + "b": _r})
_X86_64_HIGH = ("ah", "bh", "ch", "dh")

_AARCH64 = {"sp": "sp"}
for _i in range(31):
    _AARCH64.update({"x%d" % _i: "x%d" % _i, "w%d" % _i: "x%d" % _i})

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}

_SIZES = (1, 2, 4, 8)
_INT = r"[-+]?(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_DESC = re.compile(r"^(?:(?P<size>-?[0-9]+)@)?(?P<op>.+)\Z", re.S)
_X86_REG = re.compile(r"^%(?P<reg>[a-z0-9]+)\Z")
_X86_MEM = re.compile(r"^(?P<disp>%s)?\(%%(?P<reg>[a-z0-9]+)\)\Z" % _INT)
_X86_CONST = re.compile(r"^\$(?P<value>%s)\Z" % _INT)
_A64_MEM = re.compile(r"^\[(?P<reg>[a-z0-9]+)(?:,\s*#?(?P<disp>%s))?\]\Z" % _INT)
_A64_CONST = re.compile(r"^#?(?P<value>%s)\Z" % _INT)
# The operands of one note: blanks separate them, except inside aarch64's
# brackets ("8@[sp, 16]").
_TOKEN = re.compile(r"[^\s\[]*\[[^\]]*\]|\S+")
# Displacements and constants beyond this are no operand a compiler emits.
_LIMIT = 1 << 63


class UsdtArgError(Exception):
    """Why an argument descriptor cannot be read (one line)."""


class UsdtArg(object):
    """One argument of a USDT probe.

    kind    "reg"    the register's low `size` bytes
            "mem"    `size` bytes of user memory at register + disp
            "const"  the integer `value`
    size    1, 2, 4 or 8 bytes        signed  the C type is signed
    reg     canonical register name (pt_regs member), for reg and mem
    """

    __slots__ = ("text", "size", "signed", "kind", "reg", "disp", "value")

    def __init__(self, text, size, signed, kind, reg=None, disp=0, value=None):
        self.text = text
        self.size = size
        self.signed = signed
        self.kind = kind
        self.reg = reg
        self.disp = disp
        self.value = value

    @property
    def type(self):
        """The fetch/C type name: s8 .. u64."""
        return "%s%d" % ("s" if self.signed else "u", self.size * 8)

    def __eq__(self, other):
        return isinstance(other, UsdtArg) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__ if a != "text")

    def __repr__(self):
        return "UsdtArg(%s: %s %s)" % (self.text, self.type, {
            "reg": "%%%s" % self.reg, "mem": "%d(%%%s)" % (self.disp, self.reg),
            "const": str(self.value)}[self.kind])


def split_arguments(text):
    """The descriptors of a note's argument string, in order."""
    return _TOKEN.findall(text or "")


def arch_of(machine):
    """The parser's architecture name for platform.machine(), or None."""
    return ARCHES.get(machine)


def _int(text):
    value = int(text, 16) if "x" in text.lower() else int(text, 10)
    if not -_LIMIT <= value < _LIMIT:
        raise UsdtArgError("out of range")
    return value


def parse_argument(text, machine):
    """The UsdtArg of descriptor `text` (one of split_arguments) as the
    compiler for `machine` (platform.machine()) writes it; raises
    UsdtArgError saying why it is not read."""
    arch = arch_of(machine)
    if arch is None:
        raise UsdtArgError("USDT arguments of %s are not read" % machine)
    m = _DESC.match(text)
    if m is None:
        raise UsdtArgError("empty argument descriptor")
    op = m.group("op")
    if m.group("size") is None:
        # Notes before the size prefix (sdt.h before 2010): a word, unsigned.
        size, signed = 8, False
    else:
        size = int(m.group("size"))
        signed, size = size < 0, abs(size)
        if size not in _SIZES:
            raise UsdtArgError("argument %s: size %d is not an integer's (1, 2, 4, 8)"
                               % (text, size))
    try:
        if arch == "x86_64":
            return _x86_64(text, op, size, signed)
        return _aarch64(text, op, size, signed)
    except ValueError:
        raise UsdtArgError("argument %s: malformed number" % text)


def _register(text, name, table, what):
    reg = table.get(name)
    if reg is None:
        raise UsdtArgError("argument %s: %%%s is not a general-purpose register%s"
                           % (text, name, what))
    return reg


def _x86_64(text, op, size, signed):
    m = _X86_CONST.match(op)
    if m:
        return UsdtArg(text, size, signed, "const", value=_int(m.group("value")))
    m = _X86_REG.match(op)
    if m:
        if m.group("reg") in _X86_64_HIGH:
            raise UsdtArgError("argument %s: high-byte registers are not read" % text)
        return UsdtArg(text, size, signed, "reg",
                       reg=_register(text, m.group("reg"), _X86_64, " (not read)"))
    m = _X86_MEM.match(op)
    if m:
        if m.group("reg") == "rip":
            raise UsdtArgError("argument %s: %%rip-relative memory is not read" % text)
        return UsdtArg(text, size, signed, "mem",
                       reg=_register(text, m.group("reg"), _X86_64, " (not read)"),
                       disp=_int(m.group("disp") or "0"))
    if "," in op:
        raise UsdtArgError("argument %s: indexed memory operands are not read" % text)
    if "%rip" in op:
        raise UsdtArgError("argument %s: memory addressed by a symbol (%%rip-relative) is "
                           "not read" % text)
    if ":" in op:
        raise UsdtArgError("argument %s: segment-relative memory is not read" % text)
    raise UsdtArgError("argument %s: not a register, register+offset or constant" % text)


def _aarch64(text, op, size, signed):
    m = _A64_CONST.match(op)
    if m:
        return UsdtArg(text, size, signed, "const", value=_int(m.group("value")))
    if op in _AARCH64:
        return UsdtArg(text, size, signed, "reg", reg=_AARCH64[op])
    m = _A64_MEM.match(op)
    if m:
        reg = _AARCH64.get(m.group("reg"))
        if reg is None or m.group("reg").startswith("w"):
            raise UsdtArgError("argument %s: %s is not a base register" % (text, m.group("reg")))
        return UsdtArg(text, size, signed, "mem", reg=reg, disp=_int(m.group("disp") or "0"))
    raise UsdtArgError("argument %s: not a register, [register, offset] or constant" % text)


def probe_argument(arguments, index, machine):
    """The UsdtArg of argument `index` (from 0) of a note's argument
    string; raises UsdtArgError (also when the probe has fewer)."""
    descs = split_arguments(arguments)
    if not 0 <= index < len(descs):
        raise UsdtArgError("the probe has %d argument%s, not %d"
                           % (len(descs), "" if len(descs) == 1 else "s", index + 1))
    return parse_argument(descs[index], machine)
