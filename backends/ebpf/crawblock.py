"""Block request fields read in a raw tracepoint program, at the offsets the
running kernel's BTF gives, computed the way the block tracepoints compute
them.

Why: a tracepoint program is skipped whenever another BPF program runs on
the same CPU (block completions arrive in softirq, often on top of another
tracer), and the skip is a lost event; a raw tracepoint program is only
skipped when it is itself already running (per-program recursion
protection; the events the kernel runs no BPF program for at all are
counted through a sentinel, perfhook.py).  Its arguments are the
tracepoint's TP_PROTO arguments --
kernel struct pointers -- so the fields of the format file are recomputed
here from struct request, with offsets from /sys/kernel/btf/vmlinux (never
from installed headers, which may belong to another kernel).

What is recomputed, per tracepoint class (include/trace/events/block.h):
  block_rq (block_rq_issue, block_rq_insert, block_io_start):
    dev        rq->q->disk ? MKDEV(disk->major, disk->first_minor) : 0
    sector     blk_rq_trace_sector(rq): 0 for a passthrough request or one
               whose sector was never set, else blk_rq_pos(rq)
    nr_sector  blk_rq_trace_nr_sectors(rq): passthrough ? 0 : __data_len >> 9
    bytes      blk_rq_bytes(rq) = __data_len
    rwbs       blk_fill_rwbs(rwbs, rq->cmd_flags)
    comm       current->comm
  block_rq_completion (block_rq_complete):
    dev, rwbs  as above
    sector     blk_rq_pos(rq)
    nr_sector  nr_bytes >> 9 (the nr_bytes argument)
Anything else (error: blk_status_to_errno()'s table; ioprio; cmd) is not
recomputed: a handler that reads it stays a tracepoint program.

Which kernels: those whose BTF has enum req_op and enum req_flag_bits
(the v6.0 request-flag types, "block: Introduce the type blk_opf_t": the
blk_fill_rwbs(rwbs, opf) above), struct request_queue.disk and no
request.rq_disk (before "block: remove the ->rq_disk field in struct
request" the tracepoints took the disk from rq->rq_disk), and the raw
prototype btf_trace_<name>.  Each is detected in BTF, never by version:
where one is missing, layout()/Reads.build() say which, and the tracepoint
program is used.  Hashes are not cited: the titles above are as recalled,
not verified against the kernel tree.
"""

from . import btf as kbtf

# Tracepoint -> its class (TP_fast_assign above)
_CLASS = {"block_rq_issue": "rq", "block_rq_insert": "rq", "block_io_start": "rq",
          "block_rq_complete": "completion"}
_FIELDS = {"rq": ("dev", "sector", "nr_sector", "bytes", "rwbs", "comm"),
           "completion": ("dev", "sector", "nr_sector", "rwbs")}

# blk_fill_rwbs() (kernel/trace/blktrace.c), v6.x: an optional leading F for
# a pre-flush, one to three letters for the operation, then the flag letters.
# Which letters a kernel writes is told by its format file's rwbs length
# (RWBS_LEN grew with the letters): 8 the letters below; 9 also 'U' for an
# atomic write (the atomic-write rwbs patch, RWBS_LEN 8 -> 9); 10 also the
# zone operations ("Add zoned block commands to blk_fill_rwbs", RWBS_LEN
# 9 -> 10).  Any other length keeps the tracepoint program.
_OP_LETTERS = (("REQ_OP_WRITE", "W"), ("REQ_OP_DISCARD", "D"), ("REQ_OP_SECURE_ERASE", "DE"),
               ("REQ_OP_FLUSH", "F"), ("REQ_OP_READ", "R"))
_ZONE_LETTERS = (("REQ_OP_ZONE_APPEND", "ZA"), ("REQ_OP_ZONE_RESET", "ZR"),
                 ("REQ_OP_ZONE_RESET_ALL", "ZRA"), ("REQ_OP_ZONE_FINISH", "ZF"),
                 ("REQ_OP_ZONE_OPEN", "ZO"), ("REQ_OP_ZONE_CLOSE", "ZC"))
