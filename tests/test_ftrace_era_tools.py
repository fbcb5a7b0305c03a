"""Every block tool through the ftrace backend on every kernel era of the
corpus (fake tracefs trees, tests/fake_tracefs.py), as a user runs it:
`iosnoop 0.2` on a host whose kernel has recorded a known workload, read
raw (per-CPU trace_pipe_raw pages in that era's binary layout) and as text
(trace_pipe lines in that era's text layout), and `--input` replay of the
same text.  Also what `kerntrace doctor` says about each era.

The workload on disk 202,1 (xvda), with what each era's kernel records:
  dd      4011  read  8 sectors at 2048    2.00 ms
  dd      4011  write 16 sectors at 4096   5.00 ms
  jbd2    245   a flush                    0.70 ms (not on mainline 2.6.32)
  blkid   900   read  8 sectors at 0       0.30 ms (during the flush)
- bytes is 0 for file system requests up to v4.10 (the tools must show
  nr_sector * 512);
- a flush is "FWS" at sector all-ones on both sides on 3.x/4.4, "FF" at
  all-ones on 4.19, and "FF" at sector 0 on issue with all-ones on
  completion since 5.10 (it must neither be lost nor taken for blkid's
  sector-0 read).
"""

import importlib
import io
import json
import os
import re

import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "block"))
import blocktest  # noqa: E402
from fake_tracefs import ERAS as FAKE_ERAS, FakeTracefs, era_host  # noqa: E402
from kerntrace.core import known_formats  # noqa: E402
from kerntrace.backends.ftrace.rawparse import PageBuilder, encode_payload  # noqa: E402

FLUSH_SECTOR = (1 << 64) - 1
# Every module a run may import, imported before any fake file system:
# pyfakefs patches the os module of modules present when it starts.
for _name in ('kerntrace.backends.ebpf.backend', 'kerntrace.backends.ebpf.bccfind', 'kerntrace.backends.ebpf.bccfixes', 'kerntrace.backends.ebpf.bpfobject', 'kerntrace.backends.ebpf.buffers', 'kerntrace.backends.ebpf.cfilters', 'kerntrace.backends.ebpf.codegen', 'kerntrace.backends.ebpf.headers', 'kerntrace.backends.ebpf.layout', 'kerntrace.backends.ebpf.maps', 'kerntrace.backends.ebpf.plan', 'kerntrace.backends.ebpf.probes', 'kerntrace.backends.ebpf.quiet', 'kerntrace.backends.ebpf.session', 'kerntrace.backends.ebpf.sysbpf', 'kerntrace.backends.ebpf.tracefs_probes', 'kerntrace.backends.ftrace.aggregate', 'kerntrace.backends.ftrace.backend', 'kerntrace.backends.ftrace.instance', 'kerntrace.backends.ftrace.kfilter', 'kerntrace.backends.ftrace.lock', 'kerntrace.backends.ftrace.plan', 'kerntrace.backends.ftrace.printfmt', 'kerntrace.backends.ftrace.probes', 'kerntrace.backends.ftrace.rawparse', 'kerntrace.backends.ftrace.replay', 'kerntrace.backends.ftrace.session', 'kerntrace.backends.ftrace.stale', 'kerntrace.backends.ftrace.tasks', 'kerntrace.backends.ftrace.textparse', 'kerntrace.core.backend', 'kerntrace.core.buckets', 'kerntrace.core.cli', 'kerntrace.core.elfsym', 'kerntrace.core.commands', 'kerntrace.core.doctor', 'kerntrace.core.errors', 'kerntrace.core.hookspecs', 'kerntrace.core.host', 'kerntrace.core.model', 'kerntrace.core.output.base', 'kerntrace.core.output.histograms', 'kerntrace.core.output.jsonlines', 'kerntrace.core.output.prometheus', 'kerntrace.core.output.table', 'kerntrace.core.perftools', 'kerntrace.core.api', 'kerntrace.core.pluginhost', 'kerntrace.core.results', 'kerntrace.core.runner', 'kerntrace.core.selector', 'kerntrace.core.stopsignals', 'kerntrace.core.tool', 'kerntrace.core.tracefs', 'kerntrace.plugins.biolatency', 'kerntrace.plugins.biosnoop', 'kerntrace.plugins.bitesize', 'kerntrace.plugins.blockdev', 'kerntrace.plugins.iolatency', 'kerntrace.plugins.iosnoop', 'kerntrace.plugins.tpcount'):
    importlib.import_module(_name)
