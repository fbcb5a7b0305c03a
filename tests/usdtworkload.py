"""A C program with USDT probes (sys/sdt.h) for funccount's live tests:
how often each probe fires is on its command line.

    kt:tick      no semaphore, used at two places in the code (two sites):
                 `ticks` times at the first, `ticks` times at the second
    kt:guarded   has a semaphore: fired `guarded` times, but only where a
                 tracer has raised the semaphore (the program checks it, as
                 real programs guard expensive argument computation)

    uw = UsdtWorkload(exe, ticks=30, guarded=7)
    ... start the tracers (uw.pid is the process) ...
    uw.release()          # runs, then exits 0
    uw.guarded_fired      # how often the guarded branch ran (printed by it)

The probes are in two source files: sys/sdt.h decides per translation unit
(_SDT_HAS_SEMAPHORES) whether its probes have semaphores.
"""

import os
import shutil
import subprocess

import workloads

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/sdt.h>

long kt_guarded(long n);

__attribute__((noinline)) void kt_tick_here(long i)
{
    STAP_PROBE1(kt, tick, i);
}

__attribute__((noinline)) void kt_tick_there(long i)
{
    STAP_PROBE1(kt, tick, i);
}

int main(int argc, char **argv)
{
    long ticks = atol(argv[1]), guarded = atol(argv[2]), fired;
    char go[8];

    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    for (long i = 0; i < ticks; i++) {
        kt_tick_here(i);
        kt_tick_there(i);
    }
    fired = kt_guarded(guarded);
    printf("guarded %ld\n", fired);
    return 0;
}
"""

GUARDED = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

unsigned short kt_guarded_semaphore __attribute__((unused))
    __attribute__((section(".probes")));

long kt_guarded(long n)
{
    long fired = 0;
    for (long i = 0; i < n; i++) {
        if (kt_guarded_semaphore) {
            STAP_PROBE1(kt, guarded, i);
            fired++;
        }
    }
    return fired;
}
"""


def has_sdt_header(cc):
    """Whether the C compiler finds sys/sdt.h (systemtap-sdt-dev)."""
    p = subprocess.Popen([cc, "-E", "-x", "c", "-", "-o", os.devnull], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.communicate(b"#include <sys/sdt.h>\n")
    return p.returncode == 0


def build(tmpdir):
    """Compile the workload; (binary path, None) or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    if not has_sdt_header(cc):
        return None, "no sys/sdt.h (Debian: systemtap-sdt-dev)"
    srcs = []
    for name, text in (("usdt_main.c", MAIN), ("usdt_guarded.c", GUARDED)):
        path = os.path.join(str(tmpdir), name)
        with open(path, "w") as f:
            f.write(text)
        srcs.append(path)
    exe = os.path.join(str(tmpdir), "kt_usdtwork")
    subprocess.check_call([cc, "-O1", "-o", exe] + srcs)
    return exe, None


# kt:args(int small, long big, int five), fired `n` times for i = 0 .. n-1:
#   small  i % 3 - 1           -1, 0, 1 (a negative int: the sign matters)
#   big    (i % 2 + 1) << 33   2^33, 2^34 (a long: the upper 32 bits matter)
#   five   5                   a constant operand ($5)
# Built with -O0 (arguments in stack memory, `-4@-20(%rbp)`) and -O2
# (in registers, `-4@%eax`): the same values through both operand kinds.
ARGS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/sdt.h>

__attribute__((noinline)) void kt_args(long i)
{
    int small = (int)(i % 3) - 1;
    long big = (i % 2 + 1) << 33;
    STAP_PROBE3(kt, args, small, big, 5);
}

int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    char go[8];

    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    for (long i = 0; i < n; i++)
        kt_args(i);
    printf("done %ld\n", n);
    return 0;
}
"""


def expected_args(n):
    """{(small, big, five): count} of the n firings of kt:args."""
    want = {}
    for i in range(n):
        key = (i % 3 - 1, (i % 2 + 1) << 33, 5)
        want[key] = want.get(key, 0) + 1
    return want


def build_args(tmpdir, optimize):
    """Compile the kt:args program with -O`optimize`; (path, None) or
    (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    if not has_sdt_header(cc):
        return None, "no sys/sdt.h (Debian: systemtap-sdt-dev)"
    src = os.path.join(str(tmpdir), "usdt_args.c")
    with open(src, "w") as f:
        f.write(ARGS)
    exe = os.path.join(str(tmpdir), "kt_usdtargs_O%d" % optimize)
    subprocess.check_call([cc, "-O%d" % optimize, "-o", exe, src])
    return exe, None


class ArgsWorkload(workloads.Caller):
    """The kt:args program: started (pid known), fires n times on release()."""

    def __init__(self, exe, n):
        self.n = n
        self.p = subprocess.Popen([exe, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())

    def release(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()
        self.p.stdout.read()
        return self.p.wait()


class UsdtWorkload(workloads.Caller):
    def __init__(self, exe, ticks, guarded):
        self.ticks, self.guarded = ticks, guarded
        self.p = subprocess.Popen([exe, str(ticks), str(guarded)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())
        self.guarded_fired = None

    def release(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()
        out = self.p.stdout.read().decode()
        rc = self.p.wait()
        self.guarded_fired = int(out.split()[1])
        return rc
