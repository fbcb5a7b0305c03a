"""Workloads with a known number of kernel events, for live tests."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time


@contextlib.contextmanager
def loop_device(size_mb=64, directory=None, direct_io=False):
    """A fresh loop block device; yields (path, major, minor).  Its I/O is
    ours alone, so counts on it are exact.  `directory` holds the backing
    file (a tmpfs keeps the loop's own I/O off every block device);
    `direct_io` makes the loop device read its file with direct I/O."""
    d = tempfile.mkdtemp(prefix="kerntrace-test-", dir=directory)
    img = os.path.join(d, "disk.img")
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    dev = subprocess.check_output(["losetup", "-f", "--show"]
                                  + (["--direct-io=on"] if direct_io else []) + [img]
                                  ).decode().strip()
    try:
        st = os.stat(dev)
        yield dev, os.major(st.st_rdev), os.minor(st.st_rdev)
    finally:
        subprocess.call(["losetup", "-d", dev])
        shutil.rmtree(d, ignore_errors=True)


def direct_writes(dev, n, bs=4096, seek=0):
    """n direct (O_DIRECT) writes of bs bytes: n block requests, each issued
    and completed once (dd waits for each)."""
    subprocess.check_call(["dd", "if=/dev/zero", "of=" + dev, "bs=%d" % bs, "count=%d" % n,
                           "seek=%d" % seek, "oflag=direct", "status=none"])


def direct_reads(dev, n, bs=4096, skip=0):
    subprocess.check_call(["dd", "if=" + dev, "of=/dev/null", "bs=%d" % bs, "count=%d" % n,
                           "skip=%d" % skip, "iflag=direct", "status=none"])


def open_file_n_times(n, path=None):
    """Open a uniquely named file n times from a child process; returns
    (path, pid of the child)."""
    path = path or tempfile.mktemp(prefix="kerntrace-open-")
    open(path, "w").close()
    code = "import os,sys\nfor _ in range(%d):\n    os.close(os.open(%r, os.O_RDONLY))\n" % (n, path)
    p = subprocess.Popen([sys.executable, "-c", code])
    p.wait()
    os.unlink(path)
    return path, p.pid


_CALLER_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>

/* Not inlined, not static: a uprobe target with a stable symbol. */
__attribute__((noinline)) long kerntrace_work(long usec)
{
    struct timespec ts = { usec / 1000000, (usec % 1000000) * 1000 };
    nanosleep(&ts, NULL);
    return usec;
}

int main(int argc, char **argv)
{
    long n = atol(argv[1]), usec = argc > 2 ? atol(argv[2]) : 0;
    char go[8];
    /* Wait until the tracer is attached: the test writes a line. */
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    for (long i = 0; i < n; i++) {
        kerntrace_work(usec);
        getppid();
    }
    return 0;
}
"""


def compile_c(directory, name, source, flags=("-O1",)):
    """Compile C `source` (written to `directory`/`name`.c) with cc
    `flags` into `directory`/`name`; the binary's path, or None without a
    C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src = os.path.join(str(directory), name + ".c")
    exe = os.path.join(str(directory), name)
    with open(src, "w") as f:
        f.write(source)
    subprocess.check_call([cc] + list(flags) + ["-o", exe, src])
    return exe


def build_caller(tmpdir):
    """Compile the function-caller workload; returns the binary path, or
    None without a C compiler."""
    return compile_c(tmpdir, "kerntrace_caller", _CALLER_SRC, ("-O1", "-g"))


class Process(object):
    """A workload process (self.p, a Popen) that waits for "go" on its
    stdin: release() starts it and returns its exit status; in a
    with-statement, SIGKILLed at its end if it still runs (a test that
    failed before releasing it)."""

    # How long release() waits for the workload to end (None: as long as
    # it takes).
    release_timeout = None

    def release(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()
        return self.p.wait(timeout=self.release_timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class Caller(Process):
    """A process that, when released, calls kerntrace_work() and libc's
    getppid() n times each, sleeping `usec` in each kerntrace_work()."""

    def __init__(self, exe, n, usec=0):
        self.p = subprocess.Popen([exe, str(n), str(usec)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())


_FORKER = """
import os, sys
n = int(sys.argv[1])
print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(n):
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
"""


class Forker(Caller):
    """A process that, when released, forks n children (each exits at once):
    n sched:sched_process_fork events with the forker as current task."""

    def __init__(self, n):
        self.p = subprocess.Popen([sys.executable, "-c", _FORKER, str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())


def wait_for(predicate, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# Task names change under a running process: a prctl() rename, an exec of
# another program (directly, or by a wrapper that first does work of its
# own).  Every name is the basename of a copy of this one binary (the kernel
# names a task after the file it execs), so a test gives each copy a
# name no other process on the host has.
_IDENT_SRC = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void calls(long n)
{
    for (long i = 0; i < n; i++)
        getppid();
}

static char **thread_argv;

/* A thread, not the leader, execs: it takes over the process id. */
static void *exec_from_thread(void *unused)
{
    (void)unused;
    execl(thread_argv[2], thread_argv[2], "calls", thread_argv[3], (char *)NULL);
    _exit(127);
}

int main(int argc, char **argv)
{
    char go[8];
    if (argc == 3 && strcmp(argv[1], "calls") == 0) {
        calls(atol(argv[2]));
        return 0;
    }
    /* The other modes wait until the tracer is attached. */
    printf("%d\n", getpid());
    fflush(stdout);
    if (!fgets(go, sizeof go, stdin))
        return 1;
    if (argc == 6 && strcmp(argv[1], "rename") == 0) {
        prctl(PR_SET_NAME, argv[2], 0, 0, 0);
        calls(atol(argv[3]));
        prctl(PR_SET_NAME, argv[4], 0, 0, 0);
        calls(atol(argv[5]));
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "spawn") == 0) {
        for (long i = 0; i < atol(argv[3]); i++) {
            pid_t child = fork();
            if (child == 0) {
                execl(argv[2], argv[2], "calls", argv[4], (char *)NULL);
                _exit(127);
            }
            if (child < 0 || waitpid(child, NULL, 0) < 0)
                return 1;
        }
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "thread-exec") == 0) {
        pthread_t t;
        thread_argv = argv;
        if (pthread_create(&t, NULL, exec_from_thread, NULL) != 0)
            return 1;
        pause();
    }
    if (argc == 5 && strcmp(argv[1], "wrap") == 0) {
        calls(atol(argv[2]));
        execl(argv[3], argv[3], "calls", argv[4], (char *)NULL);
        return 127;
    }
    return 2;
}
"""


def build_ident(tmpdir):
    """Compile the task-name workload; returns the binary path, or None
    without a C compiler."""
    return compile_c(tmpdir, "kt_ident", _IDENT_SRC, ("-O1", "-pthread"))


def named_copy(exe, name):
    """A copy of `exe` called `name` (at most 15 characters: the kernel's
    task name length), in the same directory."""
    assert len(name) <= 15, name
    path = os.path.join(os.path.dirname(exe), name)
    shutil.copy(exe, path)
    return path


class Ident(Caller):
    """The task-name workload in one of its waiting modes:
        Ident(exe, "rename", NAME_A, N_A, NAME_B, N_B)
        Ident(exe, "spawn", PROGRAM, COUNT, N)     COUNT execs, N calls each
        Ident(exe, "wrap", N_WRAPPER, PROGRAM, N)  exec PROGRAM after N_WRAPPER
        Ident(exe, "thread-exec", PROGRAM, N)       a thread execs PROGRAM
    getppid() calls; release() runs it."""

    def __init__(self, exe, *args):
        self.p = subprocess.Popen([exe] + [str(a) for a in args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.pid = int(self.p.stdout.readline())


# A process that defines a uprobe on `kerntrace_work` of the caller binary
# (argv[1]) in its own ftrace instance, says "ready", then waits to be
# killed: the run a test SIGKILLs to leave tracing state behind.
UPROBE_VICTIM = """
import sys, time
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.core.backend import RunOptions
from kerntrace.core.host import Host
from kerntrace.core.model import Count, Event, Measurement, UserFunction
m = Measurement([Event("work", UserFunction(sys.argv[1], "kerntrace_work"))], Count())
b = FtraceBackend()
o = RunOptions(tool="victim")
v = b.check(m, Host(), o)
s = b.open(m, v, o)
s.__enter__()
print("ready", flush=True)
time.sleep(60)
"""
