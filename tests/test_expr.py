"""core/expr.py: filter expressions as users type them become the model's
typed Filters; everything else is one UsageError line."""

import pytest

from kerntrace.core.api import INT, STR, UsageError, parse_comparisons, parse_filter

FIELDS = {"dev": INT, "nr_sector": INT, "bytes": INT, "rwbs": STR, "comm": STR,
          "args->bytes": INT}


def resolve(name):
    if name not in FIELDS:
        return None
    return name.replace("args->", ""), FIELDS[name]


def triples(text):
    return [(f.field, f.op, f.value, f.type) for f in parse_filter(text, resolve)]


def test_conjunction_of_comparisons():
    assert triples("dev == 8388608 && nr_sector > 8") == [
        ("dev", "==", 8388608, INT), ("nr_sector", ">", 8, INT)]
    assert triples("bytes>=0x1000&&bytes<=-1") == [("bytes", ">=", 4096, INT),
                                                     ("bytes", "<=", -1, INT)]
    assert triples("args->bytes != 0") == [("bytes", "!=", 0, INT)]


def test_strings_quoted_bare_and_globs():
    assert triples('comm == "dd" && rwbs ~ \'W*\'') == [("comm", "==", "dd", STR),
                                                        ("rwbs", "glob", "W*", STR)]
    assert triples("comm != kworker") == [("comm", "!=", "kworker", STR)]


def test_filters_apply_to_the_events_named():
    (f,) = parse_filter("dev == 1", resolve, events=("start",))
    assert f.events == ("start",)


@pytest.mark.parametrize("text, message", [
    ("dev == 1 || dev == 2", "'||' is not supported"),
    ("!(dev == 1)", "negation"),
    ("(dev == 1)", "parentheses"),
    ("dev == 1 && ", "expected FIELD OP VALUE"),
    ("dev == 1 dev == 2", "expected &&"),
    ("dev & 1", "'&' is not supported"),
    ("dev == 1 + 2", "'\\+' is not supported"),
    ("nope == 1", "unknown field 'nope'"),
    ("dev == \"x\"", "integer field"),
    ("dev ~ 1", "expected FIELD OP VALUE|glob"),
    ("comm == 5", "quote the value"),
    ("comm > \"a\"", "use ==, != or ~"),
    ("comm == \"a;b\"", "invalid value"),
    ("comm == \"a*b\"", "'\\*' is only allowed in patterns"),
    ("comm ~ \"a*b\"", "wildcards only at the start or end"),
    ("dev == 1:traceoff", "':' is not supported"),
    ("dev == 1\n-:kprobes/x", "'\\?' is not supported"),
    ("dev == 1; echo 0 > tracing_on", "';' is not supported"),
    ("dev == 1) || (1", "parentheses"),
    ("dev == 99999999999999999999999", "out of the 64-bit range"),
    ("", "empty filter"),
    ("dev == '1", "is not supported"),
])
def test_refused_with_one_line(text, message):
    with pytest.raises(UsageError, match=message) as e:
        parse_comparisons(text, resolve)
    assert "\n" not in str(e.value)


def test_dev_glob_is_refused_for_integers():
    with pytest.raises(UsageError, match="glob"):
        parse_comparisons("dev ~ \"1*\"", resolve)


def test_overlong_expression_refused():
    with pytest.raises(UsageError, match="longer than"):
        parse_comparisons(" && ".join(["dev == 1"] * 200), resolve)