DEV = (202 << 20) | 1
T0 = 1000 * 1000000000

# fake era -> (bytes recorded on issue, flush (rwbs, issue sector) or None,
#              flag characters in trace text, ioprio token)
ERAS = {
    "2.6.32": (False, None, 0, False),
    "rhel6": (False, ("FWS", FLUSH_SECTOR), 0, False),
    "3.4": (False, ("FWS", FLUSH_SECTOR), 0, False),
    "3.10": (False, ("FWS", FLUSH_SECTOR), 4, False),
    "4.4": (False, ("FWS", FLUSH_SECTOR), 4, False),
    "4.x": (True, ("FF", FLUSH_SECTOR), 4, False),
    "5.10": (True, ("FF", 0), 4, False),
    "5.15": (True, ("FF", 0), 5, False),
    "6.11": (True, ("FF", 0), 5, True),
}

# (comm, pid, rwbs, sector, nr_sector, start us, latency us, start cpu)
IO = [("dd", 4011, "R", 2048, 8, 0, 2000, 0),
      ("dd", 4011, "W", 4096, 16, 10000, 5000, 1),
      ("blkid", 900, "R", 0, 8, 20100, 300, 0)]
FLUSH = ("jbd2/xvda1-8", 245, None, FLUSH_SECTOR, 0, 20000, 700, 1)


def workload(era):
    """(ts ns, cpu, comm, pid, event, fields) in time order, as the era's
    kernel records them."""
    with_bytes, flush, _flags, _prio = ERAS[era]
    ios = list(IO)
    if flush:
        ios.append(FLUSH)
    out = []
    for comm, pid, rwbs, sector, nr, start, lat, cpu in ios:
        issue_sector = sector
        if rwbs is None:
            rwbs, issue_sector = flush
        nbytes = nr * 512 if with_bytes else 0
        out.append((T0 + start * 1000, cpu, comm, pid, "block_rq_issue",
                    dict(dev=DEV, sector=issue_sector, nr_sector=nr, bytes=nbytes, rwbs=rwbs,
                         comm=comm, cmd="")))
        out.append((T0 + (start + lat) * 1000, 1 - cpu, "<idle>", 0, "block_rq_complete",
                    dict(dev=DEV, sector=sector, nr_sector=nr, rwbs=rwbs, cmd="", error=0,
                         errors=0)))
    return sorted(out, key=lambda e: e[0])


def expected_ios(era):
    """(comm, pid, rwbs, sector, bytes, latency ms text) in completion order."""
    ios = list(IO) + ([FLUSH] if ERAS[era][1] else [])
    rows = []
    for comm, pid, rwbs, sector, nr, start, lat, _cpu in ios:
        rwbs = rwbs or ERAS[era][1][0]
        rows.append((start + lat, comm, pid, rwbs, sector, nr * 512, "%.2f" % (lat / 1000.0)))
    return [r[1:] for r in sorted(rows)]


def raw_pages(era, ncpus=2):
    fe = FAKE_ERAS[era].formats_era
    hp = known_formats.HEADER_PAGE[fe]
    pages = {}
    for cpu in range(ncpus):
        pb = PageBuilder(hp)
        for ts, c, comm, pid, event, fields in workload(era):
            if c != cpu:
                continue
            fmt = known_formats.event_format(fe, "block", event)
            assert pb.add(encode_payload(fmt, pid, fields), ts)
        pages["per_cpu/cpu%d/trace_pipe_raw" % cpu] = pb.page() if len(pb) else b""
    return pages


