"""Checked conversion of settings that arrive as text: bundle command lines, config files, the CLI.

``python -m monai.bundle run ... --overwrite false`` hands the config the *string* ``'false'``
(its parser only knows ``False``), and a string that is not empty is true to Python. Every
boolean setting therefore goes through ``as_bool``, which takes the spellings a user types and
refuses anything else with one line naming the setting and the value.
"""

from __future__ import annotations

from typing import Any

from emseg_monai.errors import InputError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: True/False, 1/0 and the strings true/false, 1/0 (any case), yes/no, on/off.

    Examples
    --------
    >>> as_bool("false", "overwrite"), as_bool("True", "flips"), as_bool(0, "resume")
    (False, True, False)
    >>> as_bool("maybe", "overwrite")
    Traceback (most recent call last):
    ...
    emseg_monai.errors.InputError: overwrite must be true or false (or 1/0), got 'maybe'
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InputError(f"{name} must be true or false (or 1/0), got {value!r}")


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (an integral float or numeric string is accepted), at least ``minimum``."""
    try:
        ok = not isinstance(value, bool) and float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be an integer, got {value!r}")
    number = int(float(value))
    if minimum is not None and number < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {number}")
    return number


def as_float(value: Any, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a finite float within [``minimum``, ``maximum``] (either bound may be None)."""
    try:
        number = float(value)
        ok = not isinstance(value, bool) and number == number and abs(number) != float("inf")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be a number, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = "inf" if maximum is None else f"{maximum:g}"
        raise InputError(f"{name} must be between {low} and {high}, got {number:g}")
    return number


def as_optional_float(
    value: Any, name: str, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    """None for None or the text none / null (a bundle command line's spelling), else ``as_float``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return None
    return as_float(value, name, minimum, maximum)


def as_range(value: Any, name: str, minimum: float, maximum: float) -> tuple[float, float]:
    """``value`` as a (low, high) pair of floats with ``minimum <= low <= high <= maximum``.

    A list, a tuple or the text "low,high" is accepted; anything else is an InputError naming
    ``name`` and the value.
    """
    items = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (as_float(v, name, minimum, maximum) for v in items)
    except (TypeError, ValueError, InputError):
        low = high = None
    if low is None or low > high:
        raise InputError(f"{name} must be two numbers low <= high within {minimum:g}..{maximum:g}, got {value!r}")
    return low, high


def as_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; else InputError listing them."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def optional_path(value: Any) -> str | None:
    """A path setting that may be switched off: None, False, "" and the strings false/none/null give None."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    return None if text.lower() in ("", "false", "none", "null", "0") else text
