#!/usr/bin/env bash
# The main job: the local AutoDL starter kit (ingestion + scoring) runs a model on a dataset, prints
# ALC and writes the learning curve, under the current directory. Sets up the cached Python
# environment on first use.
#   ./run.sh                                  autoclint on the bundled digits dataset, 120 s budget
#   ./run.sh --baseline linear                a reference baseline instead of autoclint
#   ./run.sh --dataset_dir D --time_budget T  any AutoDL dataset, any budget
# All arguments go to scripts/run_local_test.py (see ./run.sh --help).
set -euo pipefail
repo="$(cd "$(dirname "$0")" && pwd)"
source "$repo/scripts/env.sh"

args=("$@")
if [[ " $* " != *" --time_budget"* && " $* " != *" -time_budget"* ]]; then
    args+=(--time_budget 120)
fi
exec python "$repo/scripts/run_local_test.py" "${args[@]}"
