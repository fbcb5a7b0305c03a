"""Kernel stacks on the ftrace backend, live: a process calling getppid()
N times, traced with options/stacktrace in our own instance, read through
trace_pipe_raw (kernel_stack records named from /proc/kallsyms) and
through the text trace_pipe (forced here: the kernel names the frames):
every event's record has its stack, the same on both paths."""

import platform

import pytest

import workloads
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.core.backend import RunOptions, Verdict
from kerntrace.core.host import Host
from kerntrace.core.model import KSTACK, Event, Filter, Measurement, Records, Tracepoint

pytestmark = pytest.mark.live

N = 25


def stacks(caller_exe, read_path):
    c = workloads.Caller(caller_exe, N)
    m = Measurement([Event("g", Tracepoint("syscalls", "sys_enter_getppid"))],
                    Records(("tid", KSTACK)), filters=[Filter("pid", "==", c.pid)])
    b = FtraceBackend()
    options = RunOptions(tool="kstacks")
    v = b.check(m, Host(), options)
    assert v.ok, v.reasons
    v = Verdict(v.backend, True, v.reasons, v.plan.replace(read_path=read_path))
    s = b.open(m, v, options)
    assert "/options/stacktrace" in s.program_text()
    records = []
    with s:
        assert c.release() == 0
        s.wait(0.5)
        records.extend(s.collect().data)
        s.wait(0.2)
        records.extend(s.collect().data)
    assert len(records) == N and all(r["tid"] == c.pid for r in records), records
    return [r[KSTACK] for r in records]


def test_every_event_has_its_stack_on_both_read_paths(caller_exe):
    raw = stacks(caller_exe, "raw")
    text = stacks(caller_exe, "text")
    assert all(type(s) is tuple and s for s in raw + text), (raw, text)
    assert len(set(raw)) == 1, set(raw)             # one call site: one stack
    assert set(text) == set(raw), (set(text), set(raw))
    if platform.machine() == "x86_64":
        assert "do_syscall_64" in raw[0] and "[unknown]" not in raw[0], raw[0]
