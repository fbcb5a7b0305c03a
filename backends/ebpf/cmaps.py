"""Names and sizes the generated BPF program and its session share: maps,
stats indexes, stack and scratch limits."""

MAP_ENTRIES = 10240
# Structs larger than this live in a per-CPU scratch map instead of the
# 512-byte BPF stack.
SCRATCH_OVER = 96
# Bytes one __builtin_memset may clear (clang's BPF target inlines up to 128
# stores: 1024 bytes of aligned u64s; half of it keeps clear of the limit).
MEMSET_CHUNK = 512
# What a handler may put on the BPF stack (structs we size, plus room for
# the compiler's own temporaries); the kernel's limit is 512 bytes.
STACK_OVERHEAD = 64
STACK_BUDGET = 448

# Indexes of the per-CPU stats array.
STAT_UNMATCHED = 0     # pair ends without their start
STAT_LOST = 1          # events dropped in the kernel: full map, ring buffer full
STAT_DROPPED_STARTS = 2  # pair starts the full start map refused
STATS = 3

START_MAP = "kt_start"
DEPTH_MAP = "kt_depth"      # a nested pair's stack depth per key
HIST_MAP = "kt_hist"
COUNT_MAP = "kt_counts"
EVENTS_MAP = "kt_events"
STATS_MAP = "kt_stats"
# Records written to the ring buffer so far (one u64): every WAKEUP_EVERY-th
# wakes the reader, the others do not (ring buffer only, codegen.py).
WAKE_MAP = "kt_wake"
