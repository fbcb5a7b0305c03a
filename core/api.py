"""kerntrace's public plugin API: everything a tool plugin imports, from
this one module (`from kerntrace.core.api import ...`).

Names listed here are stable within a major API_VERSION: a minor version
only adds names, a new major may remove or change them.  A plugin module
declares the version it was written for,

    KERNTRACE_API_VERSION = "1.0"

and kerntrace skips it, with one warning line naming it, when it provides
an incompatible one (see hookspecs.API_VERSION).  Anything imported from
elsewhere in kerntrace is internal and may change in any release.

Plugins and hooks
    API_VERSION, ENTRY_POINT_GROUP, hookimpl, hookspec

The model (what a tool measures)
    Tracepoint, SyscallEntry, SyscallExit, KernelFunction, UserFunction,
    Field, Event, Pair, Filter, Histogram, Count, Records, Schedule,
    Measurement, INT, STR, USTR, LATENCY, QUEUED, EVENT_NAME,
    CONTEXT_FIELDS, TRACER_RECORDS, LOG2, LINEAR, POW2_MS, is_identifier

The tool and its command line
    Tool, ArgumentParser, seconds_value, count_value, pid_value,
    PID_MAX_LIMIT, FOREVER, report_every, report_at_end

System calls (numbers and names of this host's architecture)
    SyscallTable, syscall_table, syscall_name, syscall_number

perf-tools command lines (getopts) and ERROR lines
    getopts, parse_options, UsageShown, perf_tools_error_lines,
    perf_tools_exit_status, LONG_OPTIONS_HELP

Printers and formatting
    Printer, RunContext, Column, EventTablePrinter,
    PerfToolsEventTablePrinter, CountTablePrinter, BccHistogramPrinter,
    PerfToolsHistogramPrinter, seconds_since_first, milliseconds,
    trace_seconds, read_text

Result types (what a printer receives)
    Report, HistogramSet, CountSet, Record, results

Errors (one line on stderr, never a traceback)
    KerntraceError, UsageError, OptionError, Unsupported, InvalidSpec,
    TracingUnavailable, LockHeld, FilterError, EnableError
"""

from . import results
from .errors import (EnableError, FilterError, InvalidSpec, KerntraceError, LockHeld,
                     OptionError, TracingUnavailable, Unsupported, UsageError)
from .hookspecs import API_VERSION, ENTRY_POINT_GROUP, hookimpl, hookspec
from .model import (CONTEXT_FIELDS, EVENT_NAME, INT, LATENCY, LINEAR, LOG2, POW2_MS, QUEUED,
                    STR, TRACER_RECORDS, USTR, Count, Event, Field, Filter, Histogram, KernelFunction,
                    Measurement, Pair, Records, Schedule, SyscallEntry, SyscallExit,
                    Tracepoint, UserFunction, is_identifier)
from .output.base import Printer, RunContext
from .output.histograms import BccHistogramPrinter, PerfToolsHistogramPrinter
from .output.table import (Column, CountTablePrinter, EventTablePrinter,
                           PerfToolsEventTablePrinter, milliseconds, seconds_since_first,
                           trace_seconds)
from .perftools import (LONG_OPTIONS_HELP, UsageShown, getopts, parse_options,
                        perf_tools_error_lines, perf_tools_exit_status)
from .results import CountSet, HistogramSet, Record, Report
from .syscalls import SyscallTable, syscall_name, syscall_number, syscall_table
from .tool import (FOREVER, PID_MAX_LIMIT, ArgumentParser, Tool, count_value, pid_value,
                   report_at_end, report_every, seconds_value)
from .tracefs import read_text

__all__ = [
    # Plugins and hooks
    "API_VERSION", "ENTRY_POINT_GROUP", "hookimpl", "hookspec",
    # The model
    "Tracepoint", "SyscallEntry", "SyscallExit", "KernelFunction", "UserFunction",
    "Field", "Event", "Pair", "Filter", "Histogram", "Count", "Records", "Schedule",
    "Measurement", "INT", "STR", "USTR", "LATENCY", "QUEUED", "EVENT_NAME",
    "CONTEXT_FIELDS", "TRACER_RECORDS", "LOG2", "LINEAR", "POW2_MS", "is_identifier",
    # The tool and its command line
    "Tool", "ArgumentParser", "seconds_value", "count_value", "pid_value",
    "PID_MAX_LIMIT", "FOREVER", "report_every", "report_at_end",
    # System calls
    "SyscallTable", "syscall_table", "syscall_name", "syscall_number",
    # perf-tools command lines and ERROR lines
    "getopts", "parse_options", "UsageShown", "perf_tools_error_lines",
    "perf_tools_exit_status", "LONG_OPTIONS_HELP",
    # Printers and formatting
    "Printer", "RunContext", "Column", "EventTablePrinter", "PerfToolsEventTablePrinter",
    "CountTablePrinter", "BccHistogramPrinter", "PerfToolsHistogramPrinter",
    "seconds_since_first", "milliseconds", "trace_seconds", "read_text",
    # Result types
    "Report", "HistogramSet", "CountSet", "Record", "results",
    # Errors
    "KerntraceError", "UsageError", "OptionError", "Unsupported", "InvalidSpec",
    "TracingUnavailable", "LockHeld", "FilterError", "EnableError",
]
