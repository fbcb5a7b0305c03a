"""What this kernel says about the cheap ways to count kernel functions:
fentry on eBPF (found by trying a real attach) and the ftrace function
profiler (found by its files); where neither (nor a kprobe) works, funccount
on a kernel function is refused with one line naming each, and leaves
nothing behind.  Both ways are tested where they run in fakes
(test_ebpf_fentry.py, test_funcprofile_eras.py)."""

import os

import pytest

import clirun
import kernstate
from kerntrace.backends.ebpf import btf, probes as eprobes, sysbpf
from kerntrace.backends.ftrace import funcprofile
from kerntrace.core import symbols

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def root():
    why = kernstate.live_skip_reason()
    if why:
        pytest.skip(why)
    return symbols.tracing_root()


def _fentry_answer():
    return eprobes.HostProbes(symbols.tracing_root()).fentry()


def _direct_try():
    """The same fentry attach, made here without kerntrace's planner."""
    types = btf.Btf.load()
    for name in ("do_nanosleep", "vfs_read"):
        tid = types.find(btf.FUNC, name)
        if tid is not None:
            return sysbpf.probe_fentry(tid, name)
    pytest.skip("no do_nanosleep/vfs_read in this kernel's BTF to try fentry on")


def test_fentry_detection_says_what_a_real_attach_does(root):
    if not os.path.exists(btf.VMLINUX):
        pytest.skip("no kernel BTF (%s): fentry cannot be tried" % btf.VMLINUX)
    answer = _fentry_answer()
    direct = _direct_try()
    assert answer.ok == direct.ok, (answer, direct)
    if not answer.ok:
        # (this development machine: EPERM) the reason names the errno
        assert sysbpf.errname(direct.errno) in answer.detail


def test_profiler_detection_matches_the_tracefs_files(root):
    has = os.path.exists(os.path.join(root, "function_profile_enabled"))
    why = funcprofile.has_profiler(root)
    assert (why is None) == (has and os.path.isdir(os.path.join(root, "trace_stat")))


def test_kernel_function_count_refused_in_one_line_naming_each_way(root):
    if os.path.exists(os.path.join(root, "kprobe_events")):
        pytest.skip("this kernel has kprobes: kernel functions are traced")
    if funcprofile.has_profiler(root) is None:
        pytest.skip("this kernel has the function profiler: funccount runs on it")
    if os.path.exists(btf.VMLINUX) and _fentry_answer().ok:
        pytest.skip("fentry attaches here: funccount runs on it")
    before = kernstate.snapshot()
    rc, out, err = clirun.run(["funccount", "-d", "1", "vfs_read"])
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1, err
    assert "fentry" in err and "kprobe" in err and "function profiler" in err, err
    assert not kernstate.leaks(before)


def test_fentry_detection_agrees_with_bcc_loading_a_kfunc_probe(root):
    """What bcc itself does with a KFUNC_PROBE (it loads and attaches it in
    BPF()), against the detection's answer."""
    why = kernstate.ebpf_skip_reason()
    if why:
        pytest.skip(why)
    if not os.path.exists(btf.VMLINUX):
        pytest.skip("no kernel BTF (%s): fentry cannot be tried" % btf.VMLINUX)
    from kerntrace.backends.ebpf import bccfind, bpfobject
    bcc = bccfind.import_bcc()
    try:
        b = bpfobject.load(bcc, "KFUNC_PROBE(do_nanosleep)\n{\n    return 0;\n}\n")
    except bpfobject.LoadError as e:
        loaded, detail = False, str(e)
    else:
        loaded, detail = bool(b.kfunc_entry_fds), "kfunc__ entries %r" % b.kfunc_entry_fds
        bpfobject.unload(b)
    assert _fentry_answer().ok == loaded, detail
