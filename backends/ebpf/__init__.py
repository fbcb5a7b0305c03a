"""The eBPF backend (bcc): generated BPF C, aggregation in the kernel.

Registered through the kerntrace_backends hook as a LazyBackend: its code
(the program generator, bcc's finder, the session) is imported only when a
run probes or opens it, so `--backend ftrace`, `kerntrace list` and the
like never pay for it.  Importing it never imports bcc either; bcc is found
(bccfind) only when a capability probe or a session needs it.
"""

from kerntrace.core.backend import LazyBackend
from kerntrace.core.hookspecs import hookimpl

NAME = "ebpf"
# Preferred over ftrace (20) wherever its check() says it can run.
PREFERENCE = 10


def _load():
    from .backend import EbpfBackend
    return EbpfBackend()


def _cleanup_stale(host, stderr=None, problems=None, notes=None):
    from .tracefs_probes import cleanup_stale
    return cleanup_stale(host, stderr=stderr, problems=problems, notes=notes)


@hookimpl
def kerntrace_backends():
    return [LazyBackend(NAME, PREFERENCE, _load, cleanup_stale=_cleanup_stale)]
