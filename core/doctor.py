"""`kerntrace doctor`: what this host can trace and how we know, and for
every installed tool which backend would run it and why not the others."""

import json

from .errors import KerntraceError
from .host import Host
from .selector import evaluate
from .tool import ArgumentParser
from .variants import choose, variants


def gather(plugins, host):
    """(the report as a JSON-able dict, the distinct notices of the
    backends' verdicts)."""
    caps = list(host.capabilities())
    for b in plugins.backends():
        try:
            bc = b.capabilities(host)
        except Exception as e:  # probing never crashes doctor
            from .backend import Capability
            bc = [Capability("probe", False, "%s: %s" % (type(e).__name__, e))]
        for c in bc:
            c.backend = b.name
        caps.extend(bc)
    tools = []
    notices = []
    for name, tool in sorted(plugins.tools().items()):
        entry = {"tool": name, "backend": None, "verdicts": {},
                 "best_effort": list(getattr(tool, "best_effort", ()))}
        try:
            args = tool.parse_args(list(tool.sample_args), prog=name)
            listed = variants(tool, args)
            m = listed[0].measurement
            verdicts = evaluate(m, plugins.backends(), host)
            entry["verdicts"] = {n: {"ok": v.ok, "reasons": v.reasons, "probes": v.choices}
                                 for n, v in verdicts.items()}
            notices.extend(v.notice for v in verdicts.values()
                           if v.notice and v.notice not in notices)
            try:
                choice = choose(tool, args, plugins.backends(), host, "auto",
                                hook=plugins.pm.hook.kerntrace_select_backend, listed=listed)
                entry["backend"] = choice.selection.backend.name
                if choice.variant.name is not None:
                    # which whole way of measuring runs, and why not the
                    # preferred ones (core/variants.py)
                    entry["variant"] = choice.variant.name
                    entry["variant_notes"] = choice.explain()
                    entry["verdicts"] = {n: {"ok": v.ok, "reasons": v.reasons}
                                         for n, v in choice.selection.verdicts.items()}
            except KerntraceError as e:
                entry["error"] = str(e)
        except Exception as e:
            entry["error"] = "%s: %s" % (type(e).__name__, e)
        tools.append(entry)
    return {"hostname": host.hostname, "kernel": host.kernel_release,
            "capabilities": [c.as_dict() for c in caps], "tools": tools}, notices


def doctor(plugins, argv, out, err):
    p = ArgumentParser(prog="kerntrace doctor", description="What this host can trace.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    host = Host(stderr=err)
    report, notices = gather(plugins, host)
    for line in notices:                 # once each, not once per tool
        err.write("kerntrace: %s\n" % line)
    if args.json:
        out.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return 0
    out.write("kerntrace doctor: %s, Linux %s\n\n" % (report["hostname"], report["kernel"]))
    out.write("Capabilities:\n")
    for c in report["capabilities"]:
        name = c["name"] if not c["backend"] else "%s.%s" % (c["backend"], c["name"])
        out.write("  [%s] %-28s %s\n" % ("ok" if c["ok"] else "--", name, c["detail"]))
    out.write("\nTools:\n")
    for t in report["tools"]:
        chosen = t["backend"] or "none"
        out.write("  %-14s -> %s\n" % (t["tool"], chosen))
        for line in t.get("variant_notes", ()):
            out.write("  %-14s    %s\n" % ("", line))
        for n, v in sorted(t["verdicts"].items()):
            if v["ok"]:
                # which probe alternative each event would run on
                for line in v.get("probes", ()):
                    out.write("  %-14s    %s: %s\n" % ("", n, line))
            if n == t["backend"]:
                continue
            out.write("  %-14s    %s: %s\n" % ("", n, "could run it" if v["ok"]
                                              else "; ".join(v["reasons"]) or "cannot"))
        for note in t["best_effort"]:
            out.write("  %-14s    best-effort: %s\n" % ("", note))
        if t.get("error"):
            out.write("  %-14s    %s\n" % ("", t["error"]))
    return 0
