"""Function and tracepoint specs as bcc's funccount/funclatency take them,
shared by funccount, funclatency and funcslower.

    vfs_read   k:vfs_*   p::vfs_*        kernel functions
    c:malloc   p:c:malloc*   /bin/x:f    user functions (library or binary)
    t:block:block_rq_*                   tracepoints (funccount only)
    u:python:gc__*   u:/bin/x:prov:probe  USDT probes (funccount only)

A spec is expanded here, in Python, into plain names (core.symbols), so
both backends trace exactly the same functions; the model receives only
identifiers and a resolved, checked path.  Nothing of the user's text
reaches a probe definition or generated code unexpanded.
"""

import re

from kerntrace.core.api import (Each, KernelFunction, SymbolError, Tracepoint, UsageError,
                                Usdt, UserFunction, kernel_functions, notrace_reason,
                                resolve_binary, pid_value, seconds_value, tracepoints,
                                tracing_root, usdt_probes, user_functions)

# How many functions a pattern may expand to unless the user raises the
# limit (bcc's probe limit is 1000 too: BPF.get_probe_limit()).
DEFAULT_MAX_FUNCTIONS = 1000

# What a wildcard function or tracepoint pattern may contain: identifier
# characters and '*'.  Regular expressions (-r) are checked by re.compile.
_GLOB = re.compile(r"^[A-Za-z0-9_*.]{1,256}\Z")
_REGEX_MAX = 256


class Target(object):
    """One traced thing: `label` as printed (FUNC column), and how to probe
    its entry (and return)."""

    def __init__(self, label, kind, library=None, name=None, category=None, sites=1):
        self.label = label
        self.kind = kind            # "kernel", "user", "tracepoint" or "usdt"
        self.library = library      # resolved path (user, usdt)
        self.name = name            # function, tracepoint or USDT probe name
        self.category = category    # tracepoint category, USDT provider
        self.sites = sites          # places a USDT probe is used in

    def entry(self, values=None):
        """The entry probe; `values` ({field: int}) the INT fields it sets
        itself (which of several functions this is)."""
        if self.kind == "kernel":
            return KernelFunction(self.name, values=values)
        if self.kind == "user":
            return UserFunction(self.library, self.name, values=values)
        if self.kind == "usdt":
            sites = [Usdt(self.library, self.category, self.name, site=i)
                     for i in range(self.sites)]
            return sites[0] if len(sites) == 1 else Each(*sites)
        return Tracepoint(self.category, self.name)

    def exit(self):
        if self.kind == "kernel":
            return KernelFunction(self.name, ret=True)
        if self.kind == "user":
            return UserFunction(self.library, self.name, ret=True)
        raise UsageError("%s is a %s: it has no return" % (
            self.label, "USDT probe" if self.kind == "usdt" else "tracepoint"))


def split_spec(spec):
    """(kind, library, pattern or (category, pattern)) of a spec, bcc's
    grammar; raises UsageError."""
    if not spec or "\n" in spec or len(spec) > 4096:
        raise UsageError("invalid pattern %r" % spec)
    parts = spec.split(":")
    if parts[0] == "u":
        # u:LIB:PROBE (any provider, as bcc) or u:LIB:PROVIDER:PROBE (bpftrace)
        if len(parts) not in (3, 4) or not parts[1]:
            raise UsageError("invalid pattern %r (expected u:LIB:PROBE or "
                             "u:LIB:PROVIDER:PROBE)" % spec)
        return "usdt", parts[1], tuple(parts[2:]) if len(parts) == 4 else (None, parts[2])
    if len(parts) == 1:
        return "kernel", None, parts[0]
    if len(parts) == 2:
        if parts[0] == "k":
            return "kernel", None, parts[1]
        if parts[0] in ("t", "u", "p"):
            raise UsageError("invalid pattern %r: %s: needs more parts" % (spec, parts[0]))
        return ("user", parts[0], parts[1]) if parts[0] else ("kernel", None, parts[1])
    if len(parts) == 3:
        kind, lib, pat = parts
        if kind == "t":
            return "tracepoint", None, (lib, pat)
        if kind == "p":
            return ("user", lib, pat) if lib else ("kernel", None, pat)
    raise UsageError("invalid pattern %r (expected FUNC, LIB:FUNC, p:LIB:FUNC, t:CAT:EVENT "
                     "or u:LIB:PROBE)"
                     % spec)


def _check_pattern(text, regex, spec):
    if regex:
        if not text or len(text) > _REGEX_MAX or any(c.isspace() for c in text):
            raise UsageError("invalid regular expression in %r" % spec)
    elif not _GLOB.match(text):
        raise UsageError("invalid pattern %r: function and event names are letters, digits, "
                         "_ and . with * as the only wildcard" % spec)