def text_lines(era):
    """trace_pipe text as the era's kernel prints it."""
    _b, _f, flags, prio = ERAS[era]
    lines = []
    for ts, cpu, comm, pid, event, f in workload(era):
        sec, usec = divmod(ts // 1000, 1000000)
        if flags == 0:          # 2.6.32 - 3.4: no flags column
            head = "%16s-%-5d [%03d] %5d.%06d: " % (comm, pid, cpu, sec, usec)
        elif flags == 4:
            head = "%16s-%-5d [%03d] %s %5d.%06d: " % (comm, pid, cpu,
                                                       "d..." if pid else "..s.", sec, usec)
        else:
            head = "%16s-%-7d [%03d] %s %5d.%06d: " % (comm, pid, cpu,
                                                       "d..1." if pid else "..s1.", sec, usec)
        token = " be,0,4" if prio else ""
        if event == "block_rq_issue":
            payload = "%d,%d %s %d () %d + %d%s [%s]" % (202, 1, f["rwbs"], f["bytes"],
                                                         f["sector"], f["nr_sector"], token,
                                                         f["comm"])
        else:
            payload = "%d,%d %s () %d + %d%s [0]" % (202, 1, f["rwbs"], f["sector"],
                                                     f["nr_sector"], token)
        lines.append("%s%s: %s" % (head, event, payload))
    return "".join(l + "\n" for l in lines)


@pytest.fixture
def host_of(fs, monkeypatch):
    """A fake host of an era whose kernel recorded the workload."""
    fs.create_file("/sys/class/block/xvda/dev", contents="202:1\n")
    era_host(fs, monkeypatch, tasks=(("dd", 4011), ("blkid", 900), ("jbd2/xvda1-8", 245)))

    def make(era, path):
        preload = raw_pages(era) if path == "raw" else {"trace_pipe": text_lines(era)}
        return FakeTracefs(fs, era, preload=preload, raw=(path == "raw")).install(monkeypatch)
    return make


def table_rows(out, first_column):
    lines = out.splitlines()
    start = [i for i, l in enumerate(lines) if l.split()[:1] == [first_column]][0]
    return [l.split() for l in lines[start + 1:] if l.strip() and not l.startswith("Ending")]


def bcc_sections(out):
    """{section title: {"low -> high": count}} of bcc-style histograms."""
    sections, cur = {}, None
    for line in out.splitlines():
        if line.startswith("Process Name = ") or line.startswith("disk = "):
            cur = sections.setdefault(line, {})
        elif line.strip() and "->" in line and ":" in line and cur is not None:
            rng, rest = line.split(":", 1)
            n = int(rest.split("|")[0])
            if n:
                cur[" ".join(rng.split())] = n
    return sections


def bcc_histogram(out):
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+) -> (\d+)\s*: (\d+)\s", line)
        if m and int(m.group(3)):
            rows["%s -> %s" % (m.group(1), m.group(2))] = int(m.group(3))
    return rows


def run(tool, argv, era=None, input_file=None):
    if input_file is not None:
        return blocktest.run_tool(tool, ["--input", input_file] + argv)
    return blocktest.run_tool(tool, ["--backend", "ftrace"] + argv)


PATHS = ("raw", "text", "replay")


