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
    warm = (f", {r['warm_wall_s']:.1f} s run again with the XLA cache it filled"
            if "warm_wall_s" in r else "")
    return (f"The first command took {r['wall_s']:.1f} s on a {r['machine']['cpu_count']}-core "
            f"CPU machine with an empty XLA cache{warm} (load "
            f"{r['machine']['load_average'][0]:.1f}, commit `{r['commit'][:7]}`).\n")


def phase_diagram_accuracy() -> str:
    r = _load("phase_diagram")
    return (f"It simulates {r['trajectories']:,} trajectories ({r['depths']} depths x "
            f"{r['ratios']} ratios x {r['scales']} initial scales). Fitted slopes are within "
            f"{100 * r['max_slope_deviation']:.2f}% of N/(N-2) for every finite depth above 2; "
            f"depth 2's fitted constant is {r['depth2_constant_fitted']:.4f} against its exact "
            f"limit {r['depth2_constant_exact']:.4f}; the worst log threshold error is "
            f"{r['max_log_threshold_error']:.1e} (solver rtol {r['rtol']:.0e})"
            + (f"; the work queues idled {100 * r['wasted_share']:.1f}% of their slot iterations"
               if "wasted_share" in r else "") + ".\n")


def _one_device_engines(engines, scipy_us=None) -> str:
    """The toy benchmark's one-device comparison of the two engines, if it was measured, and
    the ensemble engine on every device (against the scipy loop of the same run)."""
    if not engines:
        return ""
    def versus(run):
        vmap, queue = run["vmap"], run["ensemble"]
        return (f"the ensemble engine {queue['us_per_trajectory']:.2f} us against vmap's "
                f"{vmap['us_per_trajectory']:.2f} us ({run['ensemble_speedup']:.2f}x; lane work "
                f"wasted {queue['wasted_share']:.1%} against {vmap['wasted_share']:.0%} in "
                "lockstep)")

    every = engines["ensemble_all_devices"]
    return (f"; on one device ({engines['lanes']:,} lanes) {versus(engines)}, and with depths "
            f"2..inf mixed {versus(engines['mixed_depths'])}; the ensemble engine on all "
            f"{every['devices']} devices, {every['lanes']:,} lanes: "
            f"{every['us_per_trajectory']:.2f} us"
            + (f" ({scipy_us / every['us_per_trajectory']:.0f}x scipy's)" if scipy_us else ""))


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
        f"max learning-time error {toy['max_rel_learning_time_error']:.1e}"
        + _one_device_engines(toy.get("one_device_engines"), toy["scipy_us_per_trajectory"]),
        _source("toy_throughput")))
    queues = _load("phase_diagram_engines")
    rows.append((
        f"phase diagram's default grid, {queues['points']:,} points on "
        f"{queues['machine']['devices']} devices (`python benchmarks/phase_diagram_engines.py`)",
        f"work queues {queues['queues']['seconds']:.2f} s against lockstep "
        f"{queues['lockstep']['seconds']:.2f} s ({queues['speedup']:.2f}x); attempts per point "
        f"{queues['queues']['attempts_per_point']:.0f} against "
        f"{queues['lockstep']['attempts_per_point']:.0f}; queues idle "
        f"{100 * queues['queues']['idle_share']:.1f}%; same status and verdict on every point: "
        f"{'yes' if queues['same_status'] and queues['same_verdict'] else 'no'}; worst margin "
        f"error {queues['queues']['max_margin_error']:.1e} against "
        f"{queues['lockstep']['max_margin_error']:.1e}",
        _source("phase_diagram_engines")))
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
    base = one["rows"][-1]  # the largest grid on one device
    speedups = ", ".join(
        f"{res['devices']} devices {base['wall_s'] / res['rows'][-1]['wall_s']:.2f}x"
        for res in sweep["results"][1:])
    rows.append(("sweep scaling (`python benchmarks/sweep_scaling.py`)",
                 " / ".join(f"{r['wall_s']:.2f} s" for r in one["rows"]) + " for "
                 + " / ".join(f"{r['points']:,}" for r in one["rows"])
                 + f" points on {one['devices']} device (log-log slope {one['slope']:.2f}); "
                 + f"{base['points']:,} points on {speedups} faster "
                 + f"({sweep['machine']['cpu_count']} cores)",
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


def _gallery_entries() -> list[tuple[str, dict]]:
    r = _load("gallery")
    return [(name, r["entries"][name]) for name in r["order"] if name in r["entries"]]


def _made_by(entry: dict) -> str:
    """How an image was made: the command, the commit of its code, the run's wall time and,
    when some requested answer was not ok (exit status 3), the run's own last line."""
    text = (f"`{entry['command']}` at commit `{entry['commit']}`, {entry['wall_s']:.0f} s on "
            f"{_load('gallery')['machine']['cpu_count']} shared CPU cores (load "
            f"{entry['load_average'][0]:.1f} at the start)")
    if entry["exit_status"] != 0:
        text += f" (exit status {entry['exit_status']}: {entry['last_lines'][-1]})"
    return text


def gallery_table() -> str:
    """README's gallery: a table of links to the images, with the command and commit."""
    rows = ["| figure | made by |", "|---|---|"]
    for _, entry in _gallery_entries():
        for figure in entry["figures"]:
            rows.append(f"| [{figure['caption']}](docs/{figure['file']}) | {_made_by(entry)} |")
    return "\n".join(rows) + f"\n\n({_source('gallery')}: `python benchmarks/gallery.py`)\n"


def gallery_page() -> str:
    """docs/gallery.md: each image shown, captioned with its command and commit."""
    parts = []
    for name, entry in _gallery_entries():
        parts.append(f"## {name}\n")
        for figure in entry["figures"]:
            parts.append(f"![{figure['caption']}]({figure['file']})\n\n"
                         f"*{figure['caption'][0].upper() + figure['caption'][1:]}.* "
                         f"Made by {_made_by(entry)}.\n")
    return "\n".join(parts)


def large_step_thresholds() -> str:
    r = _load("large_steps")["thresholds"]
    factors = r["eta_factors"]
    head = "| depth | r | sigma_th(flow) | " + " | ".join(f"{f:g}" for f in factors) + " |"
    lines = [head, "|" + "---|" * (3 + len(factors))]
    for row in r["rows"]:
        cells = [f"{q:.3f}" if code == "ok" else (f"{q:.3f}?" if code == "uncertain" else code)
                 for q, code in zip(row["threshold_ratio"], row["status"])]
        lines.append(f"| {row['depth']} | {row['ratio']:g} | {row['sigma_th_flow']:.3g} | "
                     + " | ".join(cells) + " |")
    ok = [q for row in r["rows"]
          for q, c in zip(row["threshold_ratio"], row["status"]) if c == "ok"]
    return ("\n".join(lines) + "\n\n"
            f"sigma_th(descent) / sigma_th(flow) against eta lambda / 2 (columns); `?`: uncertain "
            f"(the answer flips again within the check window). Range over the answered lanes: "
            f"{min(ok):.3f} to {max(ok):.3f}. `{r['command']}` took {r['wall_s']:.0f} s on "
            f"{_load('large_steps')['cpu_count']} CPU cores "
            "(`benchmarks/results/large_steps.json`).\n")


def large_step_diagonal() -> str:
    r = _load("large_steps")["diagonal"]
    factors = r["eta_factors"]
    head = "| depth | quantity | " + " | ".join(f"{f:g}" for f in factors) + " |"
    lines = [head, "|" + "---|" * (2 + len(factors))]
    for row in r["rows"]:
        lines.append(f"| {row['depth']:g} | l1 / l1 flow | "
                     + " | ".join(f"{v:.3f}" for v in row["l1_ratio"]) + " |")
        lines.append(f"| {row['depth']:g} | distance to flow | "
                     + " | ".join(f"{v:.3g}" for v in row["distance"]) + " |")
        lines.append(f"| {row['depth']:g} | seeds converged (oscillating) | "
                     + " | ".join(f"{v}/{r['seeds']} ({o})" for v, o in
                                  zip(row["converged"], row["oscillating"])) + " |")
    stable = all(row["stable_at_end"] for row in r["rows"])
    return ("\n".join(lines) + "\n\n"
            f"Medians over the seeds whose descent converged to an interpolator (loss at most "
            f"1e-12; oscillating: still at the edge of stability at the horizon; "
            f"d = {r['d']}, m = {r['m']}, "
            f"{r['seeds']} seeds); every converged run ended with sharpness at most 2 / eta: "
            f"{'yes' if stable else 'no'}. `{r['command']}` took {r['wall_s']:.0f} s "
            f"(`benchmarks/results/large_steps.json`).\n")


def lorenz_ensemble() -> str:
    r = _load("lorenz_ensemble")
    machine = r["machine"]
    head = (f"Measured {r['date']} on {machine['cpu_count']} cores ({machine['processor']}, load "
            f"{machine['load_average'][0]:.1f}), commit `{r['commit'][:7]}`, best of "
            f"{r['repeats']} runs, compilation excluded ({_source('lorenz_ensemble')}):\n\n")
    devices = r["rows"][0].get("devices", {}).get("jaxflow", 1)
    rows = [("mode", "dtype", "n", f"jaxflow ({devices} devices; one device)", "diffrax vmap",
             "scipy loop", "max deviation jaxflow / diffrax", "steps; idle slot share",
             "of FMA peak")]
    for row in r["rows"]:
        us, ratio, dev = row["us_per_trajectory"], row["ratio"], row["max_abs_deviation"]
        one = f"; {us['jaxflow_one_device']:.2f} us" if "jaxflow_one_device" in us else ""
        rows.append((
            row["mode"], row["dtype"], f"{row['n']:,}", f"{us['jaxflow']:.2f} us{one}",
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
    "gallery": gallery_page,
    "gallery-table": gallery_table,
    "large-step-thresholds": large_step_thresholds,
    "large-step-diagonal": large_step_diagonal,
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
