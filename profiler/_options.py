"""Parsing of option values shared by the API and the command line."""

__all__ = ["parse_interval", "MODES"]

MODES = ("cpu", "wall")

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_interval(value) -> int:
    """Return a sampling interval in nanoseconds.

    Accepts a number of seconds (``0.01``), or a string with a unit: ``"10ms"``,
    ``"500us"``, ``"0.01s"``, ``"100hz"``.  A bare string number means milliseconds
    (``"5"`` is 5 ms), as in ``-i 5``.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad interval {value!r}: give a duration such as 10ms")
    if isinstance(value, (int, float)):
        ns = int(round(value * 1_000_000_000))
    else:
        import re   # here: a number needs no regular expression (start-up)
        text = str(value).strip().lower()
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s|hz)?", text)
        if not m:
            raise ValueError(
                f"bad interval {value!r}: give a duration such as 10ms, 500us, 0.01s "
                "or a rate such as 100hz")
        number, unit = float(m.group(1)), m.group(2) or "ms"
        if unit == "hz":
            if number <= 0:
                raise ValueError(f"bad interval {value!r}: the rate must be positive")
            ns = int(round(1_000_000_000 / number))
        else:
            ns = int(round(number * _UNITS[unit]))
    if not 100_000 <= ns <= 60_000_000_000:
        raise ValueError(
            f"bad interval {value!r}: it must be between 100us and 60s (10ms is the "
            "default)")
    return ns
