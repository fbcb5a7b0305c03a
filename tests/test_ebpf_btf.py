"""The BTF reader and the raw-tracepoint block reads built on it, without a
kernel: BTF blobs are built here, type by type, in the encoding of the
kernel's Documentation/bpf/btf.rst.

  - members (also inside anonymous unions), enums, raw tracepoint
    prototypes are read at the offsets the blob says; bitfields are refused;
  - malformed BTF (bad magic, sections outside the data, truncated records,
    random corruption) is a BtfError, never another exception;
  - a kernel whose BTF lacks what the block fields need (q->disk, enum
    req_op, the prototype) keeps tracepoint programs, with the reason;
  - the generated raw handler, compiled with the host C compiler and run on
    a struct request laid out at the BTF offsets, computes dev, sector,
    nr_sector, bytes and rwbs as the kernel's TP_fast_assign does.
"""

import random
import struct

import pytest

from kerntrace.backends.ebpf import btf as kbtf
from kerntrace.backends.ebpf import codegen, crawblock
from kerntrace.core.model import Filter, Histogram, LATENCY, Records

from test_ebpf_codegen import STUB_HEADER, block, compile_c, make_plan, needs_cc


class BtfBuilder(object):
    """Types added one by one (ids from 1), serialized as BTF."""

    def __init__(self):
        self.strings = b"\0"
        self.types = []

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind, name, size_or_type, vlen=0, kflag=0, tail=b""):
        info = (kflag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack("<III", self.s(name), info, size_or_type) + tail)
        return len(self.types)

    def int_(self, name, size):
        return self.add(kbtf.INT, name, size, tail=struct.pack("<I", size * 8))

    def ptr(self, target):
        return self.add(kbtf.PTR, None, target)

    def struct_(self, name, size, members, kind=kbtf.STRUCT):
        """members: [(name, type id, bit offset[, bitfield size])]"""
        kflag = 1 if any(len(m) > 3 for m in members) else 0
        tail = b""
        for m in members:
            off = m[2] if len(m) == 3 else (m[3] << 24) | m[2]
            tail += struct.pack("<III", self.s(m[0]), m[1], off)
        return self.add(kind, name, size, len(members), kflag, tail)

    def enum(self, name, values):
        tail = b"".join(struct.pack("<Ii", self.s(k), v) for k, v in values)
        return self.add(kbtf.ENUM, name, 4, len(values), tail=tail)

    def proto(self, params):
        tail = b"".join(struct.pack("<II", self.s(n), t) for n, t in params)
        return self.add(kbtf.FUNC_PROTO, None, 0, len(params), tail=tail)

    def typedef(self, name, target):
        return self.add(kbtf.TYPEDEF, name, target)

    def data(self):
        types = b"".join(self.types)
        hdr = struct.pack("<HBBIIIII", kbtf.MAGIC, 1, 0, 24, 0, len(types), len(types),
                          len(self.strings))
        return hdr + types + self.strings


# Offsets of the synthetic kernel (bytes): deliberately unlike 6.18's.
OFF = {"request.q": 8, "request.cmd_flags": 20, "request.__sector": 32,
       "request.__data_len": 56, "request_queue.disk": 40, "gendisk.major": 12,
       "gendisk.first_minor": 16}
OPS = [("REQ_OP_READ", 0), ("REQ_OP_WRITE", 1), ("REQ_OP_FLUSH", 2), ("REQ_OP_DISCARD", 3),
       ("REQ_OP_SECURE_ERASE", 5), ("REQ_OP_ZONE_APPEND", 7), ("REQ_OP_WRITE_ZEROES", 9),
       ("REQ_OP_ZONE_OPEN", 11), ("REQ_OP_ZONE_CLOSE", 13), ("REQ_OP_ZONE_FINISH", 15),
       ("REQ_OP_ZONE_RESET", 17), ("REQ_OP_ZONE_RESET_ALL", 19),
       ("REQ_OP_DRV_IN", 34), ("REQ_OP_DRV_OUT", 35)]
FLAGS = [("__REQ_FAILFAST_DEV", 8), ("__REQ_SYNC", 11), ("__REQ_META", 12), ("__REQ_FUA", 17),
         ("__REQ_PREFLUSH", 18), ("__REQ_RAHEAD", 19), ("__REQ_ATOMIC", 27)]


