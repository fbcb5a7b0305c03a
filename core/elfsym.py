"""ELF symbol -> file offset, for uprobes (which attach at a file offset).

Pure Python, no pyelftools: 32- and 64-bit, little- and big-endian objects,
symbols from .symtab (unstripped binaries), .dynsym (shared libraries,
stripped binaries) and the .symtab of the xz-compressed ELF in
.gnu_debugdata (MiniDebugInfo: stripped distribution binaries keep their
local function symbols there).  A symbol's virtual address is mapped to a file offset
through the PT_LOAD program header that contains it, the way the kernel
maps the file (section headers can lie about stripped debug data).

    sym = find_symbol("/lib/x86_64-linux-gnu/libc.so.6", "malloc")
    sym.offset   # what uprobe_events wants: /path:0x<offset>
"""

import struct

try:
    import lzma
except ImportError:     # a Python built without liblzma: no MiniDebugInfo
    lzma = None

ELF_MAGIC = b"\x7fELF"

# e_ident[EI_CLASS], e_ident[EI_DATA]
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2

SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM = 2, 7, 11
PT_LOAD = 1
PF_X = 1
SHN_UNDEF = 0
SHN_LORESERVE = 0xff00
SHN_XINDEX = 0xffff

STT_FUNC, STT_GNU_IFUNC = 2, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

# SystemTap SDT (USDT) probe notes: section .note.stapsdt, owner "stapsdt",
# type 3 (sys/sdt.h: _SDT_NOTE_NAME, _SDT_NOTE_TYPE).
STAPSDT_SECTION, STAPSDT_OWNER, NT_STAPSDT = ".note.stapsdt", b"stapsdt", 3

# Sanity bounds: a symbol table larger than this is not an ELF we trust.
_MAX_SYMBOLS = 50 * 1000 * 1000


class ElfError(Exception):
    """Not an ELF file, truncated, or the symbol is not in it (one line)."""


class Symbol(object):
    __slots__ = ("name", "value", "size", "type", "bind", "offset", "table")

    def __init__(self, name, value, size, type, bind, offset, table):
        self.name = name
        self.value = value      # virtual address (st_value)
        self.size = size
        self.type = type        # STT_*
        self.bind = bind        # STB_*
        self.offset = offset    # file offset of the code, for uprobes
        self.table = table      # ".symtab" or ".dynsym"

    @property
    def is_ifunc(self):
        return self.type == STT_GNU_IFUNC

    def __repr__(self):
        return "Symbol(%s @0x%x off=0x%x %s)" % (self.name, self.value, self.offset, self.table)


class UsdtProbe(object):
    """One site of a USDT probe: sys/sdt.h puts a note per use of a probe
    macro, so a probe used in two places has two sites (and two uprobes).

    offset     file offset of the probe's nop, for uprobes
    semaphore  file offset of its semaphore (the kernel's ref_ctr_offset),
               0 when the probe has none
    """
    __slots__ = ("provider", "name", "pc", "offset", "semaphore", "arguments")

    def __init__(self, provider, name, pc, offset, semaphore, arguments):
        self.provider = provider
        self.name = name
        self.pc = pc
        self.offset = offset
        self.semaphore = semaphore
        self.arguments = arguments

    def __repr__(self):
        return "UsdtProbe(%s:%s off=0x%x sem=0x%x)" % (self.provider, self.name, self.offset,
                                                       self.semaphore)


class _Layout(object):
    """struct formats for one ELF class and byte order."""

    def __init__(self, elfclass, data):
        e = "<" if data == ELFDATA2LSB else ">"
        self.is64 = elfclass == ELFCLASS64
        if self.is64:
            # e_type .. e_shstrndx after the 16-byte e_ident
            self.ehdr = struct.Struct(e + "HHIQQQIHHHHHH")
            self.phdr = struct.Struct(e + "IIQQQQQQ")   # type flags off vaddr paddr filesz memsz align
            self.shdr = struct.Struct(e + "IIQQQQIIQQ")  # name type flags addr off size link info align entsize
            self.sym = struct.Struct(e + "IBBHQQ")       # name info other shndx value size
        else:
            self.ehdr = struct.Struct(e + "HHIIIIIHHHHHH")
            self.phdr = struct.Struct(e + "IIIIIIII")    # type off vaddr paddr filesz memsz flags align
            self.shdr = struct.Struct(e + "IIIIIIIIII")
            self.sym = struct.Struct(e + "IIIBBH")       # name value size info other shndx


class _Section(object):
    __slots__ = ("name", "type", "addr", "offset", "size", "link", "entsize")

    def __init__(self, type, addr, offset, size, link, entsize, name=0):
        self.name = name        # offset in the section name table, then the name
        self.type = type
        self.addr = addr
        self.offset = offset
        self.size = size
        self.link = link
        self.entsize = entsize


