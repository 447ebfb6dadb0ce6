#!/usr/bin/env bash
# The device check: what autoclint does on the machine it finds (scripts/device_check.py, docs/device.md).
#
#   scripts/device_check.sh OUT_DIR      run every step, logs and summary.{json,txt} into OUT_DIR
#   scripts/device_check.sh --prepare    fill device_data/ from ../shared/datasets (before a GPU run)
#
# Uses $PYTHON, else python3. When a package the check needs cannot be imported and .whl/ holds wheels
# (scripts/device_wheels.sh), they are installed from there first: the GPU machine has no package index.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
needed="import numpy, PIL, google.protobuf, matplotlib, torch, torchvision"
if ! "$python" -c "$needed" 2>/dev/null; then
    if compgen -G "$repo/.whl/*.whl" >/dev/null; then
        echo "[device_check] a package is missing: installing from .whl/"
        "$python" -m pip install --quiet --no-index --find-links "$repo/.whl" numpy pillow protobuf matplotlib \
            || { "$python" -m pip install --quiet --no-index --no-deps --no-compile --upgrade \
                     --target /tmp/autoclint-site "$repo"/.whl/*.whl \
                 && export PYTHONPATH="/tmp/autoclint-site${PYTHONPATH:+:$PYTHONPATH}"; }
    fi
    "$python" -c "$needed" || { echo "[device_check] cannot import what the check needs" >&2; exit 2; }
fi
export PYTHONUNBUFFERED=1
exec "$python" "$repo/scripts/device_check.py" "$@"
