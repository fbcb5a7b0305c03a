"""The cache of compiled BPF objects (backends/ebpf/objcache.py): what its
key covers, that any damaged or unsafe entry is a miss (the program is then
compiled), and that it never follows a symlink nor trusts a directory or
file someone else could write."""

import json
import os
import stat

import pytest

from kerntrace.backends.ebpf import objcache
from kerntrace.backends.ebpf.headers import HeadersInfo

KERNEL = {"release": "6.18.0", "version": "#1 SMP", "machine": "x86_64", "btf": "ab" * 32,
          "cpus": "0-1\n"}
HEADERS = {"path": "/usr/src/linux-headers-6.18.0", "source": "modules",
           "version": "6.18.0", "env": []}
FORMATS = {"block:block_rq_issue": "name: block_rq_issue\nID: 1\n"}
BCC = {"version": "__version__ = '0.26.0'\n", "init": ["/x/bcc/__init__.py", 1, 2, 3, 4]}
TEXT = "int kt_ev0_start(void *ctx) { return 0; }\n"


def base_key(**changes):
    args = dict(text=TEXT, kernel=KERNEL, headers=HEADERS, formats=FORMATS, bcc_package=BCC)
    args.update(changes)
    return objcache.key(**args)


def entry(libraries=()):
    insns = bytes.fromhex("18110000070000000000000000000000" "b700000000000000"
                          "9500000000000000")
    return objcache.Entry(
        maps=[{"name": "kt_stats", "type": 6, "key_size": 4, "value_size": 8,
               "max_entries": 3, "flags": 0}],
        functions=[{"name": "kt_ev0_start", "kind": "tracepoint", "insns": insns,
                    "relocs": [[0, 0]]}],
        license="GPL", kern_version=0, libraries=list(libraries))


@pytest.fixture
def cache_dir(tmp_path):
    d = tmp_path / "cache"
    return str(d)


def test_the_key_changes_with_everything_the_compile_depends_on():
    k = base_key()
    assert k == base_key()
    others = [
        base_key(text=TEXT + " "),
        base_key(kernel=dict(KERNEL, release="6.18.1")),
        base_key(kernel=dict(KERNEL, version="#2 SMP")),
        base_key(kernel=dict(KERNEL, btf="cd" * 32)),
        base_key(kernel=dict(KERNEL, cpus="0-3\n")),
        base_key(headers=dict(HEADERS, version="6.1.0")),
        base_key(headers=dict(HEADERS, env=[("BCC_KERNEL_SOURCE", "/elsewhere")])),
        base_key(formats={"block:block_rq_issue": "name: block_rq_issue\nID: 2\n"}),
        base_key(bcc_package=dict(BCC, version="__version__ = '0.29.1'\n")),
    ]
    assert len(set(others + [k])) == len(others) + 1


def test_kernel_and_headers_identity_are_read_from_the_host(tmp_path, monkeypatch):
    ident = objcache.kernel_identity()
    assert ident["release"] == os.uname().release and ident["version"] == os.uname().version
    (tmp_path / "include" / "linux").mkdir(parents=True)
    kconfig = tmp_path / "include" / "linux" / "kconfig.h"
    kconfig.write_text("/* a */\n")
    info = HeadersInfo(str(tmp_path), "6.18.0", "6.18.0", "modules")
    before = objcache.headers_identity(info, environ={})
    kconfig.write_text("/* another tree */\n")
    assert objcache.headers_identity(info, environ={}) != before
    assert objcache.headers_identity(info, environ={"BCC_KERNEL_SOURCE": "/x"}) != \
        objcache.headers_identity(info, environ={})


def test_an_entry_round_trips_with_mode_0600_in_a_0700_directory(cache_dir):
    k = base_key()
    assert objcache.read(cache_dir, k) is None
    assert objcache.write(cache_dir, k, entry())
    got = objcache.read(cache_dir, k)
    assert got is not None and got.functions[0]["insns"] == entry().functions[0]["insns"]
    assert got.maps == entry().maps and got.functions[0]["relocs"] == [[0, 0]]
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    files = os.listdir(cache_dir)
    assert files == [k + ".json"]
    assert stat.S_IMODE(os.stat(os.path.join(cache_dir, files[0])).st_mode) == 0o600
    # Another key (another program or kernel) does not find it.
    assert objcache.read(cache_dir, base_key(text="other")) is None


