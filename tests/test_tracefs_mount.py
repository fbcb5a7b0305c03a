"""tracefs that kerntrace mounts itself (a host booted without it) is gone
when kerntrace ends, and concurrent runs that each mounted it all work.

Run in a private mount namespace (`unshare -m`) where tracefs is unmounted
first: the host's own tracefs mount, which other tests use, is untouched."""

import json
import shutil
import subprocess
import sys

import pytest

import clirun

pytestmark = pytest.mark.live

GETPPID = "syscalls:sys_enter_getppid"
N = 300

# Runs inside `unshare -m`: unmounts tracefs there, then runs kerntrace as a
# user of such a host would and reports how many tracefs mounts it sees.
_DRIVER = r"""
import json, signal, subprocess, sys, time
kt = sys.argv[1:]
PIPE = subprocess.PIPE

def tracefs_mounts():
    with open("/proc/self/mounts") as f:
        return [l.split()[1] for l in f if l.split()[2:3] == ["tracefs"]]

for m in reversed(tracefs_mounts()):
    subprocess.call(["umount", m])
res = {"before": tracefs_mounts()}
d = subprocess.run(kt + ["doctor"], stdout=PIPE, stderr=PIPE, universal_newlines=True)
res["doctor"] = [d.returncode, d.stdout, d.stderr]
res["after_doctor"] = tracefs_mounts()
p = subprocess.run(kt + ["tpcount", "--backend", "ftrace", "--print-program",
                         "syscalls:sys_enter_getppid"],
                   stdout=PIPE, stderr=PIPE, universal_newlines=True)
res["print_program"] = [p.returncode, p.stdout, p.stderr]
res["after_print_program"] = tracefs_mounts()
runs = [subprocess.Popen(kt + ["tpcount", "--backend", "ftrace", "-i", "30", "-c", "1",
                               "syscalls:sys_enter_getppid"],
                         stdout=PIPE, stderr=PIPE, universal_newlines=True) for _ in range(2)]
seen = []
for r in runs:
    lines = [r.stderr.readline()]
    while "Tracing" not in lines[-1] and lines[-1]:
        lines.append(r.stderr.readline())
    seen.append("".join(lines))
subprocess.check_call([sys.executable, "-c", "import os\nfor _ in range(300): os.getppid()"])
time.sleep(0.3)
for r in runs:
    r.send_signal(signal.SIGINT)
res["runs"] = [[r.wait(), r.stdout.read(), s + r.stderr.read()] for r, s in zip(runs, seen)]
res["after_runs"] = tracefs_mounts()
print(json.dumps(res))
"""


def test_tracefs_mounted_by_kerntrace_is_gone_when_it_ends():
    if shutil.which("unshare") is None or shutil.which("umount") is None:
        pytest.skip("unshare(1)/umount(8) are not installed")
    r = subprocess.run(["unshare", "-m", sys.executable, "-c", _DRIVER] + clirun.KERNTRACE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=clirun.env(), timeout=180)
    if r.returncode != 0 and "unshare failed" in r.stderr:
        pytest.skip("cannot create a mount namespace here: %s" % r.stderr.strip())
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["before"] == []
    rc, out, err = res["doctor"]
    assert rc == 0 and "[ok] tracefs" in out, out + err
    assert res["after_doctor"] == []
    rc, out, err = res["print_program"]
    assert rc == 0 and "events/syscalls/sys_enter_getppid/enable" in out, out + err
    assert res["after_print_program"] == []
    for rc, out, err in res["runs"]:
        assert rc == 0, err
        assert "kerntrace: mounted tracefs at /sys/kernel/tracing for this run only" in err
        counted = [int(l.split()[-1]) for l in out.splitlines() if l.startswith(GETPPID)]
        assert counted and counted[0] >= N, out      # (system-wide: others call it too)
    assert res["after_runs"] == []
    # The host's own mount was never touched.
    with open("/proc/self/mounts") as f:
        assert any(l.split()[2:3] == ["tracefs"] for l in f)