def _usdt_targets(spec, library, pattern, regex, pid):
    provider, name = pattern
    if provider is not None:
        _check_pattern(provider, regex, spec)
    _check_pattern(name, regex, spec)
    path = resolve_binary(library, pid=pid)
    found = usdt_probes(path, name, regex, provider)
    names = [n for _p, n, _s in found]
    # bcc prints a USDT probe by its name; provider:name where two share it
    return [Target(n if names.count(n) == 1 else "%s:%s" % (p, n), "usdt", library=path,
                   name=n, category=p, sites=sites) for p, n, sites in found], path


def expand(spec, regex=False, pid=None, max_functions=DEFAULT_MAX_FUNCTIONS,
           allow_tracepoints=True):
    """[Target] the spec names on this host, sorted by label; raises
    UsageError with one line when it names nothing or more than
    max_functions."""
    kind, library, pattern = split_spec(spec)
    try:
        if kind in ("tracepoint", "usdt") and not allow_tracepoints:
            raise UsageError("%s is a %s; this tool measures functions" % (
                spec, "tracepoint" if kind == "tracepoint" else "USDT probe"))
        if kind == "usdt":
            found, path = _usdt_targets(spec, library, pattern, regex, pid)
            where = "no USDT probe in %s" % path
        elif kind == "tracepoint":
            category, name = pattern
            _check_pattern(category, regex, spec)
            _check_pattern(name, regex, spec)
            found = [Target("%s:%s" % (c, n), "tracepoint", name=n, category=c)
                     for c, n in tracepoints(category, name, regex, tracing_root())]
            where = "no tracepoint"
        elif kind == "user":
            _check_pattern(pattern, regex, spec)
            path = resolve_binary(library, pid=pid)
            found = [Target(n, "user", library=path, name=n)
                     for n in user_functions(path, pattern, regex)]
            where = "no function in %s" % path
        else:
            _check_pattern(pattern, regex, spec)
            root = tracing_root()
            names = kernel_functions(pattern, regex, tracing_root=root)
            if not names and not regex and "*" not in pattern:
                why = notrace_reason(pattern, tracing_root=root)
                if why:
                    raise UsageError(why)
            found = [Target(n, "kernel", name=n) for n in names]
            where = "no kernel function"
    except SymbolError as e:
        raise UsageError(str(e))
    if not found:
        raise UsageError("%s matches %s" % (spec, where))
    if len(found) > max_functions:
        raise UsageError("%s matches %d %s, more than the limit of %d (raise it with "
                         "--max-functions %d)" % (spec, len(found), "tracepoints"
                                                  if kind == "tracepoint" else "USDT probes"
                                                  if kind == "usdt" else "functions",
                                                  max_functions, len(found)))
    return found


def expand_one(spec, regex=False, pid=None):
    """The single function a spec names (funclatency, funcslower)."""
    found = expand(spec, regex, pid, allow_tracepoints=False)
    if len(found) > 1:
        shown = ", ".join(t.label for t in found[:5]) + (", ..." if len(found) > 5 else "")
        raise UsageError("%s matches %d functions (%s); name exactly one" % (spec, len(found),
                                                                            shown))
    return found[0]


def max_functions_value(text):
    """argparse type of --max-functions."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise UsageError("--max-functions must be a positive integer, got %r" % text)
    return value


def add_pattern_arguments(p, what):
    """--max-functions and the pattern operand (`what` it searches for),
    last on funccount's and funclatency's command lines."""
    p.add_argument("--max-functions", type=max_functions_value, default=DEFAULT_MAX_FUNCTIONS,
                   metavar="N", help="refuse a pattern matching more than N functions "
                                     "(default %d)" % DEFAULT_MAX_FUNCTIONS)
    p.add_argument("pattern", help="search expression for %s" % what)


def pattern_targets(args, allow_tracepoints=True):
    """The targets of the command line's pattern, expanded once per parsed
    command line (kept in `args`); allow_tracepoints=False: functions only
    (funclatency: tracepoints and USDT probes have no return)."""
    if getattr(args, "_targets", None) is None:
        args._targets = expand(args.pattern, args.regexp, args.pid, args.max_functions,
                               allow_tracepoints)
    return args._targets


def add_summary_options(p):
    """-p -i -d -T -r, as bcc's funccount and funclatency both take them."""
    p.add_argument("-p", "--pid", type=pid_value, help="trace this PID only")
    p.add_argument("-i", "--interval", type=seconds_value, help="summary interval, seconds")
    p.add_argument("-d", "--duration", type=lambda t: seconds_value(t, "duration"),
                   help="total duration of trace, seconds")
    p.add_argument("-T", "--timestamp", action="store_true",
                   help="include timestamp on output")
    p.add_argument("-r", "--regexp", action="store_true",
                   help="use regular expressions. Default is \"*\" wildcards only.")
