"""The notebooks in notebooks/: each one runs at smoke size, and each is stored as a full run.

* Every ``notebooks/*.ipynb`` is executed with nbclient in a fresh kernel with
  ``JAXFLOW_SMOKE=1`` (the notebooks cut their sizes) and ``JAXFLOW_CPU_DEVICES=1``; any error
  in any cell fails the test. The kernel imports jaxflow from this checkout (its root goes first
  on ``PYTHONPATH``), whatever copy is installed.
* The expected set of notebooks exists, so a missing one fails rather than being skipped.
* The stored files read well without running: every code cell has run, in order, without an
  error, the outputs come from a full-size run (the first cell prints its size), and each file
  stays small enough to browse.
"""

import os
import pathlib

import pytest


nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = {
    "01_toy_model",
    "02_phase_diagram",
    "03_matrix_sensing",
    "04_quadratic",
    "06_beyond_theory",
}
CELL_TIMEOUT = 300  # seconds per cell; a smoke cell takes well under a minute on 2 cores
MAX_STORED_BYTES = 1_500_000
FOUND = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_expected_notebooks_exist():
    assert EXPECTED <= {path.stem for path in FOUND}, sorted(EXPECTED - {p.stem for p in FOUND})


@pytest.mark.parametrize("path", FOUND, ids=[path.stem for path in FOUND])
def test_stored_outputs_are_a_full_run(path):
    assert path.stat().st_size <= MAX_STORED_BYTES
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"not run top to bottom once: {counts}"
    for cell in code:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, errors[0].get("ename")
    first = "".join(out.get("text", "") for out in code[0].outputs)
    assert "full size" in first, f"stored outputs are not from a full-size run: {first!r}"


@pytest.mark.parametrize("path", FOUND, ids=[path.stem for path in FOUND])
def test_notebook_runs_at_smoke_size(path, monkeypatch):
    # nbclient starts the kernel with this process's environment.
    monkeypatch.setenv("JAXFLOW_SMOKE", "1")
    monkeypatch.setenv("JAXFLOW_CPU_DEVICES", "1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "SMOKE size" in "".join(out.get("text", "") for out in first.outputs)
