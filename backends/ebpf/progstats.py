"""How often the kernel skipped our BPF programs.

A tracepoint or kprobe program is not run when another BPF program is
already running on the same CPU (the per-CPU bpf_prog_active guard in
trace_call_bpf: a block completion in softirq that interrupts any BPF
program, ours or another tracer's).  Each skip is an event we never see,
so it is a lost event.  The kernel counts the skips per program in
bpf_prog_info.recursion_misses:

- the field exists since Linux commit 9ed9e9ba2337 ("bpf: Count the number
  of times recursion was prevented") (v5.12); before it, the kernel cannot
  tell (the answer here is None);
- skips of tracepoint and kprobe programs are counted there only since
  commit dd8657894c11 ("bpf: Count missed stats in trace_call_bpf") (v6.7);
  between the two, the field exists but stays 0 for those programs (doctor
  says so; see recursion_misses_note()).
"""

import ctypes
import os
import struct

from . import sysbpf

BPF_OBJ_GET_INFO_BY_FD = 15

# struct bpf_prog_info (include/uapi/linux/bpf.h): __u64 recursion_misses at
# byte 208, after run_time_ns (192) and run_cnt (200).
_MISSES_OFFSET = 208
_INFO_SIZE = 216            # as far as we read; the kernel copies min(ours, its own)


def prog_info_misses(fd):
    """(recursion_misses, None) for the program `fd`; (None, why) when the
    kernel has no such counter or will not tell."""
    info = ctypes.create_string_buffer(_INFO_SIZE)
    # union bpf_attr.info: bpf_fd, info_len, info (pointer).
    attr = struct.pack("<IIQ", fd, _INFO_SIZE, ctypes.addressof(info))
    nr = sysbpf.nr_bpf()
    libc = sysbpf._syscall()
    if nr is None or libc is None:
        return None, "no bpf() system call here"
    buf = ctypes.create_string_buffer(attr, len(attr))
    res = libc.syscall(ctypes.c_long(nr), ctypes.c_long(BPF_OBJ_GET_INFO_BY_FD), buf,
                       ctypes.c_uint(len(attr)))
    if res < 0:
        return None, "BPF_OBJ_GET_INFO_BY_FD: %s" % sysbpf.errname(ctypes.get_errno())
    # The kernel writes back how much of its bpf_prog_info it filled in.
    info_len = struct.unpack_from("<I", buf.raw, 4)[0]
    if info_len < _MISSES_OFFSET + 8:
        return None, "bpf_prog_info has no recursion_misses (%d bytes)" % info_len
    return struct.unpack_from("<Q", info.raw, _MISSES_OFFSET)[0], None


class MissCounter(object):
    """Skips of a set of programs (fds), as deltas between calls of
    missed(): the kernel counter is never cleared, so deltas cannot race.
    `available` is False when the kernel cannot tell (then missed() is 0)."""

    def __init__(self, fds):
        self.fds = list(fds)
        self.seen = {}
        self.why_not = None
        for fd in self.fds:
            n, why = prog_info_misses(fd)
            if n is None:
                self.why_not = why
                break
            self.seen[fd] = n

    @property
    def available(self):
        return self.why_not is None

    def missed(self):
        if not self.available:
            return 0
        delta = 0
        for fd in self.fds:
            n, _why = prog_info_misses(fd)
            if n is None:       # the program went away (close() raced us)
                continue
            delta += n - self.seen[fd]
            self.seen[fd] = n
        return delta


def probe_recursion_misses():
    """Whether this kernel reports skipped runs: load the smallest tracepoint
    program and ask for its bpf_prog_info.  An sysbpf.Answer."""
    fd, err = sysbpf._load_tracepoint_prog([sysbpf._MOV_R0_0, sysbpf._EXIT])
    if fd < 0:
        return sysbpf.Answer(False, "cannot load a program to ask (%s)" % sysbpf.errname(err),
                             err)
    try:
        n, why = prog_info_misses(fd)
    finally:
        os.close(fd)
    if n is None:
        return sysbpf.Answer(False, "the kernel cannot tell how often it skipped a BPF program"
                             " (%s): eBPF counts may be short without a lost count" % why)
    return sysbpf.Answer(True, "skipped BPF program runs are reported as lost events"
                         " (bpf_prog_info.recursion_misses; counted for tracepoint programs"
                         " only since Linux v6.7)")