def set_up_era(host_of, fs, era, path):
    if path == "replay":
        host_of(era, "text")
        fs.create_file("/home/u/saved-%s.trace" % era, contents="# tracer: nop\n#\n"
                       + text_lines(era))
        return "/home/u/saved-%s.trace" % era
    host_of(era, path)
    return None


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_iosnoop_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("iosnoop", ["0.2"], input_file=saved)
    assert rc == 0, err
    rows = table_rows(out, "COMM")
    # a saved trace says nothing of processes (no record-tgid column here)
    want = [[comm, "-" if saved else str(pid), rwbs, "202,1", "-" if sector == FLUSH_SECTOR else str(sector),
             str(nbytes), lat] for comm, pid, rwbs, sector, nbytes, lat in expected_ios(era)]
    assert rows == want


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_biosnoop_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("biosnoop", ["0.2"], input_file=saved)
    assert rc == 0, err
    rows = [r[1:] for r in table_rows(out, "TIME(s)")]
    type_letter = {"R": "R", "W": "W", "FWS": "W", "FF": "F"}
    want = [[comm, "-" if saved else str(pid), "xvda", type_letter[rwbs], "-" if sector == FLUSH_SECTOR else str(sector), str(nbytes), lat]
            for comm, pid, rwbs, sector, nbytes, lat in expected_ios(era)]
    assert rows == want


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_bitesize_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("bitesize", ["0.2", "1"], input_file=saved)
    assert rc == 0, err
    got = bcc_sections(out)
    # dd: 4 KB and 8 KB; blkid 4 KB; the flush carries no data (0 KB)
    assert got["Process Name = dd"] == {"4 -> 7": 1, "8 -> 15": 1}
    assert got["Process Name = blkid"] == {"4 -> 7": 1}
    if ERAS[era][1]:
        assert got["Process Name = jbd2/xvda1-8"] == {"0 -> 1": 1}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_biolatency_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("biolatency", ["0.2", "1"], input_file=saved)
    assert rc == 0, err
    # usecs: 300 -> 256..511, 700 -> 512..1023, 2000 -> 1024..2047, 5000 -> 4096..8191
    want = {"256 -> 511": 1, "1024 -> 2047": 1, "4096 -> 8191": 1}
    if ERAS[era][1]:
        want["512 -> 1023"] = 1
    assert bcc_histogram(out) == want


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_iolatency_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("iolatency", ["0.2", "1"], input_file=saved)
    assert rc == 0, err
    blocks = blocktest.histogram_blocks(out)
    counts = {}
    for block in blocks:
        for row in block[1:]:
            rng, rest = row.split(":", 1)
            n = int(rest.split("|")[0])
            if n:
                counts[" ".join(rng.split())] = counts.get(" ".join(rng.split()), 0) + n
    # ms rows: 0.3 and 0.7 in 0 -> 1, 2.0 in 1 -> 2, 5.0 in 4 -> 8
    want = {"0 -> 1": 2 if ERAS[era][1] else 1, "1 -> 2": 1, "4 -> 8": 1}
    assert counts == want


# ---------------------------------------------------------------------------
# doctor: what each era can do, and that the ftrace backend runs the tools
@pytest.mark.parametrize("era", sorted(ERAS))
def test_doctor_every_era(host_of, era):
    t = host_of(era, "raw")
    from kerntrace.core.pluginhost import PluginHost
    from kerntrace.core import doctor as doctor_mod
    out, err = io.StringIO(), io.StringIO()
    assert doctor_mod.doctor(PluginHost(), ["--json"], out, err) == 0
    report = json.loads(out.getvalue())
    caps = {c["name"]: c for c in report["capabilities"] if c["backend"] == "ftrace"}
    e = t.era
    assert caps["tracefs"]["ok"] and t.root in caps["tracefs"]["detail"]
    assert caps["instances"]["ok"] == e.instances
    assert caps["kprobe_events"]["ok"] == e.kprobes
    assert caps["uprobe_events"]["ok"] == e.uprobes
    assert caps["trace_pipe_raw"]["ok"]
    tools = {x["tool"]: x for x in report["tools"]}
    for name in ("iosnoop", "biosnoop", "bitesize", "biolatency", "iolatency"):
        assert tools[name]["verdicts"]["ftrace"]["ok"], tools[name]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("era", sorted(ERAS))
def test_tpcount_every_era(host_of, fs, era, path):
    saved = set_up_era(host_of, fs, era, path)
    rc, out, err = run("tpcount", ["-i", "0.2", "-c", "1", "block:block_rq_issue",
                                   "block:block_rq_complete"], input_file=saved)
    assert rc == 0, err
    n = len(expected_ios(era))
    rows = dict((l.split()[0], int(l.split()[1])) for l in out.splitlines()
                if l.startswith("block:"))
    assert rows == {"block:block_rq_issue": n, "block:block_rq_complete": n}
