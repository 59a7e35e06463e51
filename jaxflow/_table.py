"""The text tables the experiments' reports print: one formatter, so every table reads alike.

Each column is as wide as its widest cell, headers included (never cut); columns of numbers are
right-aligned, text columns left-aligned; a legend line says what special values mean.

Example:
    >>> from jaxflow._table import table
    >>> print(table(["backend", "depth", "t_half[0]"], [["flow", 2, "1.5"], ["descent", 2, "inf"]],
    ...             legend=["inf = never reached by the horizon"]))
    backend  depth  t_half[0]
    flow         2        1.5
    descent      2        inf
    legend: inf = never reached by the horizon
"""

import textwrap
from collections.abc import Iterable, Sequence

__all__ = ["table"]

WIDTH = 92  # the legend wraps here (the table's rows never do)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table(header: Sequence[str], rows: Iterable[Sequence], *, legend: Sequence[str] = ()) -> str:
    """``rows`` (cells already formatted, or anything ``str`` prints) under ``header``.

    Args:
        header: the column names (never truncated: a column is at least as wide as its name).
        rows: the rows, each with one cell per column.
        legend: what special values mean (``inf = never learned``, ...), after the table,
            joined by "; " and wrapped at :data:`WIDTH` characters (left out when empty).

    Returns:
        The table as text, without a final newline.
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    numeric = [len(cells) > 1 and all(_is_number(row[j]) for row in cells[1:])
               for j in range(len(header))]
    lines = ["  ".join(c.rjust(w) if num else c.ljust(w)
                       for c, w, num in zip(row, widths, numeric)).rstrip()
             for row in cells]
    if legend:
        lines += textwrap.wrap("legend: " + "; ".join(legend), width=WIDTH,
                               subsequent_indent=" " * len("legend: "), break_long_words=False,
                               break_on_hyphens=False)
    return "\n".join(lines)
