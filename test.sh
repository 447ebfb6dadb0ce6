#!/usr/bin/env bash
# Run the test suite (sets up the cached Python environment on first use).
#   ./test.sh            fast suite (end-to-end runs marked slow are left out)
#   ./test.sh --all      everything, slow end-to-end runs included
#   ./test.sh ARGS...    any other arguments go to pytest (e.g. tests/test_metrics.py -k alc)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh

marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
    marker=()
    shift
fi
# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
python -m pytest "${marker[@]}" "$@"
