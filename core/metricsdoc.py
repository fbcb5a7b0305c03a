"""The table of every metric the built-in tools expose, as docs/metrics.md
holds it (tests/test_prometheus_names.py checks the two agree).

    python -m kerntrace.core.metricsdoc     prints the table
"""

from .output.prometheus import RUN_COUNTERS, metric_name

PREFIX = "kerntrace"


def families(tools):
    """[(family, type, labels, tool names, help)] sorted by family, from
    the tools' Metric declarations (tools: name -> Tool)."""
    rows = {}

    def add(name, kind, labels, tool, help_text):
        row = rows.setdefault(name, [kind, set(), set(), help_text])
        row[1].update(labels)
        row[2].add(tool)

    for tool_name in sorted(tools):
        metric = tools[tool_name].metric
        if metric is None:
            add("%s_%s_<unit>" % (PREFIX, metric_name(tool_name)), "histogram", ["(keys)"],
                tool_name, "The tool's values, in the unit its options name.")
            add(metric_name("%s_%s_events_total" % (PREFIX, tool_name)), "counter",
                ["(keys)"], tool_name, "Events counted.")
            continue
        labels = sorted(set(metric.labels.values()))
        if metric.histogram:
            add("%s_%s_%s" % (PREFIX, metric.histogram, metric.unit), "histogram", labels,
                tool_name, metric.histogram_help)
        if metric.counter:
            add("%s_%s_total" % (PREFIX, metric.counter), "counter", labels, tool_name,
                metric.counter_help)
    for counter, help_text in RUN_COUNTERS:
        for tool_name in tools:
            add("%s_%s_total" % (PREFIX, counter), "counter", [], tool_name, help_text)
    out = []
    for name in sorted(rows):
        kind, labels, names, help_text = rows[name]
        if len(names) == len(tools):
            names = {"every tool"}
        out.append((name, kind, ["tool"] + sorted(labels), sorted(names), help_text))
    return out


def markdown_table(tools):
    lines = ["| Metric | Type | Labels | Tools | Meaning |",
             "|---|---|---|---|---|"]
    for name, kind, labels, names, help_text in families(tools):
        lines.append("| `%s` | %s | %s | %s | %s |" % (
            name.replace("<", "&lt;").replace(">", "&gt;"), kind, ", ".join(labels),
            ", ".join(names), help_text.replace("|", "\\|")))
    return "\n".join(lines) + "\n"


def main():
    from .pluginhost import PluginHost
    print(markdown_table(PluginHost(load_third_party=False).tools()), end="")


if __name__ == "__main__":
    main()
