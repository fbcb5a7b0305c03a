"""Plain counts by the kernel's hist triggers (backends/ftrace/histcount.py)
in fake tracefs trees of kernels built with CONFIG_HIST_TRIGGERS (this
machine's kernel is not: its events have no hist file).  The hist files are
printed as Linux prints them (tests/fake_tracefs.py: hist_text()).  What a
user would check: which route runs and why, what is written where, the
counts and losses per interval, and that the kernel is left as found, also
after a SIGKILL."""

import io
import os

import pytest

from fake_tracefs import FakeTracefs, hist_text
from kerntrace.backends.ftrace.backend import FtraceBackend
from kerntrace.backends.ftrace.histcount import (HistFormatError, parse_hist,
                                                 trigger_command)
from kerntrace.core import tracefs as core_tracefs
from kerntrace.core.backend import RunOptions
from kerntrace.core.host import Host
from kerntrace.core.model import (EVENT_NAME, STR, Count, Event, Field, Filter, Measurement,
                                  Tracepoint)

import test_ftrace_eras as eras
from test_ftrace_eras import dead_pid, mounts, outside_instances  # noqa: F401 (fixture)

HIST_ERAS = ("4.x", "5.10", "5.15", "6.11")


def tree(fs, monkeypatch, mounts, era, **kw):  # noqa: F811
    t = FakeTracefs(fs, era, **kw).install(monkeypatch)
    mounts["tree"] = t
    return t


def done_event():
    return Event("done", Tracepoint("block", "block_rq_complete"),
                 fields=[Field("dev"), Field("error", sources=("error", "errors"))])


def by_error(*filters):
    return Measurement([done_event()], Count(keys=("error",)), filters=list(filters))


def by_event():
    issue = Event("issue", Tracepoint("block", "block_rq_issue"), fields=[Field("dev")])
    return Measurement([issue, done_event()], Count(keys=(EVENT_NAME,)))


def prepare(measurement, verbose=False):
    b = FtraceBackend()
    options = RunOptions(tool="histtest", stderr=io.StringIO(), verbose=verbose)
    v = b.check(measurement, Host(mount_tracefs=False), options)
    assert v.ok, v.reasons
    return v, b.open(measurement, v, options)


def event_dir(s, ev):
    return os.path.relpath(os.path.join(s.buffer_path, "events", "block", ev), s.root)


@pytest.mark.parametrize("era", HIST_ERAS)
def test_counts_per_interval_from_the_kernels_table(fs, monkeypatch, mounts, era):
    t = tree(fs, monkeypatch, mounts, era, hist=True)
    before = t.snapshot()
    v, s = prepare(by_error(Filter("dev", "==", 3)))
    assert v.plan.count_route == "hist"
    assert "counted in the kernel by hist triggers (no event recorded)" in v.reasons
    s.start()
    try:
        trig = os.path.join(s.buffer_path, "events", "block", "block_rq_complete", "trigger")
        written = [w for w in t.writes if w[0] == trig]
        assert written == [(trig, "hist:keys=%s:vals=hitcount:size=8192 if dev == 3\n"
                            % v.plan.events[0].fields["error"], False)]
        enables = [w for w in t.writes if w[0].endswith("/enable")]
        assert enables == []            # counted, never recorded
        col = v.plan.events[0].fields["error"]
        t.count_hist(event_dir(s, "block_rq_complete"), [(((col, 0),), 40), (((col, -5),), 2)])
        r = s.collect()
        assert dict(r.data.counts) == {(0,): 40, (-5,): 2} and r.lost == 0
        # cumulative in the kernel: the next interval is the difference
        t.count_hist(event_dir(s, "block_rq_complete"),
                     [(((col, 0),), 45), (((col, -5),), 2), (((col, -12),), 1)], dropped=4)
        r = s.collect()
        assert dict(r.data.counts) == {(0,): 5, (-12,): 1} and r.lost == 4
        r = s.collect()
        assert dict(r.data.counts) == {} and r.lost == 0
    finally:
        s.close()
    assert t.snapshot() == before
    assert t.kernel.triggers == {}


