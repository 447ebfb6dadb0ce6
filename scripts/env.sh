#!/usr/bin/env bash
# Source this file: it makes sure the project's Python environment exists and activates it.
#
# The environment (about 7 GB: torch, torchvision, tensorflow-cpu) lives OUTSIDE the repository,
# in a cache folder keyed by a hash of the requirement files, so that fresh clones reuse it.
# Override the location with AUTOCLINT_ENV_ROOT, the interpreter with AUTOCLINT_PYTHON.
#
# Why triton is removed: torch's CUDA wheels pull in `triton`, whose bundled LLVM clashes with
# TensorFlow's; `import tensorflow` followed by `import torchvision` then segfaults. The AutoDL
# ingestion imports TensorFlow first, so the environment must not contain triton. It is only used by
# torch.compile's GPU backend, which autoclint does not need.

_autoclint_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_autoclint_python="${AUTOCLINT_PYTHON:-python3.11}"
_autoclint_env_root="${AUTOCLINT_ENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/autoclint/envs}"
_autoclint_key="$(cat "$_autoclint_repo/requirements.txt" "$_autoclint_repo/requirements-dev.txt" \
    "$_autoclint_repo/requirements-ray.txt" "$_autoclint_repo/scripts/env.sh" | sha256sum | cut -c1-16)"
AUTOCLINT_ENV="$_autoclint_env_root/py311-$_autoclint_key"

_autoclint_build_env() {
    echo "[env] building the Python environment in $AUTOCLINT_ENV (first use; a few minutes)" >&2
    rm -rf "$AUTOCLINT_ENV"
    "$_autoclint_python" -m venv "$AUTOCLINT_ENV" || return 1
    "$AUTOCLINT_ENV/bin/python" -m pip install --quiet \
        -r "$_autoclint_repo/requirements.txt" -r "$_autoclint_repo/requirements-dev.txt" \
        -r "$_autoclint_repo/requirements-ray.txt" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) || return 1
    "$AUTOCLINT_ENV/bin/python" -m pip uninstall --quiet --yes triton || return 1
    # Prove the import order the AutoDL ingestion uses before declaring the environment good.
    "$AUTOCLINT_ENV/bin/python" -c "import tensorflow, torchvision" >/dev/null 2>&1 || {
        echo "[env] 'import tensorflow; import torchvision' fails in the new environment" >&2
        return 1
    }
    touch "$AUTOCLINT_ENV/.complete"
}

if [ ! -f "$AUTOCLINT_ENV/.complete" ]; then
    command -v "$_autoclint_python" >/dev/null || {
        echo "[env] $_autoclint_python not found; install Python 3.11 or set AUTOCLINT_PYTHON" >&2
        return 1 2>/dev/null || exit 1
    }
    mkdir -p "$_autoclint_env_root"
    # One builder at a time: a second caller waits for the first, then reuses its result.
    exec 9>"$_autoclint_env_root/.lock"
    flock 9
    if [ ! -f "$AUTOCLINT_ENV/.complete" ]; then
        _autoclint_build_env || { flock -u 9; echo "[env] environment build failed" >&2; return 1 2>/dev/null || exit 1; }
    fi
    flock -u 9
fi

export PATH="$AUTOCLINT_ENV/bin:$PATH"
export VIRTUAL_ENV="$AUTOCLINT_ENV"
export PYTHONPATH="$_autoclint_repo${PYTHONPATH:+:$PYTHONPATH}"
# Quiet TensorFlow's C++ start-up chatter; TF never takes a GPU (see autoclint/autodl/__init__.py).
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
