"""Shared test fixtures.

Live-kernel tests are marked `live` and skip with a stated reason where the
host lacks root or tracefs; eBPF tests also need a working bcc.  After every
test we check that no kerntrace tracing state of a dead (or this) process is
left in the kernel: a leak fails the test that caused it.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import kernstate  # noqa: E402  (tests/kernstate.py)
from kerntrace.core import pluginhost  # noqa: E402

# The built-in tools and backends are found through the installed entry
# points, read once per process: read them while the real file system is
# there, for the tests that fake it (pyfakefs) and then build plugin hosts.
pluginhost.installed_entry_points()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "live" in item.keywords or "ebpf" in item.keywords:
            why = kernstate.live_skip_reason()
            if why:
                item.add_marker(pytest.mark.skip(reason=why))
                continue
        if "ebpf" in item.keywords:
            why = kernstate.ebpf_skip_reason()
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session", autouse=True)
def bpf_object_cache(tmp_path_factory):
    """Compiled BPF programs are cached in a directory of this test run,
    never the host's (backends/ebpf/objcache.py); runs after the first of
    a program in the suite load it from there."""
    d = tmp_path_factory.mktemp("bpf-cache")
    d.chmod(0o700)
    saved = os.environ.get("KERNTRACE_BPF_CACHE")
    os.environ["KERNTRACE_BPF_CACHE"] = str(d)
    yield str(d)
    if saved is None:
        os.environ.pop("KERNTRACE_BPF_CACHE", None)
    else:
        os.environ["KERNTRACE_BPF_CACHE"] = saved


@pytest.fixture(autouse=True)
def no_tracing_state_leak(request):
    """Fail a live test that leaves kerntrace instances, probes or enabled
    top-level events behind."""
    live = "live" in request.keywords or "ebpf" in request.keywords
    before = kernstate.snapshot() if live else None
    yield
    if live and not kernstate.live_skip_reason():
        leaks = kernstate.leaks(before)
        assert not leaks, "kernel tracing state left behind: %s" % "; ".join(leaks)


@pytest.fixture(scope="session")
def caller_exe(tmp_path_factory):
    """The C workload with known symbols (tests/workloads.py), built once."""
    import workloads
    exe = workloads.build_caller(tmp_path_factory.mktemp("caller"))
    if exe is None:
        pytest.skip("no C compiler to build the function-caller workload")
    return exe
