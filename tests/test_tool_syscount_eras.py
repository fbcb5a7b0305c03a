"""syscount and killsnoop on kernels without what they need (fake tracefs
trees, tests/fake_tracefs.py): a kernel built without syscall tracepoints
(CONFIG_FTRACE_SYSCALLS=n) has neither raw_syscalls nor syscalls events;
the ftrace backend says so, per event, instead of running."""

import os

import pytest

from fake_tracefs import TRACEFS_ROOT, FakeTracefs
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.core import tracefs as core_tracefs
from kerntrace.core.host import Host
from kerntrace.plugins.killsnoop import KillSnoop
from kerntrace.plugins.syscount import Syscount


@pytest.fixture
def no_syscall_events(fs, monkeypatch):
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    fs.create_dir("/var/tmp")
    fs.create_dir("/run")
    t = FakeTracefs(fs, "5.10").install(monkeypatch)
    events = os.path.join(TRACEFS_ROOT, "events")
    assert not os.path.exists(os.path.join(events, "raw_syscalls"))
    assert not os.path.exists(os.path.join(events, "syscalls", "sys_enter_kill"))
    return t


@pytest.mark.parametrize("tool, argv, event", [
    (Syscount(), [], "raw_syscalls:sys_exit"),
    (Syscount(), ["-L"], "raw_syscalls:sys_enter"),
    (KillSnoop(), [], "syscalls:sys_enter_kill"),
])
def test_ftrace_names_the_missing_event(no_syscall_events, tool, argv, event):
    m = tool.measurement(tool.parse_args(argv))
    v = FtraceBackend().check(m, Host(mount_tracefs=False))
    assert not v.ok
    assert any(event in r for r in v.reasons), v.reasons
