"""The notebooks in notebooks/: each one runs at smoke size, and each is stored as a full run.

* Every ``notebooks/*.ipynb`` is executed at smoke size (``JAXFLOW_SMOKE=1``: the notebooks
  cut their sizes), cell by cell, in an IPython shell inside this test process, as a kernel
  would run it (magics included, ``%matplotlib inline`` selects the inline backend); any error
  in any cell fails that notebook's test, naming the cell. Each notebook starts from an empty
  namespace, so one that leans on another's variables fails as it would alone.
* A smoke run is mostly tracing and XLA compilation, and the notebooks run the experiments at
  their registered smoke sizes (``Config.smoke()``). This file runs on the worker of
  tests/test_experiments.py, after it (xdist group ``smoke_runs``), in the same process: each
  experiment's programs, traced and compiled there, are found in JAX's in-memory caches, and a
  notebook's ``run`` of a smoke config costs its execution only. The suite's strict dtype
  promotion (tests/conftest.py) is part of those caches' keys, so the notebooks run under it
  too: they cast explicitly where the default promotion would have done it for them. (The
  eight notebooks, measured on the 2-core machine in a quiet process: 71-74 s in this shell
  after the smoke runs, 121 s in a fresh kernel of their own; in a full run of the suite,
  where the two workers share the cores, 106-109 s against 112 s.) Only the notebooks whose
  smoke test is selected run (``-k 01_toy_model`` executes that one).
* The expected set of notebooks exists, so a missing one fails rather than being skipped.
* The notebooks' figures follow jaxflow's figure style (read from their code, no run): a
  curve labelled with a depth takes that depth's colour (``plot.depth_colour``), labels write
  symbols in mathtext, never as ASCII (``sigma0``, ``beta_0``, ``r - 1``), and figures are
  drawn at 150 dpi or more.
* The stored files read well without running: every code cell has run, in order, without an
  error, the outputs come from a full-size run (the first cell prints its size), and each file
  stays small enough to browse.
"""

import ast
import contextlib
import gc
import os
import pathlib
import re
import sys

import pytest

# after tests/test_experiments.py on one worker: its smoke runs fill the compilation cache
pytestmark = pytest.mark.xdist_group("smoke_runs")

nbformat = pytest.importorskip("nbformat")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = {
    "01_toy_model",
    "02_phase_diagram",
    "03_matrix_sensing",
    "04_quadratic",
    "05_classification",
    "06_beyond_theory",
    "07_saddle_to_saddle",
    "08_edge_of_stability",
}
MAX_STORED_BYTES = 1_500_000
FOUND = sorted(NOTEBOOKS.glob("*.ipynb"))
IDS = [path.stem for path in FOUND]


def _first_code_output(notebook) -> str:
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    return "".join(out.get("text", "") for out in first.outputs)


def test_expected_notebooks_exist():
    assert EXPECTED <= set(IDS), sorted(EXPECTED - set(IDS))


@pytest.mark.parametrize("path", FOUND, ids=IDS)
def test_stored_outputs_are_a_full_run(path):
    assert path.stat().st_size <= MAX_STORED_BYTES
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"not run top to bottom once: {counts}"
    for cell in code:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, errors[0].get("ename")
    first = _first_code_output(notebook)
    assert "full size" in first, f"stored outputs are not from a full-size run: {first!r}"


# ASCII spellings of symbols that belong in mathtext (tests/test_figures.py checks jaxflow.plot)
_ASCII_MATH = re.compile(r"sigma0|sigma_|alpha|beta_|lambda_|\binf\b|\br ?- ?1\b|ratio ?- ?1|\^")
_TEXT_CALLS = {"set_xlabel", "set_ylabel", "set_title", "suptitle", "text", "annotate"}
_TEXT_KEYWORDS = {"label", "title", "value_label", "xlabel", "ylabel"}


