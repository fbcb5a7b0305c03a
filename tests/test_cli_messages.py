"""What a user sees for a mistake or a host that refuses: one line on
stderr that says what is wrong, the documented exit status, no traceback."""

import pytest

from clirun import run


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, line", [
    (["biosnoop", "--bogus"], "biosnoop: unrecognized arguments: --bogus"),
    (["tpcount"], "tpcount: the following arguments are required: CATEGORY:EVENT"),
    (["doctor", "--bogus"], "kerntrace: unrecognized arguments: --bogus"),
])
def test_argparse_errors_name_the_tool_once(args, line):
    rc, out, err = run(args)
    assert rc == 2 and out == ""
    assert one_line(err) == line
