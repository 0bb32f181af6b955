"""The one style in which the command line, the report and the progress display write
durations and tables (``taskloom._text``)."""

from __future__ import annotations

import pytest

from taskloom._text import duration, factor, one_line, table


@pytest.mark.parametrize(
    ("seconds", "compact", "spaced"),
    [
        (None, "-", "-"),
        (3e-5, "30us", "30 us"),
        (0.0123, "12.3ms", "12.3 ms"),
        (4.567, "4.57s", "4.57 s"),
        (123, "2m03s", "2 min 03 s"),
        (4000, "1h06m", "1 h 06 min"),
    ],
)
def test_duration_has_one_scale_in_two_spacings(seconds: float | None, compact: str, spaced: str) -> None:
    assert duration(seconds) == compact
    assert duration(seconds, spaced=True) == spaced


def test_a_ticking_clock_keeps_tenths_of_a_second() -> None:
    assert [duration(s, coarse=True) for s in (0.04, 0.25, 12.34, 61)] == ["0.0s", "0.2s", "12.3s", "1m01s"]


def test_factor_one_line_and_table() -> None:
    assert factor(3.25) == "3.2×" and factor(None) == "-"
    assert one_line("a\nb") == "a | b"
    assert one_line("x" * 20, 10) == "xxxxxxx..."
    assert table(["A", "NUM"], [["abc", "1"], ["d", "22"]], right=[1]).splitlines() == [
        "A    NUM", "abc    1", "d     22"
    ]
