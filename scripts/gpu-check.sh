#!/usr/bin/env bash
# The GPU subset of perfsuite in one command, sized for 8 minutes on one H200:
#
#   sd15       the ladder preset on the full-size SD 1.5 architecture, at a reduced step count
#   sdxl       the same on SDXL
#   diagnostics  stage times, host-device syncs per step, FLOPs and achieved TFLOP/s of sd15 and sdxl
#   tiny-sdxl  the full preset on tiny-sdxl (the combos that the marker selection keeps)
#   flux-fast  the flux-fast preset (huggingface/flux-fast's ladder) on the full-size FLUX.1-dev
#              architecture at 1024x1024, at a reduced step count (28 steps do not fit the budget)
#   caches     the caches preset (each diffusers step cache alone) on FLUX.1-dev, at 512x512
#
# Usage: scripts/gpu-check.sh [OUT]      (default OUT: gpu-check-out/)
#
# Each part runs under `timeout` with its own budget, so a slow part cannot eat the time of the
# others; a part that runs out is interrupted (SIGINT, so pytest still prints its summary) and
# counts as failed. All parts run whatever happened before; the exit status is 1 when any failed.
# Measured baselines land in OUT/baselines/<profile>/ (a copy of baselines/policy.toml sits beside
# them), reports in OUT/report-<part>/, pytest-benchmark data in OUT/benchmark-<part>.json and each
# part's output in OUT/<part>.log.
#
# Exit status: 0 every part passed; 1 a part failed or ran out of time; 2 no CUDA device;
# 3 Python or a package is missing and cannot be installed.
#
# Environment:
#   PERFSUITE_STEPS     denoising steps of the sd15 and sdxl calls (default 10)
#   PERFSUITE_SIZE      image size HxW of the sd15 and sdxl calls (default: each model's own)
#   PERFSUITE_FLUX_STEPS  steps of the flux-fast part (default 4, flux-fast's FLUX.1-schnell count; the
#                       FLUX.1-dev figure is at 28); PERFSUITE_FLUX_SIZE its size (default 1024x1024)
#   PERFSUITE_CACHE_STEPS, PERFSUITE_CACHE_SIZE  the caches part's (default 8 steps at 512x512)
#   PERFSUITE_ROUNDS    timed rounds per combo (default 3); PERFSUITE_WARMUP warm-up calls (default 1)
#   PERFSUITE_WHEELS    folder of wheels to install missing packages from, offline (pip --no-index)
#   PERFSUITE_PYTHON    the Python to use (default: python3)
#   PERFSUITE_TINY_SDXL_MARKERS  pytest -m expression for the tiny-sdxl part (default: "not compile";
#                       the whole full preset is about 4,900 combos, 4,500 of them compiled)
#   BUDGET_SD15_S, BUDGET_SDXL_S, BUDGET_DIAGNOSTICS_S, BUDGET_TINY_SDXL_S, BUDGET_FLUX_FAST_S,
#   BUDGET_CACHES_S     per-part time limits
#   GPU_CHECK_DRY_RUN=1 print the commands instead of running them (no GPU needed)

