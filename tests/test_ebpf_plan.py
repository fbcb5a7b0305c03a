"""The eBPF backend's plan (RunPlan): made once by check(), immutable, the
only thing the session reads.  Built here from the same probe plans the
codegen tests use (no bcc, no kernel needed)."""

import pytest

from kerntrace.backends.ebpf import buffers
from kerntrace.backends.ebpf.backend import EbpfBackend, run_plan
from kerntrace.backends.ebpf.session import EbpfSession
from kerntrace.core.backend import RunOptions, Verdict
from kerntrace.core.model import LATENCY, Histogram, Records

from test_ebpf_codegen import block, make_plan


def test_the_session_loads_the_plans_program_and_generates_none():
    m = block(Records(fields=("sector", LATENCY)))
    options = RunOptions(tool="t", buffer_kb=64)
    plan = run_plan(m, make_plan(m, output="ringbuf"), options, "/sys/kernel/tracing")
    s = EbpfSession(m, plan, None, options)
    assert s.program is plan.program and s.program_text() is plan.program.text
    pages = buffers.BufferSizes(64).ringbuf_pages
    assert "BPF_RINGBUF_OUTPUT(kt_events, %d);" % pages in s.program_text()
    assert s.buffers is plan.buffers and plan.plan_key == ("t", 64)


def test_a_run_plan_cannot_be_changed():
    m = block(Histogram(LATENCY, unit="usecs"))
    plan = run_plan(m, make_plan(m), RunOptions(), None)
    pe = plan.events[0]
    for obj, attr in [(plan, "program"), (plan, "tracefs_path"), (plan.probes, "output"),
                      (plan.probes, "events"), (pe, "probe"), (pe, "raw_ok"),
                      (pe.fields["dev"], "kind")]:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(obj, attr, None)
    with pytest.raises(TypeError):
        plan.probes.helpers["kernel"] = "bpf_probe_read"
    with pytest.raises(TypeError):
        pe.fields["dev"] = None
    # a test forcing other choices gets a new plan; this one is untouched
    other = plan.probes.replace(output="ringbuf", atomic_fetch=True)
    assert plan.probes.output == "perf" and other.output == "ringbuf" and other.atomic_fetch


def test_describe_says_how_each_event_is_attached():
    m = block(Records(fields=("sector", LATENCY)))
    plan = run_plan(m, make_plan(m, output="perf"), RunOptions(buffer_kb=32), None)
    lines = plan.describe()
    assert lines[0] == "event issue <- t:block:block_rq_issue (tracepoint program)"
    assert plan.buffers.describe("perf") in lines


def test_open_refuses_options_the_plan_was_not_made_for():
    m = block(Histogram(LATENCY, unit="usecs"))
    plan = run_plan(m, make_plan(m), RunOptions(tool="iolatency"), None)
    with pytest.raises(ValueError, match="plan was made for"):
        EbpfBackend().open(m, Verdict("ebpf", True, plan=plan),
                           RunOptions(tool="iolatency", buffer_kb=8))
