"""The device check: its helpers, the start-up hooks of its starter-kit run, one whole run without CUDA."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE_HOOKS = REPO_ROOT / "scripts" / "device_check_site"


@pytest.fixture(scope="module")
def check():
    """scripts/device_check.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("device_check", REPO_ROOT / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_tree(path: Path, sides: dict[str, tuple[int, int]]) -> None:
    """A zip of JPEGs named split/class/image.jpg with the given (width, height)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, size in sides.items():
            image = Image.new("RGB", size, (200, 30, 30))
            with archive.open(name, "w") as handle:
                image.save(handle, format="JPEG")


def test_the_image_tree_is_shrunk_keeping_each_image_its_own_size(check, tmp_path):
    write_tree(tmp_path / "big.zip", {"train/a/0.jpg": (256, 256), "train/a/1.jpg": (247, 252),
                                      "test/a/0.jpg": (256, 240)})
    assert check.downscale_image_tree(tmp_path / "big.zip", tmp_path / "small.zip") == 3
    with zipfile.ZipFile(tmp_path / "small.zip") as archive:
        sizes = {name: Image.open(archive.open(name)).size for name in archive.namelist()}
    assert sizes == {"train/a/0.jpg": (64, 64), "train/a/1.jpg": (61, 63), "test/a/0.jpg": (64, 60)}


def test_a_few_images_per_class_and_split_can_be_kept(check, tmp_path):
    write_tree(tmp_path / "big.zip", {f"{split}/{label}/{i}.jpg": (40, 40)
                                      for split in ("train", "test") for label in "ab" for i in range(5)})
    assert check.downscale_image_tree(tmp_path / "big.zip", tmp_path / "few.zip", per_class=2, scale=1) == 8
    with zipfile.ZipFile(tmp_path / "few.zip") as archive:
        names = sorted(archive.namelist())
    assert names == sorted(f"{split}/{label}/{i}.jpg"
                           for split in ("train", "test") for label in "ab" for i in (0, 1))


def test_the_subset_keeps_the_first_examples_and_the_class_names(check):
    data = {"x_train": np.arange(10), "y_train": np.arange(10), "x_test": np.arange(5),
            "y_test": np.arange(5), "classes": np.array(["a", "b"])}
    subset = check.subset_arrays(data, 3, 2)
    assert subset["x_train"].tolist() == [0, 1, 2] and subset["y_test"].tolist() == [0, 1]
    assert subset["classes"].tolist() == ["a", "b"]


def test_prepared_data_stays_small_enough_to_travel(check, tmp_path, shared_datasets):
    sizes = check.prepare_device_data(shared_datasets, tmp_path)
    assert set(sizes) == {check.CIFAR_FILE, check.UCMERCED_FILE}
    assert sum(sizes.values()) <= 40e6
    with np.load(tmp_path / check.CIFAR_FILE) as arrays:
        assert arrays["x_train"].shape == (5000, 32, 32, 3) and arrays["x_test"].shape == (1000, 32, 32, 3)


def test_without_any_data_file_random_images_are_written_and_read_back(check, tmp_path, monkeypatch):
    monkeypatch.setattr(check, "DEVICE_DATA", tmp_path / "absent")
    monkeypatch.setattr(check, "SHARED_DATASETS", tmp_path / "absent")
    written = check.datasets(tmp_path, check.CPU_SIZES)
    cifar, variable = written["cifar10"], written["ucmerced_64"]
    assert cifar["source"].startswith("random") and variable["source"].startswith("random")
    assert (cifar["train_records"], cifar["test_records"], cifar["train_sides"]) == (600, 200, [32, 32])
    assert variable["train_records"] == variable["test_records"] == 16  # 4 classes, 4 images each
    assert 56 <= variable["train_sides"][0] < variable["train_sides"][1] <= 72


def summary_with(cuda: bool, ratio: float, first: float, duration: float, killed: bool = False,
                 wait: float = 0.05) -> dict:
    bench = {"reference": "bare_amp", "ratios": {"trainer_searched/bare_amp": ratio},
             "data_wait_share": {"trainer_searched": [wait, wait]}}
    kit = {"first_prediction_s": first, "budget_s": 120.0, "killed_at_budget": killed,
           "ingestion_success": True, "ingestion_duration_s": duration}
    return {"cuda": cuda, "steps": {"bench_32": bench, "bench_64": bench, "starter_kit": kit}}


def test_targets_are_judged_from_the_figures(check):
    assert check.verdicts(summary_with(True, 0.95, 3.0, 110.0)) == {
        "trainer_searched_vs_bare_32": "met", "gpu_waits_under_10pct_searched_32": "met",
        "trainer_searched_vs_bare_64": "met", "gpu_waits_under_10pct_searched_64": "met", "first_prediction": "met",
        "no_budget_overrun": "met"}
    missed = check.verdicts(summary_with(True, 0.7, 9.0, 121.0, wait=0.1))
    assert set(missed.values()) == {"MISSED"}
    assert check.verdicts(summary_with(True, 0.95, 3.0, 100.0, killed=True))["no_budget_overrun"] == "MISSED"


def test_a_cpu_run_does_not_judge_throughput_and_a_missing_step_is_not_measured(check):
    on_cpu = check.verdicts(summary_with(False, 0.5, 3.0, 110.0))
    assert on_cpu["trainer_searched_vs_bare_32"] == "not judged on a CPU"
    assert on_cpu["gpu_waits_under_10pct_searched_64"] == "not judged on a CPU"
    assert on_cpu["first_prediction"] == "met"
    nothing = check.verdicts({"cuda": True, "steps": {}})
    assert set(nothing.values()) == {"not measured"}


def waiting_summary(cuda: bool, wait_32: float, wait_64: float) -> dict:
    steps = {"environment": {"cores": 16}}
    for side, wait in ((32, wait_32), (64, wait_64)):
        steps[f"bench_{side}"] = {"rounds": 3, "data_wait_share": {"trainer_searched": [wait, wait, wait]}}
    return {"cuda": cuda, "steps": steps, "step_s": {"bench_32": 45.0, "bench_64": 60.0}}


def test_the_side_whose_batches_kept_the_gpu_waiting_most_is_measured_again(check):
    assert check.side_for_more_workers(waiting_summary(True, 0.10, 0.30), 290.0, check.GPU_SIZES) == 64
    assert check.side_for_more_workers(waiting_summary(True, 0.20, 0.01), 200.0, check.GPU_SIZES) == 32


def test_no_second_measurement_when_batches_kept_up_time_is_short_or_there_is_no_gpu(check):
    assert check.side_for_more_workers(waiting_summary(True, 0.02, 0.04), 200.0, check.GPU_SIZES) is None
    # one round of the 64 px run took 20 s: 20 s set-up + 2 x 20 s from 310 s would end past 360 s
    assert check.side_for_more_workers(waiting_summary(True, 0.10, 0.30), 310.0, check.GPU_SIZES) is None
    assert check.side_for_more_workers(waiting_summary(False, 0.10, 0.30), 10.0, check.CPU_SIZES) is None


def gpu_shaped_summary() -> dict:
    """What a CUDA run's summary holds (the shape scripts/bench_throughput.py and the steps give)."""
    bench = {"images_per_second": {"bare_fp32": [9000.0], "bare_amp": [12000.0], "trainer_none": [11500.0],
                                   "trainer_searched": [7000.0]},
             "best_images_per_second": {"bare_fp32": 9000.0, "bare_amp": 12000.0, "trainer_none": 11500.0,
                                        "trainer_searched": 7000.0},
             "reference": "bare_amp",
             "ratios": {"trainer_none/bare_amp": 0.958, "trainer_searched/bare_amp": 0.583},
             "data_wait_share": {"trainer_none": [0.01], "trainer_searched": [0.35]},
             "workers": 4, "rounds": 1,
             "pipeline_images_per_second": {"32px none workers=1": 150000.0, "32px searched workers=2": 30000.0},
             "plan": {"height": 32, "width": 32, "channels": 3, "batch_size": 64, "steps_per_epoch": 30}}
    kit = {"budget_s": 120.0, "reader": "TensorFlow-free", "alc": 0.61, "final_nauc": 0.8, "predictions": 9,
           "first_prediction_s": 2.5, "ingestion_duration_s": 100.0, "killed_at_budget": False,
           "ingestion_success": True, "gpu_memory_peak_mib_torch_allocated": 1500.0,
           "gpu_memory_peak_mib_torch_reserved": 2048.0, "gpu_memory_peak_mib_nvidia_smi": 2600.0,
           "machine": "NVIDIA H100 80GB HBM3: cuda, bfloat16, channels-last, 16 intra-op threads"}
    environment = {"python": "3.12.3", "torch": "2.11.0", "torchvision": "0.26.0", "cuda": "13.0",
                   "cudnn": 91000, "cores": 16, "precision": "cuda, bfloat16, channels-last",
                   "batch_workers": 4, "pin_memory": True}
    return {"cuda": True, "note": "CUDA run", "machine": "NVIDIA H100 80GB HBM3", "total_s": 330.0,
            "step_s": {"bench_32": 40.0}, "failures": {"bench_64": "RuntimeError: out of time"},
            "steps": {"environment": environment, "bench_32": bench, "bench_32_workers15": bench,
                      "starter_kit": kit}}


def test_a_gpu_run_is_summed_up_in_lines_with_its_verdicts(check):
    summary = gpu_shaped_summary()
    summary["targets"] = check.verdicts(summary)
    assert summary["targets"] == {"trainer_searched_vs_bare_32": "MISSED",
                                  "gpu_waits_under_10pct_searched_32": "MISSED",
                                  "trainer_searched_vs_bare_64": "not measured",
                                  "gpu_waits_under_10pct_searched_64": "not measured",
                                  "first_prediction": "met", "no_budget_overrun": "met"}
    text = "\n".join(check.summary_lines(summary))
    assert "bare_amp 12000 img/s" in text and "trainer_searched/bare_amp 0.583" in text
    assert "trainer_searched 35.0%" in text and "bench_32_workers15" in text
    assert "pipeline 32px searched workers=2: 30000 img/s" in text
    assert "1500 MiB allocated / 2048 MiB reserved by torch, 2600 MiB by nvidia-smi" in text
    assert "FAILED bench_64: RuntimeError: out of time" in text


def test_peak_memory_is_the_largest_any_process_recorded(check, tmp_path):
    peaks = tmp_path / "peaks.txt"
    peaks.write_text(f"11 {2**20} {3 * 2**20}\n12 {5 * 2**20} {4 * 2**20}\n")
    assert check.torch_peak_memory(peaks) == {"gpu_memory_peak_mib_torch_allocated": 5.0,
                                              "gpu_memory_peak_mib_torch_reserved": 4.0}
    assert check.torch_peak_memory(tmp_path / "absent.txt")["gpu_memory_peak_mib_torch_allocated"] is None


def run_with_hooks(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(SITE_HOOKS), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          timeout=60)


def test_the_hooks_hide_tensorflow_so_the_reader_is_chosen_as_on_a_machine_without_it():
    code = ("import importlib.util, sys\n"
            "assert importlib.util.find_spec('tensorflow') is None\n"
            "try:\n    import tensorflow\nexcept ImportError:\n    print('hidden')\n")
    done = run_with_hooks(code, AUTOCLINT_CHECK_HIDE_TF="1")
    assert done.returncode == 0 and done.stdout.strip() == "hidden", done.stderr


def test_the_hooks_still_run_the_sitecustomize_of_the_environment(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.ENVIRONMENT_HOOK_RAN = True\n")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE_HOOKS), str(tmp_path)]))
    done = subprocess.run([sys.executable, "-c", "print(ENVIRONMENT_HOOK_RAN)"], capture_output=True,
                          text=True, env=environment, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_the_hooks_record_nothing_for_a_process_that_never_used_cuda(tmp_path):
    peaks = tmp_path / "peaks.txt"
    done = run_with_hooks("import torch; torch.ones(3).sum()", AUTOCLINT_CHECK_PEAK_FILE=str(peaks))
    assert done.returncode == 0, done.stderr
    assert not peaks.exists()


@pytest.mark.slow
def test_the_check_runs_every_step_on_a_cpu_and_writes_its_summary(tmp_path):
    out = tmp_path / "out"
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    done = subprocess.run([str(REPO_ROOT / "scripts" / "device_check.sh"), str(out)], capture_output=True,
                          text=True, env=environment, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no CUDA: CPU run with tiny sizes" in done.stdout
    assert "img/s" in done.stdout and "ratio" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cuda"] is False and summary["complete"] and summary["failures"] == {}
    assert summary["total_s"] < 170
    steps = summary["steps"]
    assert steps["environment"]["torch"] and steps["environment"]["batch_workers"] >= 1
    assert steps["datasets"]["cifar10"]["train_records"] == 600
    low, high = steps["datasets"]["ucmerced_64"]["train_sides"]
    assert 16 <= low <= high <= 80  # about 64 px a side, as written
    for side in (32, 64):
        bench = steps[f"bench_{side}"]
        assert bench["plan"]["height"] == side and bench["reference"] == "bare_fp32" and bench["workers"] >= 1
        assert all(value > 0 for value in bench["best_images_per_second"].values())
        assert 0.0 <= np.median(bench["data_wait_share"]["trainer_searched"]) < 1.0
        assert bench["ratios"]["trainer_searched/bare_fp32"] > 0
    kit = steps["starter_kit"]
    assert kit["reader"] == "TensorFlow-free" and kit["predictions"] >= 1 and kit["ingestion_success"]
    assert 0.0 < kit["first_prediction_s"] <= kit["budget_s"] and -1.0 <= kit["alc"] <= 1.0
    assert kit["gpu_memory_peak_mib_torch_allocated"] is None and "CPU cores" in kit["machine"]
    assert set(summary["targets"]) == {"trainer_searched_vs_bare_32", "trainer_searched_vs_bare_64",
                                       "gpu_waits_under_10pct_searched_32", "gpu_waits_under_10pct_searched_64",
                                       "first_prediction", "no_budget_overrun"}
    for side in (32, 64):  # the standalone pipeline: 1 and 2 workers, without and with the searched policy
        assert len(steps[f"bench_{side}"]["pipeline_images_per_second"]) == 4
    assert "pipeline 32px searched workers=2:" in (out / "summary.txt").read_text()
    files = sorted(path.name for path in out.iterdir())
    assert all(path.is_file() for path in out.iterdir())
    assert len(files) <= 8  # the most files the GPU machine sends back
    assert {"summary.json", "summary.txt", "starter_kit.log", "bench_32.log", "bench_64.log"} <= set(files)
