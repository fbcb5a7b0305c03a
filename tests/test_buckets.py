"""Bucket arithmetic as bcc and perf-tools define it (output-formats.md,
iolatency-compat.md): core.buckets is the one definition; the ftrace
backend's inline Python and the eBPF backend's C render it and must give
the same bucket for every value, including 0, 1, powers of two and their
neighbours, 2^63 and 2^64-1 (and, signed, the negatives)."""

import random

from hypothesis import given, settings, strategies as st

from kerntrace.backends.ebpf import cbuckets
from kerntrace.backends.ftrace.handlers import BUCKET_EXPR
from kerntrace.core.buckets import (NS_PER_MS, bounds, bucket_index, linear_bucket, log2_slot,
                                    pow2ms_row)
from kerntrace.core.model import LINEAR, LOG2, POW2_MS

from test_ebpf_codegen import STUB_HEADER, compile_c, needs_cc

MS = 1000000
U64_MAX = (1 << 64) - 1
STEPS = (1, 3, 4096, 250000, 1000000, U64_MAX)


def edge_values():
    """Unsigned 64-bit values where bucket arithmetic goes wrong first."""
    vals = {0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 999999, MS, MS + 1, U64_MAX, U64_MAX - 1,
            1 << 63, (1 << 63) - 1, (1 << 63) + 1}
    for k in range(65):
        for d in (-1, 0, 1):
            if 0 <= (1 << k) + d <= U64_MAX:
                vals.add((1 << k) + d)
    for k in range(46):
        for d in (-1, 0, 1):
            if (MS << k) + d <= U64_MAX:
                vals.add((MS << k) + d)
    rnd = random.Random(1234)
    for _ in range(3000):
        vals.add(rnd.getrandbits(rnd.randint(1, 64)))
    return sorted(vals)


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


# ---------------------------------------------------------------------------
# The definition
def test_log2_slots_like_bpf_log2l():
    assert [log2_slot(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [1, 1, 2, 2, 3, 3, 4, 10, 11]
    for i in range(2, 65):
        lo, hi = bounds(LOG2, i)
        assert log2_slot(lo) == i and log2_slot(hi) == i and log2_slot(hi + 1) == i + 1
    assert log2_slot(U64_MAX) == 64 and log2_slot(-5) == 1


def test_linear_buckets():
    assert [linear_bucket(v, 4096) for v in (-1, 0, 4095, 4096, 8191, 8192)] == [0, 0, 0, 1, 1, 2]
    for i in range(5):
        lo, hi = bounds(LINEAR, i, 250)
        assert linear_bucket(lo, 250) == i == linear_bucket(hi, 250)


def test_pow2ms_rows_are_upper_inclusive():
    assert pow2ms_row(0) == 0
    assert pow2ms_row(MS) == 0            # exactly 1.000 ms -> 0 -> 1
    assert pow2ms_row(MS + 1) == 1
    assert pow2ms_row(2 * MS) == 1        # exactly 2.000 ms -> 1 -> 2
    assert pow2ms_row(2 * MS + 1) == 2
    assert pow2ms_row(16 * MS) == 4 and pow2ms_row(16 * MS + 1) == 5


def test_pow2ms_agrees_with_definition():
    # smallest i >= 0 with L <= 2^i ms
    for ns in [v for v in edge_values() if v >= 0] + list(range(0, 5 * MS, 99991)):
        i = pow2ms_row(ns)
        assert ns <= (1 << i) * MS and (i == 0 or ns > (1 << (i - 1)) * MS)
    assert bounds(POW2_MS, 0) == (0, 1) and bounds(POW2_MS, 3) == (4, 8)


# ---------------------------------------------------------------------------
# The Python rendering (ftrace handlers)
def python_bucket(scale, value, step):
    return eval(BUCKET_EXPR[scale] % {"v": "x"}, {"x": value, "_step": step,
                                                  "_NS_PER_MS": NS_PER_MS})


def test_python_rendering_is_core_buckets_at_the_edges():
    assert set(BUCKET_EXPR) == {LOG2, LINEAR, POW2_MS}
    for v in edge_values():
        for value in (v, signed(v)):
            for step in STEPS:
                for scale in (LOG2, LINEAR, POW2_MS):
                    assert python_bucket(scale, value, step) == bucket_index(scale, value, step), \
                        (scale, value, step)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.integers(-5, 5 * MS), st.integers(-(1 << 63), 1 << 64),
                 st.sampled_from([MS - 1, MS, MS + 1, 2 * MS, 2 * MS + 1, 1 << 40])),
       st.integers(1, 10 ** 6))
def test_python_rendering_is_core_buckets(value, step):
    for scale in (LOG2, LINEAR, POW2_MS):
        assert python_bucket(scale, value, step) == bucket_index(scale, value, step)


# ---------------------------------------------------------------------------
# The C rendering (eBPF programs), compiled and run on the host
BUCKET_MAIN = r"""
#include <stdio.h>
#include <string.h>
int main(void)
{
    char op[16];
    unsigned long long a, b;
    while (scanf("%15s %llu %llu", op, &a, &b) == 3) {
        if (!strcmp(op, "log2u")) printf("%llu\n", kt_log2_u(a));
        else if (!strcmp(op, "log2s")) printf("%llu\n", kt_log2_s((s64)a));
        else if (!strcmp(op, "linu")) printf("%llu\n", kt_linear_u(a, b));
        else if (!strcmp(op, "lins")) printf("%llu\n", kt_linear_s((s64)a, b));
        else if (!strcmp(op, "pow2u")) printf("%llu\n", kt_pow2ms_u(a));
        else if (!strcmp(op, "pow2s")) printf("%llu\n", kt_pow2ms_s((s64)a));
        else if (!strcmp(op, "fdiv")) printf("%lld\n", kt_floordiv_s((s64)a, b));
    }
    return 0;
}
"""


@needs_cc
def test_c_rendering_is_core_buckets(tmp_path):
    assert set(cbuckets.BUCKET_FN) == {LOG2, LINEAR, POW2_MS}
    cases, want = [], []
    for v in edge_values():
        s = signed(v)
        for op, scale, value in (("log2u", LOG2, v), ("log2s", LOG2, s),
                                 ("pow2u", POW2_MS, v), ("pow2s", POW2_MS, s)):
            cases.append("%s %d 0" % (op, v))
            want.append(bucket_index(scale, value))
        for step in STEPS:
            cases.append("linu %d %d" % (v, step))
            want.append(bucket_index(LINEAR, v, step))
            cases.append("lins %d %d" % (v, step))
            want.append(bucket_index(LINEAR, s, step))
        # histogram divisors: Python's floor division of signed values
        for d in (1, 2, 3, 1000, 1000000, (1 << 63) + 5):
            cases.append("fdiv %d %d" % (v, d))
            want.append(s // d)
    got = compile_c(tmp_path, STUB_HEADER + cbuckets.BUCKET_C + BUCKET_MAIN,
                    run_input="\n".join(cases) + "\n", name="buckets")
    assert len(got) == len(cases)
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if int(g) != w]
    assert not bad, bad[:10]
