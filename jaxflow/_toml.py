"""Minimal TOML writing for resolved configurations (reading uses the standard ``tomllib``).

Configurations are flat tables of numbers, strings, booleans and lists of numbers, which is all
this writer supports; ``inf`` and ``nan`` use TOML's own spellings.

>>> print(dumps({"depths": [2.0, float("inf")], "start": 0.1, "model": "toy"}), end="")
depths = [2.0, inf]
start = 0.1
model = "toy"
"""

import math
from collections.abc import Mapping

__all__ = ["dumps"]


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(table: Mapping) -> str:
    """Serialize a flat mapping to TOML text."""
    return "".join(f"{key} = {_value(value)}\n" for key, value in table.items())
