"""Event format files as kernels of several eras print them.

Used to replay a saved trace from another host (whose format files we do
not have: each candidate's print fmt is tried on that event's first line),
and by tests, which build fake tracefs trees from them.

    FORMATS[era][(system, event)]  the `format` file text
    HEADER_PAGE[era], HEADER_EVENT[era]  events/header_page, header_event
    candidates(system, event)      parsed EventFormats, newest era first

Eras (all x86_64; checked against the kernel sources of each, see
kernel-eras notes).  The 4.19, 5.15 and 6.18 texts are kept verbatim; the
older ones are built below from each kernel's TP_STRUCT__entry layout:
    2.6.32  mainline: `int common_lock_depth` after the common fields, no
            signed: column, rwbs[6] (comm at 38), no sched_process_exec
            (v3.4), syscall `nr` and `int mode` (umode_t since v3.3),
            header_page without `overwrite`
    rhel6   RHEL 6.8's 2.6.32: as 2.6.32 with the signed: column,
            `char rwbs[RWBS_LEN]` printed literally (8 bytes, comm at 40),
            and syscall events without `nr`
    3.4     v3.0-v3.6: `int common_padding` after the common fields
            (removed by commit b000c8065 "tracing: Remove the extra 4
            bytes of padding in events", before v3.10), rwbs[8]
    3.10    RHEL 7 and v3.10-v4.12: the four common fields only,
            block_rq_complete `errors`, syscall `nr`
    4.4     as 3.10 (also 0 block bytes for file system requests)
    4.19    block_rq_complete `error` (v4.13), syscall `__syscall_nr`,
            header_event time_stamp (v4.17)
    5.10    as 4.19 (a flush's issue/insert print sector 0)
    5.15    as 5.10 (its trace lines gained a 5th flag character)
    6.18    the files of the development machine, verbatim: ioprio field and
            print fmt token (~v6.11), rwbs[10], char signed:0 (v6.2)
"""

from kerntrace.core.tracefs import parse_format

_BLOCK_RQ_ISSUE_4_19 = """\
name: block_rq_issue
ID: 1118
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:56;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->comm
"""

_BLOCK_RQ_INSERT_4_19 = """\
name: block_rq_insert
ID: 1119
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:56;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->comm
"""

_BLOCK_RQ_COMPLETE_4_19 = """\
name: block_rq_complete
ID: 1121
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:40;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s (%s) %llu + %u [%d]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->error
"""

_SCHED_PROCESS_EXEC_4_19 = """\
name: sched_process_exec
ID: 301
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:1;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""

_SYS_ENTER_OPENAT_4_19 = """\
name: sys_enter_openat
ID: 631
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""

_SYS_EXIT_OPENAT_4_19 = """\
name: sys_exit_openat
ID: 630
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;

print fmt: "0x%lx", REC->ret
"""

_BLOCK_RQ_ISSUE_5_15 = """\
name: block_rq_issue
ID: 1239
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:56;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->comm
"""

_BLOCK_RQ_INSERT_5_15 = """\
name: block_rq_insert
ID: 1240
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:56;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->comm
"""

_BLOCK_RQ_COMPLETE_5_15 = """\
name: block_rq_complete
ID: 1242
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:1;
\tfield:__data_loc char[] cmd;\toffset:40;\tsize:4;\tsigned:1;

print fmt: "%d,%d %s (%s) %llu + %u [%d]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->error
"""

_SCHED_PROCESS_EXEC_5_15 = """\
name: sched_process_exec
ID: 316
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:1;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""

_SYS_ENTER_OPENAT_5_15 = """\
name: sys_enter_openat
ID: 661
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""

_SYS_EXIT_OPENAT_5_15 = """\
name: sys_exit_openat
ID: 660
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;

print fmt: "0x%lx", REC->ret
"""

_BLOCK_RQ_ISSUE_6_18 = """\
name: block_rq_issue
ID: 2104
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:char comm[16];\toffset:44;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:60;\tsize:4;\tsigned:0;

print fmt: "%d,%d %s %u (%s) %llu + %u %s,%u,%u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, __print_symbolic((((REC->ioprio) >> 13) & (8 - 1)), { IOPRIO_CLASS_NONE, "none" }, { IOPRIO_CLASS_RT, "rt" }, { IOPRIO_CLASS_BE, "be" }, { IOPRIO_CLASS_IDLE, "idle" }, { IOPRIO_CLASS_INVALID, "invalid"}), (((REC->ioprio) >> 3) & ((1 << 10) - 1)), ((REC->ioprio) & ((1 << 3) - 1)), REC->comm
"""

_BLOCK_RQ_INSERT_6_18 = """\
name: block_rq_insert
ID: 2105
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:char comm[16];\toffset:44;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:60;\tsize:4;\tsigned:0;

print fmt: "%d,%d %s %u (%s) %llu + %u %s,%u,%u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, __print_symbolic((((REC->ioprio) >> 13) & (8 - 1)), { IOPRIO_CLASS_NONE, "none" }, { IOPRIO_CLASS_RT, "rt" }, { IOPRIO_CLASS_BE, "be" }, { IOPRIO_CLASS_IDLE, "idle" }, { IOPRIO_CLASS_INVALID, "invalid"}), (((REC->ioprio) >> 3) & ((1 << 10) - 1)), ((REC->ioprio) & ((1 << 3) - 1)), REC->comm
"""

