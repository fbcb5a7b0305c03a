"""The ftrace backend: tracefs instances, user-space aggregation.

Registers FtraceBackend through the `kerntrace_backends` hook."""

from kerntrace.core.hookspecs import hookimpl


@hookimpl
def kerntrace_backends():
    from .backend import FtraceBackend
    return [FtraceBackend()]
