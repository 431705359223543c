"""Durations read the same way everywhere in a document, and a bad one names its path and value."""
import pytest

from hallelujah.durations import format_duration, parse_duration
from hallelujah.errors import TradecraftError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1d", 86400.0), ("1h30m", 5400.0),
     ("1.5s", 1.5), ("0s", 0.0), ("1d2h3m4s5ms", 93784.005)],
)
def test_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "5 s", "5sec", "1h 30m", "-1s", "s", "1.s", "1y", "ms5", "1e3s", " 10s"])
def test_a_malformed_duration_names_the_path_and_the_value(bad: str) -> None:
    with pytest.raises(TradecraftError) as e:
        parse_duration(bad, "analytics[4].window")
    assert e.value.path == "analytics[4].window"
    assert str(e.value).startswith(f'analytics[4].window: "{bad}" is not a duration')


@pytest.mark.parametrize("bad", [5, 2.5, None, True, ["1s"], {"s": 1}])
def test_a_duration_must_be_a_string(bad: object) -> None:
    with pytest.raises(TradecraftError, match=r"^congestion\.for: .* is not a duration"):
        parse_duration(bad, "congestion.for")  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [0.0, 0.5, 2.0, 60.0, 5400.0, 93784.005, 86400.0 * 3])
def test_formatted_durations_read_back_the_same(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), "x") == pytest.approx(seconds)


def test_a_formatted_duration_is_the_shortest_form() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"