_BLOCK_RQ_COMPLETE_6_18 = """\
name: block_rq_complete
ID: 2107
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:44;\tsize:4;\tsigned:0;

print fmt: "%d,%d %s (%s) %llu + %u %s,%u,%u [%d]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, __print_symbolic((((REC->ioprio) >> 13) & (8 - 1)), { IOPRIO_CLASS_NONE, "none" }, { IOPRIO_CLASS_RT, "rt" }, { IOPRIO_CLASS_BE, "be" }, { IOPRIO_CLASS_IDLE, "idle" }, { IOPRIO_CLASS_INVALID, "invalid"}), (((REC->ioprio) >> 3) & ((1 << 10) - 1)), ((REC->ioprio) & ((1 << 3) - 1)), REC->error
"""

_SCHED_PROCESS_EXEC_6_18 = """\
name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""

_SYS_ENTER_OPENAT_6_18 = """\
name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""

_SYS_EXIT_OPENAT_6_18 = """\
name: sys_exit_openat
ID: 781
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;

print fmt: "0x%lx", REC->ret
"""

# ---------------------------------------------------------------------------
# Older eras, built from the TP_STRUCT__entry layouts of their sources.
_COMMON_FIELDS = (("unsigned short common_type", 0, 2, 0),
                  ("unsigned char common_flags", 2, 1, 0),
                  ("unsigned char common_preempt_count", 3, 1, 0),
                  ("int common_pid", 4, 4, 1))
# v2.6.32 (and RHEL 6): the big kernel lock depth; v3.0-v3.6: padding
_LOCK_DEPTH = _COMMON_FIELDS + (("int common_lock_depth", 8, 4, 1),)
_PADDING = _COMMON_FIELDS + (("int common_padding", 8, 4, 1),)

_BLOCK_RQ_FMT = ('"%d,%d %s %u (%s) %llu + %u [%s]", ((unsigned int) ((REC->dev) >> 20)), '
                 '((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, '
                 '__get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, REC->comm')
_BLOCK_COMPLETE_FMT = ('"%d,%d %s (%s) %llu + %u [%d]", ((unsigned int) ((REC->dev) >> 20)), '
                       '((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, '
                       '__get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, '
                       'REC->errors')
_EXEC_FMT = '"filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid'
_OPENAT_FMT = ('"dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", '
               '((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename)), '
               '((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))')
_EXIT_FMT = '"0x%lx", REC->ret'


def _build(name, ev_id, common, payload, print_fmt, signed=True):
    """A format file's text; payload [(declaration, offset, size, signed)]."""
    def line(decl, off, size, sign):
        text = "\tfield:%s;\toffset:%d;\tsize:%d;" % (decl, off, size)
        return text + ("\tsigned:%d;" % sign if signed else "")
    return "name: %s\nID: %d\nformat:\n%s\n\n%s\n\nprint fmt: %s\n" % (
        name, ev_id, "\n".join(line(*f) for f in common),
        "\n".join(line(*f) for f in payload), print_fmt)


