"""Backend selection: preference order, --backend, the selection hook, and
clear errors.  These backends are test doubles of the *selector's* input
(verdicts), not of anything on the machine."""

import pytest

from kerntrace.core.backend import Backend, Verdict
from kerntrace.core.errors import Unsupported, UsageError
from kerntrace.core.model import Count, Event, Measurement, Tracepoint
from kerntrace.core.selector import select
from kerntrace.core.tool import Tool


class StubBackend(Backend):
    def __init__(self, name, preference, ok, reasons=(), notice=None):
        self.name, self.preference, self._ok, self._reasons = name, preference, ok, reasons
        self._notice = notice

    def check(self, measurement, host, options=None):
        return Verdict(self.name, self._ok, self._reasons, notice=self._notice)


class Crashing(Backend):
    name, preference = "crashy", 5

    def check(self, measurement, host, options=None):
        raise OSError(1, "Operation not permitted")


class T(Tool):
    name = "t"


M = Measurement([Event("e", Tracepoint("sched", "sched_switch"))], Count())


def test_preferred_ok_backend_wins_and_explains():
    bs = [StubBackend("ebpf", 10, False, ["no kernel headers"]), StubBackend("ftrace", 20, True)]
    sel = select(T(), M, bs, host=None)
    assert sel.backend.name == "ftrace"
    text = "\n".join(sel.explain())
    assert "ebpf: cannot: no kernel headers" in text and "ftrace: chosen" in text


def test_a_skipped_backends_notice_names_the_backend_chosen_instead():
    bs = [StubBackend("ebpf", 10, False, ["no headers"], notice="the eBPF backend cannot run"),
          StubBackend("ftrace", 20, True, notice="never said: it runs the tool")]
    sel = select(T(), M, bs, host=None)
    assert sel.notices() == ["the eBPF backend cannot run; running on ftrace"]


def test_forced_backend_that_cannot_run_is_one_clear_error():
    bs = [StubBackend("ebpf", 10, False, ["bcc not installed"]), StubBackend("ftrace", 20, True)]
    with pytest.raises(Unsupported) as e:
        select(T(), M, bs, host=None, requested="ebpf")
    assert "bcc not installed" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="installed backend's name \\(ebpf, ftrace\\)"):
        select(T(), M, bs, host=None, requested="nosuch")


def test_probe_crash_is_an_answer():
    sel = select(T(), M, [Crashing(), StubBackend("ftrace", 20, True)], host=None)
    assert sel.backend.name == "ftrace"
    assert "probe failed" in " ".join(sel.verdicts["crashy"].reasons)


def test_nothing_can_run():
    with pytest.raises(Unsupported) as e:
        select(T(), M, [StubBackend("ebpf", 10, False, ["x"]), StubBackend("ftrace", 20, False, ["y"])],
               host=None)
    assert "ebpf: x" in str(e.value) and "ftrace: y" in str(e.value)


def test_hook_can_choose_an_ok_backend_but_not_a_failing_one():
    bs = [StubBackend("ebpf", 10, True), StubBackend("ftrace", 20, True), StubBackend("bad", 30, False)]
    assert select(T(), M, bs, None, hook=lambda **kw: "ftrace").backend.name == "ftrace"
    assert select(T(), M, bs, None, hook=lambda **kw: "bad").backend.name == "ebpf"


class _PlanWithLines(object):
    def __init__(self):
        self.asked = 0

    def describe(self):
        self.asked += 1
        return ["event e <- sched:sched_switch", "instance x, 4096 KB per CPU"]


class Planning(StubBackend):
    def __init__(self, name, preference, plan):
        StubBackend.__init__(self, name, preference, True)
        self.plan, self.options = plan, []

    def check(self, measurement, host, options=None):
        self.options.append(options)
        return Verdict(self.name, True, ["a note"], plan=self.plan)


def test_explain_reads_the_chosen_plan_and_check_gets_the_run_options():
    plan = _PlanWithLines()
    chosen = Planning("ftrace", 20, plan)
    options = object()
    sel = select(T(), M, [StubBackend("ebpf", 10, False, ["no bcc"]), chosen], host=None,
                 options=options)
    assert chosen.options == [options]
    assert sel.explain() == ["ebpf: cannot: no bcc", "ftrace: chosen (a note)",
                             "ftrace: event e <- sched:sched_switch",
                             "ftrace: instance x, 4096 KB per CPU"]
    assert plan.asked == 1 and sel.verdict.plan is plan
