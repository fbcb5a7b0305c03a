"""Live (bcc compiles): execsnoop's argv program stays small.  Its size is
what its compile time follows: 3.8 s to start when each of the 21 argv
elements was read written out, under a flag tested around every later
one, and copied from one scratch struct into the record; bcc's own
execsnoop reads 20 arguments of 128 bytes in an unrolled loop, as the
program now does.  The bound is on instructions, not seconds: a busy
machine makes no difference."""

import pytest

from kernstate import ebpf_skip_reason

from kerntrace.backends.ebpf import bccfind
from kerntrace.backends.ebpf.backend import EbpfBackend
from kerntrace.core.backend import RunOptions
from kerntrace.core.host import Host
from kerntrace.plugins.execsnoop import MAX_KERNEL_ARGS, ExecSnoop

pytestmark = [pytest.mark.live, pytest.mark.ebpf]

# BPF instructions per argv element read (a pointer, its string, the end
# test): about 20 (433 for execsnoop's 21); the written-out reads under a
# flag, copied into the record, about 55 (1163).
PER_ELEMENT = 30


def test_execsnoop_argv_handlers_stay_small():
    if ebpf_skip_reason():
        pytest.skip(ebpf_skip_reason())
    tool = ExecSnoop()
    variant = tool.variants(tool.parse_args([]))[0]
    assert variant.name == "argv"
    verdict = EbpfBackend().check(variant.measurement, Host(), RunOptions(tool="execsnoop"))
    if not verdict.ok:
        pytest.skip("the eBPF backend cannot run execsnoop here: %s" % "; ".join(verdict.reasons))
    program = verdict.plan.program
    bpf = bccfind.import_bcc().BPF(text=program.text.encode())
    try:
        # bcc wants bytes names (it warns on str)
        sizes = {a.fn_name: len(bpf.dump_func(a.fn_name.encode())) // 8
                 for a in program.attachments}
    finally:
        bpf.cleanup()
    argv = {fn: n for fn, n in sizes.items() if fn.endswith("_args")}
    assert len(argv) == 2, sizes       # execve and execveat
    for fn, n in argv.items():
        assert n <= PER_ELEMENT * (MAX_KERNEL_ARGS + 1) + 100, (fn, n)
