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
  between the two, the field exists but stays 0 for those programs.
  probe_skips_counted() finds out by provoking a skip (doctor shows it).

The kernel cannot say which event it skipped: a skip caused by another
device's I/O is lost for a tool filtering on one device too, so lost is an
upper bound there.  Raw tracepoint programs are guarded per program instead
(prog->active in __bpf_trace_run), so another tracer never makes the kernel
skip them; the backend uses them for events whose fields it does not read,
and for block fields it computes from struct request at kernel BTF
offsets (crawblock.py), never from installed headers.

Not every missed event is counted here.  On the 6.18 test machine, block
completions run in softirq on top of one particular task (the VM's init
agent; tracefs shows them as softirq with preempt depth 1) were recorded
by tracefs but run by no BPF program at all, raw tracepoint programs
included, and recursion_misses stayed 0.  perfhook.py counts those, for
raw tracepoint programs through a tracepoint sentinel beside each;
bench/ebpf_blind_spots.py and bench/ebpf_raw_blind.py measure them.
"""

import ctypes
import os
import struct
import time

from kerntrace.core.errors import one_line

from . import sysbpf
from .sysbpf import Answer

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
    return misses_from_info(struct.unpack_from("<I", buf.raw, 4)[0], info.raw)


def misses_from_info(info_len, info):
    """(recursion_misses, None) from a bpf_prog_info of which the kernel
    filled `info_len` bytes; (None, why) when its struct ends before it."""
    if info_len < _MISSES_OFFSET + 8:
        return None, "bpf_prog_info has no recursion_misses (%d bytes)" % info_len
    return struct.unpack_from("<Q", info, _MISSES_OFFSET)[0], None


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
        return Answer(False, "cannot load a program to ask (%s)" % sysbpf.errname(err),
                             err)
    try:
        n, why = prog_info_misses(fd)
    finally:
        os.close(fd)
    if n is None:
        return Answer(False, "the kernel cannot tell how often it skipped a BPF program"
                             " (%s): eBPF counts may be short without a lost count" % why)
    return Answer(True, "bpf_prog_info has recursion_misses")


# One program spins briefly in every system call this process makes; one on
# timer:hrtimer_expire_entry, which the timer interrupt fires on the same CPU
# while the first spins: the kernel must skip the second then.
_NESTED_PROGRAM = r"""
BPF_ARRAY(kt_spins, u64, 1);

int kt_spinner(struct tracepoint__raw_syscalls__sys_enter *args)
{
    int zero = 0;
    if ((bpf_get_current_pid_tgid() >> 32) != %(pid)d)
        return 0;
    u64 *spins = kt_spins.lookup(&zero);
    if (spins)
        __sync_fetch_and_add(spins, 1);
    u64 t0 = bpf_ktime_get_ns();
    for (int i = 0; i < 4000; i++) {
        if (bpf_ktime_get_ns() - t0 > 200000)
            break;
    }
    return 0;
}

int kt_nested(struct tracepoint__timer__hrtimer_expire_entry *args)
{
    return 0;
}
"""


def probe_skips_counted(bcc_module, seconds=1.0):
    """Whether the kernel counts the runs of a tracepoint program it skips
    because another BPF program is running on the CPU: tried, by spinning
    in a program until a timer interrupt lands on another one (at most
    `seconds`).  An sysbpf.Answer; ok only when a skip was counted."""
    from kerntrace.core.stopsignals import SignalsDeferred
    from . import bpfobject
    text = _NESTED_PROGRAM % {"pid": os.getpid()}
    with SignalsDeferred():
        try:
            b = bpfobject.load(bcc_module, text)
        except bpfobject.LoadError as e:
            return Answer(False, "could not try (compile: %s)" % e)
        try:
            b.attach_tracepoint(tp=b"timer:hrtimer_expire_entry", fn_name=b"kt_nested")
            before, why = prog_info_misses(b.funcs[b"kt_nested"].fd)
            if before is None:
                return Answer(False, "the kernel cannot tell how often it skipped a BPF"
                              " program (%s)" % why)
            b.attach_tracepoint(tp=b"raw_syscalls:sys_enter", fn_name=b"kt_spinner")
            after = before
            end = time.time() + seconds
            while after == before and time.time() < end:
                for _ in range(50):
                    os.getppid()
                after, _why = prog_info_misses(b.funcs[b"kt_nested"].fd)
            table = b[b"kt_spins"]
            spins = int(table[table.Key(0)].value)
        except Exception as e:
            return Answer(False, "could not try: %s" % one_line(e))
        finally:
            bpfobject.unload(b)
    if after is not None and after > before:
        return Answer(True, "runs of BPF programs the kernel skips are counted"
                      " (recursion_misses) and reported as lost events")
    if not spins:
        return Answer(False, "could not try (the spinning program did not run)")
    # Since Linux commit dd8657894c11 ("bpf: Count missed stats in
    # trace_call_bpf") (v6.7) skipped tracepoint and kprobe programs count.
    return Answer(False, "no skipped run of a tracepoint program was counted while another"
                  " BPF program ran: this kernel cannot tell, so eBPF counts may be short"
                  " with no lost count (the ftrace backend is not affected)")
