"""The checks of the experiments' configurations: each field's kind and range, the axes, the
TOML reader and its unknown-key suggestions, one :class:`ConfigError` whose one-line message
names the option (:mod:`jaxflow.experiments.config` is the public face; import from there).
"""

import difflib
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from typing import Any

from jaxflow._integers import INT_MAX, check_integer, is_integer

__all__ = [
    "DTYPES", "MAX_CONFIG_BYTES", "SEED_MAX", "ConfigError", "as_axis", "check_depths",
    "check_dtype", "check_finite_positive", "check_fractions", "check_known_fields", "check_positive",
    "check_positive_int", "check_seed", "check_steps", "check_type", "read_toml", "suggest",
]


class ConfigError(ValueError):
    """An option is outside its allowed range (the message names it).

    >>> from jaxflow.experiments.config import ConfigError, as_axis
    >>> try:
    ...     as_axis("ratios", [])
    ... except ConfigError as err:
    ...     print(err)
    ratios must not be empty
    """

    __module__ = "jaxflow.experiments.config"  # its public home, as tracebacks print it


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
        raise ConfigError("start and finish must satisfy 0 < start < finish < 1, got "
                          f"{start}, {finish}")


# Fields the experiment configs share, by name, and what each must be.
POSITIVE_FINITE = ("learning_rate", "scale", "horizon")
FINITE_LISTS = ("targets",)
POSITIVE_FINITE_LISTS = ("late_times", "scales", "eta_factors")


