#!/usr/bin/env bash
# One prepared run of jaxflow's benchmarks on a GPU (or TPU) machine, float64 then float32.
#
#   benchmarks/gpu.sh                 # GPU sizes, writes benchmarks/results/gpu/*.json (< 12 min)
#   benchmarks/gpu.sh --smoke [DIR]   # tiny sizes on any machine (CPU dry run, a few minutes)
#
# Runs, for each dtype:
#   toy_throughput.py  65,536 depth-6 toy trajectories (float32: the whole run in float32)
#   sweep_scaling.py   the phase-diagram sweep at 1e3, 1e4, 1e5 points on the one device
#                      (float32: pd.Float32Runner, float64 where float32 cannot resolve a lane)
#   matrix_sensing.py  E1 deep matrix sensing, depth 3, init 1e-4, GD and GF (no PyTorch part)
#   lorenz_ensemble.py the GPU ODE-ensemble benchmark's Lorenz problem (fixed dt and adaptive
#                      Tsit5) at 2^14 .. 2^20 trajectories: jaxflow's ensemble engine against
#                      diffrax vmap(diffeqsolve), comparable with the published GPU numbers
# Each benchmark has its own time limit (the sum stays under 12 minutes); one that fails or runs
# out of time is recorded in timings.json and the script goes on. Exit status: the number of
# benchmarks that did not finish.
set -uo pipefail

cd "$(dirname "$0")/.."
smoke=0
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=1
    shift
fi
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ $smoke == 1 ]]; then
    toy=(--lanes 256 --scipy-lanes 4 --chunk 128 --batch 64)
    scaling=(--sizes 1e2,4e2 --devices 1 --chunk-size 128)
    sensing=(--depths 3 --inits 1e-3 --skip-torch --times relative --alternative none
             --diag-rtol-factor 0 --chunk 500 --gd-max-steps 20000 --gf-max-steps 20000)
    lorenz=(--n 1024 --repeats 2 --scipy-lanes 2 --reference-lanes 8)
    limits=(240 240 240 240)
else
    toy=(--lanes 65536 --scipy-lanes 32 --chunk 16384 --batch 4096)
    scaling=(--sizes 1e3,1e4,1e5 --devices 1 --chunk-size 16384)
    sensing=(--depths 3 --inits 1e-4 --skip-torch --times relative --alternative none
             --diag-rtol-factor 0 --gd-max-steps 200000 --gf-max-steps 200000)
    lorenz=(--n 16384,262144,1048576 --scipy-lanes 8 --reference-lanes 32)
    limits=(50 85 90 120)  # seconds each; x 2 dtypes = 690 s
fi

failed=0
records=()
run() {  # run NAME LIMIT DTYPE ARGS...
    local name=$1 limit=$2 dtype=$3
    shift 3
    local json="$out/${name}_${dtype}.json" start end status
    echo "== $name ($dtype, limit ${limit} s) -> $json" >&2
    start=$(date +%s.%N)
    timeout --signal=KILL "$limit" python "benchmarks/$name.py" "$@" --dtype "$dtype" --out "$json"
    status=$?
    end=$(date +%s.%N)
    [[ $status == 0 ]] || failed=$((failed + 1))
    records+=("{\"benchmark\": \"$name\", \"dtype\": \"$dtype\", \"exit_status\": $status, \"wall_s\": $(awk "BEGIN {print $end - $start}")}")
}

for dtype in float64 float32; do
    run toy_throughput "${limits[0]}" "$dtype" "${toy[@]}"
    run sweep_scaling "${limits[1]}" "$dtype" "${scaling[@]}"
    run matrix_sensing "${limits[2]}" "$dtype" "${sensing[@]}"
    run lorenz_ensemble "${limits[3]}" "$dtype" "${lorenz[@]}"
done

{
    echo "{\"smoke\": $([[ $smoke == 1 ]] && echo true || echo false), \"runs\": ["
    for i in "${!records[@]}"; do
        [[ $i -gt 0 ]] && echo ","
        echo "  ${records[$i]}"
    done
    echo "]}"
} > "$out/timings.json"
python - "$out/timings.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
for r in runs:
    print(f"{r['benchmark']:<16} {r['dtype']:<8} exit {r['exit_status']:<4} {r['wall_s']:7.1f} s")
print(f"total {sum(r['wall_s'] for r in runs):.1f} s")
EOF
echo "wrote $out" >&2
exit $failed
