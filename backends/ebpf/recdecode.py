"""Records from the perf/ring buffer, decoded in batches.

The buffer's callback only keeps each record's bytes (one C call per
record); collect() turns the batch into Records with one generated
function per program: a precompiled struct unpacks each record straight
into the fields' dict, in the layout's member order, with none of the
per-record calls and intermediate dicts of Layout.decode (which stays
the reference: tests compare the two for every tool's record layout).

    compile_decoder(layout, named=None) -> decode(raws) -> (records, short)
        raws: bytes of each record; records: results.Record in order;
        short: how many were shorter than the layout (lost)
        named(fields) -> fields: applied to each record's fields when
        given (event index -> name, kernel stack id -> names)
"""

from kerntrace.core import results

from .layout import STRING

TS_MEMBER = "kt_ts"


def compile_decoder(layout, named=None):
    ns = {"_unpack": layout._struct.unpack_from, "_Record": results.Record,
          "_named": named, "_SIZE": layout.size}
    values = []
    items = []
    ts = None
    for i, m in enumerate(layout.members):
        v = "v%d" % i
        values.append(v)
        if m.name == TS_MEMBER:
            ts = v
            continue
        ns["_n%d" % i] = m.name
        if m.kind == STRING:
            items.append("_n%d: %s.split(b'\\0', 1)[0].decode('utf-8', 'replace')" % (i, v))
        else:
            items.append("_n%d: %s" % (i, v))
    if ts is None:
        raise ValueError("a record layout needs its %s member" % TS_MEMBER)
    fields = "{%s}" % ", ".join(items)
    if named is not None:
        fields = "_named(%s)" % fields
    lines = ["def decode(raws):",
             "    out = []",
             "    append = out.append",
             "    short = 0",
             "    for raw in raws:",
             "        if len(raw) < _SIZE:",
             "            short += 1",
             "            continue",
             "        %s, = _unpack(raw)" % ", ".join(values) if len(values) == 1 else
             "        %s = _unpack(raw)" % ", ".join(values),
             "        append(_Record(%s, %s))" % (ts, fields),
             "    return out, short"]
    exec(compile("\n".join(lines) + "\n", "<kerntrace record decoder>", "exec"), ns)
    return ns["decode"]
