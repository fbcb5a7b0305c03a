"""What a user sees for a mistake or a host that refuses: one line on
stderr that says what is wrong, the documented exit status, no traceback."""

import pytest

import clirun
from clirun import run


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, line", [
    (["biosnoop", "--bogus"], "biosnoop: unrecognized arguments: --bogus"),
    (["tpcount"], "tpcount: the following arguments are required: CATEGORY:EVENT"),
    (["doctor", "--bogus"], "kerntrace: unrecognized arguments: --bogus"),
])
def test_argparse_errors_name_the_tool_once(args, line):
    rc, out, err = run(args)
    assert rc == 2 and out == ""
    assert one_line(err) == line


@pytest.mark.parametrize("tool", ["iolatency", "iosnoop"])
def test_unknown_long_option_is_reported_as_perf_tools_getopts_does(tool):
    """perf-tools' bash getopts reads "--bogus" as option "-": it prints
    "illegal option -- -", then the usage, and exits 0.  Compared with the
    installed perf-tools script itself when there is one."""
    import shutil
    import subprocess
    rc, out, err = run([tool, "--bogus"])
    first, usage = err.split("\n", 1)
    assert (rc, out, first) == (0, "", "%s: illegal option -- -" % tool)
    assert usage.startswith("USAGE: %s " % tool)
    script = shutil.which("%s-perf" % tool)
    if script is None:
        return      # perf-tools not installed: the wording above is getopts'
    p = subprocess.run(["bash", script, "--bogus"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    theirs_first, theirs_usage = p.stderr.split("\n", 1)
    assert p.returncode == rc
    assert theirs_first.split(": ", 1)[1] == first.split(": ", 1)[1]
    assert theirs_usage.splitlines()[0] == usage.splitlines()[0]


@pytest.mark.parametrize("tool", ["iolatency", "iosnoop", "biosnoop", "biolatency", "bitesize",
                                  "tpcount"])
@pytest.mark.parametrize("option", [["--backend", "nosuch"], ["--buffer-kb", "0"]])
def test_bad_kerntrace_option_is_the_same_usage_error_on_every_tool(tool, option):
    args = [tool] + option + (["sched:sched_switch"] if tool == "tpcount" else [])
    rc, out, err = run(args)
    assert (rc, out) == (2, ""), err
    assert one_line(err).startswith("%s: %s" % (tool, option[0]))


def _readable_tracefs_events():
    from kerntrace.core.host import Host
    import os
    root = Host(mount_tracefs=False).tracefs_path()
    if not root or not os.access(os.path.join(root, "events"), os.R_OK | os.X_OK):
        pytest.skip("needs a readable tracefs events/ directory (root) to tell a "
                    "missing tracepoint")
    return root


@pytest.mark.parametrize("tracepoints, missing", [
    (["block:nosuch"], "block:nosuch"),
    (["sched:sched_switch", "nosuchcategory:x"], "nosuchcategory:x"),
])
def test_a_tracepoint_this_kernel_lacks_is_named(tracepoints, missing):
    _readable_tracefs_events()
    rc, out, err = run(["tpcount", "-d", "0.1"] + tracepoints)
    assert (rc, out) == (1, ""), err
    assert one_line(err) == "tpcount: no tracepoint %s on this kernel" % missing


@pytest.mark.parametrize("content", [
    "",                                                            # empty
    "# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:2\n",  # a quiet capture
    "this is not a trace\n",
    # another event's lines only
    "            bash-1234    [001] ..... 10.000000: sched_switch: prev_comm=bash "
    "prev_pid=1234 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 "
    "next_prio=120\n",
])
@pytest.mark.parametrize("tool", ["iolatency", "biolatency", "biosnoop", "iosnoop", "bitesize"])
def test_input_without_trace_lines_of_the_tool_says_nothing_was_decoded(tool, content,
                                                                        tmp_path):
    trace = tmp_path / "t.trace"
    trace.write_text(content)
    rc, out, err = run([tool, "--input", str(trace)])
    assert (rc, out) == (1, ""), err
    line = one_line(err)
    assert line.startswith("%s: nothing decoded from %s: no trace lines of block:" % (tool, trace))


LONG_NAME = "b" * 70


@pytest.mark.parametrize("args, status, words", [
    # a perf-tools option of a drop-in: perf-tools' status 1
    (["iosnoop", "-p", "\u00b2"], 1, "iosnoop: invalid PID '\u00b2'"),
    (["tpcount", "ftrace:function", "--backend", "ftrace"], 2,
     "tpcount: ftrace:function is not a tracepoint"),
    (["tpcount", "ftrace:function"], 2, "tpcount: ftrace:function is not a tracepoint"),
    (["tpcount", "a:" + LONG_NAME], 2, "tpcount: invalid tracepoint 'a:%s'" % LONG_NAME),
    (["tpcount", LONG_NAME + ":a"], 2, "tpcount: invalid tracepoint"),
    (["tpcount", "a:b:c"], 2, "tpcount: invalid tracepoint 'a:b:c'"),
])
def test_user_input_is_one_line_never_an_internal_error(args, status, words):
    rc, out, err = run(args + ["-d", "0.1"] if args[0] == "tpcount" else args)
    assert (rc, out) == (status, ""), err
    assert one_line(err).startswith(words)


@pytest.mark.parametrize("args, status, words", [
    (["iolatency", "-i", "*R\n", "--print-program"], 1, "iolatency: invalid -i pattern"),
    (["iosnoop", "-n", "dd\n", "--print-program"], 1, "iosnoop: "),
    (["biosnoop", "-d", "vda\n", "--print-program"], 2, "biosnoop: invalid disk name"),
    (["tpcount", "block:block_rq_issue\n", "--print-program"], 2, "tpcount: invalid tracepoint"),
    (["tpcount", "--backend", "ftrace\n", "sched:sched_switch"], 2,
     "tpcount: --backend must be auto"),
])
def test_a_trailing_newline_is_refused_not_passed_on(args, status, words):
    """Python's "$" matches before a final newline: a validation that used
    it let "dd\\n" through to tracefs filter files and generated C."""
    rc, out, err = run(args)
    assert (rc, out) == (status, ""), (out, err)
    assert one_line(err).startswith(words)


def test_model_names_and_filter_values_refuse_a_trailing_newline():
    from kerntrace.core.errors import UsageError
    from kerntrace.core.model import STR, Filter, is_identifier
    assert is_identifier("sched") and not is_identifier("sched\n")
    with pytest.raises(UsageError):
        Filter("comm", "==", "dd\n", type=STR)


NAME_WITH_ESCAPES = b"k\x1b[31m\nt"      # 8 bytes: fits TASK_COMM_LEN


@pytest.mark.live
@pytest.mark.parametrize("backend", ["auto", "ftrace"])
def test_task_names_reach_the_terminal_escaped(backend):
    """A process names itself with an escape sequence and a newline
    (prctl(PR_SET_NAME)) and keeps switching; tpcount --by comm prints the
    name with "?" for each, on one line."""
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "\n".join([
        "import ctypes, time",
        "ctypes.CDLL(None).prctl(15, ctypes.c_char_p(%r), 0, 0, 0)" % NAME_WITH_ESCAPES,
        "end = time.time() + 20",
        "while time.time() < end:",
        "    time.sleep(0.002)"])])
    try:
        rc, out, err = run(["tpcount", "--backend", backend, "--by", "comm", "-d", "1",
                            "sched:sched_switch"])
    finally:
        child.kill()
        child.wait()
    assert rc == 0, err
    assert "\x1b" not in out
    rows = [line for line in out.splitlines() if line.startswith("k?[31m?t ")]
    assert len(rows) == 1 and int(rows[0].split()[-1]) > 0, out