def _literal_text(node) -> list[str]:
    """The literal text of a string expression (an f-string's fields as ``{}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)]
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + _literal_text(node.right)
    return []


def style_violations(source: str) -> list[str]:
    """What in one code cell breaks the figure style: ASCII math in a label, a depth named in
    a legend label other than by ``plot.depth_label``, a depth label without a colour."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        texts = [t for a in node.args for t in _literal_text(a)] if name in _TEXT_CALLS else []
        keywords = {kw.arg: kw.value for kw in node.keywords}
        texts += [t for k, v in keywords.items() if k in _TEXT_KEYWORDS for t in _literal_text(v)]
        found += [f"line {node.lineno}: ASCII math in {t!r}" for t in texts
                  if _ASCII_MATH.search(re.sub(r"\$[^$]*\$", "", t))]
        label = keywords.get("label")
        if label is not None and any(re.search(r"\bdepth \{", t) for t in _literal_text(label)):
            found.append(f"line {node.lineno}: a depth in a legend label; use plot.depth_label")
        if label is not None and "depth_label" in ast.unparse(label):
            if "color" not in keywords and "c" not in keywords:
                found.append(f"line {node.lineno}: a depth's curve without plot.depth_colour")
    return found


@pytest.mark.parametrize("path", FOUND, ids=IDS)
def test_figures_follow_the_style(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    found = [f"cell {i}: {v}" for i, source in enumerate(code) for v in style_violations(source)]
    assert not found, found
    dpi = re.search(r'"figure\.dpi":\s*(\d+)', code[0])
    assert dpi and int(dpi.group(1)) >= 150, "the first cell sets figure.dpi >= 150"
    # a curve labelled by depth takes the depth's colour: plot.depth_colour in that cell
    for source in code:
        if "depth_label(" in source and re.search(r"\blabel=", source):
            labelled = [line for line in source.splitlines() if "label=plot.depth_label" in line
                        or "label=f\"{plot.depth_label" in line]
            if labelled:
                assert "depth_colour(" in source, labelled


@pytest.mark.parametrize("source, problem", [
    ('ax.plot(x, y, label=plot.depth_label(3))', "without plot.depth_colour"),
    ('ax.plot(x, y, color=c, label=f"depth {n}")', "use plot.depth_label"),
    ('ax.set_xlabel("ratio - 1")', "ASCII math"),
    ('ax.set_ylabel("beta_0")', "ASCII math"),
    ('ax.plot(x, y, label=f"ln alpha = {a:.0f}")', "ASCII math"),
])
def test_the_style_check_sees_each_violation(source, problem):
    assert any(problem in v for v in style_violations(source)), source


def test_the_style_check_passes_styled_code():
    source = ('%matplotlib inline\n'
              'ax.plot(x, y, color=plot.depth_colour(d), label=plot.depth_label(d))\n'
              'ax.set_xlabel(r"$r - 1$"); ax.set_title(rf"$\\sigma_0 = {s:g}$")')
    assert style_violations(source) == []


class NotebookCellError(Exception):
    """A cell of a notebook raised: names the notebook and the cell, and chains the error."""


@contextlib.contextmanager
def _shell(directory: pathlib.Path):
    """An IPython shell in this process, run from ``directory`` with ``JAXFLOW_SMOKE=1``, as a
    kernel runs cells (magics included), without a kernel: ``%matplotlib inline`` selects the
    inline backend and needs no GUI event loop.

    What the notebooks change for the process is put back on leaving: matplotlib's backend,
    rcParams and interactive mode, figures, ``sys.modules["__main__"]`` (IPython installs its
    own), the working directory and ``JAXFLOW_SMOKE``."""
    import matplotlib
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):  # inline figures need no event loop
            pass

    config = Config()
    config.HistoryManager.enabled = False  # no history database on disk
    config.InteractiveShell.colors = "NoColor"  # a failing cell's traceback, readable in a log
    backend, interactive = matplotlib.get_backend(), matplotlib.is_interactive()
    main = sys.modules["__main__"]
    with pytest.MonkeyPatch.context() as mp, matplotlib.rc_context():
        mp.setenv("JAXFLOW_SMOKE", "1")
        mp.chdir(directory)
        shell = Shell.instance(config=config)
        try:
            yield shell
        finally:
            shell.reset(new_session=False)
            Shell.clear_instance()
            plt.close("all")
            sys.modules["__main__"] = main
            matplotlib.use(backend)
            matplotlib.interactive(interactive)