def kernel_btf(omit=(), ops=OPS, complete_args=("request", "status", "nr_bytes"),
               rq_disk=False):
    b = BtfBuilder()
    u32 = b.int_("unsigned int", 4)
    u64 = b.int_("long long unsigned int", 8)
    u8 = b.int_("unsigned char", 1)
    sector_t = b.typedef("sector_t", u64)
    gendisk = b.struct_("gendisk", 64, [("major", u32, 8 * OFF["gendisk.major"]),
                                        ("first_minor", u32, 8 * OFF["gendisk.first_minor"])])
    q_members = [("disk", b.ptr(gendisk), 8 * OFF["request_queue.disk"])]
    q = b.struct_("request_queue", 128, [m for m in q_members if "disk" not in omit])
    anon = b.struct_(None, 8, [("__sector", sector_t, 0)], kind=kbtf.UNION)
    members = [("q", b.ptr(q), 8 * OFF["request.q"]),
               ("cmd_flags", b.typedef("blk_opf_t", u32), 8 * OFF["request.cmd_flags"]),
               (None, anon, 8 * OFF["request.__sector"]),
               ("__data_len", u32, 8 * OFF["request.__data_len"]),
               ("bits", u32, 8 * 60, 3)]
    if rq_disk:     # the era whose tracepoints read rq->rq_disk
        members.append(("rq_disk", b.ptr(gendisk), 8 * 64))
    request = b.struct_("request", 128, [m for m in members if m[0] not in omit])
    if ops is not None:
        b.enum("req_op", ops)
    b.enum("req_flag_bits", FLAGS)
    rq_ptr, void_ptr = b.ptr(request), b.ptr(0)
    b.typedef("btf_trace_block_rq_issue", b.ptr(b.proto([("", void_ptr), ("", rq_ptr)])))
    kinds = {"request": rq_ptr, "status": u8, "nr_bytes": u32}
    b.typedef("btf_trace_block_rq_complete", b.ptr(b.proto(
        [("", void_ptr)] + [("", kinds[a]) for a in complete_args])))
    return b.data()


# ---------------------------------------------------------------------------
def test_members_enums_and_prototypes_at_the_offsets_the_btf_gives():
    b = kbtf.Btf(kernel_btf())
    for key, off in OFF.items():
        st, name = key.split(".")
        assert b.member(st, name)[0] == off, key
    assert b.size(b.member("request", "__sector")[1]) == 8      # through the typedef
    assert b.member("request", "bits") is None                  # a bitfield
    assert b.member("request", "nosuch") is None and b.member("nosuch", "q") is None
    assert b.enum_values("req_op") == dict(OPS)
    params = b.func_proto_params("btf_trace_block_rq_complete")
    assert [b.struct_name_of_pointer(t) for _n, t in params] == [None, "request", None, None]


def test_malformed_btf_is_one_error():
    good = kernel_btf()
    with pytest.raises(kbtf.BtfError, match="magic"):
        kbtf.Btf(b"\0" * 64)
    with pytest.raises(kbtf.BtfError, match="too short"):
        kbtf.Btf(good[:10])
    with pytest.raises(kbtf.BtfError, match="outside"):
        kbtf.Btf(good[:-5])
    # a struct claiming more members than its section holds
    bad = BtfBuilder()
    bad.add(kbtf.STRUCT, "x", 8, vlen=0xFFFF)
    # (types are indexed as far as a lookup needs: the lookup says so)
    with pytest.raises(kbtf.BtfError, match="truncated"):
        kbtf.Btf(bad.data()).find(kbtf.STRUCT, "x")
    with pytest.raises(kbtf.BtfError, match="truncated"):
        kbtf.Btf(bad.data()).count


def test_types_are_indexed_only_as_far_as_a_lookup_needs():
    b = kbtf.Btf(kernel_btf())
    want = b.find(kbtf.STRUCT, "request")
    seen = len(b._offsets) - 1
    assert seen == want < b.count
    # and a lookup after the full index gives the same ids
    assert b.find(kbtf.STRUCT, "request") == want
    assert kbtf.Btf(kernel_btf()).member("request", "__sector") == b.member("request",
                                                                             "__sector")


def test_random_corruption_never_raises_anything_but_btferror():
    good = bytearray(kernel_btf())
    rnd = random.Random(8)
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 6)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        try:
            b = kbtf.Btf(bytes(data))
            lay = crawblock.layout(b)
            for tp in ("block_rq_issue", "block_rq_complete"):
                crawblock.Reads.build(b, tp, lay)
        except kbtf.BtfError:
            pass


