"""A cache of compiled BPF objects, so an unchanged program on an unchanged
kernel is not compiled again.

bcc compiles C with clang and LLVM inside libbcc: most of a start's time
and memory (and the import of bcc itself, libLLVM and libclang-cpp).  What
comes out for a program of maps and tracepoint functions is small: each
function's instructions and each map's definition.  bcc's Python API has
no loader for a compiled object, but its module exposes both
(bpf_function_start/size, bpf_table_*), and the instructions name maps only
by the fds bcc created (ld_imm64 with BPF_PSEUDO_MAP_FD).  So an entry is
those instructions with the map references turned into map indexes;
loadobj.py creates the maps and loads the programs with the bpf() system
call.  Only programs loadobj can run entirely are stored (cacheable()).

The key is a SHA-256 over everything the compiled bytes depend on:
  - the program text;
  - the kernel: release, version string (build), machine, its BTF
    (/sys/kernel/btf/vmlinux, hashed: struct layouts), the possible CPUs;
  - the format files of the tracepoints the program reads (bcc builds the
    tracepoint structs from them);
  - the kernel headers bcc compiles with (where, which release, the stat
    identity of their config files) and every BCC_* environment variable;
  - the bcc package (its version file).
An entry also records the stat identity (device, inode, size, mtime) of
libbcc and the LLVM/clang libraries that compiled it, and is used only if
they are unchanged (an upgraded LLVM may compile differently).

Safety (the cache is written and read as root): the directory is created
0700 and used only if it is a real directory (never a symlink) owned by
this user and writable by no one else, opened component by component with
O_NOFOLLOW; files are opened relative to it with O_NOFOLLOW, must be
regular, ours and not writable by others, are bounded in size, carry a
digest of their contents and are written to a temporary name and renamed.
Anything unexpected is a miss: the program is compiled as without a cache.
"""

import errno
import os
import platform
import stat

from kerntrace.core.tracefs import read_text

FORMAT = "kerntrace-bpf-object-1"


def _sha256(data=b""):
    # Imported when a key is made: hashlib loads libcrypto (about 4 MB),
    # which a run without the cache (the ftrace backend's) must not pay.
    import hashlib
    return hashlib.sha256(data)

CACHE_ENV = "KERNTRACE_BPF_CACHE"      # a directory, or "off"
ROOT_DIR = "/var/cache/kerntrace/bpf"
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
CPU_POSSIBLE = "/sys/devices/system/cpu/possible"
MAX_ENTRY_BYTES = 4 * 1024 * 1024
# Entries kept: a write beyond this removes the least recently used (each
# -d device or filter value is a program text of its own).
MAX_ENTRIES = 200
# A temporary file this old is a write that died half way.
STALE_TMP_S = 3600
# Map types loadobj creates with the plain BPF_MAP_CREATE attributes bcc
# gives them (include/uapi/linux/bpf.h): hash, array, percpu hash, percpu array.
PLAIN_MAP_TYPES = (1, 2, 5, 6)
# Program types loadobj attaches: tracepoint, raw tracepoint.
ATTACHABLE = {"tracepoint": 5, "raw_tracepoint": 17}


# -- where ---------------------------------------------------------------------
def directory(environ=None):
    """The cache directory to use, or None (no cache): $KERNTRACE_BPF_CACHE
    ("off" for none), else ROOT_DIR for root.  Others have no cache: a
    program whose maps and instructions a user could rewrite must not be
    loaded by someone else."""
    env = os.environ if environ is None else environ
    value = env.get(CACHE_ENV)
    if value:
        return None if value == "off" else value
    return ROOT_DIR if os.geteuid() == 0 else None


def _safe_dir_fd(fd, owner):
    st = os.fstat(fd)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == owner and not st.st_mode & 0o022


