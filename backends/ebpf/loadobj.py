"""Running a cached compiled object (objcache.Entry) without bcc.

capture(bpf, attachments)   the Entry of a bcc object just compiled (before
                            any attach), or None when it has something
                            this loader cannot recreate
LoadedObject(entry)         its maps created and programs loaded with the
                            bpf() system call; it answers the part of
                            bcc's BPF object a histogram or count session
                            uses (attach_tracepoint, attach_raw_tracepoint,
                            funcs[name].fd, tables by name with map_fd,
                            Key/Leaf sizes and getvalue, cleanup)

Maps and programs are created as bcc creates them for these kinds (the
same type, sizes, flags and names; programs with the module's license and
kern_version), without BTF: the programs need none (no spin locks, no
kfuncs, no global data).  Tracepoint programs are attached as bcc does: a
perf event on the tracepoint (cpu 0, every task) given the program with
PERF_EVENT_IOC_SET_BPF, then enabled.
"""

import ctypes
import errno
import fcntl
import os
import re
import struct
import sys

from . import objcache, perfhook, sysbpf
from .maps import BPF_MAP_LOOKUP_ELEM, _call

BPF_PSEUDO_MAP_FD = 1
_LD_IMM64 = 0x18
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_SAMPLE_RAW = 1 << 10
BPF_OBJ_NAME_LEN = 16
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.]")


class LoadError(Exception):
    """The object could not be created here; str() is one line."""