def _execute(path: pathlib.Path, shell) -> list[str]:
    """Run every code cell of ``path`` in ``shell`` from an empty namespace, as a kernel would;
    the stdout of each cell, or NotebookCellError naming the first cell that raised."""
    from IPython.utils.capture import capture_output

    shell.reset(new_session=False)  # a notebook that leans on another's variables fails
    notebook = nbformat.read(path, as_version=4)
    outputs = []
    for index, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        with capture_output() as captured:
            result = shell.run_cell(cell.source, store_history=False)
        outputs.append(captured.stdout)
        if not result.success:
            error = result.error_before_exec or result.error_in_exec
            raise NotebookCellError(
                f"{path.name}, code cell {index}: {type(error).__name__}: {error}\n"
                f"{captured.stdout[-3000:]}") from error
    return outputs


def _selected_smoke_runs(session) -> list[pathlib.Path]:
    """The notebooks whose smoke test this session runs (``-k`` may select a few)."""
    stems = {item.callspec.params["path"].stem for item in session.items
             if getattr(item, "originalname", None) == "test_notebook_runs_at_smoke_size"}
    return [path for path in FOUND if path.stem in stems]


@pytest.fixture(scope="module")
def smoke_runs(request):
    """Execute every selected notebook once, in this process; ``{stem: outputs or exception}``."""
    import matplotlib.pyplot as plt

    selected = _selected_smoke_runs(request.session)
    results = {}
    if not selected:
        return results
    # IPython's reset (one per notebook) collects the whole heap, a second each by now: what the
    # tests before built is frozen out of its reach (tests/conftest.py freezes what was imported)
    gc.collect()
    gc.freeze()
    with _shell(NOTEBOOKS) as shell:
        for path in selected:
            try:
                results[path.stem] = _execute(path, shell)
            except Exception as error:  # one notebook's failure fails its own test only
                results[path.stem] = error
            finally:
                plt.close("all")
    return results


def test_a_failing_cell_is_named_and_each_notebook_starts_empty(tmp_path):
    """The runner above fails a notebook at its first failing cell, naming it, and gives each
    notebook an empty namespace: a variable of the notebook before is gone."""
    def write(name, *sources):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
        nbformat.write(notebook, tmp_path / name)
        return tmp_path / name

    import matplotlib

    first = write("first.ipynb", "%matplotlib inline\nshared = 1\nprint('SMOKE size')")
    second = write("second.ipynb", "import os", "print(shared)")
    broken = write("broken.ipynb", "x = 1", "x / 0", "print('never')")
    before = (os.environ.get("JAXFLOW_SMOKE"), os.getcwd(), sys.modules["__main__"],
              matplotlib.get_backend())
    with _shell(tmp_path) as shell:
        assert _execute(first, shell)[0] == "SMOKE size\n"
        assert matplotlib.get_backend().endswith("backend_inline")
        with pytest.raises(NotebookCellError, match=r"second.ipynb, code cell 1: NameError"):
            _execute(second, shell)
        with pytest.raises(NotebookCellError, match=r"code cell 1: ZeroDivisionError") as info:
            _execute(broken, shell)
        assert "x / 0" in str(info.value)  # the cell's traceback, for the log
        assert os.environ["JAXFLOW_SMOKE"] == "1" and pathlib.Path.cwd() == tmp_path
    after = (os.environ.get("JAXFLOW_SMOKE"), os.getcwd(), sys.modules["__main__"],
             matplotlib.get_backend())
    assert after == before  # put back


@pytest.mark.parametrize("path", FOUND, ids=IDS)
def test_notebook_runs_at_smoke_size(path, smoke_runs):
    result = smoke_runs[path.stem]
    if isinstance(result, BaseException):
        raise result
    assert "SMOKE size" in result[0]
