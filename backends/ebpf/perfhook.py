"""Tracepoint events the kernel delivered while none of our BPF programs ran.

A tracepoint program (not a raw one) runs from the tracepoint's perf hook
(perf_trace_run_bpf_submit): the hook runs the tracepoint's BPF programs
and hands the event to the perf events open on that CPU only when they
did not run or one returned non-zero.  Ours always return 0, so a counting
perf event opened on the same tracepoint after our program is attached
counts exactly the events that reached the hook while our program did not
run: the ones no skip counter tells about.  (A skip the kernel counts in
recursion_misses, progstats.py, returns 0 too and is not counted here.)

Measured on the 6.18 test machine (bench/ebpf_blind_spots.py): block
completions run in softirq on top of one task of the VM reached the hook
with no BPF program run, and the kernel counted no skip; this count
matched the shortfall exactly.  Raw tracepoint programs miss the same
events (bench/ebpf_raw_blind.py: no handler entry, no recursion miss) and
have no hook of their own, so the program puts a tracepoint program that
does nothing (a sentinel, codegen.py) beside each: the counters on its
tracepoint count what the raw program was not run for too, exactly in 10
of 10 runs measured.  A sentinel skipped because another BPF program runs
on the CPU counts nothing here, rightly: raw programs are not skipped so.

The counters cover every CPU online when they are opened.  Where the
handler's filters compare integer fields (a tool's -d: dev == N) the
counters get the same filter (PERF_EVENT_IOC_SET_FILTER), so they count
that device's misses only; otherwise every event of the tracepoint counts,
another device's too, and lost is an upper bound, as it already is for
skips.
"""

import ctypes
import fcntl
import os
import platform
import struct
import sys

from . import sysbpf

PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
CPU_ONLINE = "/sys/devices/system/cpu/online"
# perf_event_open(2) per architecture (bcc's own opener takes only
# hardware and raw events).
_NR_PERF_EVENT_OPEN = {
    "x86_64": 298, "i386": 336, "i686": 336, "aarch64": 241, "arm64": 241,
    "armv7l": 364, "armv6l": 364, "ppc64": 319, "ppc64le": 319, "s390x": 331,
    "riscv64": 241, "loongarch64": 241, "mips64": 5292,
}


def open_counting_event(tp_id, cpu, disabled=False):
    """A counting perf event (no sampling; enabled unless `disabled`) on
    tracepoint `tp_id` for every task on `cpu`: its fd, or -1."""
    nr = _NR_PERF_EVENT_OPEN.get(platform.machine())
    libc = sysbpf._syscall()
    if nr is None or libc is None:
        return -1
    # struct perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes): type,
    # size, config, sample_period (0: count only), sample_type,
    # read_format, flag bits (0: enabled), wakeup_events, bp_type, config1.
    attr = struct.pack("=IIQQQQQIIQ", PERF_TYPE_TRACEPOINT, 64, tp_id, 0, 0, 0,
                       1 if disabled else 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    return libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(-1), ctypes.c_int(cpu),
                        ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))


def _ioc_nr(nr, size=0):
    """_IO('$', nr) (size 0) or _IOW('$', nr, size) on this architecture,
    or None where its ioctl numbering is not the generic one."""
    if platform.machine().startswith(("ppc", "mips", "sparc")):
        return None
    return ((1 << 30) if size else 0) | (size << 16) | (ord("$") << 8) | nr


PERF_EVENT_IOC_ENABLE = _ioc_nr(0)
PERF_EVENT_IOC_SET_FILTER = _ioc_nr(6, ctypes.sizeof(ctypes.c_void_p))


def set_filter(fd, text):
    """PERF_EVENT_IOC_SET_FILTER: the event counts only what matches the
    tracefs filter `text`.  False when the kernel refused it (the counter
    then counts every event: an upper bound)."""
    if PERF_EVENT_IOC_SET_FILTER is None:
        return False
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_FILTER, text.encode("ascii") + b"\0")
    except (OSError, ValueError):
        return False
    return True


def enable(fd):
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError:
        return False
    return True


def online_cpus(text):
    """'0-3,5' -> [0, 1, 2, 3, 5]"""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def tracepoint_id(tracefs, category, name):
    """The tracepoint's id (tracefs events/<category>/<name>/id), or None."""
    try:
        with open(os.path.join(tracefs, "events", category, name, "id")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class HookCounter(object):
    """Counting perf events on tracepoints, one per online CPU; missed()
    returns how many events they counted since the last call."""

    def __init__(self, fds):
        self.fds = fds
        self.seen = 0

    @classmethod
    def open(cls, tracefs, probes, cpu_online=CPU_ONLINE):
        """Counters on each tracepoint probe (category, name[, filter]) for
        every online CPU, counting only the events that match filter (a
        tracefs filter) where there is one.  None when any cannot be
        opened: the backend then reports what it can without them."""
        try:
            with open(cpu_online) as f:
                cpus = online_cpus(f.read())
        except (OSError, ValueError):
            return None
        counter = cls([])
        for probe in probes:
            category, name = probe[:2]
            text = probe[2] if len(probe) > 2 else None
            tp = tracepoint_id(tracefs, category, name)
            if tp is None:
                counter.close()
                return None
            # A filtered counter is opened disabled and enabled once its
            # filter is set: it never counts an event outside the filter.
            filtered = bool(text) and PERF_EVENT_IOC_SET_FILTER is not None
            for cpu in cpus:
                fd = open_counting_event(tp, cpu, disabled=filtered)
                if fd < 0:
                    counter.close()
                    return None
                counter.fds.append(fd)
                if filtered:
                    set_filter(fd, text)
                    if not enable(fd):
                        counter.close()
                        return None
        return counter if counter.fds else None

    def total(self):
        n = 0
        for fd in self.fds:
            try:
                data = os.read(fd, 8)
            except OSError:
                continue
            if len(data) == 8:
                n += int.from_bytes(data, sys.byteorder)
        return n

    def missed(self):
        now = self.total()
        delta, self.seen = now - self.seen, now
        return max(0, delta)

    def close(self):
        fds, self.fds = self.fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
