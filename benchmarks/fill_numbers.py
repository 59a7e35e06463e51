"""Fill the generated blocks of README.md and docs/ from the JSON the benchmarks write.

A performance or accuracy number in README.md or docs/**/*.md is never typed by hand: it
stands in a generated block,

    <!-- numbers: NAME -->
    ...text written by this script...
    <!-- /numbers -->

whose text :data:`BLOCKS` renders from ``benchmarks/results/*.json`` (each block names its
source). ``python benchmarks/fill_numbers.py`` rewrites every block; ``--check`` changes nothing
and exits 1 naming the stale blocks. tests/test_docs_numbers.py runs the check and fails on any
number with a unit (s, us, x, %, e-N) written outside a block.

After rerunning a benchmark (``python benchmarks/phase_diagram.py``, ...), run this script and
commit the JSON and the pages together.
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- numbers: ([\w-]+) -->\n)(.*?)(<!-- /numbers -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _source(*names: str) -> str:
    return "; ".join(f"[{n}.json](benchmarks/results/{n}.json)" for n in names)


def phase_diagram_run() -> str:
    r = _load("phase_diagram")
    return (f"The first command took {r['wall_s']:.1f} s on a {r['machine']['cpu_count']}-core "
            f"CPU machine with an empty XLA cache (load {r['machine']['load_average'][0]:.1f}, "
            f"commit `{r['commit'][:7]}`).\n")


def phase_diagram_accuracy() -> str:
    r = _load("phase_diagram")
    return (f"It simulates {r['trajectories']:,} trajectories ({r['depths']} depths x "
            f"{r['ratios']} ratios x {r['scales']} initial scales). Fitted slopes are within "
            f"{100 * r['max_slope_deviation']:.2f}% of N/(N-2) for every finite depth above 2; "
            f"depth 2's fitted constant is {r['depth2_constant_fitted']:.4f} against its exact "
            f"limit {r['depth2_constant_exact']:.4f}; the worst log threshold error is "
            f"{r['max_log_threshold_error']:.1e} (solver rtol {r['rtol']:.0e}).\n")


def benchmarks_table() -> str:
    toy = _load("toy_throughput")
    engines = _load("flow_engines")
    padding = _load("depth_padding")
    torch = _load("matrix_sensing_torch")["torch"]
    sensing = _load("matrix_sensing")["targets"]
    sweep = _load("sweep_scaling")
    rows = [("benchmark", "result", "source")]
    rows.append((
        f"toy throughput: {toy['lanes']:,} trajectories, depth {toy['depth']:g}, "
        f"{toy['dtype']} (`python benchmarks/toy_throughput.py`)",
        f"{toy['us_per_trajectory']:.2f} us per trajectory against scipy's "
        f"{toy['scipy_us_per_trajectory'] / 1000:.2f} ms ({toy['speedup_vs_scipy']:.0f}x); "
        f"steps {toy['steps_min_median_max'][0]}-{toy['steps_min_median_max'][2]}; "
        f"max learning-time error {toy['max_rel_learning_time_error']:.1e}",
        _source("toy_throughput")))
    by_engine = {}
    for row in engines["rows"]:
        by_engine.setdefault(row["engine"], []).append(row)
    cells = []
    for engine, runs in by_engine.items():
        ok = sum(r["status"].get("ok", 0) for r in runs)
        total = sum(sum(r["status"].values()) for r in runs)
        us = [r["us_per_trajectory"] for r in runs]
        cells.append(f"{engine}: {ok}/{total} ok, {min(us):.0f}-{max(us):.0f} us")
    rows.append((f"flow engines on many-mode toy spectra ({engines['meta']['lanes']} lanes a case; "
                 "`python benchmarks/flow_engines.py`)", "; ".join(cells),
                 _source("flow_engines")))
    padded = padding["rows"]
    rows.append(("E1 depth as data, compile + run (`python benchmarks/depth_padding.py`)",
                 "; ".join(f"{k} {v['total_s']:.1f} s" for k, v in padded.items()),
                 _source("depth_padding")))
    rows.append(("E1 gradient-descent loop against PyTorch eager "
                 "(`python benchmarks/matrix_sensing.py --skip-cost`)",
                 f"one run {torch['single']['speedup']:.2f}x faster per step",
                 _source("matrix_sensing_torch")))
    ratio = sensing["evals_ratio_1e-8_depth4_estimated_gd"]["RKC plain"]
    rows.append(("E1 gradient evaluations, descent against flow with RKC, depth 4, init 1e-8 "
                 "(`python benchmarks/matrix_sensing.py`)", f"{ratio:.1f}x fewer for the flow",
                 _source("matrix_sensing")))
    one = sweep["results"][0]
    rows.append(("sweep scaling (`python benchmarks/sweep_scaling.py`)",
                 " / ".join(f"{r['wall_s']:.2f} s" for r in one["rows"]) + " for "
                 + " / ".join(f"{r['points']:,}" for r in one["rows"])
                 + f" points on {one['devices']} device (log-log slope {one['slope']:.2f})",
                 _source("sweep_scaling")))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|---|---|---|")
    return "\n".join(lines) + "\n"


def learning_time_accuracy() -> str:
    r = _load("learning_time_accuracy")
    d, pd = r["settings"]["default (1e-10)"], r["settings"]["phase diagram (1e-8)"]
    return (f"Learning times against theory on a toy grid (depths 1.5 to inf, sigma0 down to "
            f"{min(r['grid']['sigma0']):g}, learning times from {d['shortest_time']:.1e}): worst "
            f"relative error {d['worst_relative_error']:.1e} at the flow's default "
            f"rtol = atol = {d['rtol']:g}, {pd['worst_relative_error']:.1e} at the phase "
            f"diagram's {pd['rtol']:g} (`{r['command']}`; {_source('learning_time_accuracy')}).\n")


def lorenz_ensemble() -> str:
    r = _load("lorenz_ensemble")
    machine = r["machine"]
    head = (f"Measured {r['date']} on {machine['cpu_count']} cores ({machine['processor']}, load "
            f"{machine['load_average'][0]:.1f}), commit `{r['commit'][:7]}`, best of "
            f"{r['repeats']} runs, compilation excluded ({_source('lorenz_ensemble')}):\n\n")
    rows = [("mode", "dtype", "n", "jaxflow", "diffrax vmap", "scipy loop",
             "max deviation jaxflow / diffrax", "steps; idle slot share", "of FMA peak")]
    for row in r["rows"]:
        us, ratio, dev = row["us_per_trajectory"], row["ratio"], row["max_abs_deviation"]
        rows.append((
            row["mode"], row["dtype"], f"{row['n']:,}", f"{us['jaxflow']:.2f} us",
            f"{us['diffrax_vmap']:.2f} us ({ratio['diffrax_vmap_over_jaxflow']:.1f}x)",
            f"{us['scipy']:.0f} us ({ratio['scipy_over_jaxflow']:.0f}x)",
            f"{dev['jaxflow']:.1e} / {dev['diffrax_vmap']:.1e}",
            "{}-{}; {:.0f}%".format(*row["steps_min_max"], 100 * row["wasted_lane_steps"]),
            f"{100 * row['fraction_of_peak']:.0f}% ({row['flops_per_lane_step']:.0f} flop a "
            f"lane-step)"))
    lines = ["| " + " | ".join(x) + " |" for x in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return head + "\n".join(lines) + "\n"


BLOCKS = {
    "lorenz-ensemble": lorenz_ensemble,
    "learning-time-accuracy": learning_time_accuracy,
    "phase-diagram-run": phase_diagram_run,
    "phase-diagram-accuracy": phase_diagram_accuracy,
    "benchmarks": benchmarks_table,
}


def pages() -> list[pathlib.Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def fill(text: str, path: str = "") -> str:
    """``text`` with every generated block rendered afresh; a ``KeyError`` names an unknown
    block."""

    def render(match: re.Match) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            raise KeyError(f"{path}: unknown generated block {name!r}; known: {sorted(BLOCKS)}")
        return match.group(1) + BLOCKS[name]() + match.group(4)

    return BLOCK.sub(render, text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for page in pages():
        text = page.read_text()
        new = fill(text, str(page.relative_to(ROOT)))
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if "--check" not in argv:
                page.write_text(new)
    if stale:
        print(("stale: " if "--check" in argv else "rewrote: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main())
