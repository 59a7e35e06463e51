"""Configuration machinery shared by the sweeps' option sets (frozen dataclasses + TOML).

A config class derives from :class:`SweepConfig`: it lists its fields with defaults, names its
axes in ``AXES`` (lists of numbers, validated here) and checks its own ranges in ``check``.
Reading a TOML file, applying overrides (command-line flags win), refusing unknown keys and
writing the resolved TOML for the dataset all live here, once.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Demo(SweepConfig):
    ...     AXES = ("depths",)
    ...     depths: tuple = (2.0, 3.0)
    ...     start: float = 0.1
    >>> Demo.from_mapping({"depths": [4, 5]}).depths
    (4.0, 5.0)
"""

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any, ClassVar

from jaxflow import _toml


class ConfigError(ValueError):
    """An option is outside its allowed range (the message names it).

    >>> from jaxflow.experiments.config import ConfigError, as_axis
    >>> try:
    ...     as_axis("ratios", [])
    ... except ConfigError as err:
    ...     print(err)
    ratios must not be empty
    """


def as_axis(name: str, values) -> tuple[float, ...]:
    """Validate one axis: a non-empty list of distinct numbers without NaN.

    >>> from jaxflow.experiments.config import as_axis
    >>> as_axis("depths", [2, 3, float("inf")])
    (2.0, 3.0, inf)
    >>> as_axis("scales", 1e-3)
    (0.001,)
    """
    if _is_real(values):
        values = (values,)
    try:
        if isinstance(values, (str, bytes, Mapping)):
            raise TypeError
        values = list(values)
        if any(isinstance(v, (bool, str, bytes)) for v in values):
            raise TypeError
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"{name} must be a list of numbers, got {values!r}") from err
    if not values:
        raise ConfigError(f"{name} must not be empty")
    if any(math.isnan(v) for v in values):
        raise ConfigError(f"{name} must not contain NaN")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} must not repeat values")
    return values


def check_fractions(start: float, finish: float) -> None:
    """Require ``0 < start < finish < 1`` (the incremental-learning fractions).

    >>> from jaxflow.experiments.config import check_fractions
    >>> check_fractions(0.1, 0.9)
    >>> check_fractions(0.9, 0.1)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: start and finish must satisfy 0 < start < finish < 1
    """
    if not (0 < start < finish < 1):
        raise ConfigError(f"start and finish must satisfy 0 < start < finish < 1, got {start}, {finish}")


# Fields the experiment configs share, by name, and what each must be.
POSITIVE_FINITE = ("learning_rate", "init", "scale", "flow_time", "t_end")
FINITE_LISTS = ("values", "amplitudes", "target_values")
POSITIVE_FINITE_LISTS = ("late_times",)


def check_known_fields(config) -> None:
    """Range checks of the fields experiment configs share, found by name.

    ``learning_rate``, ``init``, ``scale``, ``flow_time``, ``t_end``: finite and > 0;
    ``values``, ``amplitudes``, ``target_values``: finite numbers; ``late_times``: finite and
    > 0; ``fractions``: increasing, in (0, 1). A config calls it first in ``__post_init__``.

    >>> import dataclasses
    >>> from jaxflow.experiments.config import check_known_fields
    >>> @dataclasses.dataclass
    ... class Demo:
    ...     learning_rate: float = float("inf")
    >>> check_known_fields(Demo())  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: learning_rate must be finite and > 0, got inf
    """
    for name in POSITIVE_FINITE:
        value = getattr(config, name, None)
        if value is not None and not (_is_real(value) and 0 < value < math.inf):
            raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
    for name in FINITE_LISTS + POSITIVE_FINITE_LISTS:
        values = getattr(config, name, None)
        if values is None:
            continue
        low = 0.0 if name in POSITIVE_FINITE_LISTS else -math.inf
        if not all(_is_real(v) and low < v < math.inf for v in values):
            kind = "finite and > 0" if low == 0.0 else "finite numbers"
            raise ConfigError(f"{name} must be {kind}, got {tuple(values)!r}")
    fractions = getattr(config, "fractions", None)
    if fractions is not None:
        fractions = tuple(fractions)
        ok = bool(fractions) and all(_is_real(f) and 0 < f < 1 for f in fractions)
        if not ok or any(a >= b for a, b in zip(fractions, fractions[1:])):
            raise ConfigError(f"fractions must be increasing and lie in (0, 1), got {fractions!r}")


