"""runqlat's own tests: what it declares, checked without root or a kernel.

Run them with the plugin installed: `python -m pytest tests`."""

import pytest

from kerntrace_runqlat.kerntrace_api import UsageError
from kerntrace_runqlat.runqlat import RunqLat


def test_one_thread_per_thread_every_second_five_times():
    tool = RunqLat()
    m = tool.measurement(tool.parse_args(["-L", "-t", "42", "1", "5"]))
    assert m.pair.key == ("task",) and m.aggregate.keys == ("task",)
    assert [(f.field, f.op, f.value) for f in m.filters] == [("task", "!=", 0),
                                                            ("task", "==", 42)]
    assert m.schedule.interval == 1 and m.schedule.count == 5
    assert tool.self_check() is None


@pytest.mark.parametrize("argv", [["-t", "0"], ["-t", "x"], ["-L", "-C"], ["0"]])
def test_bad_input_is_a_usage_error(argv):
    with pytest.raises(UsageError):
        RunqLat().parse_args(argv)
