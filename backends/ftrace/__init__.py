"""The ftrace backend: tracefs instances, user-space aggregation.

Registered through the `kerntrace_backends` hook as a LazyBackend: its
planner, decoders and sessions are imported only when a run probes or opens
it, so a run on the eBPF backend (and `kerntrace list`) does not pay for
them.  Removing a killed run's leftovers, which every run does, imports only
what that needs (stale.py)."""

from kerntrace.core.backend import LazyBackend
from kerntrace.core.hookspecs import hookimpl

NAME = "ftrace"
# After ebpf (10): ftrace runs where eBPF cannot.
PREFERENCE = 20
REPLAYS = "a kerntrace recording or an ftrace 'trace' text file"
RECORDS = "trace text with the format files of its events"


def _load():
    from .backend import FtraceBackend
    return FtraceBackend()


def _cleanup_stale(host, stderr=None, problems=None, notes=None):
    loc = host.tracefs()
    if loc is None:
        return []
    from .stale import cleanup
    return cleanup(loc.path, stderr=stderr, problems=problems, notes=notes)


@hookimpl
def kerntrace_backends():
    return [LazyBackend(NAME, PREFERENCE, _load, cleanup_stale=_cleanup_stale,
                        replays=REPLAYS, records=RECORDS)]
