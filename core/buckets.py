"""Bucket arithmetic for the histogram scales: the one definition.

One function per scale (log2_slot, linear_bucket, pow2ms_row);
bucket_index() picks it.  The backends render these elsewhere for speed:
the ftrace backend as inline Python expressions
(backends/ftrace/handlers.py BUCKET_EXPR), the eBPF backend as C
(backends/ebpf/cbuckets.py); tests/test_buckets.py checks both renderings
against these functions on many values.  The output layer labels buckets
with `bounds`.
"""

from .model import LINEAR, LOG2, POW2_MS

NS_PER_MS = 1000000


def log2_slot(v):
    """bcc's bpf_log2l(v): floor(log2 v) + 1, and 1 for v == 0."""
    if v <= 0:
        return 1
    return v.bit_length()


def linear_bucket(v, step):
    """v // step; values below 0 in bucket 0."""
    return max(0, v) // step


def pow2ms_row(ns):
    """perf-tools iolatency row: the smallest i >= 0 with ns <= 2^i ms
    (upper bound inclusive: exactly 1 ms is row 0, exactly 2 ms row 1)."""
    if ns <= NS_PER_MS:
        return 0
    # ceil(ns / 1ms) as an integer, then the smallest i with 2^i >= q
    q = -(-ns // NS_PER_MS)
    i = (q - 1).bit_length()
    # ns <= 2^i ms is what decides; q rounds up so this check is exact
    return i


def bucket_index(scale, value, step=1):
    if scale == LOG2:
        return log2_slot(value)
    if scale == LINEAR:
        return linear_bucket(value, step)
    if scale == POW2_MS:
        return pow2ms_row(value)
    raise ValueError("unknown scale %r" % (scale,))


def bounds(scale, index, step=1):
    """Inclusive (low, high) of what bucket `index` holds, in the histogram's
    unit (milliseconds for POW2_MS, where low is exclusive except row 0)."""
    if scale == LOG2:
        if index <= 1:
            return (0, 1)
        return (1 << (index - 1), (1 << index) - 1)
    if scale == LINEAR:
        return (index * step, index * step + step - 1)
    if scale == POW2_MS:
        return (0 if index == 0 else 1 << (index - 1), 1 << index)
    raise ValueError("unknown scale %r" % (scale,))
