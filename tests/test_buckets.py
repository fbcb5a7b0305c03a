"""Bucket arithmetic as bcc and perf-tools define it (output-formats.md,
iolatency-compat.md)."""

from kerntrace.core.buckets import bounds, log2_slot, pow2ms_row
from kerntrace.core.model import LOG2, POW2_MS

MS = 1000000


def test_log2_slots_like_bpf_log2l():
    assert [log2_slot(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [1, 1, 2, 2, 3, 3, 4, 10, 11]
    for i in range(2, 64):
        lo, hi = bounds(LOG2, i)
        assert log2_slot(lo) == i and log2_slot(hi) == i and log2_slot(hi + 1) == i + 1


def test_pow2ms_rows_are_upper_inclusive():
    assert pow2ms_row(0) == 0
    assert pow2ms_row(MS) == 0            # exactly 1.000 ms -> 0 -> 1
    assert pow2ms_row(MS + 1) == 1
    assert pow2ms_row(2 * MS) == 1        # exactly 2.000 ms -> 1 -> 2
    assert pow2ms_row(2 * MS + 1) == 2
    assert pow2ms_row(16 * MS) == 4 and pow2ms_row(16 * MS + 1) == 5


def test_pow2ms_agrees_with_definition():
    # smallest i >= 0 with L <= 2^i ms
    for ns in list(range(0, 5 * MS, 99991)) + [2 ** k * MS + d for k in range(20) for d in (-1, 0, 1)]:
        i = pow2ms_row(ns)
        assert ns <= (1 << i) * MS and (i == 0 or ns > (1 << (i - 1)) * MS)
    assert bounds(POW2_MS, 0) == (0, 1) and bounds(POW2_MS, 3) == (4, 8)
