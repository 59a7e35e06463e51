"""The command line's own syntax: no abbreviations, one-line errors, lists of numbers
(``1,2,inf``, ``MIN:MAX:NUM`` log-spaced, ``ln sigma0`` ranges) checked before they are built.
"""

import argparse

from jaxflow.cli._errors import CliError

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "_axis_count", "_check_axis_length", "_HelpFormatter", "_items", "_log_numbers", "_numbers",
    "_parse", "_Parser",
]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks; appends each option's default to its help.

    Flags (``--quiet``) and options whose default is None (a value taken from the config class,
    whose help then names that default itself) say nothing more.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """No abbreviated options (``--dep`` is not ``--depths``), defaults in ``--help``,
    argparse's errors (unknown choice, not a number, ...) as one-line CliErrors.

    ``flags`` lists the parser's option strings, for "did you mean" on an unknown one.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        self.flags: list[str] = []  # before __init__, which adds --help
        super().__init__(*args, **kwargs)
        self.set_defaults(_flags=self.flags)  # the innermost sub-command's list wins

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        self.flags.extend(action.option_strings)
        return action

    def error(self, message):
        raise CliError(message)


def _parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, an unknown option a CliError naming the closest known ones."""
    from jaxflow.experiments.config import suggest

    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [a.split("=")[0] for a in extra if a.startswith("-")]
        hint = suggest(unknown, getattr(args, "_flags", ()))
        raise CliError(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _numbers(text: str, option: str) -> list[float]:
    """Parse ``1,2,inf`` / ``1 2 3`` / ``MIN:MAX:NUM`` (log-spaced) into floats."""
    import numpy as np

    text = text.strip()
    try:
        if ":" in text:
            lo, hi, num = text.split(":")
            lo, hi, n = float(lo), float(hi), int(num)
            if not (lo > 0 and hi > 0 and n >= 1):
                raise ValueError
            _check_axis_length(option, n)
            return [float(v) for v in np.geomspace(lo, hi, n)]
        values = [float(v) for v in _items(text, option)]
    except ValueError:
        raise CliError(
            f"{option}: expected numbers like '1,2,inf' or MIN:MAX:NUM (log-spaced), got {text!r}"
        ) from None
    if not values:
        raise CliError(f"{option}: must not be empty")
    return values


def _items(text: str, option: str) -> list[str]:
    """The items of a list flag: ``2,3`` or ``2 3`` (or ``2, 3``); an empty item is refused.

    >>> _items("2, 3 4", "--depths")
    ['2', '3', '4']
    >>> _items("2,,3", "--depths")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxflow.cli.CliError: --depths: item 2 of '2,,3' is empty; separate values by one comma, ...
    """
    pieces = text.split(",")
    for k, piece in enumerate(pieces):
        if len(pieces) > 1 and not piece.strip():
            raise CliError(f"{option}: item {k + 1} of {text!r} is empty; separate values by "
                           "one comma, e.g. '2,3'")
    return [token for piece in pieces for token in piece.split()]


def _axis_count(text: str, option: str) -> int:
    """How many values a list flag holds (``MIN:MAX:NUM`` is NUM), without making them.

    >>> _axis_count("1e-9:1e-1:10000000", "--scales"), _axis_count("2,3,inf", "--depths")
    (10000000, 3)
    """
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            n = int(parts[2])
            if n < 1:
                raise ValueError
        except ValueError:
            raise CliError(f"{option}: expected MIN:MAX:NUM with a count NUM >= 1, or a list "
                           f"like '1,2,inf', got {text!r}") from None
        _check_axis_length(option, n)
        return n
    return max(1, len(_items(text, option)))


def _log_numbers(text: str, option: str) -> list[float]:
    """Parse ``ln sigma0`` values: ``-1e4:-2.3:128`` (log-spaced in ``ln(1/sigma0)``) or a list."""
    import numpy as np

    text = text.strip()
    if ":" not in text:
        return _numbers(text, option)
    try:
        lo, hi, num = text.split(":")
        lo, hi, n = float(lo), float(hi), int(num)
        if not (lo < 0 and hi < 0 and n >= 1):
            raise ValueError
        _check_axis_length(option, n)
    except ValueError:
        raise CliError(
            f"{option}: expected A:B:K with A, B < 0 (ln sigma0; K values log-spaced in "
            f"ln(1/sigma0)) or a list like '-5000,-100,-2.3', got {text!r}"
        ) from None
    return [float(-v) for v in np.geomspace(-lo, -hi, n)]


def _check_axis_length(option: str, n: int) -> None:
    """Refuse an axis whose values alone would not fit in memory (before making them)."""
    from jaxflow.sweep import resources as _resources

    try:
        _resources.check(memory=64 * n)  # a float, its Python object and a tuple slot
    except _resources.SizeError as err:
        raise CliError(f"{option}: {n} values: {err}") from None
