"""Plain counts per trace_pipe_raw page on the live kernel: a process makes
N getcpu() system calls as fast as it can (N known hits of
syscalls:sys_enter_getcpu / sys_exit_getcpu, a call nothing else on a host
makes: the C library answers it from the vDSO) and tpcount and syscount on
the ftrace backend count every one of them (counted + lost == N)."""

import json
import os
import subprocess

import pytest

import clirun
import workloads

pytestmark = pytest.mark.live

CALLS = 1000000

_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    unsigned cpu;
    char go[8];
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    for (long i = 0; i < n; i++)
        syscall(SYS_getcpu, &cpu, NULL, NULL);
    return 0;
}
"""


@pytest.fixture(scope="module")
def getcpu_caller(tmp_path_factory):
    if not os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_enter_getcpu") and \
            not os.path.isdir("/sys/kernel/debug/tracing/events/syscalls/sys_enter_getcpu"):
        pytest.skip("this kernel has no syscalls:sys_enter_getcpu tracepoint "
                    "(CONFIG_FTRACE_SYSCALLS off)")
    exe = workloads.compile_c(tmp_path_factory.mktemp("getcpu"), "kerntrace_getcpu", _SRC)
    if exe is None:
        pytest.skip("no C compiler (cc) to build the getcpu() workload")
    return exe


def run_counted(exe, argv):
    """Start the tool, release the workload once it traces, stop it after;
    (its JSON reports, its stderr)."""
    p = clirun.start(argv + ["--json", "--explain", "-i", "1"])
    w = None
    try:
        err = clirun.wait_for_text(p.stderr, "Tracing", p)
        w = subprocess.Popen([exe, str(CALLS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        w.stdout.readline()
        w.stdin.write(b"go\n")
        w.stdin.flush()
        assert w.wait(timeout=300) == 0
        p.send_signal(2)
        out, rest = clirun.finish_interrupted(p)
    finally:
        for proc in (w, p):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert p.returncode == 0, rest
    return [json.loads(line) for line in out.splitlines()], err + rest


def totals(reports, label):
    counted = sum(c["count"] for r in reports for c in r["counts"]
                  if label in c["labels"].values())
    return counted, sum(r.get("lost") or 0 for r in reports)


def test_tpcount_counts_every_hit_per_page(getcpu_caller):
    reports, err = run_counted(getcpu_caller, ["tpcount", "--backend", "ftrace",
                                               "syscalls:sys_enter_getcpu"])
    assert "counts per page: event types and key fields only" in err
    counted, lost = totals(reports, "sys_enter_getcpu")
    assert counted + lost == CALLS, (counted, lost)


def test_two_tracepoints_of_other_sizes_in_one_buffer(getcpu_caller):
    reports, err = run_counted(getcpu_caller, ["tpcount", "--backend", "ftrace",
                                               "syscalls:sys_enter_getcpu",
                                               "syscalls:sys_exit_getcpu"])
    assert "counts per page" in err
    lost = sum(r.get("lost") or 0 for r in reports)
    enter, _ = totals(reports, "sys_enter_getcpu")
    exit_, _ = totals(reports, "sys_exit_getcpu")
    # a lost event is one of the two
    assert enter + exit_ + lost == 2 * CALLS and enter <= CALLS and exit_ <= CALLS


def test_syscount_counts_every_call_per_page(getcpu_caller):
    reports, err = run_counted(getcpu_caller, ["syscount", "--backend", "ftrace",
                                               "--syscall", "getcpu"])
    assert "counts per page" in err
    counted, lost = totals(reports, "getcpu")
    assert counted + lost == CALLS, (counted, lost)