def test_event_name_keys_use_one_entry_per_event(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11", hist=True)
    v, s = prepare(by_event())
    assert sorted(v.plan.count_triggers.values()) == [
        "hist:keys=common_type:vals=hitcount:size=8192"] * 2
    s.start()
    try:
        t.count_hist(event_dir(s, "block_rq_issue"), [((("common_type", 1152),), 7)])
        t.count_hist(event_dir(s, "block_rq_complete"), [((("common_type", 1150),), 6)])
        assert dict(s.collect().data.counts) == {("issue",): 7, ("done",): 6}
    finally:
        s.close()


def test_explain_and_print_program_say_what_runs(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "5.10", hist=True)
    v, s = prepare(by_error())
    assert "counts in the kernel: hist triggers, tables read per interval (no event recorded)" \
        in v.describe()
    text = s.program_text()
    assert "echo 'hist:keys=error:vals=hitcount:size=8192' > " in text
    assert "events/block/block_rq_complete/trigger" in text
    assert "block_rq_complete/enable" not in text
    assert "# read events/*/*/hist each interval (the kernel's counts)" in text


def test_killed_run_leaves_an_instance_whose_triggers_go_with_it(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "6.11", hist=True)
    before = t.snapshot()
    gone = dead_pid()
    monkeypatch.setattr(os, "getpid", lambda: gone)
    v, s = prepare(by_error())
    s.start()
    s.undo._items = []              # SIGKILL: nothing undone
    monkeypatch.undo()
    t.install(monkeypatch)
    monkeypatch.setattr(core_tracefs, "_mount_tracefs", lambda: False)
    (name,) = t.instances()
    assert name.startswith("kerntrace-%d-histtest" % gone)
    assert t.read("instances/%s/events/block/block_rq_complete/trigger" % name).startswith(
        "hist:keys=")
    removed = FtraceBackend().cleanup_stale(Host())
    assert removed == ["instance %s (PID %d)" % (name, gone)]
    assert outside_instances(t.snapshot()) == outside_instances(before)
    assert t.instances() == []


@pytest.mark.parametrize("measurement,why", [
    (Measurement([done_event()], Count(keys=("error",)), filters=[Filter("pid", "==", 5)]),
     "a filter of event done the kernel cannot apply exactly"),
    (Measurement([Event("issue", Tracepoint("block", "block_rq_issue"),
                        fields=[Field("rwbs", STR)])], Count(keys=("rwbs",))),
     "key rwbs is not a whole number"),
    (Measurement([done_event()], Count(keys=("pid",))),
     "key pid is not a format field of block:block_rq_complete"),
])
def test_what_the_kernels_tables_cannot_count_runs_in_user_space(fs, monkeypatch, mounts,
                                                                   measurement, why):
    tree(fs, monkeypatch, mounts, "6.11", hist=True)
    v = FtraceBackend().check(measurement, Host(mount_tracefs=False),
                              RunOptions(tool="histtest"))
    assert v.plan.count_route != "hist"
    assert v.plan.count_note.startswith(why)


def test_without_hist_triggers_pages_are_counted(fs, monkeypatch, mounts):
    tree(fs, monkeypatch, mounts, "6.11")
    v = FtraceBackend().check(by_error(), Host(mount_tracefs=False), RunOptions(tool="x"))
    assert v.plan.count_route == "pages"
    assert v.plan.count_note == ("no hist triggers (events/block/block_rq_complete/hist "
                                 "missing)")


def test_hist_file_as_the_kernel_prints_it():
    text = hist_text("hist:keys=id,common_pid:vals=hitcount:size=2048",
                     [((("id", 39), ("common_pid", 4011)), 12), ((("id", -1), ("common_pid", 1)), 3)],
                     dropped=2)
    assert "{ id:         39, common_pid:       4011 } hitcount:         12" in text
    assert "{ id: 18446744073709551615, common_pid:          1 } hitcount:          3" in text
    rows, hits, dropped = parse_hist(text)
    assert rows == {(39, 4011): 12, ((1 << 64) - 1, 1): 3} and hits == 15 and dropped == 2
    with pytest.raises(HistFormatError):
        parse_hist("")
    with pytest.raises(HistFormatError):
        parse_hist("# event histogram\n{ id: 1 } hitcount: 2\n")


def test_keys_read_at_their_fields_width_alone_or_compound(fs, monkeypatch, mounts):
    """error (s32) -5 prints as 18446744073709551611 as the only key, and
    as 4294967291 in a compound key (its 4 bytes in a zeroed 8-byte slot)."""
    t = tree(fs, monkeypatch, mounts, "6.11", hist=True)
    m = Measurement([done_event()], Count(keys=("dev", "error")))
    v, s = prepare(m)
    assert v.plan.count_triggers["done"].startswith("hist:keys=dev,error:")
    s.start()
    try:
        t.count_hist(event_dir(s, "block_rq_complete"),
                     [((("dev", 3), ("error", (1 << 32) - 5)), 4), ((("dev", 3), ("error", 0)), 1)])
        assert dict(s.collect().data.counts) == {(3, -5): 4, (3, 0): 1}
    finally:
        s.close()


def test_trigger_commands_take_only_field_names():
    assert trigger_command(["id"], "common_pid != 7") == \
        "hist:keys=id:vals=hitcount:size=8192 if common_pid != 7"
    with pytest.raises(ValueError):
        trigger_command(["id:clear"])


def test_print_program_is_every_write_start_makes(fs, monkeypatch, mounts):
    t = tree(fs, monkeypatch, mounts, "5.15", hist=True)
    v, s = prepare(by_error(Filter("dev", "==", 7)))
    text = s.program_text()
    with s:
        written = eras._written_lines(t.writes)
    assert "\n".join(s.ops.log) + "\n" == text
    assert written == [line for line in text.splitlines()
                       if not line.startswith("#") and not line.startswith("mkdir ")]


def test_top_level_runs_count_per_page(fs, monkeypatch, mounts):
    """Triggers on the shared top-level events would be other users' to
    see and remove: without instances the per-page count runs."""
    tree(fs, monkeypatch, mounts, "3.4", hist=True)
    v = FtraceBackend().check(by_error(), Host(mount_tracefs=False), RunOptions(tool="x"))
    assert v.plan.count_route == "pages" and v.plan.count_note == "no instance of our own"
