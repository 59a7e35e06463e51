"""One status vocabulary and one table of exit statuses (no simulation; < 1 s).

* ``uncertain`` (7) is a named code, flagged in every stored ``status`` variable's CF attributes;
* ``status.not_answered`` counts every code but ``ok``; in a dataset every ``status`` and
  ``*_status`` variable counts, and a derived ``not_found`` only where a lane under it did not
  finish; ``status.answer_report`` says how many and which;
* ``jaxflow.cli.EXIT_STATUSES`` is the one table of exit statuses: the same codes and meanings
  in ``jaxflow --help``, the ``jaxflow.cli`` docstring and docs/guide.md; the guide's status
  table lists every code with its number.
"""

import os
import re

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli
from jaxflow.engine import status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_uncertain_is_a_named_flagged_code():
    assert status.UNCERTAIN == 7 and status.name(7) == "uncertain"
    flags = status.flag_attributes()
    assert flags["flag_values"].tolist() == list(range(8))
    assert flags["flag_meanings"].split()[-1] == "uncertain"


@pytest.mark.parametrize("codes, expected", [
    ([0, 0, 0], 0),
    ([0, 7, 0], 1),
    ([6, 1, 5, 0], 3),  # a bare not_found has no lanes to vouch for it
    (np.zeros((2, 3), np.int8), 0),
])
def test_not_answered_codes(codes, expected):
    assert status.not_answered(codes) == expected


def _dataset(lanes, thresholds):
    return xr.Dataset({
        "status": (("depth", "ratio", "log_scale"), np.array(lanes, np.int8)),
        "threshold_status": (("depth", "ratio"), np.array(thresholds, np.int8)),
        "margin": (("depth", "ratio", "log_scale"), np.zeros(np.shape(lanes))),
    })


def test_not_answered_dataset():
    # depth 0: all lanes ok, the threshold not found (an answer) / uncertain (not one);
    # depth 1: a max_steps lane under a not_found threshold: neither is an answer.
    ds = _dataset([[[0, 0], [0, 0]], [[0, 1], [0, 0]]], [[6, 7], [6, 0]])
    assert status.not_answered(ds) == 3
    assert status.answer_report(ds) == (
        "not answered: 3 of 12 (status: max_steps 1; threshold_status: not_found 1, "
        "uncertain 1)")
    ok = _dataset(np.zeros((1, 2, 2)), [[6, 0]])
    assert status.not_answered(ok) == 0 and status.answer_report(ok) == "answered: all 6"


def test_exit_statuses_one_table():
    table = cli.EXIT_STATUSES
    assert sorted(table) == [0, 1, 2, 3, 130]
    assert "damaged" in table[1] and "bad input" in table[2] and "interrupted" in table[130]
    assert "not ok" in table[3] and "last line" in table[3]
    help_text = cli.build_parser().format_help()
    doc = " ".join(cli.__doc__.split())
    with open(os.path.join(REPO, "docs", "guide.md"), encoding="utf-8") as fh:
        guide = fh.read()
    for code, meaning in table.items():
        words = " ".join(meaning.split())
        assert f"{code}    " in cli.__doc__ or f"{code}  " in cli.__doc__, code
        assert words in doc, (code, words)
        assert words in " ".join(help_text.split()), (code, words)
        assert f"| {code} | {meaning} |" in guide, code


def test_guide_lists_every_status_code():
    with open(os.path.join(REPO, "docs", "guide.md"), encoding="utf-8") as fh:
        guide = fh.read()
    rows = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", guide, flags=re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == status.NAMES