def check_known_fields(config) -> None:
    """Range checks of the fields experiment configs share, found by name.

    ``learning_rate``, ``scale``, ``horizon``: finite and > 0; ``targets``: finite numbers;
    ``late_times``, ``scales``, ``eta_factors``: finite and > 0; ``fractions``: increasing, in (0, 1). ``ExperimentConfig``
    calls it after converting the fields, before ``check``.

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


SEED_MAX = 2**63 - 1  # seeds are stored as int64 attributes (netCDF has no bigger integer)
MAX_CONFIG_BYTES = 1 << 20


def check_positive_int(name: str, value) -> int:
    """``value`` as an int in ``[1, INT_MAX]`` (sizes and step counts are stored as int32).

    >>> from jaxflow.experiments.config import check_positive_int
    >>> check_positive_int("chunk_size", 512.0)
    512
    """
    return check_integer(name, value, low=1, high=INT_MAX, error=ConfigError)


def check_seed(value) -> int:
    """A seed: an integer in ``[0, 2**63 - 1]`` (it is stored as an int64 attribute).

    >>> from jaxflow.experiments.config import check_seed
    >>> check_seed(-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: seed must be an integer in [0, 92...807], got -1
    """
    return check_integer("seed", value, low=0, high=SEED_MAX, error=ConfigError)


def check_positive(config, *names: str) -> None:
    """Require each named option of ``config`` to be > 0 (and not NaN).

    >>> import types
    >>> from jaxflow.experiments.config import check_positive
    >>> check_positive(types.SimpleNamespace(scale=0.0), "scale")
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: scale must be > 0, got 0.0
    """
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")


def check_steps(config) -> None:
    """Require the descent's ``num_steps`` and ``save_every`` to be positive integers, the
    first a multiple of the second (the save grid ends on the last step).

    >>> import types
    >>> from jaxflow.experiments.config import check_steps
    >>> check_steps(types.SimpleNamespace(num_steps=100, save_every=30))
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: num_steps must be a multiple of save_every = 30
    """
    for name in ("num_steps", "save_every"):
        check_positive_int(name, getattr(config, name))
    if config.num_steps % config.save_every:
        raise ConfigError(f"num_steps must be a multiple of save_every = {config.save_every}")


def check_depths(depths, minimum: int = 1) -> None:
    """Require a non-empty list of finite integer depths >= ``minimum`` (1: the models whose
    weights are matrices; 2: the product models, whose depth-1 dynamics are not incremental).

    >>> from jaxflow.experiments.config import check_depths
    >>> check_depths((0, 2))
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: depths must be integers >= 1, got (0, 2)
    """
    if not depths or any(not is_integer(n) or n < minimum for n in depths):
        raise ConfigError(f"depths must be integers >= {minimum}, got {tuple(depths)}")


def check_finite_positive(config, *names: str) -> None:
    """Require each named option of ``config`` to be finite and > 0.

    >>> import types
    >>> from jaxflow.experiments.config import check_finite_positive
    >>> check_finite_positive(types.SimpleNamespace(tolerance=float("inf")), "tolerance")
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: tolerance must be finite and > 0, got inf
    """
    for name in names:
        value = getattr(config, name)
        if not (_is_real(value) and 0 < value < math.inf):
            raise ConfigError(f"{name} must be finite and > 0, got {value!r}")


DTYPES = ("float64", "float32")


def check_dtype(dtype) -> None:
    """Require ``dtype`` to be ``"float64"`` (the default) or ``"float32"`` (the experiments
    whose numerics allow it: their config has a ``dtype`` option).

    >>> from jaxflow.experiments.config import check_dtype
    >>> check_dtype("float16")
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: dtype must be one of float64, float32, got 'float16'
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def suggest(unknown, known) -> str:
    """`` (did you mean X?)`` for the known names closest to the unknown ones, else "".

    >>> from jaxflow.experiments.config import suggest
    >>> suggest(["deptsh"], ["depths", "seed", "scale"])
    ' (did you mean depths?)'
    """
    close = [m for name in unknown for m in difflib.get_close_matches(name, sorted(known), n=1)]
    return f" (did you mean {', '.join(dict.fromkeys(close))}?)" if close else ""


def read_toml(path) -> dict[str, Any]:
    """The table of a TOML configuration file, or a one-line ConfigError.

    Refused without reading further: a path that is not a regular file (a FIFO or a terminal
    would block for ever, a directory is no configuration; other character devices are read,
    bounded), a file over ``MAX_CONFIG_BYTES``
    (``/dev/zero``), bytes that are not UTF-8, invalid TOML, and TOML nested too deeply for
    the parser (a RecursionError).

    >>> import os, tempfile
    >>> fifo = os.path.join(tempfile.mkdtemp(), "config.toml")
    >>> os.mkfifo(fifo)
    >>> read_toml(fifo)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: config file ... is not a regular file (a FIFO)...
    """
    import stat

    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once instead of blocking.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        # Character devices are read, bounded (/dev/null, /dev/zero), but never a terminal.
        if not (stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(fd))):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a terminal or device")
            raise ConfigError(f"config file {path} is not a regular file ({kind}); pass a "
                              "TOML file")
        # Bounded: /dev/zero or a multi-gigabyte file is refused, not read whole.
        raw = b""
        while len(raw) <= MAX_CONFIG_BYTES:
            piece = os.read(fd, MAX_CONFIG_BYTES + 1 - len(raw))
            if not piece:
                break
            raw += piece
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes; is it "
                          "a configuration file?")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); TOML "
                          "files are UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply; a jaxflow "
                          "config is a flat table") from None


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_type(name: str, value, kind):
    """``value`` converted to ``kind`` (``bool``, ``int``, ``float``, ``str``), or ``tuple[kind,
    ...]`` for a list of them (a single number is a list of one).

    A wrong kind (a string for a number, a list for a string, a boolean for a number, a float
    with a fractional part for an integer) is a ConfigError naming the option.

    >>> from jaxflow.experiments.config import check_type
    >>> check_type("depths", [1, 2.0], tuple[int, ...]), check_type("scale", 1, float)
    ((1, 2), 1.0)
    """
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = (value,) if _is_real(value) else value
        if isinstance(items, (str, bytes, Mapping)) or not hasattr(items, "__iter__"):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        try:
            return tuple(check_type(name, v, item) for v in items)
        except ConfigError:
            what = {int: "integers", float: "numbers"}.get(item, f"{item.__name__} values")
            raise ConfigError(f"{name} must be a list of {what}, got {value!r}") from None
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = is_integer(value)
        value = int(value) if ok else value
    elif kind is float:
        ok = _is_real(value)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    else:
        return value
    if not ok:
        raise ConfigError(f"{name} must be {_KINDS[kind]}, got {value!r}")
    return value