set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-gpu-check-out}"
case "$OUT" in
    /*) ;;
    *) OUT="$PWD/$OUT" ;;
esac

STEPS="${PERFSUITE_STEPS:-10}"
SIZE="${PERFSUITE_SIZE:-}"
ROUNDS="${PERFSUITE_ROUNDS:-3}"
WARMUP="${PERFSUITE_WARMUP:-1}"
PYTHON="${PERFSUITE_PYTHON:-python3}"
WHEELS="${PERFSUITE_WHEELS:-}"
TINY_SDXL_MARKERS="${PERFSUITE_TINY_SDXL_MARKERS:-not compile}"
FLUX_STEPS="${PERFSUITE_FLUX_STEPS:-4}"
FLUX_SIZE="${PERFSUITE_FLUX_SIZE:-1024x1024}"
CACHE_STEPS="${PERFSUITE_CACHE_STEPS:-8}"
CACHE_SIZE="${PERFSUITE_CACHE_SIZE:-512x512}"
DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"

# Budgets in seconds. With the grace period that `timeout` allows each part after its interrupt,
# they add up to 480 s (8 minutes); the installs and the CUDA check come on top (seconds). The
# flux-fast part gets the largest share: its compiled steps compile with max-autotune, and they share
# one inductor cache (OUT/inductor-flux) so that the GEMM autotuning of one step serves the next.
GRACE_S=15
BUDGET_SD15_S="${BUDGET_SD15_S:-60}"
BUDGET_SDXL_S="${BUDGET_SDXL_S:-70}"
BUDGET_DIAGNOSTICS_S="${BUDGET_DIAGNOSTICS_S:-30}"
BUDGET_TINY_SDXL_S="${BUDGET_TINY_SDXL_S:-40}"
BUDGET_FLUX_FAST_S="${BUDGET_FLUX_FAST_S:-120}"
BUDGET_CACHES_S="${BUDGET_CACHES_S:-70}"

# module:distribution, for the imports the suite needs.
REQUIRED=(
    "torch:torch"
    "diffusers:diffusers"
    "torchao:torchao"
    "transformers:transformers"
    "accelerate:accelerate"
    "skimage:scikit-image"
    "safetensors:safetensors"
    "pytest:pytest"
    "pytest_benchmark:pytest-benchmark"
)

say() { printf 'gpu-check: %s\n' "$*"; }

show() {
    # Print a command, quoted so that it can be pasted back into a shell.
    printf '%q ' "$@"
    printf '\n'
}

is_installed() {
    "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' "$1" \
        >/dev/null 2>&1
}

pip_offline() {
    if [[ -z "$WHEELS" ]]; then
        say "cannot install $* : set PERFSUITE_WHEELS to a folder of wheels (there is no network here)"
        return 1
    fi
    local -a command=("$PYTHON" -m pip install --no-index --find-links "$WHEELS" "$@")
    show "${command[@]}"
    [[ "$DRY_RUN" == 1 ]] || "${command[@]}"
}

check_cuda() {
    local -a command=("$PYTHON" -c "import torch; assert torch.cuda.is_available()")
    if [[ "$DRY_RUN" == 1 ]]; then
        show "${command[@]}"
        return 0
    fi
    local output
    if ! output="$("${command[@]}" 2>&1)"; then
        say "no CUDA device: torch.cuda.is_available() is false for $PYTHON; this check needs a GPU"
        [[ "$output" == *AssertionError* ]] || printf '%s\n' "$output" | tail -n 3
        exit 2
    fi
}

ensure_packages() {
    local entry missing=()
    # One Python process finds (without importing) every required module and names the missing ones.
    local -a found
    mapfile -t found < <("$PYTHON" -c 'import importlib.util, sys
for entry in sys.argv[1:]:
    print(entry if importlib.util.find_spec(entry.split(":")[0]) is None else "")' "${REQUIRED[@]}" 2>/dev/null)
    for entry in "${found[@]}"; do
        [[ -n "$entry" ]] && missing+=("${entry#*:}")
    done
    if ((${#missing[@]})); then
        say "missing: ${missing[*]}; installing from ${WHEELS:-<unset PERFSUITE_WHEELS>}"
        pip_offline "${missing[@]}" || exit 3
    fi
    # perfsuite itself must be installed from this checkout: its install registers the pytest plugin.
    # (-I keeps the current folder off sys.path, where a bare checkout would pass for an install.)
    if ! "$PYTHON" -I -c 'import pathlib, sys, perfsuite
sys.exit(pathlib.Path(perfsuite.__file__).resolve().parent != pathlib.Path(sys.argv[1]).resolve())' \
        "$ROOT/perfsuite" >/dev/null 2>&1; then
        say "installing this checkout of perfsuite (editable, no dependencies)"
        local -a command=("$PYTHON" -m pip install --no-deps --no-build-isolation -e "$ROOT")
        if [[ -n "$WHEELS" ]]; then
            command+=(--no-index --find-links "$WHEELS")
        fi
        show "${command[@]}"
        if [[ "$DRY_RUN" != 1 ]]; then
            "${command[@]}" || exit 3
        fi
    fi
}

NAMES=()
RESULTS=()

run_part() {
    # run_part NAME BUDGET_S COMMAND...: run COMMAND under its budget, record the outcome.
    local name="$1" budget_s="$2"
    shift 2
    local -a command=(timeout --signal=INT --kill-after="${GRACE_S}s" "${budget_s}s" "$@")
    say "[$name] budget ${budget_s}s"
    show "${command[@]}"
    NAMES+=("$name")
    if [[ "$DRY_RUN" == 1 ]]; then
        RESULTS+=("dry run")
        return 0
    fi
    local start_s=$SECONDS status
    (cd "$ROOT" && "${command[@]}") 2>&1 | tee "$OUT/$name.log"
    status=${PIPESTATUS[0]}
    local took="$((SECONDS - start_s))s"
    if ((status == 0)); then
        RESULTS+=("passed in $took")
    elif ((status == 124 || status == 137)); then
        RESULTS+=("OUT OF TIME after $took (budget ${budget_s}s)")
    else
        RESULTS+=("FAILED (exit $status) after $took")
    fi
}

suite_args() {
    # suite_args PART: the options every pytest part shares.
    SUITE=(
        "$PYTHON" -m pytest tests/perf
        --perf-device cuda
        --perf-rounds "$ROUNDS"
        --perf-warmup "$WARMUP"
        --perf-baselines-dir "$OUT/baselines"
        --perf-update-baselines
        --perf-report "$OUT/report-$1"
        --benchmark-json "$OUT/benchmark-$1.json"
        --junitxml "$OUT/junit-$1.xml"
        -rs
    )
}

main() {
    if [[ "$DRY_RUN" == 1 ]]; then
        say "dry run: printing the commands, running none"
    fi
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        say "no Python at '$PYTHON': set PERFSUITE_PYTHON to the interpreter that has torch"
        exit 3
    fi
    if [[ "$DRY_RUN" == 1 ]] || is_installed torch; then
        check_cuda
        ensure_packages
    else
        ensure_packages
        check_cuda
    fi

    if [[ "$DRY_RUN" != 1 ]]; then
        mkdir -p "$OUT/baselines" || exit 1
        cp "$ROOT/baselines/policy.toml" "$OUT/baselines/policy.toml" || exit 1
    fi
    # The full-size models run at the reduced step count (and size, when given); tiny-sdxl keeps its own.
    local -a reduced=(--perf-steps "$STEPS") diagnostics_size=()
    if [[ -n "$SIZE" ]]; then
        reduced+=(--perf-size "$SIZE")
        diagnostics_size=(--size "$SIZE")
    fi

    suite_args sd15
    run_part sd15 "$BUDGET_SD15_S" "${SUITE[@]}" --perf-model sd15 --perf-preset ladder "${reduced[@]}"
    suite_args sdxl
    run_part sdxl "$BUDGET_SDXL_S" "${SUITE[@]}" --perf-model sdxl --perf-preset ladder "${reduced[@]}"
    run_part diagnostics "$BUDGET_DIAGNOSTICS_S" \
        "$PYTHON" -m perfsuite.diagnostics --model sd15,sdxl --device cuda --dtype bf16 \
        --steps "$STEPS" "${diagnostics_size[@]}" --output "$OUT/diagnostics.json"
    suite_args tiny-sdxl
    run_part tiny-sdxl "$BUDGET_TINY_SDXL_S" "${SUITE[@]}" --perf-model tiny-sdxl --perf-preset full \
        -m "$TINY_SDXL_MARKERS"
    suite_args flux-fast
    run_part flux-fast "$BUDGET_FLUX_FAST_S" env TORCHINDUCTOR_CACHE_DIR="$OUT/inductor-flux" \
        "${SUITE[@]}" --perf-model flux --perf-preset flux-fast --perf-steps "$FLUX_STEPS" --perf-size "$FLUX_SIZE"
    suite_args caches
    run_part caches "$BUDGET_CACHES_S" "${SUITE[@]}" --perf-model flux --perf-preset caches \
        --perf-steps "$CACHE_STEPS" --perf-size "$CACHE_SIZE"

    local failed=0 i
    say "summary (outputs under $OUT):"
    for i in "${!NAMES[@]}"; do
        printf '  %-12s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"
        case "${RESULTS[$i]}" in
            passed* | "dry run") ;;
            *) failed=1 ;;
        esac
    done
    if [[ "$DRY_RUN" != 1 ]]; then
        say "baselines measured: $OUT/baselines/ (commit a profile folder into baselines/ to adopt it)"
    fi
    return "$failed"
}

main
