"""funccount on the ftrace function profiler (backends/ftrace/funcprofile.py)
in fake kernel eras: this machine forbids filtered function tracing, the
fleet's kernels with CONFIG_FUNCTION_PROFILER allow it.  Checked: what the
kernel is told (set_ftrace_filter, function_profile_enabled), that both
global files are put back as they were (also by the next run after a
SIGKILL), the counts read from trace_stat, and the fallback where the
profiler is missing."""

import os

import pytest

from test_ftrace_era_tools import host_of, run  # noqa: F401  (host_of: a fixture)
from test_tool_func_eras import exit_tracepoint, kernel  # noqa: F401  (a fixture)

from kerntrace.backends.ftrace import funcprofile

# As function_stat_headers() / function_stat_show() print them with the
# graph tracer (time columns) and without it.
STAT_GRAPH = (
    "  Function                               Hit    Time            Avg             s^2\n"
    "  --------                               ---    ----            ---             ---\n"
    "  vfs_read                               %d    1061.917 us     0.131 us        0.054 us\n"
    "  vfs_write                              %d    209.880 us      0.100 us        0.007 us\n")
STAT_PLAIN = ("  Function                               Hit\n"
              "  --------                               ---\n"
              "  vfs_read                               %d\n"
              "  vfs_write                              %d\n")


def with_profiler(t, fs, stats=((7, 3), (5, 0)), graph=True, profile="0"):
    fs.create_file(t.root + "/function_profile_enabled", contents=profile + "\n")
    for cpu, (reads, writes) in enumerate(stats):
        fs.create_file(t.root + "/trace_stat/function%d" % cpu,
                       contents=(STAT_GRAPH if graph else STAT_PLAIN) % (reads, writes))
    return t


def writes_to(t, name):
    return [text.strip() for path, text, _a in t.writes if path == t.root + "/" + name]


def counts(out):
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            rows[parts[0]] = int(parts[1])
    return rows


@pytest.mark.parametrize("era", ["4.x", "5.10"])
@pytest.mark.parametrize("graph", [True, False])
def test_funccount_counts_with_the_function_profiler_and_restores_it(host_of, fs, era,  # noqa: F811
                                                                   graph):
    t = with_profiler(kernel(host_of, fs, era, writable_filter=True), fs, graph=graph)
    t_filter = t.root + "/set_ftrace_filter"
    with open(t_filter, "w") as f:
        f.write("tcp_sendmsg\n")            # someone's filter, put back after
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc == 0, err
    # summed over the CPUs' trace_stat files, no kprobe defined
    assert counts(out) == {"vfs_read": 12, "vfs_write": 3}
    assert writes_to(t, "kprobe_events") == []
    assert writes_to(t, "set_ftrace_filter") == ["vfs_read vfs_write", "tcp_sendmsg"]
    assert writes_to(t, "function_profile_enabled") == ["1", "0"]
    assert open(t_filter).read().strip() == "tcp_sendmsg"
    assert not os.path.exists("/var/tmp/.ftrace-lock")


def test_funccount_cpu_filter_reads_that_cpus_profile_only(host_of, fs):  # noqa: F811
    with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    rc, out, err = run("funccount", ["-d", "0.2", "-c", "1", "vfs_*"])
    assert rc == 0, err
    assert counts(out) == {"vfs_read": 5}


def test_intervals_are_differences_of_the_cumulative_profile():
    pc = funcprofile.ProfileCounts({"vfs_read": "vfs_read", "f1": "vfs_write"})
    assert pc.take({0: STAT_PLAIN % (4, 1), 1: STAT_PLAIN % (2, 0)}) == {
        ("vfs_read",): 6, ("f1",): 1}
    assert pc.take({0: STAT_PLAIN % (10, 1), 1: STAT_PLAIN % (2, 5)}) == {
        ("vfs_read",): 6, ("f1",): 5}


def test_long_names_match_as_the_kernel_cuts_them():
    name = "a_kernel_function_with_a_very_long_name"
    text = "  %-30.30s  %10lu\n" % (name, 42)
    assert funcprofile.ProfileCounts({name: name}).take({0: text}) == {(name,): 42}


def test_pid_filter_falls_back_with_the_reason_under_explain(host_of, fs):  # noqa: F811
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    rc, out, err = run("funccount", ["--explain", "-d", "0.2", "-p", "4011", "vfs_read"])
    assert "function profiler: filter on pid" in err
    assert writes_to(t, "function_profile_enabled") == []


def test_without_the_profiler_kprobes_count_and_explain_says_why(host_of, fs):  # noqa: F811
    t = kernel(host_of, fs, "5.10", writable_filter=True)
    rc, out, err = run("funccount", ["--explain", "-d", "0.2", "vfs_*"])
    assert rc == 0, err
    assert "function profiler: function_profile_enabled missing " \
        "(CONFIG_FUNCTION_PROFILER off)" in err
    assert [w.split()[1] for w in writes_to(t, "kprobe_events") if w.startswith("p:")] == [
        "vfs_read", "vfs_write"]


