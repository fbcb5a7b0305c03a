"""tpoint -s recorded (`kerntrace record`) and replayed (--input): the
recording holds the kernel's "<stack trace>" lines and the replay prints
each event's stack; a replay of the same events recorded without -s
refuses -s, saying why."""

import platform
import shutil
import subprocess

import pytest

import clirun

pytestmark = pytest.mark.live

N = 3


def exec_true(n, path):
    for _ in range(n):
        if subprocess.call([path]) != 0:
            return 1
    return 0


def test_a_recording_with_stacks_replays_them(tmp_path):
    true = shutil.which("true")
    if true is None:
        pytest.skip("no true(1) to exec")
    rec = tmp_path / "exec.rec"
    argv = ["tpoint", "-s", "sched:sched_process_exec", 'filename == "%s"' % true]
    clirun.record_around(rec, argv, lambda: exec_true(N, true))
    rc, out, err = clirun.run(["tpoint", "-s", "--input", str(rec), "sched:sched_process_exec",
                               'filename == "%s"' % true])
    assert rc == 0, err
    lines = out.splitlines()
    heads = [i for i, l in enumerate(lines) if l.endswith("<stack trace>")]
    assert len(heads) == N, out
    for i in heads:
        assert "sched_process_exec: " in lines[i - 1], out
        frames = []
        for l in lines[i + 1:]:
            if not l.startswith(" => "):
                break
            frames.append(l[4:])
        assert frames and "[stack not taken]" not in frames, out
        if platform.machine() == "x86_64":
            assert "do_syscall_64" in frames, out

    plain = tmp_path / "plain.rec"
    clirun.record_around(plain, argv[:1] + argv[2:], lambda: exec_true(1, true))
    rc, out, err = clirun.run(["tpoint", "-s", "--input", str(plain),
                               "sched:sched_process_exec"])
    assert rc != 0 and out == ""
    assert "holds no kernel stacks" in err and len(err.strip().splitlines()) == 1, err