def test_reads_come_from_the_raw_arguments_the_prototype_names():
    b = kbtf.Btf(kernel_btf())
    lay = crawblock.layout(b)
    issue = crawblock.Reads.build(b, "block_rq_issue", lay)
    done = crawblock.Reads.build(b, "block_rq_complete", lay)
    assert (issue.request_arg, issue.nr_bytes_arg) == (0, None)
    assert (done.request_arg, done.nr_bytes_arg) == (0, 2)
    assert "error" not in done.fields and "bytes" in issue.fields
    assert lay.op_mask == 0xFF


@pytest.mark.parametrize("kernel, why", [
    (dict(omit=("disk",)), "no member disk of struct request_queue"),
    (dict(omit=("__data_len",)), "no member __data_len of struct request"),
    (dict(ops=None), "no enum req_op"),
    (dict(ops=OPS[:-1]), "req_op has no REQ_OP_DRV_OUT"),
    (dict(rq_disk=True), "struct request has rq_disk"),
])
def test_a_kernel_without_what_the_reads_need_keeps_tracepoint_programs(kernel, why):
    reads = crawblock.reads_for(["block_rq_issue", "block_rq_complete", "sched_switch"],
                                load=lambda: kbtf.Btf(kernel_btf(**kernel)))
    assert set(reads) == {"block_rq_issue", "block_rq_complete"}
    for r in reads.values():
        assert isinstance(r, str) and why in r


@pytest.mark.parametrize("rwbs_len", [6, 11])
def test_an_rwbs_of_an_unknown_length_keeps_the_tracepoint_program(rwbs_len):
    b = kbtf.Btf(kernel_btf())
    reads = crawblock.Reads.build(b, "block_rq_issue", crawblock.layout(b))
    assert reads.can_read("rwbs", 9) and not reads.can_read("rwbs", rwbs_len + 1)
    assert reads.can_read("dev", 8)


def test_a_completion_prototype_of_another_era_keeps_its_tracepoint_program():
    # v4.x: TP_PROTO(struct request_queue *q, struct request *rq) (no nr_bytes)
    b = kbtf.Btf(kernel_btf(complete_args=("status", "request")))
    r = crawblock.Reads.build(b, "block_rq_complete", crawblock.layout(b))
    assert isinstance(r, str) and "nr_bytes" in r


def test_no_btf_keeps_tracepoint_programs_and_says_so():
    def load():
        raise IOError(2, "No such file or directory")
    reads = crawblock.reads_for(["block_rq_issue"], load=load)
    assert reads == {"block_rq_issue": "no kernel BTF (No such file or directory)"}


def test_block_handlers_are_raw_only_where_the_plan_has_reads():
    m = block(Histogram(LATENCY, unit="usecs"), carry=())
    b = kbtf.Btf(kernel_btf())
    lay = crawblock.layout(b)
    reads = dict((n, crawblock.Reads.build(b, n, lay))
                 for n in ("block_rq_issue", "block_rq_complete"))
    plan = make_plan(m)
    assert [a.kind for a in codegen.generate(m, plan).attachments] == ["tracepoint"] * 2
    prog = codegen.generate(m, plan.replace(raw_reads=reads))
    assert [a.kind for a in prog.attachments] == ["raw_tracepoint"] * 2
    assert "struct tracepoint__block" not in prog.text


@pytest.mark.parametrize("flt, hook", [
    (Filter("dev", "==", 7340033), "dev == 7340033"),
    (Filter("dev", "!=", 5), "dev != 5"),
    (Filter("sector", ">", 5), None),           # not rendered: counts every event
    (Filter("rwbs", "glob", "W*"), None),
    (Filter("dev", "==", 1 << 40), None),       # out of the range rendered
])
def test_raw_handlers_have_sentinels_counting_what_no_program_ran_for(flt, hook):
    """Each raw tracepoint program gets a tracepoint program that does
    nothing: the kernel runs no BPF program at all for some events (softirq
    on top of some tasks), and only a tracepoint program's perf hook can
    count those (perfhook.py), filtered by the handler's integer filters."""
    m = block(Histogram(LATENCY, unit="usecs"), carry=(), filters=[flt])
    b = kbtf.Btf(kernel_btf())
    lay = crawblock.layout(b)
    reads = dict((n, crawblock.Reads.build(b, n, lay))
                 for n in ("block_rq_issue", "block_rq_complete"))
    plain = codegen.generate(m, make_plan(m))
    assert plain.sentinels == []        # tracepoint programs are their own hook
    assert [a.hook_filter for a in plain.attachments] == [hook, hook]
    prog = codegen.generate(m, make_plan(m).replace(raw_reads=reads))
    assert [a.kind for a in prog.attachments] == ["raw_tracepoint"] * 2
    assert [(a.kind, a.event.probe.name, a.hook_filter) for a in prog.sentinels] == [
        ("tracepoint", "block_rq_issue", hook), ("tracepoint", "block_rq_complete", hook)]
    for a in prog.sentinels:
        assert "int %s(void *ctx)\n{\n    return 0;\n}" % a.fn_name in prog.text


