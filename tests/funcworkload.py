"""A C program with known functions for the function tools' live tests
(funccount, funclatency, funcslower): how often each is called, from
which threads, how deep it recurses and how long each call sleeps are
all on its command line, so the tests know every count exactly.

    fw = FuncWorkload(exe, threads=3, calls=50, slow=4, slow_usec=30000,
                      depth=5, depth_usec=4000)
    ... start the tracers (fw.pid is the process) ...
    fw.release()          # runs, then exits 0

kt_leaf(usec)      sleeps usec, returns usec: each of `threads` threads
                   calls it `calls` times with 0, then the main thread
                   `slow` times with slow_usec
kt_recurse(d, us)  sleeps us, then calls kt_recurse(d - 1, us) while d > 1;
                   returns d: called once with d = depth (depth calls)
kt_vanish()        called once by a thread that exits inside it
                   (pthread_exit): an entry that never returns
"""

import subprocess

import workloads

SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void sleep_usec(long usec)
{
    struct timespec ts = { usec / 1000000, (usec % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

__attribute__((noinline)) long kt_leaf(long usec)
{
    sleep_usec(usec);
    return usec;
}

__attribute__((noinline)) long kt_recurse(long depth, long usec)
{
    sleep_usec(usec);
    if (depth > 1)
        kt_recurse(depth - 1, usec);
    __asm__ volatile("" ::: "memory");   /* no tail call: a real return */
    return depth;
}

__attribute__((noinline)) void kt_vanish(void)
{
    pthread_exit(NULL);
}

static long calls;

static void *caller(void *arg)
{
    for (long i = 0; i < calls; i++)
        kt_leaf(0);
    return arg;
}

static void *vanisher(void *arg)
{
    kt_vanish();
    return arg;
}

int main(int argc, char **argv)
{
    long threads = atol(argv[1]), slow = atol(argv[3]), slow_usec = atol(argv[4]);
    long depth = atol(argv[5]), depth_usec = atol(argv[6]);
    pthread_t t[64], v;
    char go[8];

    calls = atol(argv[2]);
    if (threads > 64)
        return 2;
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    for (long i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, caller, NULL);
    for (long i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    for (long i = 0; i < slow; i++)
        kt_leaf(slow_usec);
    if (depth > 0 && kt_recurse(depth, depth_usec) != depth)
        return 3;
    pthread_create(&v, NULL, vanisher, NULL);
    pthread_join(v, NULL);
    return 0;
}
"""


def build(tmpdir):
    """Compile the workload (-O0: no inlining, no tail calls); the binary's
    path, or None without a C compiler."""
    return workloads.compile_c(tmpdir, "kerntrace_funcwork", SOURCE, ("-O0", "-g", "-pthread"))


class FuncWorkload(workloads.Caller):
    def __init__(self, exe, threads=3, calls=50, slow=4, slow_usec=30000, depth=5,
                 depth_usec=4000):
        self.threads, self.calls, self.slow, self.slow_usec = threads, calls, slow, slow_usec
        self.depth, self.depth_usec = depth, depth_usec
        self.p = subprocess.Popen([exe] + [str(a) for a in (threads, calls, slow, slow_usec,
                                                             depth, depth_usec)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())

    @property
    def leaf_calls(self):
        return self.threads * self.calls + self.slow
