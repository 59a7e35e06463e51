"""Regenerate the gallery: run each experiment, copy its figures to docs/, record how.

Each entry of :data:`ENTRIES` is one ``jaxflow`` command (full size unless its ``args`` say
otherwise); this script runs it in a fresh process with an empty output folder, copies the PNGs
it wrote to ``docs/``, and records in ``benchmarks/results/gallery.json`` the exact command, the
commit whose code ran it, the wall time, the machine and the exit status. The gallery's
captions (README.md, docs/gallery.md) are generated blocks rendered from that JSON by
``benchmarks/fill_numbers.py``: a caption cannot name a command or a commit that did not make
its image.

The code that computes and draws the figures must be committed: the script refuses to start
when ``jaxflow/`` differs from ``HEAD`` (``git status``), and records ``HEAD``.

    python benchmarks/gallery.py                 # every entry
    python benchmarks/gallery.py omp quadratic   # these entries; the others keep their record
    python benchmarks/fill_numbers.py            # then refill the captions
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gallery.json"

# name: (the jaxflow command's arguments, {figure file written: (docs file, caption)})
ENTRIES = {
    "phase-diagram": (["phase-diagram"], {
        "thresholds.png": ("thresholds.png", "thresholds against r - 1, measured (dots) and "
                           "exact (lines), per depth: the headline"),
        "phase_diagram.png": ("phase_diagram.png",
                              "incremental region per depth, the theory boundary on top"),
    }),
    "factor-diagram": (["experiment", "factor-diagram"], {
        "factor_diagram.png": ("factor_diagram.png", "random unbalanced factors: incremental "
                               "fraction and learning order against the initial scale "
                               "(beyond the theory)"),
    }),
    "matrix-sensing": (["experiment", "matrix-sensing"], {
        "matrix-sensing.png": ("matrix-sensing.png", "deep matrix sensing: singular values "
                               "learned one at a time (E1, Fig. 1a)"),
    }),
    "matrix-sensing-generalization": (["experiment", "matrix-sensing-generalization"], {
        "matrix-sensing-generalization.png": ("matrix-sensing-generalization.png",
                                              "deep matrix sensing: deeper stays low-rank up "
                                              "to a larger initial scale"),
    }),
    "quadratic": (["experiment", "quadratic"], {
        "quadratic.png": ("quadratic.png", "quadratic networks with and without a bias "
                          "(E2, Fig. 1b)"),
    }),
    "diagonal": (["experiment", "diagonal"], {
        "diagonal.png": ("diagonal.png", "diagonal networks on separable data: coordinates "
                         "learned largest first; correlation with w* against depth and the "
                         "max-margin SVM (E3, Fig. 1c)"),
    }),
    "convolutional": (["experiment", "convolutional"], {
        "convolutional.png": ("convolutional.png", "circular-convolutional networks: Fourier "
                              "amplitudes per depth, correlation against the SVM "
                              "(E4, Fig. 1d)"),
    }),
    "omp": (["experiment", "omp"], {
        "omp.png": ("omp.png", "gradient flow and descent pick coordinates in the order of "
                    "Orthogonal Matching Pursuit (E5)"),
    }),
    "saddle-to-saddle": (["experiment", "saddle-to-saddle"], {
        "saddle-to-saddle.png": ("saddle-to-saddle.png", "saddle-to-saddle: the depth-2 "
                                 "diagonal network collapsing onto the jump process as the "
                                 "initial scale goes to 0"),
        "saddle-to-saddle-jump-times.png": ("saddle-to-saddle-jump-times.png",
                                            "saddle-to-saddle: jump times against the initial "
                                            "scale for depths 2-5"),
    }),
    "edge-of-stability": (["experiment", "edge-of-stability"], {
        "regime_map.png": ("edge-of-stability.png", "edge of stability: regimes of large-step "
                           "descent over step size and initial scale, per depth and init"),
        "sharpness_traces.png": ("edge-of-stability-sharpness.png", "edge of stability: "
                                 "sharpness over 2/eta against the step, one colour per step "
                                 "size, the edge at 1"),
    }),
    "large-step-thresholds": (["experiment", "large-step-thresholds"], {
        "threshold_ratio.png": ("large-step-thresholds.png", "large steps: the incremental "
                                "threshold measured by descent over the flow's, against "
                                "the step size, per depth and target ratio"),
    }),
    "large-step-diagonal": (["experiment", "large-step-diagonal"], {
        "diagonal_sparsity.png": ("large-step-diagonal.png", "large steps on a sparse-regression "
                                  "diagonal network: l1 norm and distance to the flow's "
                                  "interpolator against the step size"),
    }),
}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _committed_code() -> str:
    """``HEAD``'s short hash; a SystemExit when jaxflow/ differs from it."""
    changed = _git("status", "--porcelain", "--", "jaxflow", "pyproject.toml")
    if changed:
        raise SystemExit("gallery: commit the code first; jaxflow/ differs from HEAD:\n"
                         + changed)
    return _git("rev-parse", "--short", "HEAD")


def run_entry(name: str, args: list[str], figures: dict, extra: list[str],
              timeout: float) -> dict:
    """Run one entry's command in a fresh process; copy its figures; its record."""
    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "jaxflow.cli", *args, *extra, "--out", out, "--quiet"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        start = time.perf_counter()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=timeout, cwd=ROOT)
            code, log = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, log = None, f"timed out after {timeout:g} s"
        wall = time.perf_counter() - start
        copied = []
        # exit 3: every output written, some answer not ok (the report says which)
        if code in (0, 3):
            for written, (target, caption) in figures.items():
                shutil.copyfile(pathlib.Path(out) / written, ROOT / "docs" / target)
                copied.append({"file": target, "caption": caption})
    return {
        "command": " ".join(["jaxflow", *args, *extra]),
        "exit_status": code,
        "wall_s": round(wall, 1),
        "load_average": [round(x, 2) for x in load],
        "figures": copied,
        "last_lines": log.strip().splitlines()[-3:],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to run (default: all of "
                        f"{', '.join(ENTRIES)})")
    parser.add_argument("--extra", default="", help="extra arguments for the (one) entry named, "
                        "e.g. '--num-seeds 8' where the full size does not fit the time")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per entry")
    parser.add_argument("--json", default=str(RESULTS), help="the record to update")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ENTRIES))
    if unknown:
        parser.error(f"unknown entries {unknown}; known: {', '.join(ENTRIES)}")
    if args.extra and len(args.names) != 1:
        parser.error("--extra applies to one named entry")
    commit = _committed_code()
    path = pathlib.Path(args.json)
    for name in args.names or list(ENTRIES):
        cli_args, figures = ENTRIES[name]
        entry = run_entry(name, cli_args, figures, args.extra.split(), args.timeout)
        entry.update(commit=commit, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        print(f"{name}: exit {entry['exit_status']}, {entry['wall_s']} s", flush=True)
        if not entry["figures"]:
            print("\n".join(entry["last_lines"]), flush=True)
        if entry["figures"]:  # a failed run keeps the previous record and images
            # read afresh: another run of this script may have recorded other entries since
            record = json.loads(path.read_text()) if path.exists() else {"entries": {}}
            record["order"] = list(ENTRIES)  # the gallery's order
            record["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
            record["entries"][name] = entry
            path.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