def open_directory(path, create=True):
    """An fd of directory `path`, opened one component at a time without
    following symlinks; the last components (those we create) must be
    ours and writable only by us, those above it owned by root or us and
    writable by no group or others unless sticky (/tmp).  None when unsafe or
    impossible."""
    if not path or not os.path.isabs(path):
        return None
    owner = os.geteuid()
    parts = [p for p in path.split("/") if p]
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open("/", flags)
    except OSError:
        return None
    try:
        for i, name in enumerate(parts):
            if name in (".", ".."):
                return None
            last = i == len(parts) - 1
            try:
                nfd = os.open(name, flags, dir_fd=fd)
            except OSError as e:
                if e.errno != errno.ENOENT or not create:
                    return None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except OSError as e2:
                    if e2.errno != errno.EEXIST:
                        return None
                nfd = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = nfd
            st = os.fstat(fd)
            if last:
                if not _safe_dir_fd(fd, owner):
                    return None
            elif st.st_uid not in (0, owner) or (st.st_mode & 0o022 and
                                                   not st.st_mode & stat.S_ISVTX):
                # (others could rename what is below it: only a sticky
                # directory like /tmp prevents that)
                return None
        out, fd = fd, None
        return out
    except OSError:
        return None
    finally:
        if fd is not None:
            os.close(fd)


# -- the key ---------------------------------------------------------------------
def _file_digest(path):
    h = _sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 18), b""):   # not 5 MB of BTF at once
                h.update(chunk)
    except (IOError, OSError):
        return None
    return h.hexdigest()


def _stat_identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


_kernel = []


def kernel_identity():
    """What the kernel's build is, as the compiled bytes depend on it (read
    once per process: doctor checks every tool)."""
    if not _kernel:
        u = platform.uname()
        _kernel.append({"release": u.release, "version": u.version, "machine": u.machine,
                        "btf": _file_digest(BTF_VMLINUX), "cpus": read_text(CPU_POSSIBLE)})
    return dict(_kernel[0])


def headers_identity(headers_info, environ=None):
    env = os.environ if environ is None else environ
    ident = {"path": headers_info.path, "source": headers_info.source,
             "version": headers_info.version,
             "env": sorted((k, v) for k, v in env.items() if k.startswith("BCC_"))}
    if headers_info.path:
        files = ([headers_info.path] if headers_info.source == "kheaders" else
                 [os.path.join(headers_info.path, *p.split("/")) for p in (
                     "include/linux/kconfig.h", "include/generated/autoconf.h",
                     "include/generated/utsrelease.h", "include/config/auto.conf")])
        ident["files"] = [_stat_identity(f) for f in files]
    return ident


def tracepoint_formats(tracefs_path, tracepoints):
    """{"cat:name": format text} of the tracepoints a program reads."""
    out = {}
    for cat, name in sorted(set(tracepoints)):
        text = read_text(os.path.join(tracefs_path, "events", cat, name, "format")) \
            if tracefs_path else None
        out["%s:%s" % (cat, name)] = text
    return out


def key(text, kernel, headers, formats, bcc_package):
    """The cache key (hex) of program `text` compiled with all the rest."""
    import json     # (not imported by runs that never make a key)
    material = json.dumps({"format": FORMAT, "text": text, "kernel": kernel,
                           "headers": headers, "formats": formats, "bcc": bcc_package},
                          sort_keys=True)
    return _sha256(material.encode()).hexdigest()


def bcc_package_identity(pkg_dir):
    """The bcc package's version file and stat identity of its loader."""
    if not pkg_dir:
        return None
    return {"version": read_text(os.path.join(pkg_dir, "version.py")),
            "init": _stat_identity(os.path.join(pkg_dir, "__init__.py"))}


