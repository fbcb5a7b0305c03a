"""A loop device and a private tracefs instance of a bench's own, for the
eBPF blind-spot benches (ebpf_blind_spots.py, ebpf_raw_blind.py): what
they set up and take down the same way.  Not a test; root only."""

import contextlib
import os
import shutil
import subprocess
import tempfile


def tracefs_path():
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(p, "instances")):
            return p
    raise SystemExit("no tracefs with instances")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def loop_device(size, prefix):
    """(device path, its dev_t as the kernel's tracepoints give it) of a
    direct-I/O loop device whose `size`-byte backing file is in /dev/shm
    (where there is one); detached and removed on the way out."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        img = os.path.join(d, "disk.img")
        with open(img, "wb") as f:
            f.truncate(size)
        dev = subprocess.check_output(["losetup", "--find", "--show", "--direct-io=on",
                                       img]).decode().strip()
        try:
            st = os.stat(dev)
            yield dev, (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)
        finally:
            subprocess.call(["losetup", "-d", dev])
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def private_instance(name, buffer_kb):
    """The path of tracefs instance `name`, made here with `buffer_kb` per
    CPU and trace_clock mono (its times compare with bpf_ktime_get_ns);
    every event in it disabled and the instance removed on the way out."""
    inst = os.path.join(tracefs_path(), "instances", name)
    os.mkdir(inst)
    try:
        write(os.path.join(inst, "buffer_size_kb"), str(buffer_kb))
        write(os.path.join(inst, "trace_clock"), "mono")
        yield inst
    finally:
        try:
            write(os.path.join(inst, "events", "enable"), "0")
        except OSError:
            pass
        os.rmdir(inst)


BLOCK_EVENTS = ("block_rq_issue", "block_rq_complete")


def trace_device(inst, devt, on=True):
    """Record the block requests of device `devt` in instance `inst`
    (on=False: stop recording them)."""
    for ev in BLOCK_EVENTS:
        path = os.path.join(inst, "events", "block", ev)
        if on:
            write(os.path.join(path, "filter"), "dev == %d" % devt)
        write(os.path.join(path, "enable"), "1" if on else "0")