def test_a_field_without_a_raw_read_keeps_the_tracepoint_program():
    # records with the completion's error: blk_status_to_errno() is not recomputed
    m = block(Records(fields=("sector", "error", LATENCY)), carry=())
    b = kbtf.Btf(kernel_btf())
    lay = crawblock.layout(b)
    reads = dict((n, crawblock.Reads.build(b, n, lay))
                 for n in ("block_rq_issue", "block_rq_complete"))
    prog = codegen.generate(m, make_plan(m).replace(raw_reads=reads))
    assert [a.kind for a in prog.attachments] == ["raw_tracepoint", "tracepoint"]


# ---------------------------------------------------------------------------
# The generated reads, run on a request laid out at the synthetic offsets.
HARNESS = r"""
#include <string.h>
#include <stdio.h>
static unsigned char kt_mem_rq[128], kt_mem_q[128], kt_mem_disk[64];
int bpf_probe_read_kernel(void *dst, u32 size, const void *src)
{ memcpy(dst, src, size); return 0; }
int bpf_get_current_comm(void *buf, u32 size) { memset(buf, 0, size); return 0; }
%(byte_shift)s
static void put(unsigned char *m, int off, u64 v, int size) { memcpy(m + off, &v, size); }
int main(void)
{
    u64 opf, pos, len, major, minor, nr_bytes, have_disk;
    while (scanf("%%llu %%llu %%llu %%llu %%llu %%llu %%llu", &opf, &pos, &len, &major,
                 &minor, &nr_bytes, &have_disk) == 7) {
        u64 args[3] = {(u64)kt_mem_rq, 0, nr_bytes};
        struct kt_ctx { u64 *args; } c = {args}, *ctx = &c;
        memset(kt_mem_rq, 0, sizeof(kt_mem_rq));
        void *q = kt_mem_q, *disk = have_disk ? kt_mem_disk : 0;
        memcpy(kt_mem_rq + %(q)d, &q, sizeof(q));
        memcpy(kt_mem_q + %(disk)d, &disk, sizeof(disk));
        put(kt_mem_rq, %(cmd_flags)d, opf, 4);
        put(kt_mem_rq, %(sector)d, pos, 8);
        put(kt_mem_rq, %(data_len)d, len, 4);
        put(kt_mem_disk, %(major)d, major, 4);
        put(kt_mem_disk, %(first_minor)d, minor, 4);
        u64 dev, sector, nr_sector, bytes, csector, cnr;
        char rwbs[RWBS_SIZE] = {0};
%(reads)s
        printf("%%llu %%llu %%llu %%llu %%s %%llu %%llu\n", dev, sector, nr_sector, bytes,
               rwbs[0] ? rwbs : "-", csector, cnr);
    }
    return 0;
}
"""


def blk_fill_rwbs(opf, length):
    """The kernel's blk_fill_rwbs() (v6.x) whose rwbs is `length` bytes,
    written out for the test."""
    op, flag = opf & 0xFF, lambda name: opf & (1 << dict(FLAGS)[name])
    s = "F" if flag("__REQ_PREFLUSH") else ""
    letters = {1: "W", 3: "D", 5: "DE", 2: "F", 0: "R"}
    if length >= 10:
        letters.update({7: "ZA", 17: "ZR", 19: "ZRA", 15: "ZF", 11: "ZO", 13: "ZC"})
    s += letters.get(op, "N")
    flags = [("__REQ_FUA", "F"), ("__REQ_RAHEAD", "A"), ("__REQ_SYNC", "S"), ("__REQ_META", "M")]
    for name, letter in flags + ([("__REQ_ATOMIC", "U")] if length >= 9 else []):
        if flag(name):
            s += letter
    return s[:length - 1]


