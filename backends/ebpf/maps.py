"""Reading and clearing a BPF hash map at an interval boundary.

Preferred: BPF_MAP_LOOKUP_AND_DELETE_BATCH (kernels with batch map ops;
since Linux commit 057996380a42 ("bpf: Add batch ops to all htab bpf map")
(v5.6) for hash maps):
each element is copied out and removed in one step, so an event counted
while we read lands either in this interval or in the next, never lost.

Fallback (older kernels): read every key, then for each one look up its
value and delete it, as bcc's tools do.  Race, documented: an increment that
happens between our lookup and our delete of the same key is lost (a few
events at most per key per interval, only under concurrent load).

bcc 0.26's own batch helper aliases its in/out batch tokens, so we issue the
system call ourselves.
"""

import ctypes
import errno
import struct

from . import sysbpf

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
ENOTSUPP = 524          # the kernel-internal errno some kernels return for batch ops
_BATCH_UNSUPPORTED = (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP, errno.ENOSYS)


def _call(cmd, fmt, *fields):
    """bpf(cmd) with an attr packed from fields; returns (res, errno, attr
    bytes after the call, for values the kernel writes back)."""
    nr = sysbpf.nr_bpf()
    libc = sysbpf._syscall()
    if nr is None or libc is None:
        return -1, errno.ENOSYS, b""
    raw = struct.pack(fmt, *fields)
    buf = ctypes.create_string_buffer(raw, len(raw))
    res = libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), buf, ctypes.c_uint(len(raw)))
    return res, (ctypes.get_errno() if res < 0 else 0), buf.raw


class MapError(Exception):
    pass


class HashDrainer(object):
    """Drains one hash map (fd, key size, value size) into a list of
    (key bytes, value bytes)."""

    def __init__(self, fd, key_size, value_size, chunk=256):
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self.chunk = chunk
        self.batch = None      # None: not tried yet; True/False once known

    @property
    def method(self):
        return {None: "untried", True: "lookup-and-delete batch",
                False: "lookup then delete"}[self.batch]

    def drain(self):
        if self.batch is not False:
            out = self._drain_batch()
            if out is not None:
                self.batch = True
                return out
            self.batch = False
        return self._drain_one_by_one()

    def _drain_batch(self):
        ks, vs = self.key_size, self.value_size
        n = self.chunk
        tok_in = ctypes.create_string_buffer(max(8, ks))
        tok_out = ctypes.create_string_buffer(max(8, ks))
        out = []
        first = True
        while True:
            keys = ctypes.create_string_buffer(n * ks)
            vals = ctypes.create_string_buffer(n * vs)
            res, err, attr = _call(BPF_MAP_LOOKUP_AND_DELETE_BATCH, "<QQQQIIQQ",
                                   0 if first else ctypes.addressof(tok_in),
                                   ctypes.addressof(tok_out), ctypes.addressof(keys),
                                   ctypes.addressof(vals), n, self.fd, 0, 0)
            got = struct.unpack_from("<QQQQI", attr)[4] if attr else 0
            kraw, vraw = keys.raw, vals.raw
            for i in range(min(got, n)):
                out.append((kraw[i * ks:(i + 1) * ks], vraw[i * vs:(i + 1) * vs]))
            if res < 0:
                if err == errno.ENOENT:
                    return out
                if err == errno.ENOSPC and got == 0:
                    n *= 2        # one hash bucket holds more than the buffer
                    continue
                if first and not out and err in _BATCH_UNSUPPORTED:
                    return None
                raise MapError("BPF_MAP_LOOKUP_AND_DELETE_BATCH: %s"
                               % sysbpf.errname(err))
            ctypes.memmove(tok_in, tok_out, len(tok_out.raw))
            first = False

    def _keys(self):
        keys = []
        prev = None
        key = ctypes.create_string_buffer(self.key_size)
        while True:
            res, err, _ = _call(BPF_MAP_GET_NEXT_KEY, "<IIQQQ", self.fd, 0,
                                ctypes.addressof(prev) if prev is not None else 0,
                                ctypes.addressof(key), 0)
            if res < 0:
                if err == errno.ENOENT:
                    return keys
                raise MapError("BPF_MAP_GET_NEXT_KEY: %s" % sysbpf.errname(err))
            keys.append(key.raw)
            prev = ctypes.create_string_buffer(key.raw, self.key_size)
            if len(keys) > (1 << 24):   # a map changing under us forever
                return keys

    def _drain_one_by_one(self):
        out = []
        for k in self._keys():
            kb = ctypes.create_string_buffer(k, self.key_size)
            vb = ctypes.create_string_buffer(self.value_size)
            res, err, _ = _call(BPF_MAP_LOOKUP_ELEM, "<IIQQQ", self.fd, 0,
                                ctypes.addressof(kb), ctypes.addressof(vb), 0)
            if res < 0:
                continue      # deleted meanwhile (by nobody else: start maps are not drained)
            _call(BPF_MAP_DELETE_ELEM, "<IIQQQ", self.fd, 0, ctypes.addressof(kb), 0, 0)
            out.append((k, vb.raw))
        return out
