"""Everything this plugin uses from kerntrace, imported in this one place.

The rest of the package imports these names from here, so following a
change of kerntrace's module layout (a public API module replacing these
core paths) is an edit to this file only.
"""

from kerntrace.core.cli import tool_main
from kerntrace.core.errors import UsageError
from kerntrace.core.hookspecs import hookimpl
from kerntrace.core.model import (LATENCY, LOG2, STR, Event, Field, Filter, Histogram,
                                  Measurement, Pair, Schedule, Tracepoint)
from kerntrace.core.output.histograms import BccHistogramPrinter
from kerntrace.core.tool import Tool, count_value, seconds_value

__all__ = ["tool_main", "UsageError", "hookimpl", "LATENCY", "LOG2", "STR", "Event", "Field",
           "Filter", "Histogram", "Measurement", "Pair", "Schedule", "Tracepoint",
           "BccHistogramPrinter", "Tool", "count_value", "seconds_value"]
