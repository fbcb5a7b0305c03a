"""Kernel lockdown as doctor and the eBPF backend see it.

A missing securityfs lockdown file is no proof of "none": securityfs may
just not be mounted (this development machine: locked down, integrity,
forced by its configuration, no securityfs).  Read the file where it is,
else from a private securityfs mount, else tell by effect (opening
/proc/kcore or /dev/mem: EPERM only under lockdown), else "unknown".
pyfakefs builds the hosts this kernel cannot show; the live tests check
this host.
"""

import errno
import json
import os
import re
import subprocess

import pytest

import clirun
import kernstate
from kerntrace.core import lockdown
from kerntrace.core.host import Host

RAWIO = 1 << lockdown.CAP_SYS_RAWIO
MOUNTS_WITH_SECURITYFS = ("sysfs /sys sysfs rw 0 0\n"
                          "securityfs /sys/kernel/security securityfs rw 0 0\n")


def fake_host(fs, lockdown_text=None, mounts="sysfs /sys sysfs rw 0 0\n", cap_eff=0,
              devices=()):
    fs.create_file("/proc/mounts", contents=mounts)
    fs.create_file("/proc/self/status", contents="Name:\tpython\nCapEff:\t%016x\n" % cap_eff)
    if lockdown_text is not None:
        fs.create_file(lockdown.LOCKDOWN_FILE, contents=lockdown_text)
    for path in devices:
        fs.create_file(path)
    return Host(mount_tracefs=False)


@pytest.mark.parametrize("text, mode", [("[none] integrity confidentiality\n", "none"),
                                        ("none [integrity] confidentiality\n", "integrity"),
                                        ("none integrity [confidentiality]\n",
                                         "confidentiality")])
def test_the_securityfs_file_is_read_where_it_is(fs, text, mode):
    lock = fake_host(fs, text, mounts=MOUNTS_WITH_SECURITYFS).lockdown()
    assert (lock.mode, lock.how) == (mode, lockdown.LOCKDOWN_FILE)


def test_securityfs_mounted_without_the_file_means_no_lockdown_lsm(fs):
    lock = fake_host(fs, mounts=MOUNTS_WITH_SECURITYFS).lockdown()
    assert lock.mode == "none" and "no lockdown LSM" in lock.how


def test_no_securityfs_and_nothing_to_tell_is_unknown_never_none(fs):
    host = fake_host(fs, cap_eff=RAWIO)
    assert host.lockdown().mode == "unknown"
    cap = [c for c in host.capabilities() if c.name == "lockdown"][0]
    assert not cap.ok and cap.detail.startswith("unknown (") and "none" not in cap.detail


def test_without_cap_sys_rawio_the_device_opens_tell_nothing(fs):
    host = fake_host(fs, cap_eff=0, devices=(lockdown.KCORE, lockdown.DEV_MEM))
    assert host.lockdown().mode == "unknown"


def test_dev_mem_that_opens_means_not_locked_down(fs):
    lock = fake_host(fs, cap_eff=RAWIO, devices=(lockdown.DEV_MEM,)).lockdown()
    assert lock.mode == "none" and lockdown.DEV_MEM in lock.how


@pytest.mark.parametrize("kcore, mem, mode", [
    (errno.EPERM, errno.EPERM, "confidentiality"),
    (errno.EPERM, errno.ENOENT, "confidentiality"),
    (0, errno.EPERM, "integrity"),
    (errno.ENOENT, errno.EPERM, "unknown"),     # locked down, but how far?
    (errno.ENOENT, 0, "none"),
    (0, 0, "none"),
    (0, errno.ENOENT, None),                    # not confidentiality; integrity?
    (errno.ENOENT, errno.ENOENT, None),
    (errno.EACCES, errno.EACCES, None),          # another LSM said no: tells nothing
])
def test_effects(kcore, mem, mode):
    told = lockdown.from_effects(kcore, mem)
    assert (told.mode if told else None) == mode
    if told is not None and mode == "unknown":
        assert "locked down" in told.how


# -- this host ------------------------------------------------------------------
def _kernel_says_locked_down():
    try:
        log = subprocess.run(["dmesg"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(re.search(r"Kernel is locked down from", log))


@pytest.mark.live
def test_this_host_is_never_called_unlocked_when_its_kernel_says_locked():
    """With securityfs unmounted (as here) and without `unshare` (PATH
    emptied), doctor must say "unknown" (or the mode it could prove), never
    "none", on a kernel whose log says it is locked down."""
    if os.path.exists(lockdown.LOCKDOWN_FILE):
        pytest.skip("securityfs is mounted here: the file answers, nothing to infer")
    if not _kernel_says_locked_down():
        pytest.skip("the kernel log does not say this kernel is locked down")
    env = clirun.env()
    results = {}
    for name, path in (("with unshare", env.get("PATH", "")), ("without", "/nonexistent")):
        env["PATH"] = path
        p = subprocess.run(clirun.KERNTRACE + ["doctor", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, env=env,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        cap = [c for c in json.loads(p.stdout)["capabilities"]
               if c["name"] == "lockdown" and c["backend"] is None][0]
        results[name] = cap
    for name, cap in results.items():
        assert not cap["ok"] and not cap["detail"].startswith("none"), (name, cap)
    assert results["with unshare"]["detail"].startswith(("integrity", "confidentiality"))


@pytest.mark.live
def test_a_private_securityfs_mount_leaves_the_hosts_mounts_alone():
    if kernstate.live_skip_reason():
        pytest.skip(kernstate.live_skip_reason())
    before = open("/proc/self/mountinfo").read()
    text = lockdown.read_privately()
    if text is None:
        pytest.skip("cannot mount securityfs privately here (no root or no unshare)")
    assert text == "" or lockdown.parse(text) in lockdown.MODES
    assert open("/proc/self/mountinfo").read() == before
