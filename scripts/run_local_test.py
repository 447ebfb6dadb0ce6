#!/usr/bin/env python
"""Run a model on an AutoDL dataset under a time budget and score it, as the AutoDL platform does.

Example: python scripts/run_local_test.py --dataset_dir ../shared/datasets/autodl_samples/miniciao \
    --baseline linear --time_budget 120
Without --dataset_dir it uses scikit-learn's digits (converted once into a cache folder).
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    runpy.run_module("autoclint.harness", run_name="__main__")
