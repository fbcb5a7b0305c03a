"""kerntrace merge: the --json outputs of two hosts add up to the histogram
of their union; mismatched files are refused with one line.  The "hosts"
are replays of real traces (tests/data/traces) of different workloads."""

import json
import os

import jsonschema
import pytest

from clirun import run
from kerntrace.core.output.jsonlines import schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "tests", "data", "traces")
BLOCK_618 = os.path.join(TRACES, "replay-block-6.18.txt")
BLOCK_316 = os.path.join(TRACES, "replay-block-3.16.txt")


def json_of(tmp_path, name, argv):
    rc, out, err = run(argv + ["--json"])
    assert rc == 0, err
    path = tmp_path / name
    path.write_text(out)
    return str(path)


def objects(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summed_histogram(path):
    """{(low, high): count}, sum, count over every interval of a file."""
    buckets, total, count = {}, 0, 0
    with open(path) as f:
        for obj in objects(f.read()):
            for h in obj.get("histograms", ()):
                for b in h["buckets"]:
                    if b["count"]:
                        buckets[(b["low"], b["high"])] = buckets.get((b["low"], b["high"]),
                                                                     0) + b["count"]
                total += h["sum"]
                count += h["count"]
    return buckets, total, count


def merged(args):
    rc, out, err = run(["merge"] + args)
    assert rc == 0, err
    return out, err


def split_by_disk(tmp_path):
    """The 6.18 trace as two hosts' traces, one per disk, and their union:
    the header, then the event lines of disk 254,0 / of disk 8,16 / of
    both (the trace's lost-events line left out of all three, so the union
    is exactly the two)."""
    with open(BLOCK_618) as f:
        lines = f.read().splitlines(True)
    header = [line for line in lines if line.startswith("#")]
    events = [line for line in lines if not line.startswith("#") and "LOST" not in line]
    paths = []
    for name, keep in (("a.txt", ": 254,0 "), ("b.txt", ": 8,16 "), ("union.txt", ": ")):
        path = tmp_path / name
        path.write_text("".join(header + [line for line in events if keep in line]))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("tool", ["iolatency", "biolatency"])
def test_two_hosts_merge_to_the_histogram_of_their_union(tmp_path, tool):
    traces = split_by_disk(tmp_path)
    a, b, union = [json_of(tmp_path, os.path.basename(t) + ".json", [tool, "--input", t])
                   for t in traces]
    out, _ = merged(["--json", a, b])
    (obj,) = objects(out)
    jsonschema.Draft7Validator(schema()).validate(obj)
    (h,) = obj["histograms"]
    want_buckets, want_sum, want_count = summed_histogram(union)
    assert want_count > summed_histogram(a)[2] > 0 and summed_histogram(b)[2] > 0
    assert {(b["low"], b["high"]): b["count"] for b in h["buckets"] if b["count"]} \
        == want_buckets
    assert (h["sum"], h["count"]) == (want_sum, want_count)
    assert obj["tool"] == tool
    # The text is the tool's own format, as the union's merge prints it.
    text, _ = merged([a, b])
    assert text == merged([union])[0]
    header = ">=(ms) .. <(ms)   : I/O      |Distribution" if tool == "iolatency" else \
        "usecs               : count     distribution"
    assert header in text


@pytest.mark.parametrize("options", [["-D"], ["-F"], ["-e"], ["-m", "-D", "-e"]])
def test_merge_prints_with_the_display_options_given_to_it(tmp_path, options):
    """biolatency's -D, -F, -e (and -m, which the files carry anyway) given
    to merge: the merged text is the tool's own text of the union of the
    hosts' traces with those options (per disk "disk = vda", per flags
    "flags = Sync-Write", the average line)."""
    a, b, union = split_by_disk(tmp_path)
    files = [json_of(tmp_path, os.path.basename(t) + ".json", ["biolatency"] + options
                     + ["--input", t]) for t in (a, b)]
    rc, want, err = run(["biolatency"] + options + ["--input", union])
    assert rc == 0, err
    text, _ = merged(options + files)
    assert text == want
    assert text != merged(files)[0]         # the tool's defaults print it otherwise


def test_display_options_the_files_were_not_written_with_are_refused(tmp_path):
    plain = json_of(tmp_path, "plain.json", ["biolatency", "--input", BLOCK_618])
    per_disk = json_of(tmp_path, "disk.json", ["biolatency", "-D", "--input", BLOCK_618])
    for options, files, status, words in (
            (["-D"], [plain], 1, "the files hold histograms in usecs, biolatency -D makes "
                                 "histograms in usecs by dev"),
            (["-m"], [plain], 1, "biolatency -m makes histograms in msecs"),
            (["-F"], [per_disk], 1, "the files hold histograms in usecs by dev"),
            (["-D", "-F"], [per_disk], 2, "can only use -D or -F"),
            (["-Q"], [plain], 2, "unrecognized arguments: -Q")):   # not a display option
        for argv in (options + files, ["--json"] + options + files):
            rc, out, err = run(["merge"] + argv)
            assert rc == status and out == "", (argv, out)
            assert len(err.splitlines()) == 1 and words in err, (argv, err)


def test_per_host_totals_add_up(tmp_path):
    a = json_of(tmp_path, "a.json", ["biolatency", "-D", "--input", BLOCK_618])
    b = json_of(tmp_path, "b.json", ["biolatency", "-D", "--input", BLOCK_316])
    out, _ = merged(["--json", "--per-host", a, b])
    (obj,) = objects(out)
    jsonschema.Draft7Validator(schema()).validate(obj)
    hosts = {h["host"]: h["count"] for h in obj["hosts"]}
    # a replay of a plain trace names no host: the file stands for it
    assert hosts == {a: summed_histogram(a)[2], b: summed_histogram(b)[2]}
    assert sum(h["count"] for h in obj["histograms"]) == sum(hosts.values())
    # keys merge by label: "vda" of either host is one histogram
    assert len({tuple(sorted(h["labels"].items())) for h in obj["histograms"]}) \
        == len(obj["histograms"])
    text, _ = merged(["--per-host", a, b])
    assert "usecs" in text and "HOST" in text
    for host, n in hosts.items():
        assert any(line.split() == [host, str(n)] for line in text.splitlines())


def test_counts_add_up(tmp_path):
    files = [json_of(tmp_path, "%d.json" % i, ["tpcount", "--by", "comm", "block:block_rq_issue",
                                               "--input", trace])
             for i, trace in enumerate((BLOCK_618, BLOCK_316))]
    want = {}
    for path in files:
        with open(path) as f:
            for obj in objects(f.read()):
                for c in obj["counts"]:
                    want[c["labels"]["comm"]] = want.get(c["labels"]["comm"], 0) + c["count"]
    out, _ = merged(["--json"] + files)
    (obj,) = objects(out)
    assert {c["labels"]["comm"]: c["count"] for c in obj["counts"]} == want
    text, _ = merged(files)
    for comm, n in want.items():
        assert any(line.split()[-1:] == [str(n)] and comm in line for line in text.splitlines())


def _edited(tmp_path, path, name, **changes):
    lines = []
    with open(path) as f:
        for obj in objects(f.read()):
            for h in obj.get("histograms", ()):
                h.update(changes)
            lines.append(json.dumps(obj))
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def test_mismatches_are_refused_with_one_line(tmp_path):
    usecs = json_of(tmp_path, "us.json", ["biolatency", "--input", BLOCK_618])
    msecs = json_of(tmp_path, "ms.json", ["biolatency", "-m", "--input", BLOCK_618])
    pow2 = json_of(tmp_path, "io.json", ["iolatency", "--input", BLOCK_618])
    events = json_of(tmp_path, "ev.json", ["biosnoop", "--input", BLOCK_618])
    linear = _edited(tmp_path, usecs, "lin.json", scale="linear", step=10)
    future = tmp_path / "future.json"
    with open(usecs) as f:
        future.write_text(json.dumps(dict(json.loads(f.readline()), schema_version=2)) + "\n")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{\"type\": \"histogram\"\nnot json\n")
    cases = [([usecs, msecs], "unit"), ([usecs, pow2], "tool"), ([usecs, linear], "bucket scale"),
             ([events], "events"), ([usecs, str(future)], "schema version 2"), ([usecs, str(garbage)], "garbage.json:1"),
             ([usecs, str(tmp_path / "missing.json")], "missing.json")]
    for files, words in cases:
        for argv in (files, ["--json"] + files):
            rc, out, err = run(["merge"] + argv)
            assert rc != 0 and out == "", (files, out)
            assert len(err.splitlines()) == 1 and words in err, (files, err)
            assert "Traceback" not in err


@pytest.mark.parametrize("argv", [[], ["--bogus", "x.json"]])
def test_bad_command_line(argv):
    rc, out, err = run(["merge"] + argv)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1


@pytest.mark.live
def test_live_recording_of_two_disks_merges_to_their_union(tmp_path):
    """Two workloads on two loop devices of our own, recorded live once;
    host A's file is the replay of one disk, host B's of the other; their
    merge is the union's (the replay of every disk) histogram of both."""
    import signal
    import kernstate
    import workloads
    from clirun import finish_interrupted, start, wait_for_stderr_line
    reason = kernstate.live_skip_reason()
    if reason:
        pytest.skip(reason)
    rec = str(tmp_path / "two-disks.rec")
    with workloads.loop_device(size_mb=8) as (dev_a, _, _), \
            workloads.loop_device(size_mb=8) as (dev_b, _, _):
        p = start(["record", "-o", rec, "biolatency"])
        wait_for_stderr_line(p, "recording")
        workloads.direct_writes(dev_a, 12)
        workloads.direct_reads(dev_b, 7, bs=16384)
        p.send_signal(signal.SIGINT)
        _, err = finish_interrupted(p)
        assert p.returncode == 0, err
        name_a, name_b = os.path.basename(dev_a), os.path.basename(dev_b)
        a = json_of(tmp_path, "a.json", ["biolatency", "-D", "-d", name_a, "--input", rec])
        b = json_of(tmp_path, "b.json", ["biolatency", "-D", "-d", name_b, "--input", rec])
        union = json_of(tmp_path, "union.json", ["biolatency", "-D", "--input", rec])
    out, _ = merged(["--json", a, b])
    (obj,) = objects(out)
    got = {h["labels"]["dev"]: ({(x["low"], x["high"]): x["count"] for x in h["buckets"]
                                 if x["count"]}, h["sum"], h["count"])
           for h in obj["histograms"]}
    want = {}
    with open(union) as f:
        for o in objects(f.read()):
            for h in o["histograms"]:
                dev = h["labels"]["dev"]
                if dev not in (name_a, name_b):
                    continue        # another process's I/O on another disk
                buckets, total, count = want.setdefault(dev, ({}, [0], [0]))
                for x in h["buckets"]:
                    if x["count"]:
                        buckets[(x["low"], x["high"])] = buckets.get((x["low"], x["high"]),
                                                                     0) + x["count"]
                total[0] += h["sum"]
                count[0] += h["count"]
    want = {dev: (b, t[0], c[0]) for dev, (b, t, c) in want.items()}
    assert got == want
    assert (got[name_a][2], got[name_b][2]) == (12, 7)


def _syscount_file(tmp_path, host, counts):
    """syscount --json of one interval as a host of some architecture
    writes it: {syscall number: (its name there, count)}."""
    obj = {"schema_version": 1, "type": "counts", "tool": "syscount", "backend": "ftrace",
           "host": host, "kernel": "6.1.0", "seq": 0, "interval_start": 100.0,
           "interval_end": 101.0, "lost": 0, "unmatched": 0, "dropped_starts": 0,
           "key_names": ["id"], "seconds": 1.0,
           "counts": [{"key": {"id": nr}, "labels": {"id": name}, "count": n, "rate": float(n)}
                      for nr, (name, n) in sorted(counts.items())]}
    jsonschema.Draft7Validator(schema()).validate(obj)
    path = tmp_path / (host + ".json")
    path.write_text(json.dumps(obj) + "\n")
    return str(path)


def test_keys_merge_by_the_hosts_labels_and_print_through_the_tools_printer(tmp_path):
    # x86_64 and arm64 number read differently (0 and 63): one row "read",
    # named as the hosts named it, whatever this machine's syscall table says.
    x86 = _syscount_file(tmp_path, "x86", {0: ("read", 5), 1: ("write", 2)})
    arm = _syscount_file(tmp_path, "arm", {63: ("read", 4)})
    for files in ([x86, arm], [arm, x86]):
        out, _ = merged(["--json"] + files)
        (obj,) = objects(out)
        assert {c["labels"]["id"]: c["count"] for c in obj["counts"]} == {"read": 9, "write": 2}
        text, err = merged(files)
        rows = {line.split()[0]: line.split()[1] for line in text.splitlines()[2:]
                if line.strip()}
        assert rows == {"read": "9", "write": "2"}, text
    # One number, two names (0 is read on x86_64, io_setup on arm64): the
    # tool's printer, which reads numbers, cannot show it; JSON can.
    arm2 = _syscount_file(tmp_path, "arm2", {0: ("io_setup", 1)})
    rc, out, err = run(["merge", x86, arm2])
    assert rc == 1 and out == "" and len(err.splitlines()) == 1 and "--json" in err
    out, _ = merged(["--json", x86, arm2])
    (obj,) = objects(out)
    assert {c["labels"]["id"]: c["count"] for c in obj["counts"]} == \
        {"read": 5, "write": 2, "io_setup": 1}


def test_a_display_option_with_a_value_before_the_files(tmp_path):
    """syscount -T TOP: "-T 1" is the option and its value, not a file."""
    x86 = _syscount_file(tmp_path, "x86", {0: ("read", 5), 1: ("write", 2)})
    arm = _syscount_file(tmp_path, "arm", {63: ("read", 4)})
    text, _ = merged(["-T", "1", x86, arm])
    rows = [line.split() for line in text.splitlines()[2:] if line.strip()]
    assert rows == [["read", "9"]], text
    text, _ = merged(["--top=2", x86, arm])
    assert [line.split() for line in text.splitlines()[2:] if line.strip()] == \
        [["read", "9"], ["write", "2"]], text


def test_every_declared_display_option_is_one_merge_takes():
    """A tool's display_options name options its command line has: merge's
    parser takes each of them (a typo in a declaration fails here)."""
    from kerntrace.core import merge
    from kerntrace.core.pluginhost import PluginHost
    declared = {name: tool for name, tool in PluginHost(load_third_party=False).tools().items()
                if tool.display_options}
    assert {"biolatency", "syscount", "funccount", "funclatency"} <= set(declared)
    for tool in declared.values():
        p = merge.parser(tool)
        for option in tool.display_options:
            assert option in p._option_string_actions, (tool.name, option)
