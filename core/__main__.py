"""`python -m kerntrace.core [--no-plugins] <command> [args]`: the same as the
`kerntrace` console script."""

from .commands import kerntrace

kerntrace()
