"""Flags from config classes: one per field, its help the field's own sentence
(:func:`jaxflow.experiments.config.option`), its text parsed to what a TOML file would hold;
renamed and removed flags refused in one line naming what replaces them.
"""

import argparse
import dataclasses
import types
import typing

from jaxflow.cli._errors import CliError
from jaxflow.cli._parsing import _axis_count, _items, _log_numbers, _numbers

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "_add_config_flags", "_Axis", "_FIELD", "_field_kind", "_field_parser", "_flag",
    "_flag_values", "_list_counts", "_load_config", "_read_table", "_Removed", "_Renamed",
    "_show",
]

_FIELD = "field:"  # namespace prefix of the flags generated from a config's fields


def _load_config(cls, path, overrides, defaults=None):
    """A config from an optional TOML file over ``defaults``, flags (not None) overriding it
    (an :class:`_Axis` built here, once the size check has counted it)."""
    from jaxflow.experiments.config import ConfigError

    overrides = {k: v.values() if isinstance(v, _Axis) else v for k, v in overrides.items()}
    try:
        return cls.from_toml(path, defaults=defaults, **overrides)
    except ConfigError as err:
        raise CliError(str(err)) from None


def _field_kind(cls, field: dataclasses.Field):
    """A field's annotation, ``X | None`` read as ``X``."""
    kind = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    return kind


def _field_parser(name: str, kind):
    """The ``type=`` of a field's flag: text to the value a TOML file would hold.

    Lists are ``2,3`` or ``2 3``; lists of numbers also ``MIN:MAX:NUM`` (log-spaced; for
    ``log_scales`` as in ``phase-diagram --log-scales``), kept as typed (:class:`_Axis`) until
    the size check has counted them. What the text holds is checked by the config class,
    exactly as a TOML value is.
    """
    flag = "--" + name.replace("_", "-")

    def scalar(text: str):
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        return text

    def parse(text: str):
        if typing.get_origin(kind) is tuple:
            if typing.get_args(kind)[0] is float:
                return _Axis(text, flag, log=name == "log_scales")
            return [scalar(t) for t in _items(text, flag)]
        if kind is bool:
            return {"true": True, "false": False}.get(text.strip().lower(), text)
        return text if kind is str else scalar(text.strip())

    return parse


class _Axis:
    """A list of numbers as typed on the command line: counted without being built, so that a
    run too big for the machine is refused before its axes exist (``1e-100:1e-2:10000000``)."""

    def __init__(self, text: str, flag: str, log: bool):
        self.text, self.flag, self.log = text, flag, log

    def __len__(self) -> int:
        return _axis_count(self.text, self.flag)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Axis) and (self.text, self.flag, self.log) == (
            other.text, other.flag, other.log)

    def __repr__(self) -> str:
        return f"{self.flag} {self.text!r}"

    def values(self) -> list[float]:
        return (_log_numbers if self.log else _numbers)(self.text, self.flag)


def _flag_values(args) -> dict:
    """``{field: value}`` of the config flags given (an :class:`_Axis` still as typed)."""
    return {name[len(_FIELD):]: value for name, value in vars(args).items()
            if name.startswith(_FIELD) and value is not None}


def _list_counts(cls, args) -> dict[str, int]:
    """How many values each list field of ``cls`` will hold (flags < ``--config`` < smoke
    sizes < defaults, the config's own precedence), counted without building a flag's values;
    ``chunk_size`` too, where the config has one (an invalid one is left for the config to
    refuse)."""
    table = _read_table(args.config)
    given = {**(cls.SMOKE if args.smoke else {}), **table, **_flag_values(args)}
    counts = {}
    for field in dataclasses.fields(cls):
        value = given.get(field.name, field.default)
        if typing.get_origin(_field_kind(cls, field)) is tuple and value is not None:
            counts[field.name] = len(value) if isinstance(value, (list, tuple, _Axis)) else 1
    chunk = given.get("chunk_size")
    if isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1:
        counts["chunk_size"] = chunk
    return counts


def _read_table(path) -> dict:
    """The ``--config`` file's table (``{}`` without one); a bad file is a CliError."""
    from jaxflow.experiments.config import ConfigError, read_toml

    try:
        return read_toml(path) if path is not None else {}
    except ConfigError as err:
        raise CliError(str(err)) from None


def _show(value) -> str:
    """A default, short: long lists by their length and ends."""
    if isinstance(value, tuple):
        if len(value) > 6:
            return f"{len(value)} values, {value[0]:g} .. {value[-1]:g}"
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of the config class ``cls``: ``--learning-rate`` sets
    ``learning_rate``; its help is the field's own sentence (:func:`~jaxflow.experiments.config.
    option`), the default and the smoke size. A renamed field's old flag is refused."""
    group = parser.add_argument_group(
        f"options of {cls.__name__} (over --config; a list is '2,3', a list of numbers also "
        "MIN:MAX:NUM, log-spaced; a value starting with '-' is written --option=-1)")
    for field in dataclasses.fields(cls):
        kind = _field_kind(cls, field)
        default = field.default if field.default is not dataclasses.MISSING else None
        said = f"default: {_show(default)}" if default is not None else "default: unset"
        if field.name in cls.SMOKE:
            smoke = cls.SMOKE[field.name]
            said += f"; --smoke: {_show(tuple(smoke) if isinstance(smoke, list) else smoke)}"
        metavar = ("LIST" if typing.get_origin(kind) is tuple
                   else {bool: "true|false", int: "N", float: "X"}.get(kind, "TEXT"))
        text = field.metadata.get("help", "").replace("%", "%%")
        action = group.add_argument(_flag(field.name), dest=_FIELD + field.name,
                                    type=_field_parser(field.name, kind), metavar=metavar,
                                    help=f"{text} ({said})".strip())
        parser.flags.extend(action.option_strings)  # a group's options bypass _Parser
    for old, new in cls.RENAMED.items():
        group.add_argument(_flag(old), action=_Renamed, new=_flag(new), nargs="?",
                           help=argparse.SUPPRESS)


def _flag(name: str) -> str:
    """The flag of a config field: ``learning_rate`` is ``--learning-rate``."""
    return "--" + name.replace("_", "-")


class _Removed(argparse.Action):
    """A flag that was removed: refused with ``message`` (what to do instead)."""

    def __init__(self, *args, message: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None):
        raise CliError(self.message)


class _Renamed(argparse.Action):
    """A flag renamed when the configs took one name per concept: refused, naming the new one."""

    def __init__(self, *args, new: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        raise CliError(f"{option_string} was renamed {self.new}")
