#!/usr/bin/env bash
# Download the Python 3.12 x86-64 wheels that scripts/device_check.sh installs on the GPU machine when
# an import fails there (that machine has no package index). They go to .whl/ (ignored by git); carry
# `.whl` in the device call only when needed: the machine's image already holds these packages.
#
#   scripts/device_wheels.sh [PACKAGE ...]     (default: the run-time packages the check needs besides torch)
#
# Versions are the pins of requirements.txt; each package's dependencies are downloaded too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(numpy pillow protobuf matplotlib)
pins=()
for name in "${packages[@]}"; do
    pin=$(grep -i "^${name}==" requirements.txt || true)
    pins+=("${pin:-$name}")
done
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
           manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${pins[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
ls -1 .whl
du -sh .whl
