"""core.buckets rendered in C: the bucket function of each histogram
scale, for the generated BPF programs.  tests/test_buckets.py compiles
this with the host C compiler and checks it against core.buckets on many
values.  Only unsigned division is used: BPF had no signed division before
cpu v4."""

from kerntrace.core.model import LINEAR, LOG2, POW2_MS

BUCKET_C = r"""
/* floor(log2 v) + 1 for v > 0; 0 for v == 0 */
static __always_inline u64 kt_bitlen(u64 v)
{
    u64 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { v >>= 1; r += 1; }
    return r + v;
}

/* log2 scale: bcc's bpf_log2l(v), with 0 (and negatives) in slot 1 */
static __always_inline u64 kt_log2_u(u64 v)
{
    return v == 0 ? 1 : kt_bitlen(v);
}

static __always_inline u64 kt_log2_s(s64 v)
{
    return v <= 0 ? 1 : kt_bitlen((u64)v);
}

/* linear scale: v / step, negatives in bucket 0 */
static __always_inline u64 kt_linear_u(u64 v, u64 step)
{
    return v / step;
}

static __always_inline u64 kt_linear_s(s64 v, u64 step)
{
    return v <= 0 ? 0 : (u64)v / step;
}

/* perf-tools iolatency rows: the smallest i >= 0 with ns <= 2^i ms.
 * 1000000 << 44 still fits 64 bits; anything above is row 45. */
static __always_inline u64 kt_pow2ms_u(u64 ns)
{
    u64 i;
#pragma unroll
    for (i = 0; i < 45; i++) {
        if (ns <= (1000000ULL << i))
            return i;
    }
    return 45;
}

static __always_inline u64 kt_pow2ms_s(s64 ns)
{
    return ns <= 0 ? 0 : kt_pow2ms_u((u64)ns);
}

/* Python's floor division v // d for d > 0, without signed division */
static __always_inline s64 kt_floordiv_s(s64 v, u64 d)
{
    if (v >= 0)
        return (s64)((u64)v / d);
    return -(s64)((u64)(-(v + 1)) / d) - 1;
}
"""

# scale -> C function name prefix; _u for u64 values, _s for s64
BUCKET_FN = {LOG2: "kt_log2", LINEAR: "kt_linear", POW2_MS: "kt_pow2ms"}