def _tracefs_only_root_may_read():
    import os
    import stat
    from kerntrace.core.host import Host
    loc = Host(mount_tracefs=False).tracefs()
    if loc is None:
        pytest.skip("tracefs is not mounted here")
    mode = os.stat(loc.path).st_mode
    if mode & (stat.S_IROTH | stat.S_IXOTH):
        pytest.skip("tracefs at %s is readable by other users (mode %o)" % (loc.path, mode))
    return loc.path


@pytest.mark.parametrize("args", [["biolatency", "1", "1"], ["biosnoop", "1"],
                                  ["tpcount", "-d", "1", "sched:sched_switch"]])
def test_unprivileged_user_is_told_permission_denied_not_not_mounted(args):
    path = _tracefs_only_root_may_read()
    rc, out, err = clirun.run_as_nobody(args)
    assert (rc, out) == (1, ""), err
    line = one_line(err)
    assert line.startswith("%s: must be run as root" % args[0])
    assert "tracefs at %s: permission denied" % path in line and "not mounted" not in line


def test_doctor_as_unprivileged_user_says_permission_denied():
    import json
    path = _tracefs_only_root_may_read()
    rc, out, err = clirun.run_as_nobody(["doctor", "--json"])
    assert rc == 0, err
    caps = {(c["backend"], c["name"]): c for c in json.loads(out)["capabilities"]}
    for key in ((None, "tracefs"), ("ftrace", "tracefs")):
        assert not caps[key]["ok"]
        assert caps[key]["detail"].startswith("tracefs at %s: permission denied" % path)
