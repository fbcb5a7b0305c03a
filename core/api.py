"""kerntrace's public plugin API: everything a tool plugin imports, from
this one module (`from kerntrace.core.api import ...`).

Names listed here are stable within a major API_VERSION: a minor version
only adds names, a new major may remove or change them.  A plugin module
declares the version it was written for,

    KERNTRACE_API_VERSION = "1.0"

and kerntrace skips it, with one warning line naming it, when it provides
an incompatible one (see hookspecs.API_VERSION; hookspecs.API_NAMES_SINCE
says which minor added a name).  Anything imported from
elsewhere in kerntrace is internal and may change in any release.

Plugins and hooks
    API_VERSION, ENTRY_POINT_GROUP, hookimpl, hookspec

The model (what a tool measures)
    Tracepoint, SyscallEntry, SyscallExit, KernelFunction, UserFunction,
    Usdt, Field, Event, Pair, Filter, Histogram, Count, Records, Schedule,
    Measurement, INT, STR, USTR, LATENCY, QUEUED, EVENT_NAME, KSTACK,
    CONTEXT_FIELDS, TRACER_RECORDS, LOG2, LINEAR, POW2_MS, is_identifier,
    Each, ProcFdPath, Metric

The tool and its command line
    Tool, ArgumentParser, seconds_value, count_value, pid_value,
    top_value, PID_MAX_LIMIT, FOREVER, report_every, report_at_end

System calls (numbers and names of this host's architecture)
    SyscallTable, syscall_table, syscall_name, syscall_number

perf-tools command lines (getopts) and ERROR lines
    getopts, parse_options, UsageShown, perf_tools_error_lines,
    perf_tools_exit_status, LONG_OPTIONS_HELP

Printers and formatting
    Printer, RunContext, Column, EventTablePrinter,
    PerfToolsEventTablePrinter, CountTablePrinter, BccHistogramPrinter,
    PerfToolsHistogramPrinter, format_histogram, seconds_since_first, milliseconds,
    trace_seconds, read_text

Filter expressions and any tracepoint (tools that take them from users)
    parse_filter, parse_comparisons, parse_tracepoint, list_tracepoints,
    format_text, tracepoint_fields, terminal_text

Rates (counts per second over each interval's real length)
    RateTablePrinter, RateColumn, interval_seconds, per_second,
    report_seconds

Whole ways of measuring, in order of preference
    Variant

Result types (what a printer receives)
    Report, HistogramSet, CountSet, Record, results

Function and tracepoint patterns (core.symbols)
    resolve_binary, user_functions, usdt_probes, kernel_functions,
    tracepoints, notrace_reason, tracing_root, SymbolError

Errors (one line on stderr, never a traceback)
    KerntraceError, UsageError, OptionError, Unsupported, InvalidSpec,
    TracingUnavailable, LockHeld, FilterError, EnableError

Testing without root (in pytest also the kerntrace_offline fixture)
    replay, ReplayResult, ReplayFailed, evaluate, TraceEvent, Lost,
    IntervalEnd
"""

from . import results
from .errors import (EnableError, FilterError, InvalidSpec, KerntraceError, LockHeld,
                     OptionError, TracingUnavailable, Unsupported, UsageError)
from .hookspecs import API_VERSION, ENTRY_POINT_GROUP, hookimpl, hookspec
from .metrics import Metric
from .model import (CONTEXT_FIELDS, EVENT_NAME, INT, KSTACK, LATENCY, LINEAR, LOG2, POW2_MS,
                    QUEUED, STR, TRACER_RECORDS, USTR, Count, Each, Event, Field, Filter,
                    Histogram, KernelFunction, Measurement, Pair, ProcFdPath, Records, Schedule,
                    SyscallEntry, SyscallExit, Tracepoint, UserFunction, Usdt,
                    is_identifier)
from .expr import parse_comparisons, parse_filter
from .output.base import Printer, RunContext, terminal_text
from .output.histograms import BccHistogramPrinter, PerfToolsHistogramPrinter, format_histogram
from .output.table import (Column, CountTablePrinter, EventTablePrinter,
                           PerfToolsEventTablePrinter, milliseconds, seconds_since_first,
                           trace_seconds)
from .output.rates import RateColumn, RateTablePrinter
from .perftools import (LONG_OPTIONS_HELP, UsageShown, getopts, parse_options,
                        perf_tools_error_lines, perf_tools_exit_status)
from .results import CountSet, HistogramSet, Record, Report
from .testing import IntervalEnd, Lost, ReplayFailed, ReplayResult, TraceEvent, evaluate, replay
from .syscalls import SyscallTable, syscall_name, syscall_number, syscall_table
from .tool import (FOREVER, PID_MAX_LIMIT, ArgumentParser, Tool, count_value, pid_value,
                   report_at_end, report_every, seconds_value, top_value)
from .rates import interval_seconds, per_second, report_seconds
from .symbols import (SymbolError, kernel_functions, notrace_reason, resolve_binary,
                      tracepoints, tracing_root, usdt_probes, user_functions)
from .tracefs import read_text
from .tracepoints import format_text, list_tracepoints, parse_tracepoint, tracepoint_fields
from .variants import Variant

__all__ = [
    # Plugins and hooks
    "API_VERSION", "ENTRY_POINT_GROUP", "hookimpl", "hookspec",
    # The model
    "Tracepoint", "SyscallEntry", "SyscallExit", "KernelFunction", "UserFunction",
    "Usdt", "Field", "Event", "Pair", "Filter", "Histogram", "Count", "Records", "Schedule",
    "Measurement", "INT", "STR", "USTR", "LATENCY", "QUEUED", "EVENT_NAME", "KSTACK",
    "CONTEXT_FIELDS", "TRACER_RECORDS", "LOG2", "LINEAR", "POW2_MS", "is_identifier",
    "Each", "ProcFdPath", "Metric",
    # The tool and its command line
    "Tool", "ArgumentParser", "seconds_value", "count_value", "pid_value",
    "top_value", "PID_MAX_LIMIT", "FOREVER", "report_every", "report_at_end",
    # System calls
    "SyscallTable", "syscall_table", "syscall_name", "syscall_number",
    # perf-tools command lines and ERROR lines
    "getopts", "parse_options", "UsageShown", "perf_tools_error_lines",
    "perf_tools_exit_status", "LONG_OPTIONS_HELP",
    # Printers and formatting
    "Printer", "RunContext", "Column", "EventTablePrinter", "PerfToolsEventTablePrinter",
    "CountTablePrinter", "BccHistogramPrinter", "format_histogram", "PerfToolsHistogramPrinter",
    "seconds_since_first", "milliseconds", "trace_seconds", "read_text",
    # Filter expressions and any tracepoint
    "parse_filter", "parse_comparisons", "parse_tracepoint", "list_tracepoints", "format_text",
    "tracepoint_fields", "terminal_text",
    # Rates
    "RateTablePrinter", "RateColumn", "interval_seconds", "per_second", "report_seconds",
    # Whole ways of measuring
    "Variant",
    # Result types
    "Report", "HistogramSet", "CountSet", "Record", "results",
    # Function and tracepoint patterns
    "resolve_binary", "user_functions", "usdt_probes", "kernel_functions", "tracepoints",
    "notrace_reason", "tracing_root", "SymbolError",
    # Errors
    "KerntraceError", "UsageError", "OptionError", "Unsupported", "InvalidSpec",
    "TracingUnavailable", "LockHeld", "FilterError", "EnableError",
    # Testing without root
    "replay", "ReplayResult", "ReplayFailed", "evaluate", "TraceEvent", "Lost",
    "IntervalEnd",
]