@needs_cc
@pytest.mark.parametrize("rwbs_len", [8, 9, 10])
def test_generated_reads_compute_what_the_tracepoints_record(tmp_path, rwbs_len):
    b = kbtf.Btf(kernel_btf())
    lay = crawblock.layout(b)
    issue = crawblock.Reads.build(b, "block_rq_issue", lay)
    done = crawblock.Reads.build(b, "block_rq_complete", lay)
    helpers = {"kernel": "bpf_probe_read_kernel"}
    reads = []
    for r, member, dst in ((issue, "dev", "dev"), (issue, "sector", "sector"),
                           (issue, "nr_sector", "nr_sector"), (issue, "bytes", "bytes"),
                           (issue, "rwbs", "rwbs"), (done, "sector", "csector"),
                           (done, "nr_sector", "cnr")):
        reads += r.read(member, dst, rwbs_len + 1, helpers)
    text = STUB_HEADER + "#define RWBS_SIZE %d\n" % (rwbs_len + 1) + HARNESS % dict(
        byte_shift=crawblock.BYTE_SHIFT_C, reads="\n".join("        " + l for l in reads),
        q=OFF["request.q"], disk=OFF["request_queue.disk"],
        cmd_flags=OFF["request.cmd_flags"], sector=OFF["request.__sector"],
        data_len=OFF["request.__data_len"], major=OFF["gendisk.major"],
        first_minor=OFF["gendisk.first_minor"])
    f = dict(FLAGS)
    ALL = (1 << 64) - 1
    cases = [
        # (opf, pos, data_len, major, minor, nr_bytes, have_disk)
        (1, 2048, 4096, 7, 3, 4096, 1),                                   # W
        (0 | 1 << f["__REQ_RAHEAD"], 8, 65536, 259, 1 << 19, 65536, 1),  # RA
        (1 | 1 << f["__REQ_SYNC"] | 1 << f["__REQ_FUA"], 16, 512, 8, 0, 512, 1),   # WFS
        (2 | 1 << f["__REQ_PREFLUSH"], ALL, 0, 7, 0, 0, 1),               # FF, no sector
        (1 | 1 << f["__REQ_PREFLUSH"] | 1 << f["__REQ_META"], 64, 4096, 7, 0, 4096, 1),
        (5, 100, 8192, 7, 0, 8192, 0),                                    # DE, no disk
        (34, 100, 4096, 7, 0, 4096, 1),                                   # passthrough
        (9, 100, 4096, 7, 0, 2048, 1),                                    # N (zeroes)
        (7 | 1 << f["__REQ_ATOMIC"], 8, 4096, 7, 0, 4096, 1),             # ZA, U
        (19 | 1 << f["__REQ_PREFLUSH"] | 1 << f["__REQ_FUA"] | 1 << f["__REQ_RAHEAD"]
         | 1 << f["__REQ_SYNC"] | 1 << f["__REQ_META"] | 1 << f["__REQ_ATOMIC"],
         0, 0, 7, 0, 0, 1),                                               # longest
        (13, 0, 0, 7, 0, 0, 1), (11, 0, 0, 7, 0, 0, 1), (15, 0, 0, 7, 0, 0, 1),
        (17, 0, 0, 7, 0, 0, 1),
    ]
    out = compile_c(tmp_path, text, "".join("%d %d %d %d %d %d %d\n" % c for c in cases),
                    name="rawblock")
    rows = [out[i:i + 7] for i in range(0, len(out), 7)]
    for (opf, pos, ln, major, minor, nr_bytes, have_disk), row in zip(cases, rows):
        passthrough = opf & 0xFF in (34, 35)
        expect = [
            ((major << 20) | minor) & 0xFFFFFFFF if have_disk else 0,   # MKDEV
            0 if passthrough or pos == ALL else pos,                     # blk_rq_trace_sector
            0 if passthrough else ln >> 9,                               # .._nr_sectors
            ln,                                                          # blk_rq_bytes
            blk_fill_rwbs(opf, rwbs_len) or "-",
            pos,                                                         # completion: pos
            nr_bytes >> 9]
        assert [int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4], int(row[5]),
                int(row[6])] == expect, (opf, row)
    assert len(rows) == len(cases)


def test_real_kernel_btf_is_read_when_there_is_one():
    try:
        b = kbtf.Btf.load()
    except (IOError, OSError) as e:
        pytest.skip("no kernel BTF here: %s" % e)
    assert b.count > 1000
    off = b.member("task_struct", "pid")
    assert off is not None and off[0] > 0


def test_doctor_says_why_block_programs_are_not_raw(monkeypatch):
    from kerntrace.backends.ebpf import backend

    def no_btf(path=kbtf.VMLINUX):
        raise IOError(2, "No such file or directory")
    monkeypatch.setattr(kbtf.Btf, "load", staticmethod(no_btf))
    cap = backend._btf_block_fields()
    assert cap.name == "btf_block_fields" and not cap.ok
    assert "block_rq_complete: no kernel BTF (No such file or directory)" in cap.detail
    monkeypatch.setattr(kbtf.Btf, "load", staticmethod(lambda path=None: kbtf.Btf(kernel_btf())))
    assert backend._btf_block_fields().ok
