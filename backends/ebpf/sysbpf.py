"""The bpf() system call through ctypes, for probes that must not depend on
bcc: can this process load a program at all, does the kernel have the BPF
ring buffer, which programs exist (tests check ours are gone).

Every function answers; none raises for ENOENT/EPERM/ENOSYS/EINVAL.
"""

import ctypes
import errno
import os
import platform
import struct

# bpf(2) commands and types used here (include/uapi/linux/bpf.h).
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_MAP_TYPE_RINGBUF = 27

# __NR_bpf per architecture (the syscall tables of each arch).
_NR_BPF = {
    "x86_64": 321, "i386": 357, "i686": 357, "aarch64": 280, "arm64": 280,
    "armv7l": 386, "armv6l": 386, "ppc64": 361, "ppc64le": 361, "s390x": 351,
    "riscv64": 280, "loongarch64": 280, "mips64": 5315,
}

# CapEff bits (include/uapi/linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


class Answer(object):
    """ok, and a one-line detail."""

    __slots__ = ("ok", "detail", "errno")

    def __init__(self, ok, detail, err=0):
        self.ok = bool(ok)
        self.detail = detail
        self.errno = err

    def __repr__(self):
        return "Answer(%s: %s)" % (self.ok, self.detail)


_libc = []


def _syscall():
    if not _libc:
        try:
            _libc.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _libc.append(None)
    return _libc[0]


def nr_bpf(machine=None):
    return _NR_BPF.get(machine or platform.machine())


def bpf(cmd, attr):
    """Call bpf(cmd, attr bytes).  Returns (result, errno); result -1 with
    ENOSYS when the call is impossible here."""
    nr = nr_bpf()
    libc = _syscall()
    if nr is None or libc is None:
        return -1, errno.ENOSYS
    buf = ctypes.create_string_buffer(attr, len(attr))
    res = libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), buf, ctypes.c_uint(len(attr)))
    return res, (ctypes.get_errno() if res < 0 else 0)


def errname(err):
    return errno.errorcode.get(err, str(err))


def _load_tracepoint_prog(insns, prog_type=BPF_PROG_TYPE_TRACEPOINT):
    """BPF_PROG_LOAD a GPL tracepoint program from (code, regs, off, imm)
    tuples; returns (fd or -1, errno)."""
    raw = b"".join(struct.pack("<BBhi", *i) for i in insns)
    insn_buf = ctypes.create_string_buffer(raw, len(raw))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16s", prog_type, len(insns),
                       ctypes.addressof(insn_buf), ctypes.addressof(lic),
                       0, 0, 0, 0, 0, b"kt_probe")
    return bpf(BPF_PROG_LOAD, attr)


BPF_PROG_TYPE_KPROBE = 2


def probe_kprobe_prog_load():
    """Whether a kprobe program (r0 = 0; exit), the type kprobes and
    uprobes run, loads with kern_version 0."""
    fd, _err = _load_tracepoint_prog([_MOV_R0_0, _EXIT], BPF_PROG_TYPE_KPROBE)
    if fd >= 0:
        os.close(fd)
        return True
    return False


_MOV_R0_0 = (0xb7, 0x00, 0, 0)   # r0 = 0
_EXIT = (0x95, 0x00, 0, 0)       # exit


def probe_prog_load():
    """Load the smallest tracepoint program (r0 = 0; exit) and unload it:
    answers whether this process may load tracing programs at all."""
    fd, err = _load_tracepoint_prog([_MOV_R0_0, _EXIT])
    if fd >= 0:
        os.close(fd)
        return Answer(True, "BPF_PROG_LOAD of a tracepoint program works")
    if err == errno.ENOSYS:
        return Answer(False, "no bpf() system call in this kernel (or unknown architecture)", err)
    if err == errno.EPERM:
        return Answer(False, "bpf(BPF_PROG_LOAD): EPERM (needs root, or CAP_BPF and CAP_PERFMON)",
                      err)
    return Answer(False, "bpf(BPF_PROG_LOAD) of a tracepoint program: %s (%s)"
                  % (errname(err), os.strerror(err)), err)


def has_atomic_fetch():
    """Whether the verifier takes an atomic add that returns the old value
    (r1 = 1; *(u64 *)(r10 - 8) = r1; r1 = atomic_fetch_add(r10 - 8, r1)).
    Since Linux commit 5ca419f2864a ("bpf: Add BPF_FETCH field / create
    atomic_fetch_add instruction") (v5.12); before, BPF_XADD returned
    nothing and wanted imm 0."""
    fd, _err = _load_tracepoint_prog([
        (0xb7, 0x01, 0, 1),        # r1 = 1
        (0x7b, 0x1a, -8, 0),       # *(u64 *)(r10 - 8) = r1
        (0xdb, 0x1a, -8, 0x01),    # BPF_STX | BPF_ATOMIC | BPF_DW, imm BPF_ADD | BPF_FETCH
        _MOV_R0_0, _EXIT])
    if fd >= 0:
        os.close(fd)
        return True
    return False