_FLAG_LETTERS = (("__REQ_FUA", "F"), ("__REQ_RAHEAD", "A"), ("__REQ_SYNC", "S"),
                 ("__REQ_META", "M"))
_ATOMIC_LETTER = ("__REQ_ATOMIC", "U")
RWBS_LENGTHS = (8, 9, 10)
_NEEDED_OPS = ("REQ_OP_READ", "REQ_OP_WRITE", "REQ_OP_FLUSH", "REQ_OP_DISCARD",
               "REQ_OP_SECURE_ERASE", "REQ_OP_DRV_IN", "REQ_OP_DRV_OUT")
_NEEDED_FLAGS = ("__REQ_PREFLUSH", "__REQ_FUA", "__REQ_RAHEAD", "__REQ_SYNC", "__REQ_META")


# Where byte n of a u64 lies, for the target's byte order.
BYTE_SHIFT_C = """#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define KT_BYTE_SHIFT(n) (56 - 8 * (n))
#else
#define KT_BYTE_SHIFT(n) (8 * (n))
#endif"""


def supported(tracepoint):
    return tracepoint in _CLASS


class Layout(object):
    """Offsets and constants from BTF that every block reader shares."""

    def __init__(self, members, sizes, ops, flags):
        self.members = members      # "request.__sector" -> byte offset
        self.sizes = sizes          # same keys -> size in bytes
        self.ops = ops              # REQ_OP_* -> value
        self.flags = flags          # __REQ_* -> bit number
        # The operation is the low bits below the first flag bit
        # (REQ_OP_BITS; the flag enum starts at it).
        self.op_mask = (1 << min(flags.values())) - 1


def layout(b):
    """A Layout from a Btf, or the reason there is none (str)."""
    want = (("request", "q"), ("request", "__sector"), ("request", "__data_len"),
            ("request", "cmd_flags"), ("request_queue", "disk"), ("gendisk", "major"),
            ("gendisk", "first_minor"))
    members, sizes = {}, {}
    for st, name in want:
        r = b.member(st, name)
        if r is None:
            return "BTF has no member %s of struct %s" % (name, st)
        off, tid = r
        key = "%s.%s" % (st, name)
        members[key] = off
        if name not in ("q", "disk"):
            size = b.size(tid)
            if size not in (4, 8):
                return "struct %s member %s is %d bytes" % (st, name, size)
            sizes[key] = size
        elif b.pointee(tid) is None:
            return "struct %s member %s is not a pointer" % (st, name)
    if b.member("request", "rq_disk") is not None:
        return "struct request has rq_disk (its tracepoints read the device from it)"
    ops = b.enum_values("req_op")
    if ops is None:
        return "BTF has no enum req_op (request flags before v6.0 are not decoded)"
    flags = b.enum_values("req_flag_bits")
    if flags is None:
        return "BTF has no enum req_flag_bits"
    for n in _NEEDED_OPS:
        if n not in ops:
            return "enum req_op has no %s" % n
    for n in _NEEDED_FLAGS:
        if n not in flags:
            return "enum req_flag_bits has no %s" % n
    return Layout(members, sizes, ops, flags)