def test_a_profiler_in_use_is_refused_and_left_alone(host_of, fs):  # noqa: F811
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs, profile="1")
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc != 0 and len(err.splitlines()) == 1, err
    assert "function profiler is in use" in err
    assert writes_to(t, "function_profile_enabled") == []
    assert writes_to(t, "set_ftrace_filter") == []


def test_print_program_shows_the_profiler_writes(host_of, fs):  # noqa: F811
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    rc, out, err = run("funccount", ["--print-program", "vfs_*"])
    assert rc == 0, err
    assert "vfs_read vfs_write" in out and "function_profile_enabled" in out
    assert t.writes == [] or writes_to(t, "function_profile_enabled") == []


def test_a_killed_runs_filter_and_profiler_are_restored_by_the_next_run(host_of, fs,  # noqa: F811
                                                                        monkeypatch):
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    t_filter = t.root + "/set_ftrace_filter"
    with open(t_filter, "w") as f:
        f.write("tcp_sendmsg\n")
    from kerntrace.core.api import Count, EVENT_NAME, Event, Measurement
    from kerntrace.core.model import KernelFunction
    m = Measurement(events=[Event("vfs_read", KernelFunction("vfs_read"))],
                    aggregate=Count(keys=(EVENT_NAME,)))
    dead = 4194000      # a PID no process here has
    with monkeypatch.context() as mp:
        mp.setattr(os, "getpid", lambda: dead)
        session = funcprofile.ProfileSession(m, funcprofile.ProfilePlan(
            t.root, {"vfs_read": "vfs_read"}))
        session.start()
    # SIGKILL: no close(); the kernel drops the run's owner lock
    session.journal.owner.release(unlink=False)
    assert open(t.root + "/function_profile_enabled").read().strip() == "1"
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_write"])
    assert rc == 0, err
    assert "restored top-level tracing settings of PID %d (restored 2)" % dead in err
    assert open(t_filter).read().strip() == "tcp_sendmsg"
    assert open(t.root + "/function_profile_enabled").read().strip() == "0"
    assert not os.path.exists("/var/tmp/.ftrace-lock")


def test_a_tracing_thresh_keeps_the_profiler_out(host_of, fs):  # noqa: F811
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    fs.create_file(t.root + "/tracing_thresh", contents="100\n")
    rc, out, err = run("funccount", ["--explain", "-d", "0.2", "vfs_read"])
    assert "function profiler: tracing_thresh is 100" in err
    assert writes_to(t, "function_profile_enabled") == []


@pytest.mark.parametrize("profiler,writable,ok,detail", [
    (True, True, True, "kernel-function counts in the kernel (trace_stat)"),
    (False, True, False, "function_profile_enabled missing (CONFIG_FUNCTION_PROFILER off)"),
    (True, False, False, "needs the function tracer with set_ftrace_filter (set_ftrace_filter "
                         "not writable: EPERM (Operation not permitted))")])
def test_doctor_says_whether_the_function_profiler_runs(host_of, fs, profiler, writable,  # noqa
                                                        ok, detail):
    from kerntrace.backends.ftrace.backend import FtraceBackend
    from kerntrace.core.host import Host
    t = kernel(host_of, fs, "5.10", writable_filter=writable)
    if profiler:
        with_profiler(t, fs)
    caps = {c.name: c for c in FtraceBackend().capabilities(Host(mount_tracefs=False))}
    assert (caps["function_profiler"].ok, caps["function_profiler"].detail) == (ok, detail)


def test_a_recording_defines_probes_not_the_profiler(host_of, fs):  # noqa: F811
    from kerntrace.backends.ftrace.backend import FtraceBackend
    from kerntrace.core.api import Count, EVENT_NAME, Event, Measurement
    from kerntrace.core.host import Host
    from kerntrace.core.model import KernelFunction
    with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    m = Measurement(events=[Event("vfs_read", KernelFunction("vfs_read"))],
                    aggregate=Count(keys=(EVENT_NAME,)))
    host = Host(mount_tracefs=False)
    assert FtraceBackend().check(m, host).plan.count_route == "profile"
    recorded = FtraceBackend().check(m, host, profiler=False).plan
    assert [ev.probe_def.split()[1] for ev in recorded.events] == ["vfs_read"]


def test_a_top_level_tracer_in_use_keeps_its_filter(host_of, fs):  # noqa: F811
    t = with_profiler(kernel(host_of, fs, "5.10", writable_filter=True), fs)
    with open(t.root + "/current_tracer", "w") as f:
        f.write("function\n")
    rc, out, err = run("funccount", ["-d", "0.2", "vfs_*"])
    assert rc != 0 and "the top-level function tracer is in use" in err
    assert writes_to(t, "set_ftrace_filter") == []


def test_an_unkeyed_count_is_the_total_of_every_function():
    pc = funcprofile.ProfileCounts({"a": "vfs_read", "b": "vfs_write"}, keyed=False)
    assert pc.take({0: STAT_PLAIN % (4, 1), 1: STAT_PLAIN % (2, 3)}) == {(): 10}