def _libbcc():
    # Our own handle: the functions bcc's libbcc.py leaves undeclared get
    # their types here without changing bcc's.
    lib = ctypes.CDLL("libbcc.so.0")
    for name, res, args in (
            ("bpf_num_tables", ctypes.c_size_t, [ctypes.c_void_p]),
            ("bpf_table_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_fd_id", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_type_id", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_key_size_id", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_leaf_size_id", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_max_entries_id", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_table_flags_id", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
            ("bpf_function_start", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
            ("bpf_function_size", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p]),
            ("bpf_module_license", ctypes.c_char_p, [ctypes.c_void_p]),
            ("bpf_module_kern_version", ctypes.c_uint, [ctypes.c_void_p])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _loaded_libraries():
    """Stat identities of the shared libraries mapped in this process that
    compile BPF: libbcc and the LLVM/clang it loaded."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    base = os.path.basename(path)
                    if base.startswith(("libbcc", "libLLVM", "libclang", "libbpf")):
                        paths.add(path)
    except (IOError, OSError):
        return None
    idents = [objcache._stat_identity(p) for p in sorted(paths)]
    if not idents or None in idents or not any("libbcc" in p for p in paths):
        return None
    return idents


def capture(bpf, attachments):
    """objcache.Entry for bcc object `bpf` whose functions are attached as
    `attachments` [(function name, "tracepoint" or "raw_tracepoint")], or
    None when it holds a map or an instruction we cannot recreate."""
    if any(kind not in objcache.ATTACHABLE for _, kind in attachments):
        return None
    lib = _libbcc()
    mod = bpf.module
    maps, index_of_fd = [], {}
    for i in range(lib.bpf_num_tables(mod)):
        m = {"name": lib.bpf_table_name(mod, i).decode(),
             "type": lib.bpf_table_type_id(mod, i),
             "key_size": lib.bpf_table_key_size_id(mod, i),
             "value_size": lib.bpf_table_leaf_size_id(mod, i),
             "max_entries": lib.bpf_table_max_entries_id(mod, i),
             "flags": lib.bpf_table_flags_id(mod, i)}
        if m["type"] not in objcache.PLAIN_MAP_TYPES:
            return None
        index_of_fd[lib.bpf_table_fd_id(mod, i)] = len(maps)
        maps.append(m)
    functions = []
    for name, kind in attachments:
        start = lib.bpf_function_start(mod, name.encode())
        size = lib.bpf_function_size(mod, name.encode())
        if not start or not size or size % 8:
            return None
        insns = ctypes.string_at(start, size)
        relocs = []
        for n in range(size // 8):
            code, regs, _off, imm = struct.unpack_from("<BBhi", insns, n * 8)
            src = regs >> 4
            if code == _LD_IMM64 and src:
                if src != BPF_PSEUDO_MAP_FD or imm not in index_of_fd:
                    return None
                relocs.append([n, index_of_fd[imm]])
        functions.append({"name": name, "kind": kind, "insns": insns, "relocs": relocs})
    libraries = _loaded_libraries()
    if libraries is None:
        return None
    return objcache.Entry(maps, functions, lib.bpf_module_license(mod).decode(),
                          lib.bpf_module_kern_version(mod), libraries)


# -- loading -----------------------------------------------------------------------
def _obj_name(name):
    return _NAME_CHARS.sub("_", name)[:BPF_OBJ_NAME_LEN - 1].encode()


def create_map(m):
    # union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    # max_entries, map_flags, inner_map_fd, numa_node, map_name[16].
    attr = struct.pack("<IIIIIII16s", m["type"], m["key_size"], m["value_size"],
                       m["max_entries"], m["flags"], 0, 0, _obj_name(m["name"]))
    fd, err = sysbpf.bpf(sysbpf.BPF_MAP_CREATE, attr)
    if fd < 0:
        raise LoadError("map %s: bpf(BPF_MAP_CREATE): %s" % (m["name"], sysbpf.errname(err)))
    return fd


def load_program(f, map_fds, license, kern_version):
    insns = bytearray(f["insns"])
    for n, m in f["relocs"]:
        struct.pack_into("<i", insns, n * 8 + 4, map_fds[m])
    fd, err = _prog_load(f, bytes(insns), license, kern_version, None)
    if fd >= 0:
        return fd
    # Again with the verifier's log, for the reason (not on the way of a
    # program that loads: the log costs time, and ENOSPC when it overflows).
    log = ctypes.create_string_buffer(1 << 16)
    fd2, _err = _prog_load(f, bytes(insns), license, kern_version, log)
    if fd2 >= 0:
        return fd2
    lines = [l for l in log.value.decode("utf-8", "replace").splitlines() if l.strip()]
    raise LoadError("program %s: bpf(BPF_PROG_LOAD): %s%s" % (
        f["name"], sysbpf.errname(err), (": " + lines[-1]) if lines else ""))


def _prog_load(f, insns, license, kern_version, log):
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    # kern_version, prog_flags, prog_name
    attr = struct.pack("<IIQQIIQII16s", objcache.ATTACHABLE[f["kind"]], len(insns) // 8,
                       ctypes.addressof(buf), ctypes.addressof(lic), 1 if log else 0,
                       len(log) if log else 0, ctypes.addressof(log) if log else 0,
                       kern_version, 0, _obj_name(f["name"]))
    return sysbpf.bpf(sysbpf.BPF_PROG_LOAD, attr)


class _Function(object):
    __slots__ = ("name", "fd")

    def __init__(self, name, fd):
        self.name, self.fd = name, fd


class _Table(object):
    """A map as the session reads it: map_fd, Key/Leaf (their sizes are
    those bcc's compile reported) and getvalue(Key(i)) of an array map
    (one value per possible CPU for a per-CPU array)."""

    def __init__(self, fd, m, ncpus):
        self.map_fd = fd
        self.type = m["type"]
        self.Key = ctypes.c_uint32 if m["key_size"] == 4 else ctypes.c_char * m["key_size"]
        self.Leaf = ctypes.c_char * m["value_size"]
        self.value_size = m["value_size"]
        self._ncpus = ncpus

    def getvalue(self, key):
        percpu = self.type in (5, 6)
        stride = (self.value_size + 7) // 8 * 8 if percpu else self.value_size
        out = ctypes.create_string_buffer(stride * (self._ncpus if percpu else 1))
        kb = ctypes.create_string_buffer(bytes(key), ctypes.sizeof(key))
        res, err, _ = _call(BPF_MAP_LOOKUP_ELEM, "<IIQQQ", self.map_fd, 0,
                            ctypes.addressof(kb), ctypes.addressof(out), 0)
        if res < 0:
            raise KeyError("lookup: %s" % sysbpf.errname(err))
        raw = out.raw
        n = self.value_size
        return [int.from_bytes(raw[i:i + n], sys.byteorder) for i in range(0, len(raw), stride)]


def possible_cpus():
    text = None
    try:
        with open(objcache.CPU_POSSIBLE) as f:
            text = f.read()
    except (IOError, OSError):
        pass
    cpus = perfhook.online_cpus(text) if text else []
    return (max(cpus) + 1) if cpus else 1


class LoadedObject(object):
    """Maps and programs of an Entry, alive until cleanup()."""

    def __init__(self, entry, tracefs_path):
        self._tracefs = tracefs_path
        self._map_fds = []
        self.funcs = {}
        self.tables = {}
        self.tracepoint_fds = {}
        self.raw_tracepoint_fds = {}
        self.kprobe_fds = {}
        self.uprobe_fds = {}
        try:
            ncpus = possible_cpus()
            for m in entry.maps:
                fd = create_map(m)
                self._map_fds.append(fd)
                self.tables[m["name"].encode()] = _Table(fd, m, ncpus)
            for f in entry.functions:
                fd = load_program(f, self._map_fds, entry.license, entry.kern_version)
                self.funcs[f["name"].encode()] = _Function(f["name"], fd)
        except BaseException:
            self.cleanup()
            raise

    def __getitem__(self, name):
        return self.tables[name]

    def num_open_tracepoints(self):
        return len(self.tracepoint_fds)

    def num_open_kprobes(self):
        return 0

    def num_open_uprobes(self):
        return 0

    def attach_tracepoint(self, tp, fn_name):
        cat, _, name = tp.decode().partition(":")
        tp_id = perfhook.tracepoint_id(self._tracefs, cat, name) if self._tracefs else None
        if tp_id is None:
            raise LoadError("no tracepoint id for %s" % tp.decode())
        # perf_event_attr (PERF_ATTR_SIZE_VER0): type, size, config,
        # sample_period 1, sample_type RAW, read_format, flags, wakeup_events 1.
        attr = struct.pack("=IIQQQQQIIQ", perfhook.PERF_TYPE_TRACEPOINT, 64, tp_id, 1,
                           PERF_SAMPLE_RAW, 0, 0, 1, 0, 0)
        fd = _perf_event_open(attr)
        try:
            fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, self.funcs[fn_name].fd)
            fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except BaseException:
            os.close(fd)
            raise
        self.tracepoint_fds[tp] = fd

    def attach_raw_tracepoint(self, tp, fn_name):
        name = ctypes.create_string_buffer(tp)
        attr = struct.pack("<QIIQ", ctypes.addressof(name), self.funcs[fn_name].fd, 0, 0)
        fd, err = sysbpf.bpf(sysbpf.BPF_RAW_TRACEPOINT_OPEN, attr)
        if fd < 0:
            raise LoadError("raw tracepoint %s: %s" % (tp.decode(), sysbpf.errname(err)))
        self.raw_tracepoint_fds[tp] = fd

    def cleanup(self):
        """Detach everything and close every fd (each one tried)."""
        errors = []
        for fd in list(self.tracepoint_fds.values()):
            try:
                fcntl.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError as e:
                errors.append(e)
        fds = (list(self.tracepoint_fds.values()) + list(self.raw_tracepoint_fds.values()) +
               [f.fd for f in self.funcs.values()] + self._map_fds)
        self.tracepoint_fds, self.raw_tracepoint_fds, self.funcs = {}, {}, {}
        self._map_fds, self.tables = [], {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError as e:
                errors.append(e)
        if errors:
            raise OSError(errors[0].errno, "detaching: %s" % errors[0])

    close = cleanup


def _perf_event_open(attr):
    import platform
    nr = perfhook._NR_PERF_EVENT_OPEN.get(platform.machine())
    libc = sysbpf._syscall()
    if nr is None or libc is None:
        raise LoadError("perf_event_open: unknown architecture")
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(-1), ctypes.c_int(0),
                      ctypes.c_int(-1), ctypes.c_ulong(perfhook.PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise LoadError("perf_event_open: %s" % errno.errorcode.get(err, err))
    return fd
