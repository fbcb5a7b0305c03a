"""Everything this plugin uses from kerntrace, imported in this one place
from kerntrace's public plugin API (kerntrace.core.api), whose names are
stable within a major API version.

KERNTRACE_API_VERSION is the version this plugin was written for: the
package re-exports it, so kerntrace finds it on the module the entry point
names and skips the plugin, with one warning line, where it provides an
incompatible one.
"""

from kerntrace.core.api import (FOREVER, LATENCY, LOG2, STR, BccHistogramPrinter, Event, Field,
                                Filter, Histogram, Measurement, Pair, Schedule, Tool,
                                Tracepoint, UsageError, count_value, hookimpl, seconds_value)

KERNTRACE_API_VERSION = "1.0"

__all__ = ["KERNTRACE_API_VERSION", "FOREVER", "LATENCY", "LOG2", "STR", "BccHistogramPrinter",
           "Event", "Field", "Filter", "Histogram", "Measurement", "Pair", "Schedule", "Tool",
           "Tracepoint", "UsageError", "count_value", "hookimpl", "seconds_value"]