# -- entries ---------------------------------------------------------------------
class Entry(object):
    """A compiled object: maps [{name, type, key_size, value_size,
    max_entries, flags}], functions [{name, insns (bytes), relocs [[insn
    index, map index]]}], license, kern_version, and the stat identities
    of the libraries that compiled it."""

    __slots__ = ("maps", "functions", "license", "kern_version", "libraries")

    def __init__(self, maps, functions, license, kern_version, libraries):
        self.maps = maps
        self.functions = functions
        self.license = license
        self.kern_version = kern_version
        self.libraries = libraries

    def libraries_unchanged(self):
        return all(_stat_identity(ident[0]) == ident for ident in self.libraries)

    def to_json(self, cache_key):
        import json
        body = {"format": FORMAT, "key": cache_key, "license": self.license,
                "kern_version": self.kern_version, "libraries": self.libraries,
                "maps": self.maps,
                "functions": [dict(f, insns=f["insns"].hex()) for f in self.functions]}
        text = json.dumps(body, sort_keys=True)
        return json.dumps({"body": body, "sha256": _sha256(text.encode()).hexdigest()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, data, cache_key):
        """The Entry in `data`, or None when it is not exactly what we wrote
        for this key (a partial write, another format, tampering)."""
        import json
        try:
            outer = json.loads(data.decode("utf-8"))
            body = outer["body"]
            text = json.dumps(body, sort_keys=True)
            if _sha256(text.encode()).hexdigest() != outer["sha256"]:
                return None
            if body["format"] != FORMAT or body["key"] != cache_key:
                return None
            maps = []
            for m in body["maps"]:
                m = dict((k, m[k]) for k in ("name", "type", "key_size", "value_size",
                                             "max_entries", "flags"))
                if not (isinstance(m["name"], str) and all(
                        isinstance(m[k], int) and not isinstance(m[k], bool) and m[k] >= 0
                        for k in m if k != "name")) or m["type"] not in PLAIN_MAP_TYPES:
                    return None
                maps.append(m)
            functions = []
            for f in body["functions"]:
                insns = bytes.fromhex(f["insns"])
                if not insns or len(insns) % 8 or f["kind"] not in ATTACHABLE:
                    return None
                relocs = [[int(i), int(m)] for i, m in f["relocs"]]
                if any(not 0 <= i < len(insns) // 8 - 1 or not 0 <= m < len(maps)
                       for i, m in relocs):
                    return None
                functions.append({"name": str(f["name"]), "kind": f["kind"],
                                  "insns": insns, "relocs": relocs})
            libraries = [list(l) for l in body["libraries"]]
            return cls(maps, functions, str(body["license"]), int(body["kern_version"]),
                       libraries)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            return None


def _file_name(cache_key):
    return "%s.json" % cache_key


def read(cache_dir, cache_key):
    """The Entry stored for `cache_key`, or None (a miss)."""
    dfd = open_directory(cache_dir, create=False)
    if dfd is None:
        return None
    try:
        try:
            fd = os.open(_file_name(cache_key), os.O_RDONLY | os.O_NOFOLLOW |
                         getattr(os, "O_CLOEXEC", 0), dir_fd=dfd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                    or st.st_mode & 0o022 or st.st_size > MAX_ENTRY_BYTES):
                return None
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            try:
                os.utime(fd)        # recently used: kept by prune()
            except OSError:
                pass
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
    entry = Entry.from_json(b"".join(chunks), cache_key)
    if entry is None or not entry.libraries_unchanged():
        return None
    return entry


def write(cache_dir, cache_key, entry):
    """Store `entry`; True when stored.  Never raises for I/O problems."""
    dfd = open_directory(cache_dir, create=True)
    if dfd is None:
        return False
    tmp = "tmp.%d.%s" % (os.getpid(), os.urandom(6).hex())
    try:
        data = entry.to_json(cache_key).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                     getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, _file_name(cache_key), src_dir_fd=dfd, dst_dir_fd=dfd)
        prune(dfd)
        return True
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        return False
    finally:
        os.close(dfd)


def prune(dfd, keep=MAX_ENTRIES, now=None):
    """Remove the least recently used entries beyond `keep`, and temporary
    files of writes that died, in the directory open as `dfd`."""
    import time
    now = time.time() if now is None else now
    entries = []
    try:
        names = os.listdir(dfd)
    except OSError:
        return
    for name in names:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            continue
        if name.startswith("tmp.") and now - st.st_mtime > STALE_TMP_S:
            _unlink(name, dfd)
        elif name.endswith(".json"):
            entries.append((st.st_mtime, name))
    entries.sort(reverse=True)
    for _mtime, name in entries[keep:]:
        _unlink(name, dfd)


def _unlink(name, dfd):
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass
