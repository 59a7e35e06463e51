"""The experiments' configurations: one base class, TOML in and out, one way to validate.

Every experiment's options are a frozen dataclass deriving from :class:`ExperimentConfig`: it
lists its fields with defaults, types and one sentence of help each (:func:`option`: the
``--help`` of the field's flag), names its swept axes in ``AXES`` (lists of distinct numbers),
its reduced sizes in ``SMOKE`` (what :meth:`ExperimentConfig.smoke` builds, for tests and CI)
and checks its own ranges in ``check``. Converting and checking each field's kind (from
its annotation: ``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``,
``tuple[float, ...]``), reading a TOML file, applying overrides (command-line flags win),
refusing unknown keys and writing the resolved TOML for the dataset all live here, once. Every
bad option is a :class:`ConfigError` whose one-line message names it.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Demo(ExperimentConfig):
    ...     AXES = ("depths",)
    ...     SMOKE = {"depths": (2.0,)}
    ...     depths: tuple[float, ...] = (2.0, 3.0)
    ...     steps: tuple[int, ...] = (10, 20)
    ...     start: float = 0.1
    >>> Demo.from_mapping({"depths": [4, 5]}).depths, Demo.smoke().depths
    ((4.0, 5.0), (2.0,))
    >>> Demo(steps=(10, 2.5))
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: steps must be a list of integers, got (10, 2.5)
"""

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from jaxflow import _toml
from jaxflow.experiments._config_checks import (  # noqa: F401 -- public here
    _KINDS,
    DTYPES,
    MAX_CONFIG_BYTES,
    SEED_MAX,
    ConfigError,
    _is_real,
    as_axis,
    check_depths,
    check_finite_positive,
    check_dtype,
    check_fractions,
    check_known_fields,
    check_positive,
    check_positive_int,
    check_seed,
    check_steps,
    check_type,
    read_toml,
    suggest,
)

__all__ = [
    "RUN_KEYS",
    "ConfigError",
    "ExperimentConfig",
    "as_axis",
    "check_depths",
    "check_finite_positive",
    "check_dtype",
    "check_fractions",
    "check_known_fields",
    "check_positive",
    "check_positive_int",
    "check_seed",
    "check_steps",
    "check_type",
    "option",
    "read_toml",
    "suggest",
]


# Keys a TOML file may hold that say how the ``jaxflow`` command runs, not what it computes
# (``ray = "auto"``: its --ray). They are no part of any config, so not of a store's fingerprint:
# a run started on Ray resumes without it.
RUN_KEYS = ("ray",)


def option(default, help: str):
    """A config field whose ``help`` (one sentence, in the field's metadata) is what
    ``jaxflow experiment NAME --help`` prints for its flag, followed by the default.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Demo(ExperimentConfig):
    ...     scale: float = option(1e-3, "initialization scale sigma0")
    >>> dataclasses.fields(Demo)[0].metadata["help"], Demo().scale
    ('initialization scale sigma0', 0.001)
    """
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Base of every experiment's configuration (fields are declared by subclasses).

    Class attributes a subclass may set:
        AXES: names of the swept axes (lists of distinct numbers, stored as floats).
        SMOKE: the options of :meth:`smoke` (reduced sizes: seconds, for tests and CI).
        MODEL: written as ``model = ...`` at the head of :meth:`to_toml` (and accepted back).
        HINTS: ``{field: what to do}``, appended to the refusal of a value of the wrong kind.
        RENAMED: ``{old name: new name}`` of options renamed when the configs took one name per
            concept (``targets``, ``scale``/``scales``, ``num_steps``, ``horizon``,
            ``learning_rate``): an old name in a TOML table is refused with its new name, as is
            the old flag on the command line.

    Example (a subclass, as
    :class:`~jaxflow.experiments.phase_diagram.PhaseDiagramConfig` is one):
        >>> import dataclasses
        >>> from jaxflow.experiments.config import ConfigError, ExperimentConfig
        >>> @dataclasses.dataclass(frozen=True)
        ... class Grid(ExperimentConfig):
        ...     AXES = ("scales",)
        ...     scales: tuple[float, ...] = (1e-3,)
        ...     def check(self):
        ...         if min(self.scales) <= 0:
        ...             raise ConfigError("scales must be > 0")
        >>> Grid(scales=[1e-6, 1e-3]).scales
        (1e-06, 0.001)
    """

    AXES: ClassVar[tuple[str, ...]] = ()
    SMOKE: ClassVar[Mapping[str, Any]] = {}
    MODEL: ClassVar[str] = ""
    # What to do when an option of the wrong kind is refused, per field (appended to the error).
    HINTS: ClassVar[Mapping[str, str]] = {}
    RENAMED: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            try:
                if field.name in self.AXES:
                    value = as_axis(field.name, value)
                else:
                    value = check_type(field.name, value, field.type)
            except ConfigError as err:
                hint = self.HINTS.get(field.name)
                if hint is None:
                    raise
                raise ConfigError(f"{err}; {hint}") from None
            object.__setattr__(self, field.name, value)
        check_known_fields(self)
        self.check()

    @classmethod
    def smoke(cls, **overrides):
        """The reduced sizes of ``SMOKE`` (seconds; the tests and ``--smoke`` run them), with
        ``overrides`` on top.

        >>> from jaxflow.experiments.quadratic import QuadraticConfig
        >>> QuadraticConfig.smoke().d, QuadraticConfig.smoke(num_steps=4000).num_steps
        (10, 4000)
        """
        return cls(**{**cls.SMOKE, **overrides})

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
        """Build from a mapping (a parsed TOML table); unknown keys are an error, and so is a
        renamed one (``RENAMED``), whose error names the new name.

        >>> from jaxflow.experiments.diagonal import DiagonalConfig
        >>> DiagonalConfig.from_mapping({"values": [2.0, 1.0]})
        Traceback (most recent call last):
        ...
        jaxflow.experiments.config.ConfigError: config key 'values' was renamed 'targets'
        """
        known = {f.name for f in dataclasses.fields(cls)}
        table = {k: v for k, v in table.items() if not (k == "model" and v == cls.MODEL)}
        renamed = [k for k in table if k in cls.RENAMED]
        if renamed:
            raise ConfigError("; ".join(f"config key {old!r} was renamed {cls.RENAMED[old]!r}"
                                        for old in renamed))
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}{suggest(unknown, known)}; "
                              f"known: {', '.join(sorted(known))}")
        try:
            return cls(**table)
        except TypeError as err:
            raise ConfigError(str(err)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike | None = None, *,
                  defaults: Mapping[str, Any] | None = None, **overrides):
        """Read a TOML file (optional); ``overrides`` that are not None win over it, and it wins
        over ``defaults`` (e.g. ``cls.SMOKE`` for ``jaxflow experiment NAME --smoke``). The
        file's :data:`RUN_KEYS` are left to the ``jaxflow`` command."""
        table: dict[str, Any] = dict(defaults or {})
        if path is not None:
            table.update({k: v for k, v in read_toml(path).items() if k not in RUN_KEYS})
        table.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(table)

    def to_toml(self) -> str:
        """The resolved configuration as TOML text (stored in the dataset).

        >>> from jaxflow.experiments.phase_diagram import PhaseDiagramConfig
        >>> print(PhaseDiagramConfig(depths=(2.0, float("inf"))).to_toml().splitlines()[1])
        depths = [2.0, inf]
        """
        head = {"model": self.MODEL} if self.MODEL else {}
        # TOML has no null: an unset optional field (None) is left out, and reads back as None.
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return _toml.dumps({**head, **fields})
