"""The eBPF backend (bcc): generated BPF C, aggregation in the kernel.

Registered through the kerntrace_backends hook.  Importing this package
never imports bcc; bcc is found (bccfind) only when a capability probe or a
session needs it.
"""

from kerntrace.core.hookspecs import hookimpl

from .backend import EbpfBackend


@hookimpl
def kerntrace_backends():
    return [EbpfBackend()]
