#!/usr/bin/env bash
# The bars of "perfsuite in your own repository", run as a new user runs them: in an empty git
# repository outside the perfsuite checkout, with the `perfsuite` command and the pytest of the
# Python environment on PATH (CI: a virtualenv where perfsuite is installed from its wheel).
#
#   1. perfsuite init                                   the starter layout
#   2. perfsuite models save tiny-sd ./my-pipeline      a catalog model as a pipeline folder
#   3. pytest ... --perf-model ./my-pipeline ... --perf-update-baselines
#   4. pytest ... --perf-model "$PWD/my-pipeline" ... --perf-strict      finds the baselines of step 3
#   5. the folder moved elsewhere, --perf-strict again                   finds them too
#
# Usage: scripts/adoption-bar.sh [DIR]      (default DIR: a new temporary folder; it must be empty)
#
# Environment:
#   PERFSUITE_BAR_ARGS  extra pytest arguments for steps 3-5 (CI: --perf-rounds=3 --perf-warmup=1
#                       --perf-steps=2); default: none, the commands exactly as the bar writes them
#   PERFSUITE_BAR_K     the -k selection of steps 3-5 (default: "fp32 and not compile and not int8")
#
# Exit status: 0 every step passed; otherwise the status of the first step that failed.
set -euo pipefail

work="${1:-$(mktemp -d)}"
mkdir -p "$work"
if [ -n "$(ls -A "$work")" ]; then
    echo "adoption-bar: $work is not empty; give an empty or new folder" >&2
    exit 2
fi
cd "$work"
read -r -a extra <<< "${PERFSUITE_BAR_ARGS:-}"
select="${PERFSUITE_BAR_K:-fp32 and not compile and not int8}"

step() {
    echo "+ $*"
    "$@"
}

step git init -q .
step perfsuite init
step perfsuite models save tiny-sd ./my-pipeline
step pytest tests/perf --perf-model ./my-pipeline --perf-preset single -k "$select" \
    --perf-update-baselines ${extra[@]+"${extra[@]}"}
step pytest tests/perf --perf-model "$PWD/my-pipeline" --perf-preset single -k "$select" \
    --perf-strict ${extra[@]+"${extra[@]}"}
mkdir moved
step mv my-pipeline moved/renamed-pipeline
step pytest tests/perf --perf-model moved/renamed-pipeline --perf-preset single -k "$select" \
    --perf-strict ${extra[@]+"${extra[@]}"}
echo "adoption-bar: every step passed in $work"