class ElfFile(object):
    """A parsed ELF file: program headers, sections, symbols on demand."""

    def __init__(self, path, data=None):
        self.path = path
        if data is None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except (IOError, OSError) as e:
                raise ElfError("cannot read %s: %s" % (path, e.strerror or e))
        self._data = data
        d = self._data
        if len(d) < 52 or d[:4] != ELF_MAGIC:
            raise ElfError("%s is not an ELF file" % path)
        elfclass, data = d[4], d[5]
        if elfclass not in (ELFCLASS32, ELFCLASS64) or data not in (ELFDATA2LSB, ELFDATA2MSB):
            raise ElfError("%s: unsupported ELF class/byte order" % path)
        self.layout = _Layout(elfclass, data)
        self.is64 = self.layout.is64
        self.little_endian = data == ELFDATA2LSB
        hdr = self._unpack(self.layout.ehdr, 16)
        (self.e_type, self.e_machine, _version, self.e_entry, e_phoff, e_shoff, _flags,
         _ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, shstrndx) = hdr
        self.segments = self._program_headers(e_phoff, e_phentsize, e_phnum)
        self.sections = self._section_headers(e_shoff, e_shentsize, e_shnum)
        if shstrndx == SHN_XINDEX and self.sections:
            shstrndx = self.sections[0].link
        names = self.sections[shstrndx] if 0 < shstrndx < len(self.sections) else None
        for sec in self.sections:
            sec.name = self._cstring(names, sec.name)

    # -- raw access ----------------------------------------------------------
    def _unpack(self, st, offset):
        if offset < 0 or offset + st.size > len(self._data):
            raise ElfError("%s: truncated ELF file" % self.path)
        return st.unpack_from(self._data, offset)

    def _program_headers(self, off, entsize, num):
        out = []
        st = self.layout.phdr
        if not off or not num:
            return out
        if entsize < st.size:
            raise ElfError("%s: bad program header size" % self.path)
        for i in range(num):
            v = self._unpack(st, off + i * entsize)
            if self.is64:
                p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, _memsz, _align = v
            else:
                p_type, p_offset, p_vaddr, _pa, p_filesz, _memsz, p_flags, _align = v
            out.append((p_type, p_flags, p_offset, p_vaddr, p_filesz))
        return out

    def _section_headers(self, off, entsize, num):
        st = self.layout.shdr
        if not off:
            return []
        if entsize < st.size:
            raise ElfError("%s: bad section header size" % self.path)
        if num == 0:
            # More than SHN_LORESERVE sections: the real count is in the
            # sh_size of section 0 (ELF gABI "extended section numbering").
            num = self._unpack(st, off)[5]
        out = []
        for i in range(num):
            (s_name, s_type, _flags, s_addr, s_offset, s_size, s_link, _info, _align,
             s_entsize) = self._unpack(st, off + i * entsize)
            out.append(_Section(s_type, s_addr, s_offset, s_size, s_link, s_entsize, s_name))
        return out

    def _cstring(self, table, index):
        if table is None or index >= table.size:
            return ""
        start = table.offset + index
        end = self._data.find(b"\0", start, table.offset + table.size)
        if end < 0:
            end = table.offset + table.size
        return self._data[start:end].decode("ascii", "replace")

    # -- addresses -----------------------------------------------------------
    def vaddr_to_offset(self, vaddr):
        """File offset of a virtual address, through the PT_LOAD segment
        holding it (executable segments first); None if no segment does."""
        loads = [s for s in self.segments if s[0] == PT_LOAD]
        loads.sort(key=lambda s: 0 if s[1] & PF_X else 1)
        for _t, _flags, p_offset, p_vaddr, p_filesz in loads:
            if p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_offset
        return None

    # -- symbols -------------------------------------------------------------
    def symbols(self):
        """Every defined symbol of .symtab and .dynsym, then of the
        MiniDebugInfo .symtab (generator)."""
        for sym in self._own_symbols():
            yield sym
        mini = self.debugdata()
        if mini is not None:
            for name, value, size, stype, bind, shndx, _table in mini._own_symbols():
                yield name, value, size, stype, bind, shndx, ".gnu_debugdata"

    def debugdata(self):
        """The ELF embedded xz-compressed in .gnu_debugdata, or None (no such
        section, no lzma module, or it does not decompress to an ELF)."""
        sec = next((s for s in self.sections if s.name == ".gnu_debugdata"), None)
        if sec is None or lzma is None:
            return None
        try:
            raw = lzma.decompress(self._data[sec.offset:sec.offset + sec.size])
            return ElfFile("%s[.gnu_debugdata]" % self.path, raw)
        except (lzma.LZMAError, ElfError, EOFError):
            return None

    def functions(self):
        """{name: Symbol} of every function defined in the file (names
        without @version; a global or weak definition wins over a local
        one).  Symbols in no loadable segment are left out."""
        ranked = {}
        for name, value, size, stype, bind, shndx, table in self.symbols():
            if stype not in (STT_FUNC, STT_GNU_IFUNC) or (shndx >= SHN_LORESERVE
                                                          and shndx != SHN_XINDEX):
                continue
            name = name.split("@", 1)[0]
            rank = 0 if bind in (STB_GLOBAL, STB_WEAK) else 1
            if name and (name not in ranked or rank < ranked[name][0]):
                ranked[name] = (rank, value, size, stype, bind, table)
        out = {}
        for name, (_rank, value, size, stype, bind, table) in ranked.items():
            offset = self.vaddr_to_offset(value)
            if offset is not None:
                out[name] = Symbol(name, value, size, stype, bind, offset, table)
        return out

    # -- USDT probes ---------------------------------------------------------
    def usdt_probes(self):
        """[UsdtProbe] of the file's .note.stapsdt section, in note order
        (sites of one probe in the order the linker placed them)."""
        sec = next((s for s in self.sections if s.name == STAPSDT_SECTION), None)
        if sec is None:
            return []
        # A prelinked file moved its sections after the notes were written:
        # the note holds the address .stapsdt.base had at link time, the
        # section header the current one (sys/sdt.h, "_.stapsdt.base").
        base_sec = next((s for s in self.sections if s.name == ".stapsdt.base"), None)
        e = "<" if self.little_endian else ">"
        header = struct.Struct(e + "III")
        addrs = struct.Struct(e + ("QQQ" if self.is64 else "III"))
        out = []
        pos, end = sec.offset, min(sec.offset + sec.size, len(self._data))
        while pos + header.size <= end:
            namesz, descsz, ntype = header.unpack_from(self._data, pos)
            name_at = pos + header.size
            desc_at = name_at + _align4(namesz)
            pos = desc_at + _align4(descsz)
            if pos > end:
                raise ElfError("%s: truncated %s" % (self.path, STAPSDT_SECTION))
            owner = self._data[name_at:name_at + namesz].rstrip(b"\0")
            if ntype != NT_STAPSDT or owner != STAPSDT_OWNER or descsz < addrs.size:
                continue
            pc, base, semaphore = addrs.unpack_from(self._data, desc_at)
            strings = self._data[desc_at + addrs.size:desc_at + descsz].split(b"\0")
            if len(strings) < 3:
                continue
            provider, name, arguments = (x.decode("ascii", "replace") for x in strings[:3])
            if base_sec is not None and base:
                pc += base_sec.addr - base
                if semaphore:
                    semaphore += base_sec.addr - base
            offset = self.vaddr_to_offset(pc)
            if offset is None:
                continue
            sem_offset = self.vaddr_to_offset(semaphore) if semaphore else 0
            if semaphore and sem_offset is None:
                continue
            out.append(UsdtProbe(provider, name, pc, offset, sem_offset, arguments))
        return out

    def _own_symbols(self):
        for sec in self.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            table = ".symtab" if sec.type == SHT_SYMTAB else ".dynsym"
            strtab = self.sections[sec.link] if sec.link < len(self.sections) else None
            st = self.layout.sym
            entsize = sec.entsize or st.size
            if entsize < st.size:
                continue
            count = min(sec.size // entsize, _MAX_SYMBOLS)
            for i in range(count):
                v = self._unpack(st, sec.offset + i * entsize)
                if self.is64:
                    st_name, st_info, _other, st_shndx, st_value, st_size = v
                else:
                    st_name, st_value, st_size, st_info, _other, st_shndx = v
                if st_shndx == SHN_UNDEF or not st_name:
                    continue
                name = self._cstring(strtab, st_name)
                yield name, st_value, st_size, st_info & 0xf, st_info >> 4, st_shndx, table

    def find(self, symbol):
        """The best definition of `symbol` (a function: global/weak before
        local, .dynsym or .symtab), or raise ElfError."""
        best = None
        for name, value, size, stype, bind, shndx, table in self.symbols():
            if name != symbol and name.split("@", 1)[0] != symbol:
                continue
            if stype not in (STT_FUNC, STT_GNU_IFUNC) or (shndx >= SHN_LORESERVE
                                                          and shndx != SHN_XINDEX):
                continue
            rank = 0 if bind in (STB_GLOBAL, STB_WEAK) else 1
            if best is None or rank < best[0]:
                best = (rank, name, value, size, stype, bind, table)
                if rank == 0:
                    break
        if best is None:
            raise ElfError("%s: no function symbol %r" % (self.path, symbol))
        _rank, name, value, size, stype, bind, table = best
        offset = self.vaddr_to_offset(value)
        if offset is None:
            raise ElfError("%s: symbol %r at 0x%x is in no loadable segment"
                           % (self.path, symbol, value))
        return Symbol(symbol, value, size, stype, bind, offset, table)


def _align4(n):
    return (n + 3) & ~3


def find_symbol(path, symbol):
    """Symbol (with .offset, the file offset) of function `symbol` in the
    ELF file at `path`; raises ElfError with a one-line reason."""
    return ElfFile(path).find(symbol)