@pytest.mark.parametrize("damage", [
    lambda data: data[:len(data) // 2],                       # a partial write
    lambda data: b"not json at all",
    lambda data: data.replace(b"b700", b"b701"),              # instructions changed
    lambda data: b"",
])
def test_a_damaged_entry_is_a_miss(cache_dir, damage):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    path = os.path.join(cache_dir, k + ".json")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(damage(data))
    assert objcache.read(cache_dir, k) is None
    # The next compile's write replaces it.
    assert objcache.write(cache_dir, k, entry()) and objcache.read(cache_dir, k) is not None


def test_an_entry_under_another_key_or_with_bad_relocations_is_a_miss(cache_dir):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    os.rename(os.path.join(cache_dir, k + ".json"),
              os.path.join(cache_dir, base_key(text="x") + ".json"))
    assert objcache.read(cache_dir, base_key(text="x")) is None
    e = entry()
    e.functions[0]["relocs"] = [[0, 5]]                      # no map 5
    objcache.write(cache_dir, k, e)
    assert objcache.read(cache_dir, k) is None


def test_an_entry_is_a_miss_once_the_compiling_libraries_change(cache_dir, tmp_path):
    lib = tmp_path / "libLLVM-14.so.1"
    lib.write_bytes(b"llvm 14.0.6")
    k = base_key()
    objcache.write(cache_dir, k, entry([objcache._stat_identity(str(lib))]))
    assert objcache.read(cache_dir, k) is not None
    lib.write_bytes(b"llvm 14.0.7 rebuilt")
    assert objcache.read(cache_dir, k) is None


def test_a_world_or_group_writable_directory_is_not_used(cache_dir):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    for mode in (0o777, 0o770, 0o702):
        os.chmod(cache_dir, mode)
        assert objcache.read(cache_dir, k) is None
        assert not objcache.write(cache_dir, k, entry())
    os.chmod(cache_dir, 0o700)
    assert objcache.read(cache_dir, k) is not None


def test_a_directory_owned_by_someone_else_is_not_used(cache_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    k = base_key()
    objcache.write(cache_dir, k, entry())
    os.chown(cache_dir, 65534, 65534)
    assert objcache.read(cache_dir, k) is None and not objcache.write(cache_dir, k, entry())


def test_a_symlinked_directory_is_not_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert not objcache.write(str(link), base_key(), entry())
    assert os.listdir(str(real)) == []
    # ... nor a symlink higher up the path.
    assert not objcache.write(str(link / "sub"), base_key(), entry())
    assert os.listdir(str(real)) == []


def test_a_symlinked_or_foreign_entry_is_not_read(cache_dir, tmp_path):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    path = os.path.join(cache_dir, k + ".json")
    elsewhere = tmp_path / "elsewhere.json"
    os.rename(path, str(elsewhere))
    os.symlink(str(elsewhere), path)
    assert objcache.read(cache_dir, k) is None
    os.unlink(path)
    os.rename(str(elsewhere), path)
    os.chmod(path, 0o666)
    assert objcache.read(cache_dir, k) is None
    os.chmod(path, 0o600)
    assert objcache.read(cache_dir, k) is not None
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        assert objcache.read(cache_dir, k) is None


def test_writing_never_goes_through_a_planted_symlink(cache_dir, tmp_path):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    path = os.path.join(cache_dir, k + ".json")
    os.unlink(path)
    os.symlink(str(target), path)
    assert objcache.write(cache_dir, k, entry())      # replaces the link itself
    assert target.read_text() == "keep me\n"
    assert not os.path.islink(path) and objcache.read(cache_dir, k) is not None


def test_where_the_cache_is():
    assert objcache.directory({"KERNTRACE_BPF_CACHE": "off"}) is None
    assert objcache.directory({"KERNTRACE_BPF_CACHE": "/some/dir"}) == "/some/dir"
    assert objcache.directory({}) == (objcache.ROOT_DIR if os.geteuid() == 0 else None)
    assert objcache.open_directory("relative/path") is None


def test_entries_are_json_with_a_digest(cache_dir):
    k = base_key()
    objcache.write(cache_dir, k, entry())
    with open(os.path.join(cache_dir, k + ".json")) as f:
        outer = json.load(f)
    assert outer["body"]["key"] == k and len(outer["sha256"]) == 64


def test_the_least_recently_used_entries_beyond_the_limit_are_removed(cache_dir):
    keys = [base_key(text="prog %d" % i) for i in range(5)]
    for i, k in enumerate(keys):
        objcache.write(cache_dir, k, entry())
        os.utime(os.path.join(cache_dir, k + ".json"), (1000 + i, 1000 + i))
    objcache.read(cache_dir, keys[0])                 # used now: the newest
    with open(os.path.join(cache_dir, "tmp.1.dead"), "w") as f:
        f.write("half")
    os.utime(os.path.join(cache_dir, "tmp.1.dead"), (1000, 1000))
    fd = objcache.open_directory(cache_dir)
    try:
        objcache.prune(fd, keep=3)
    finally:
        os.close(fd)
    assert sorted(os.listdir(cache_dir)) == sorted(k + ".json" for k in
                                                   (keys[0], keys[3], keys[4]))


def test_a_directory_above_it_that_others_may_write_is_not_trusted(tmp_path):
    above = tmp_path / "shared"
    above.mkdir()
    os.chmod(str(above), 0o777)           # anyone could swap what is inside
    assert not objcache.write(str(above / "cache"), base_key(), entry())
    os.chmod(str(above), 0o1777)          # sticky, like /tmp: they cannot
    assert objcache.write(str(above / "cache"), base_key(), entry())