def probe_raw_tracepoint(name):
    """Attach a do-nothing raw tracepoint program to the kernel tracepoint
    `name` and detach it at once: whether a raw tracepoint of that name
    exists here.  Since Linux commit c4f6699dfcb8 ("bpf: introduce
    BPF_RAW_TRACEPOINT") (v4.17).  Trace events that are not tracepoints
    (each syscalls:* event is made from raw_syscalls) answer no."""
    fd, err = _load_tracepoint_prog([_MOV_R0_0, _EXIT], BPF_PROG_TYPE_RAW_TRACEPOINT)
    if fd < 0:
        return Answer(False, "bpf(BPF_PROG_LOAD) of a raw tracepoint program: %s"
                      % errname(err), err)
    try:
        tp = ctypes.create_string_buffer(name.encode())
        # union bpf_attr.raw_tracepoint: name, prog_fd, then zeros (newer
        # kernels read a cookie there; older ones require the tail zeroed).
        attr = struct.pack("<QIIQ", ctypes.addressof(tp), fd, 0, 0)
        link, err = bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    finally:
        os.close(fd)
    if link < 0:
        return Answer(False, "raw tracepoint %s: %s" % (name, errname(err)), err)
    os.close(link)
    return Answer(True, "raw tracepoint %s attaches" % name)


BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24       # enum bpf_attach_type


def probe_fentry(btf_id, name):
    """Load a do-nothing fentry program for the kernel function whose BTF
    FUNC id is `btf_id` and attach it through BPF_RAW_TRACEPOINT_OPEN
    (name NULL), then detach: whether fentry works here.  Since Linux
    commit fec56f5890d9 ("bpf: Introduce BPF trampoline") (v5.5)."""
    raw = b"".join(struct.pack("<BBhi", *i) for i in (_MOV_R0_0, _EXIT))
    insn_buf = ctypes.create_string_buffer(raw, len(raw))
    lic = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr for BPF_PROG_LOAD up to attach_btf_id (offset 108)
    attr = struct.pack("<IIQQIIQII16sIIIIQIIQIII", BPF_PROG_TYPE_TRACING, 2,
                       ctypes.addressof(insn_buf), ctypes.addressof(lic), 0, 0, 0, 0, 0,
                       b"kt_probe", 0, BPF_TRACE_FENTRY, 0, 0, 0, 0, 0, 0, 0, btf_id, 0)
    fd, err = bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        return Answer(False, "an fentry program for %s does not load: %s (%s)"
                      % (name, errname(err), os.strerror(err)), err)
    try:
        link, err = bpf(BPF_RAW_TRACEPOINT_OPEN, struct.pack("<QIIQ", 0, fd, 0, 0))
    finally:
        os.close(fd)
    if link < 0:
        return Answer(False, "fentry on %s does not attach: %s (%s)"
                      % (name, errname(err), os.strerror(err)), err)
    os.close(link)
    return Answer(True, "fentry on %s attaches (BTF, BPF trampoline)" % name)


# Helper ids (enum bpf_func_id).
BPF_FUNC_probe_read_kernel = 113


def has_helper(func_id):
    """Whether the verifier accepts a call to helper `func_id` from a
    tracepoint program (func_id(r10 - 8, 8, 0): the probe_read family's
    signature).  False on kernels without that helper."""
    fd, _err = _load_tracepoint_prog([
        (0xbf, 0xa1, 0, 0),       # r1 = r10
        (0x07, 0x01, 0, -8),      # r1 += -8
        (0xb7, 0x02, 0, 8),       # r2 = 8
        (0xb7, 0x03, 0, 0),       # r3 = 0
        (0x85, 0x00, 0, func_id),  # call func_id
        _MOV_R0_0, _EXIT])
    if fd >= 0:
        os.close(fd)
        return True
    return False


def probe_ringbuf():
    """Create and close a BPF_MAP_TYPE_RINGBUF map."""
    try:
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        size = 4096
    attr = struct.pack("<IIIII", BPF_MAP_TYPE_RINGBUF, 0, 0, size, 0)
    fd, err = bpf(BPF_MAP_CREATE, attr)
    if fd >= 0:
        os.close(fd)
        return Answer(True, "BPF ring buffer maps (BPF_MAP_TYPE_RINGBUF) work")
    return Answer(False, "no BPF ring buffer (map create: %s); perf buffers are used"
                  % errname(err), err)


def prog_ids():
    """IDs of every BPF program loaded in the kernel (needs CAP_SYS_ADMIN),
    or None when we may not enumerate them."""
    ids = []
    start = 0
    while True:
        attr = struct.pack("<III", start, 0, 0)
        buf = ctypes.create_string_buffer(attr, len(attr))
        nr = nr_bpf()
        libc = _syscall()
        if nr is None or libc is None:
            return None
        res = libc.syscall(ctypes.c_long(nr), ctypes.c_long(BPF_PROG_GET_NEXT_ID), buf,
                           ctypes.c_uint(len(attr)))
        if res < 0:
            err = ctypes.get_errno()
            return ids if err == errno.ENOENT else None
        start = struct.unpack_from("<II", buf.raw)[1]
        ids.append(start)


def prog_exists(prog_id):
    """Whether a program with this ID is still loaded (True/False), or None
    when we cannot tell."""
    fd, err = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0))
    if fd >= 0:
        os.close(fd)
        return True
    if err == errno.ENOENT:
        return False
    return None


def effective_caps(status_path="/proc/self/status"):
    """The CapEff bit mask of this process, or None if unreadable."""
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (IOError, OSError, ValueError):
        return None
    return None


def privileges(status_path="/proc/self/status"):
    """Whether this process may load and attach tracing programs."""
    if os.geteuid() == 0:
        caps = effective_caps(status_path)
        if caps is None or caps & (1 << CAP_SYS_ADMIN):
            return Answer(True, "root")
    caps = effective_caps(status_path)
    if caps is None:
        return Answer(False, "cannot read CapEff from %s" % status_path)
    if caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON):
        return Answer(True, "CAP_BPF and CAP_PERFMON")
    if caps & (1 << CAP_SYS_ADMIN):
        return Answer(True, "CAP_SYS_ADMIN")
    return Answer(False, "not root and no CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN)")