def _old_era(ids, common, rwbs, base, nr=True, mode="umode_t mode", exec_event=True,
             signed=True):
    """One pre-4.13 era's files.  rwbs: (declaration, size); base: where the
    payload starts (12 after lock_depth/padding, else 8)."""
    rwbs_decl, rwbs_size = rwbs
    comm_off = 32 + rwbs_size
    cmd_off = (comm_off + 16 + 3) // 4 * 4
    issue = [("dev_t dev", base, 4, 0), ("sector_t sector", 16, 8, 0),
             ("unsigned int nr_sector", 24, 4, 0), ("unsigned int bytes", 28, 4, 0),
             (rwbs_decl, 32, rwbs_size, 1), ("char comm[16]", comm_off, 16, 1),
             ("__data_loc char[] cmd", cmd_off, 4, 1)]
    complete = [("dev_t dev", base, 4, 0), ("sector_t sector", 16, 8, 0),
                ("unsigned int nr_sector", 24, 4, 0), ("int errors", 28, 4, 1),
                (rwbs_decl, 32, rwbs_size, 1),
                ("__data_loc char[] cmd", (32 + rwbs_size + 3) // 4 * 4, 4, 1)]
    nr_field = [("int nr", base, 4, 1)] if nr else []
    enter = nr_field + [("int dfd", 16, 8, 0), ("const char * filename", 24, 8, 0),
                        ("int flags", 32, 8, 0), (mode, 40, 8, 0)]
    exit_ = nr_field + [("long ret", 16, 8, 1)]
    out = {
        ("block", "block_rq_issue"): _build("block_rq_issue", ids[0], common, issue,
                                            _BLOCK_RQ_FMT, signed),
        ("block", "block_rq_insert"): _build("block_rq_insert", ids[1], common, issue,
                                             _BLOCK_RQ_FMT, signed),
        ("block", "block_rq_complete"): _build("block_rq_complete", ids[2], common, complete,
                                               _BLOCK_COMPLETE_FMT, signed),
        ("syscalls", "sys_enter_openat"): _build("sys_enter_openat", ids[4], common, enter,
                                                 _OPENAT_FMT, signed),
        ("syscalls", "sys_exit_openat"): _build("sys_exit_openat", ids[5], common, exit_,
                                                _EXIT_FMT, signed),
    }
    if exec_event:
        execf = [("__data_loc char[] filename", base, 4, 1), ("pid_t pid", base + 4, 4, 1),
                 ("pid_t old_pid", base + 8, 4, 1)]
        out[("sched", "sched_process_exec")] = _build("sched_process_exec", ids[3], common,
                                                      execf, _EXEC_FMT, signed)
    return out


_OLD_ERAS = {
    "2.6.32": _old_era((488, 489, 491, 0, 367, 366), _LOCK_DEPTH, ("char rwbs[6]", 6), 12,
                       mode="int mode", exec_event=False, signed=False),
    "rhel6": _old_era((551, 552, 554, 0, 409, 408), _LOCK_DEPTH, ("char rwbs[RWBS_LEN]", 8),
                      12, nr=False, mode="int mode", exec_event=False),
    "3.4": _old_era((724, 725, 727, 254, 452, 451), _PADDING, ("char rwbs[8]", 8), 12),
    "3.10": _old_era((1040, 1041, 1043, 279, 583, 582), _COMMON_FIELDS, ("char rwbs[8]", 8), 8),
    "4.4": _old_era((1102, 1103, 1105, 290, 611, 610), _COMMON_FIELDS, ("char rwbs[8]", 8), 8),
}


# The ring-buffer page and entry headers (events/header_page, header_event).
# `char data` is signed:1 on x86 until Linux commit 3bc753c06dd0 ("kbuild:
# treat char as always unsigned") (v6.2).
_HEADER_PAGE_64 = """\
\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;
"""
_HEADER_PAGE_64_UNSIGNED_CHAR = _HEADER_PAGE_64.replace("4080;\tsigned:1;", "4080;\tsigned:0;")
# 2.6.32: three lines (no `overwrite`); mainline without the signed: column.
_HEADER_PAGE_RHEL6 = """\
\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;
"""
_HEADER_PAGE_2_6_32 = """\
\tfield: u64 timestamp;\toffset:0;\tsize:8;
\tfield: local_t commit;\toffset:8;\tsize:8;
\tfield: char data;\toffset:16;\tsize:4080;
"""

# Before Linux commit dc4e2801d400 ("ring-buffer: Redefine the unimplemented
# RINGBUF_TYPE_TIME_STAMP") (v4.17) there was no time_stamp line.
_HEADER_EVENT_OLD = """\
# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\tdata max type_len  == 28
"""

_HEADER_EVENT = """\
# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
"""

ERAS = ("2.6.32", "rhel6", "3.4", "3.10", "4.4", "4.19", "5.10", "5.15", "6.18")

_EVENTS = (("block", "block_rq_issue"), ("block", "block_rq_insert"),
           ("block", "block_rq_complete"), ("sched", "sched_process_exec"),
           ("syscalls", "sys_enter_openat"), ("syscalls", "sys_exit_openat"))


def _era_table(tag):
    g = globals()
    return {(system, event): g["_%s_%s" % (event.upper(), tag)] for system, event in _EVENTS}


FORMATS = dict(_OLD_ERAS)
FORMATS.update({era: _era_table(era.replace(".", "_")) for era in ("4.19", "5.15", "6.18")})
# 5.10's files are 5.15's (the layouts and print fmts did not change between them).
FORMATS["5.10"] = FORMATS["5.15"]
HEADER_PAGE = {era: _HEADER_PAGE_64 for era in ERAS}
HEADER_PAGE["2.6.32"] = _HEADER_PAGE_2_6_32
HEADER_PAGE["rhel6"] = _HEADER_PAGE_RHEL6
HEADER_PAGE["6.18"] = _HEADER_PAGE_64_UNSIGNED_CHAR
HEADER_EVENT = {era: (_HEADER_EVENT_OLD if era in ("2.6.32", "rhel6", "3.4", "3.10", "4.4")
                      else _HEADER_EVENT) for era in ERAS}

_parsed = {}


def event_format(era, system, event):
    """The parsed EventFormat of one era, or None."""
    key = (era, system, event)
    if key not in _parsed:
        text = FORMATS.get(era, {}).get((system, event))
        _parsed[key] = parse_format(text, system) if text else None
    return _parsed[key]


def candidates(system, event):
    """Every known format of an event, newest era first (a new list each
    call; the EventFormat objects in it are shared: do not modify them)."""
    out = []
    for era in reversed(ERAS):
        f = event_format(era, system, event)
        if f is not None:
            out.append(f)
    return out