INT_MAX = 2**31 - 1  # step counts and sizes are stored as int32
SEED_MAX = 2**63 - 1  # seeds are stored as int64 attributes (netCDF has no bigger integer)
MAX_CONFIG_BYTES = 1 << 20


def check_positive_int(name: str, value) -> int:
    """``value`` as an int, which must be >= 1.

    >>> from jaxflow.experiments.config import check_positive_int
    >>> check_positive_int("chunk_size", 512.0)
    512
    """
    if not _is_real(value) or not 1 <= value <= INT_MAX or int(value) != value:
        raise ConfigError(f"{name} must be an integer in [1, {INT_MAX}], got {value!r}")
    return int(value)


def check_seed(value) -> None:
    """Require an integer seed in [0, 2**63) (it is stored as an int64 attribute).

    >>> from jaxflow.experiments.config import check_seed
    >>> check_seed(10**30)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: seed must be an integer in [0, 2**63 - 1]
    """
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {value:.6g}")


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_type(name: str, value, default):
    """``value`` converted to the kind of ``default`` (number, integer, string, boolean).

    A wrong kind (a string for a number, a list for a string, a boolean for a number, a float
    with a fractional part for an integer) is a ConfigError naming the option.
    """
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok = _is_real(value) and math.isfinite(value) and int(value) == value
        kind = "an integer"
        value = int(value) if ok else value
    elif isinstance(default, float):
        ok, kind = _is_real(value), "a number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return value
    if not ok:
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Base of the sweep configurations (fields are declared by subclasses).

    Example (a subclass, as
    :class:`~jaxflow.experiments.phase_diagram.PhaseDiagramConfig` is one):
        >>> import dataclasses
        >>> from jaxflow.experiments.config import ConfigError, SweepConfig
        >>> @dataclasses.dataclass(frozen=True)
        ... class Grid(SweepConfig):
        ...     AXES = ("scales",)
        ...     scales: tuple = (1e-3,)
        ...     def check(self):
        ...         if min(self.scales) <= 0:
        ...             raise ConfigError("scales must be > 0")
        >>> Grid(scales=[1e-6, 1e-3]).scales
        (1e-06, 0.001)
    """

    AXES: ClassVar[tuple[str, ...]] = ()
    MODEL: ClassVar[str] = ""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in self.AXES:
                value = as_axis(field.name, value)
            elif field.default is not dataclasses.MISSING:
                value = check_type(field.name, value, field.default)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Range checks of the subclass (raise ConfigError naming the option).

        Called after construction; a subclass overrides it.

        >>> from jaxflow.experiments.phase_diagram import PhaseDiagramConfig
        >>> PhaseDiagramConfig(ratios=(0.5,))
        Traceback (most recent call last):
        ...
        jaxflow.experiments.config.ConfigError: ratios must be finite and > 1
        """

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]):
        """Build from a mapping (a parsed TOML table); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        table = {k: v for k, v in table.items() if not (k == "model" and v == cls.MODEL)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**table)
        except TypeError as err:
            raise ConfigError(str(err)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike | None = None, **overrides):
        """Read a TOML file (optional); ``overrides`` that are not None win over it."""
        table: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as fh:
                    # Bounded: /dev/zero or a multi-gigabyte file is refused, not read whole.
                    raw = fh.read(MAX_CONFIG_BYTES + 1)
                if len(raw) > MAX_CONFIG_BYTES:
                    raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} "
                                      "bytes; is it a configuration file?")
                table = tomllib.loads(raw.decode("utf-8"))
            except OSError as err:
                raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
            except UnicodeDecodeError as err:
                raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); "
                                  "TOML files are UTF-8") from None
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
        table.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(table)

    def to_toml(self) -> str:
        """The resolved configuration as TOML text (stored in the dataset).

        >>> from jaxflow.experiments.phase_diagram import PhaseDiagramConfig
        >>> print(PhaseDiagramConfig(depths=(2.0, float("inf"))).to_toml().splitlines()[1])
        depths = [2.0, inf]
        """
        head = {"model": self.MODEL} if self.MODEL else {}
        return _toml.dumps({**head, **dataclasses.asdict(self)})
