"""Work-arounds for defects of the distribution's bcc, applied once to the
bcc module this process loaded.

uprobe ref_ctr_offset (iovisor/bcc#5236): libbcc's C function is
bpf_attach_uprobe(progfd, type, ev_name, path, offset, pid, ref_ctr_offset)
since bcc 0.17, but bcc's Python binding declares and calls it with six
arguments, so the seventh is whatever a register holds.  The kernel then
sees a random reference-counter offset: the attach fails outright when it is
not 2-byte aligned, and when it merely differs from another uprobe's at the
same address (ours on the other backend, perf's, bpftrace's) that other
probe cannot be enabled ("ref_ctr_offset mismatch" in the kernel log).  We
call the C function with the seventh argument 0, as a plain uprobe wants.
Passing it to an older libbcc that takes six is harmless: in the C calling
conventions of every architecture bcc supports, the caller owns its
arguments and a callee ignores one it does not declare.
"""

import ctypes

_ATTACH_UPROBE = "bpf_attach_uprobe"


def apply(bcc_module):
    """Apply every fix that this bcc needs; returns the names applied."""
    applied = []
    lib = getattr(bcc_module, "lib", None)
    if lib is not None and _fix_attach_uprobe(lib):
        applied.append(_ATTACH_UPROBE)
    return applied


def _fix_attach_uprobe(lib):
    declared = getattr(getattr(lib, _ATTACH_UPROBE, None), "argtypes", None)
    if declared is None or len(declared) != 6:
        return False        # already ours, fixed upstream, or not a ctypes binding
    try:
        full = lib[_ATTACH_UPROBE]          # a fresh pointer to the same function
    except (AttributeError, TypeError):
        return False
    full.restype = ctypes.c_int
    full.argtypes = list(declared) + [ctypes.c_uint32]

    def bpf_attach_uprobe(progfd, attach_type, ev_name, binary_path, offset, pid,
                          ref_ctr_offset=0):
        return full(progfd, attach_type, ev_name, binary_path, offset, pid, ref_ctr_offset)

    bpf_attach_uprobe.argtypes = full.argtypes
    setattr(lib, _ATTACH_UPROBE, bpf_attach_uprobe)
    return True