class Reads(object):
    """How one block tracepoint's format fields are read from its raw
    arguments.  tracepoint: its name; fields: the format field names it
    can compute; request_arg / nr_bytes_arg: raw argument indexes."""

    def __init__(self, tracepoint, lay, request_arg, nr_bytes_arg=None):
        self.tracepoint = tracepoint
        self.cls = _CLASS[tracepoint]
        self.fields = frozenset(_FIELDS[self.cls])
        self.layout = lay
        self.request_arg = request_arg
        self.nr_bytes_arg = nr_bytes_arg

    @classmethod
    def build(cls, b, tracepoint, lay):
        """Reads for a tracepoint, or the reason there are none (str).
        b: Btf; lay: layout(b) (a Layout or its reason)."""
        if tracepoint not in _CLASS:
            return "no raw reads for %s" % tracepoint
        if isinstance(lay, str):
            return lay
        # BTF-typed raw tracepoints (v5.5): the typedef btf_trace_<name>
        # is the prototype (void *__data, TP_PROTO args...).
        params = b.func_proto_params("btf_trace_" + tracepoint)
        if params is None:
            return "BTF has no prototype btf_trace_%s" % tracepoint
        args = params[1:]
        rq = [i for i, (_n, t) in enumerate(args) if b.struct_name_of_pointer(t) == "request"]
        if len(rq) != 1:
            return "%s: no single struct request * argument" % tracepoint
        nr_bytes = None
        if _CLASS[tracepoint] == "completion":
            # TP_PROTO(struct request *rq, blk_status_t error, unsigned int nr_bytes)
            if len(args) != rq[0] + 3 or b.pointee(args[-1][1]) is not None or \
                    b.kind(b.resolve(args[-1][1])) != kbtf.INT or b.size(args[-1][1]) != 4:
                return "%s: arguments are not (request, error, nr_bytes)" % tracepoint
            nr_bytes = len(args) - 1
        return cls(tracepoint, lay, rq[0], nr_bytes)

    def can_read(self, member, size):
        """Whether format field `member`, read into `size` bytes (for
        rwbs: its format length + 1), is computed here."""
        if member == "rwbs":
            return size - 1 in RWBS_LENGTHS
        return member in self.fields

    def describe(self):
        return "%s: raw tracepoint, %s from struct request at BTF offsets" % (
            self.tracepoint, "/".join(sorted(self.fields)))

    # -- C ------------------------------------------------------------------------
    def _load(self, var, key, base, helper):
        size = self.layout.sizes[key]
        ctype = "u64" if size == 8 else "u32"
        return ["%s %s = 0;" % (ctype, var),
                "%s(&%s, sizeof(%s), (char *)%s + %d);" % (helper, var, var, base,
                                                          self.layout.members[key])]

    def _request(self):
        return "((void *)ctx->args[%d])" % self.request_arg

    def read(self, member, dst, size, helpers):
        """C statements (a block of their own) computing format field
        `member` into dst (a u64, or a zeroed char array of `size` bytes)."""
        if not self.can_read(member, size):
            raise ValueError("%s: %s is not read from a raw tracepoint" % (self.tracepoint,
                                                                           member))
        h = helpers["kernel"]
        rq = self._request()
        lay = self.layout
        body = []
        if member == "dev":
            body += ["void *kt_q = 0, *kt_disk = 0;",
                     "%s(&kt_q, sizeof(kt_q), (char *)%s + %d);" % (h, rq,
                                                                   lay.members["request.q"]),
                     "if (kt_q)",
                     "    %s(&kt_disk, sizeof(kt_disk), (char *)kt_q + %d);"
                     % (h, lay.members["request_queue.disk"]),
                     "%s = 0;" % dst,
                     "if (kt_disk) {"]
            body += ["    " + l for l in self._load("kt_major", "gendisk.major", "kt_disk", h)
                     + self._load("kt_minor", "gendisk.first_minor", "kt_disk", h)]
            # MKDEV(): the kernel's dev_t, as the dev field records it
            body += ["    %s = (u32)((kt_major << 20) | kt_minor);" % dst, "}"]
        elif member == "sector":
            body += self._load("kt_pos", "request.__sector", rq, h)
            if self.cls == "completion":
                body.append("%s = kt_pos;" % dst)
            else:
                # Since Linux commit 0803de78049f ("blktrace: Show requests
                # without sector") (v5.10): a request whose sector was never
                # set (a flush) records 0.
                body += self._load("kt_opf", "request.cmd_flags", rq, h)
                body.append("%s = (%s || kt_pos == (u64)-1) ? 0 : kt_pos;"
                            % (dst, self._passthrough("kt_opf")))
        elif member == "nr_sector":
            if self.cls == "completion":
                body.append("%s = (u32)ctx->args[%d] >> 9;" % (dst, self.nr_bytes_arg))
            else:
                body += self._load("kt_len", "request.__data_len", rq, h)
                body += self._load("kt_opf", "request.cmd_flags", rq, h)
                body.append("%s = %s ? 0 : kt_len >> 9;" % (dst, self._passthrough("kt_opf")))
        elif member == "bytes":
            body += self._load("kt_len", "request.__data_len", rq, h)
            body.append("%s = kt_len;" % dst)
        elif member == "rwbs":
            length = size - 1
            body += self._load("kt_opf", "request.cmd_flags", rq, h)
            body += self._rwbs("kt_opf", length)
            body.append("__builtin_memcpy(%s, &kt_rwbs, 8);" % dst)
            if length > 8:
                body.append("__builtin_memcpy((char *)%s + 8, &kt_rwbs2, %d);"
                            % (dst, length - 8))
        elif member == "comm":
            body.append("bpf_get_current_comm(%s, sizeof(%s));" % (dst, dst))
        return ["{"] + ["    " + l for l in body] + ["}"]

    def _passthrough(self, opf):
        # blk_rq_is_passthrough(): the driver-private operations
        ops = self.layout.ops
        return "((%s & %d) == %d || (%s & %d) == %d)" % (
            opf, self.layout.op_mask, ops["REQ_OP_DRV_IN"],
            opf, self.layout.op_mask, ops["REQ_OP_DRV_OUT"])

    def _rwbs(self, opf, length):
        """blk_fill_rwbs() of a kernel whose rwbs is `length` bytes, into
        u64 kt_rwbs (letters 0-7) and kt_rwbs2 (8-), letter n in byte n
        of their memory (shifts, not indexed stores: older verifiers refuse
        a stack store at a variable offset).  At most length - 1 letters:
        a NUL always ends it."""
        lay = self.layout
        out = ["u64 kt_rwbs = 0, kt_rwbs2 = 0;", "u32 kt_n = 0;",
               "u32 kt_op = %s & %d;" % (opf, lay.op_mask)]

        def put(letters, indent=""):
            lines = []
            for c in letters:
                lines += [indent + "if (kt_n < 8)",
                          indent + "    kt_rwbs |= (u64)'%s' << KT_BYTE_SHIFT(kt_n);" % c,
                          indent + "else if (kt_n < %d)" % (length - 1),
                          indent + "    kt_rwbs2 |= (u64)'%s' << KT_BYTE_SHIFT(kt_n - 8);" % c,
                          indent + "kt_n++;"]
            return lines
        out.append("if (%s & (1U << %d)) {" % (opf, lay.flags["__REQ_PREFLUSH"]))
        out += put("F", "    ") + ["}"]
        ops = list(_OP_LETTERS) + (list(_ZONE_LETTERS) if length >= 10 else [])
        first = True
        for op, letters in ops:
            if op not in lay.ops:
                continue
            out.append("%sif (kt_op == %d) {" % ("" if first else "} else ", lay.ops[op]))
            out += put(letters, "    ")
            first = False
        out += ["} else {"] + put("N", "    ") + ["}"]
        flags = list(_FLAG_LETTERS) + ([_ATOMIC_LETTER] if length >= 9 else [])
        for flag, letter in flags:
            if flag in lay.flags:
                out.append("if (%s & (1U << %d)) {" % (opf, lay.flags[flag]))
                out += put(letter, "    ") + ["}"]
        return out


def reads_for(tracepoints, load=None):
    """{tracepoint: Reads or reason (str)} for the block tracepoints among
    `tracepoints`; BTF is loaded only when one is.  load: () -> Btf."""
    names = [t for t in tracepoints if supported(t)]
    if not names:
        return {}
    try:
        b = (load or kbtf.Btf.load)()
    except (OSError, kbtf.BtfError) as e:
        why = "no kernel BTF (%s)" % (e.strerror if isinstance(e, OSError) and e.strerror
                                      else e)
        return dict((n, why) for n in names)
    try:
        lay = layout(b)
        return dict((n, Reads.build(b, n, lay)) for n in names)
    except kbtf.BtfError as e:
        return dict((n, "kernel BTF unreadable: %s" % e) for n in names)
