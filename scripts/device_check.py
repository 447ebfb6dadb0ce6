#!/usr/bin/env python
"""One run that shows what autoclint does on the machine it finds: a GPU, or a CPU with tiny sizes.

  python scripts/device_check.py OUT_DIR       (or scripts/device_check.sh OUT_DIR)
  python scripts/device_check.py --prepare     (fills device_data/ from ../shared/datasets)

Steps, each timed, logged under OUT_DIR and gathered in OUT_DIR/summary.json and summary.txt:
  1. environment: versions, device name, CUDA/cuDNN, cores, the trainer's machine choices;
  2. datasets: a CIFAR-10 subset (fixed 32x32) and a UC Merced subset (variable, about 64x64) written in
     the AutoDL format with the project's writer, then read back with the TensorFlow-free reader;
  3. throughput (scripts/bench_throughput.py) at 32x32 and 64x64: bare torchvision step (fp32 and, on
     CUDA, AMP) against the trainer without and with a searched augmentation, the share of time the
     trainer waits for batches, and the batch worker count;
  4. the starter kit (python -m autoclint.harness) with autoclint on the CIFAR-10 subset, reading it
     with the TensorFlow-free reader: ALC, first prediction, predictions, final NAUC, peak GPU memory.
Without CUDA every step runs with tiny sizes (under 2 minutes), so that the script is tested everywhere.
The data comes from device_data/ (see --prepare), else ../shared/datasets, else random images.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("device_check")

DEVICE_DATA = REPO_ROOT / "device_data"
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
SITE_HOOKS = REPO_ROOT / "scripts" / "device_check_site"
CIFAR_FILE = "cifar10_5k.npz"
UCMERCED_FILE = "ucmerced_64.zip"
CIFAR_PREPARED = (5000, 1000)  # train / test examples kept in device_data/
UCMERCED_SCALE = 4  # ~256 px aerial images -> ~64 px, the few smaller ones a little less: variable sizes
CPU_NOTE = "no CUDA: CPU run with tiny sizes"
TARGETS = {"trainer_searched_ratio": 0.9, "first_prediction_s": 5.0, "searched_data_wait_share": 0.10}


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the GPU machine's full check, or the tiny CPU one."""

    cifar_train: int
    cifar_test: int
    ucmerced_per_class: Optional[int]  # images per class and split (None: all of them)
    bench_examples: int
    bench_batch_size: int
    bench_steps_per_epoch: int  # 0: planned from the data
    bench_rounds: int
    bench_epochs: int
    bench_time_limit_s: float  # no new measuring round after this (a slow pipeline still gives figures)
    bench_pipeline_s: float  # seconds of each standalone batch pipeline measurement (per augmentation, workers)
    bench_timeout_s: float
    starter_kit_budget_s: float
    total_s: float  # what the whole check should take at most; optional extras are skipped past it


GPU_SIZES = Sizes(cifar_train=5000, cifar_test=1000, ucmerced_per_class=None, bench_examples=5000,
                  bench_batch_size=64, bench_steps_per_epoch=0, bench_rounds=3, bench_epochs=10,
                  bench_time_limit_s=45.0, bench_pipeline_s=2.0, bench_timeout_s=170.0, starter_kit_budget_s=120.0,
                  total_s=360.0)
CPU_SIZES = Sizes(cifar_train=600, cifar_test=200, ucmerced_per_class=4, bench_examples=64,
                  bench_batch_size=8, bench_steps_per_epoch=2, bench_rounds=1, bench_epochs=1,
                  bench_time_limit_s=0.0, bench_pipeline_s=0.2, bench_timeout_s=90.0, starter_kit_budget_s=20.0,
                  total_s=120.0)
BENCH_SIDES = (32, 64)
WAIT_SHARE_FOR_MORE_WORKERS = 0.05  # on CUDA, a searched run waiting longer than this is re-measured
EXTRA_BENCH_SETUP_S = 20.0  # start-up, data and warm-up of a benchmark run, besides its rounds


# ----------------------------------------------------------------------------- data sources


def load_cifar_subset(train: int, test: int) -> tuple[dict[str, np.ndarray], str]:
    """The first `train`/`test` CIFAR-10 examples from device_data/ or ../shared, else random images."""
    for path in (DEVICE_DATA / CIFAR_FILE, SHARED_DATASETS / "cifar10_15k.npz"):
        if path.is_file():
            with np.load(path, allow_pickle=False) as arrays:
                data = {key: arrays[key] for key in arrays.files}
            return subset_arrays(data, train, test), str(path)
    return random_cifar_like(train, test), "random images (no CIFAR-10 file found)"


def subset_arrays(data: dict[str, np.ndarray], train: int, test: int) -> dict[str, np.ndarray]:
    """The first examples of each split, with the class names."""
    subset = {"x_train": data["x_train"][:train], "y_train": data["y_train"][:train],
              "x_test": data["x_test"][:test], "y_test": data["y_test"][:test]}
    if "classes" in data:
        subset["classes"] = data["classes"]
    return subset


def random_cifar_like(train: int, test: int, classes: int = 10) -> dict[str, np.ndarray]:
    """Random 32x32x3 uint8 images and labels (every class in both splits)."""
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (train, 32, 32, 3), dtype=np.uint8),
            "y_train": np.arange(train) % classes,
            "x_test": rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8),
            "y_test": np.arange(test) % classes}


def downscale_image_tree(source_zip: Path, target_zip: Path, per_class: Optional[int] = None,
                         scale: int = UCMERCED_SCALE) -> int:
    """Copy a {train,test}/<class>/<image> zip (`per_class` images of each) shrunk `scale` times.

    Returns the number of images written (as JPEG; with `scale` 1 they are copied byte for byte).
    """
    from PIL import Image

    count = 0
    with zipfile.ZipFile(source_zip) as source, zipfile.ZipFile(target_zip, "w") as target:
        kept: dict[tuple[str, ...], int] = {}
        images = [n for n in source.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png", ".tif"))]
        for name in sorted(images):
            parts = Path(name).parts
            group = parts[-3:-1]  # (split, class)
            if per_class is not None and kept.get(group, 0) >= per_class:
                continue
            kept[group] = kept.get(group, 0) + 1
            data = source.read(name)
            if scale != 1:
                image = Image.open(io.BytesIO(data)).convert("RGB")
                side = (max(1, image.width // scale), max(1, image.height // scale))
                image = image.resize(side, Image.BILINEAR)
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=90)
                data = buffer.getvalue()
            target.writestr(str(Path(*parts[-3:-1], Path(parts[-1]).stem + ".jpg")), data)
            count += 1
    return count


def random_image_tree(target_zip: Path, per_class: int, classes: int = 4) -> int:
    """A zip of random JPEGs of 56 to 72 px a side in {train,test}/<class>/; returns images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    count = 0
    with zipfile.ZipFile(target_zip, "w", zipfile.ZIP_STORED) as target:
        for split in ("train", "test"):
            for label in range(classes):
                for index in range(per_class):
                    height, width = rng.integers(56, 73, 2)
                    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
                    target.writestr(f"{split}/class{label}/{index}.jpg", buffer.getvalue())
                    count += 1
    return count


def variable_size_source(work: Path, per_class: Optional[int]) -> tuple[Path, str]:
    """The ~64 px variable-size image tree: device_data/, else made from ../shared, else random images."""
    prepared = DEVICE_DATA / UCMERCED_FILE
    if prepared.is_file() and per_class is None:
        return prepared, str(prepared)
    target = work / UCMERCED_FILE
    for source in (prepared, SHARED_DATASETS / "ucmerced_a.zip"):
        if source.is_file():
            downscale_image_tree(source, target, per_class, scale=1 if source == prepared else UCMERCED_SCALE)
            return target, f"{source} ({per_class} per class and split)"
    random_image_tree(target, per_class or 20)
    return target, "random images (no UC Merced file found)"


def prepare_device_data(shared: Path = SHARED_DATASETS, target: Path = DEVICE_DATA) -> dict[str, int]:
    """Fill device_data/ (ignored by git, carried to the GPU machine) from ../shared/datasets.

    Returns each file's size in bytes.
    """
    target.mkdir(exist_ok=True)
    with np.load(shared / "cifar10_15k.npz", allow_pickle=False) as arrays:
        data = subset_arrays({key: arrays[key] for key in arrays.files}, *CIFAR_PREPARED)
    np.savez_compressed(target / CIFAR_FILE, **data)
    downscale_image_tree(shared / "ucmerced_a.zip", target / UCMERCED_FILE)
    return {path.name: path.stat().st_size for path in sorted(target.iterdir())}


# ----------------------------------------------------------------------------- the steps


def environment(sizes: Sizes) -> dict:
    """Versions, device, CUDA/cuDNN and the trainer's choices for this machine."""
    import google.protobuf
    import PIL
    import torch
    import torchvision

    from autoclint.hardware import Precision, pick_device, usable_cores, use_worker_processes, worker_count

    device = pick_device()
    processes = use_worker_processes("auto", device)
    precision = Precision.for_device(device)
    found = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
             "protobuf": google.protobuf.__version__, "matplotlib": package_version("matplotlib"),
             "tensorflow": package_version("tensorflow"), "cores": usable_cores(),
             "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "precision": precision.describe(), "pin_memory": precision.pin_memory,
             "batch_workers": worker_count(0, processes=processes),
             "batch_worker_kind": "processes" if processes else "threads",
             "cudnn_benchmark": torch.backends.cudnn.benchmark,
             "sizes": asdict(sizes)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        found.update(device_name=properties.name, capability=f"{properties.major}.{properties.minor}",
                     gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                     bf16_supported=torch.cuda.is_bf16_supported(), nvidia_smi=nvidia_smi_line())
    else:
        found["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    return found


def package_version(name: str) -> Optional[str]:
    """An installed distribution's version, or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def nvidia_smi_line() -> Optional[str]:
    """GPU name, driver and memory as nvidia-smi reports them."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    done = subprocess.run(query, capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip()


def datasets(work: Path, sizes: Sizes) -> dict:
    """Write the two AutoDL sets with the project's writer, read them back with the TensorFlow-free reader."""
    from autoclint.autodl.convert import convert_image_folder
    from autoclint.autodl.writer import write_dataset

    root = work / "datasets"
    cifar, cifar_source = load_cifar_subset(sizes.cifar_train, sizes.cifar_test)
    start = time.perf_counter()
    classes = [str(c) for c in cifar["classes"]] if "classes" in cifar else None
    cifar_dir = write_dataset(root, "cifar10", cifar["x_train"], cifar["y_train"], cifar["x_test"],
                              cifar["y_test"], label_names=classes, image_format="jpeg")
    cifar_write_s = time.perf_counter() - start
    tree, tree_source = variable_size_source(work, sizes.ucmerced_per_class)
    start = time.perf_counter()
    variable_dir = convert_image_folder(tree, root, "ucmerced_64")
    variable_write_s = time.perf_counter() - start
    return {"cifar10": {"dir": str(cifar_dir), "source": cifar_source, "write_s": cifar_write_s,
                        **read_back(cifar_dir)},
            "ucmerced_64": {"dir": str(variable_dir), "source": tree_source, "write_s": variable_write_s,
                            **read_back(variable_dir)}}


def read_back(dataset_dir: Path) -> dict:
    """Records, image sides and decoding speed of both splits, through the TensorFlow-free reader."""
    from autoclint.autodl.layout import find_dataset
    from autoclint.autodl.pyreader import PyAutoDLDataset

    _, train_dir, test_dir, _ = find_dataset(dataset_dir)
    found: dict = {}
    for split, split_dir in (("train", train_dir), ("test", test_dir)):
        start = time.perf_counter()
        shapes = [example.shape for example, _ in PyAutoDLDataset(split_dir).get_dataset()]
        seconds = time.perf_counter() - start
        sides = np.array([shape[1:3] for shape in shapes])
        found[f"{split}_records"] = len(shapes)
        found[f"{split}_read_images_per_s"] = len(shapes) / max(seconds, 1e-9)
        found[f"{split}_sides"] = [int(sides.min()), int(sides.max())]
    return found


def bench(out: Path, work: Path, sizes: Sizes, side: int, workers: int = 0, tag: str = "",
          rounds: Optional[int] = None) -> dict:
    """scripts/bench_throughput.py at one image side; its log goes to OUT, its figures into the summary."""
    name = f"bench_{side}{tag}"
    figures = work / f"{name}.json"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "bench_throughput.py"), "--size", str(side),
               "--examples", str(sizes.bench_examples), "--batch_size", str(sizes.bench_batch_size),
               "--steps_per_epoch", str(sizes.bench_steps_per_epoch),
               "--rounds", str(rounds or sizes.bench_rounds),
               "--epochs", str(sizes.bench_epochs), "--time_limit_s", str(sizes.bench_time_limit_s),
               "--pipeline_seconds", str(sizes.bench_pipeline_s), "--workers", str(workers), "--amp", "--augment", "searched", "--no_first_prediction",
               "--json", str(figures)]
    run_logged(command, out / f"{name}.log", sizes.bench_timeout_s)
    return json.loads(figures.read_text())


def starter_kit(out: Path, work: Path, sizes: Sizes, dataset_dir: Path) -> dict:
    """The starter kit with autoclint on a dataset, the TensorFlow-free reader, and GPU memory watched."""
    from autoclint.harness.scoring import RunScorer, read_end_file
    from autoclint.autodl.layout import find_dataset

    predictions, scores, peaks = work / "predictions", work / "scores", work / "peak_memory.txt"
    python_path = os.pathsep.join(filter(None, [str(SITE_HOOKS), os.environ.get("PYTHONPATH")]))
    environment_vars = {"AUTOCLINT_CHECK_HIDE_TF": "1", "AUTOCLINT_CHECK_PEAK_FILE": str(peaks),
                        "PYTHONPATH": python_path}
    budget = sizes.starter_kit_budget_s
    command = [sys.executable, "-m", "autoclint.harness", "--dataset_dir", str(dataset_dir),
               "--time_budget", f"{budget:g}", "--output_dir", str(predictions), "--score_dir", str(scores)]
    log = out / "starter_kit.log"
    with GpuMemoryWatch() as memory:
        returncode = run_logged(command, log, budget + 120.0, environment_vars, check=False)
    _, _, _, solution = find_dataset(dataset_dir)
    result = RunScorer(solution, predictions).result(budget)
    end = read_end_file(predictions) or {}
    text = log.read_text(errors="replace")
    machine = re.search(r"autoclint on (.*?) with ", text)
    found = {"budget_s": budget, "returncode": returncode, "alc": result.alc, "final_nauc": result.final_nauc,
             "predictions": len(result.predictions),
             "first_prediction_s": result.predictions[0].elapsed if result.predictions else None,
             "last_prediction_s": result.predictions[-1].elapsed if result.predictions else None,
             "prediction_times_s": [round(p.elapsed, 2) for p in result.predictions],
             "ingestion_duration_s": float(end.get("ingestion_duration", "nan")),
             "ingestion_success": end.get("ingestion_success") == "1",
             "killed_at_budget": end.get("killed_at_time_budget") == "1",
             "reader": "TensorFlow-free" if "TensorFlow not used" in text else "tf.data",
             "machine": machine.group(1) if machine else None,
             "gpu_memory_peak_mib_nvidia_smi": memory.peak_mib,
             **torch_peak_memory(peaks)}
    curve = scores / "learning-curve.png"
    if curve.is_file():
        shutil.copy(curve, out / "learning_curve.png")
    return found


def torch_peak_memory(peaks: Path) -> dict:
    """The largest peak CUDA memory (allocated, reserved) that any starter-kit process recorded at exit."""
    rows = [line.split() for line in peaks.read_text().splitlines()] if peaks.is_file() else []
    if not rows:
        return {"gpu_memory_peak_mib_torch_allocated": None, "gpu_memory_peak_mib_torch_reserved": None}
    return {"gpu_memory_peak_mib_torch_allocated": max(int(row[1]) for row in rows) / 2**20,
            "gpu_memory_peak_mib_torch_reserved": max(int(row[2]) for row in rows) / 2**20}


class GpuMemoryWatch:
    """Samples the GPU's used memory with nvidia-smi twice a second; peak_mib is the rise over the start."""

    def __init__(self) -> None:
        self.peak_mib: Optional[float] = None
        self._process: Optional[subprocess.Popen] = None
        self._samples: list[float] = []
        self._reader: Optional[threading.Thread] = None

    def __enter__(self) -> "GpuMemoryWatch":
        import torch

        if torch.cuda.is_available() and shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0",
                     "-lms", "500"]
            self._process = subprocess.Popen(query, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self._samples.append(float(line.strip()))
            except ValueError:
                continue

    def __exit__(self, *exc_info) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._samples:
            self.peak_mib = max(self._samples) - self._samples[0]


def run_logged(command: list[str], log: Path, timeout_s: float, extra_env: Optional[dict[str, str]] = None,
               check: bool = True) -> int:
    """Run a command from the repository root with its output in `log`; returns its exit status."""
    environment_vars = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
    logger.info("$ %s  (log: %s)", " ".join(command), log.name)
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                  env=environment_vars, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(command[:3])}... did not end within {timeout_s:.0f} s "
                               f"(see {log.name})") from None
    if check and done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode} (see {log.name}): {last_lines(log)}")
    return done.returncode


def last_lines(path: Path, count: int = 3) -> str:
    """The last lines of a log, for an error message."""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-count:])


# ----------------------------------------------------------------------------- verdicts and summary


MET, MISSED, NOT_MEASURED, NOT_JUDGED = "met", "MISSED", "not measured", "not judged on a CPU"


def verdicts(summary: dict) -> dict[str, str]:
    """Each target met, missed, not measured, or (throughput on a CPU) not judged: only the GPU run says."""

    def verdict(value: Optional[float], passes: Callable[[float], bool]) -> str:
        return NOT_MEASURED if value is None else MET if passes(value) else MISSED

    found: dict[str, str] = {}
    for side in BENCH_SIDES:
        figures = summary["steps"].get(f"bench_{side}", {})
        ratio = figures.get("ratios", {}).get(f"trainer_searched/{figures.get('reference')}")
        fast_enough = verdict(ratio, lambda r: r >= TARGETS["trainer_searched_ratio"])
        found[f"trainer_searched_vs_bare_{side}"] = fast_enough if summary["cuda"] else NOT_JUDGED
        waits = figures.get("data_wait_share", {}).get("trainer_searched")
        wait = None if not waits else float(np.median(waits))
        gpu_fed = verdict(wait, lambda w: w < TARGETS["searched_data_wait_share"])
        found[f"gpu_waits_under_10pct_searched_{side}"] = gpu_fed if summary["cuda"] else NOT_JUDGED
    kit = summary["steps"].get("starter_kit", {})
    first = kit.get("first_prediction_s")
    found["first_prediction"] = verdict(first, lambda s: s <= TARGETS["first_prediction_s"])
    overrun = None if "budget_s" not in kit else float(kit["killed_at_budget"] or not kit["ingestion_success"]
                                                       or kit["ingestion_duration_s"] > kit["budget_s"])
    found["no_budget_overrun"] = verdict(overrun, lambda o: o == 0.0)
    return found


def summary_lines(summary: dict) -> list[str]:
    """The summary as lines a person reads."""
    steps = summary["steps"]
    lines = [f"autoclint device check on {summary['machine']}: {summary['note']}",
             f"total {summary['total_s']:.0f} s; steps: "
             + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["step_s"].items())]
    found = steps.get("environment", {})
    if found and "torch" in found:
        lines.append(f"python {found['python']}, torch {found['torch']}, torchvision {found['torchvision']}, "
                     f"CUDA {found['cuda']}, cuDNN {found['cudnn']}, {found['cores']} cores, "
                     f"{found['precision']}, {found['batch_workers']} batch worker "
                     f"{found.get('batch_worker_kind', 'threads')}, "
                     f"pinned memory {'on' if found['pin_memory'] else 'off'}")
    for name, figures in steps.get("datasets", {}).items():
        if isinstance(figures, dict) and "train_records" in figures:
            lines.append(f"dataset {name}: {figures['train_records']} train / {figures['test_records']} "
                         f"test, sides {figures['train_sides']}, "
                         f"read {figures['train_read_images_per_s']:.0f} img/s "
                         f"(TensorFlow-free reader), from {figures['source']}")
    for name, figures in steps.items():
        if name.startswith("bench_") and "best_images_per_second" in figures:
            best = figures["best_images_per_second"]
            waits = {k: float(np.median(v)) for k, v in figures["data_wait_share"].items()}
            lines.append(f"{name} ({figures['plan']['height']}x{figures['plan']['width']}, batch "
                         f"{figures['plan']['batch_size']}, {figures['workers']} batch workers): "
                         + ", ".join(f"{k} {v:.0f} img/s" for k, v in best.items()))
            lines.append("  ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in figures["ratios"].items())
                         + "; waiting for batches: "
                         + ", ".join(f"{k} {100 * v:.1f}%" for k, v in waits.items()))
            for case, rate in figures.get("pipeline_images_per_second", {}).items():
                lines.append(f"  pipeline {case}: {rate:.0f} img/s")
    kit = steps.get("starter_kit", {})
    if "alc" in kit:
        first = kit["first_prediction_s"]
        first_text = "-" if first is None else f"{first:.2f} s"
        lines.append(f"starter kit ({kit['budget_s']:g} s, {kit['reader']} reader): ALC {kit['alc']:.4f}, "
                     f"final NAUC {kit['final_nauc']:.4f}, {kit['predictions']} predictions, first at "
                     f"{first_text}, ingestion {kit['ingestion_duration_s']:.1f} s"
                     f"{' (killed at the budget)' if kit['killed_at_budget'] else ''}, peak GPU memory "
                     f"{format_mib(kit['gpu_memory_peak_mib_torch_allocated'])} allocated / "
                     f"{format_mib(kit['gpu_memory_peak_mib_torch_reserved'])} reserved by torch, "
                     f"{format_mib(kit['gpu_memory_peak_mib_nvidia_smi'])} by nvidia-smi")
        lines.append(f"  machine: {kit['machine']}")
    lines.append("targets: " + ", ".join(f"{name} {verdict}" for name, verdict in summary["targets"].items()))
    for name, error in summary["failures"].items():
        lines.append(f"FAILED {name}: {error}")
    return lines


def format_mib(value: Optional[float]) -> str:
    """MiB with no decimals, or '-' when not measured."""
    return "-" if value is None else f"{value:.0f} MiB"


# ----------------------------------------------------------------------------- the run


def run_check(out: Path, sizes: Optional[Sizes] = None, keep_work: bool = False) -> dict:
    """Every step in order (a failing step is recorded and the others still run); returns the summary."""
    import torch

    cuda = torch.cuda.is_available()
    sizes = sizes or (GPU_SIZES if cuda else CPU_SIZES)
    started = time.monotonic()
    summary: dict = {"cuda": cuda, "note": "CUDA run" if cuda else CPU_NOTE, "machine": platform.node(),
                     "complete": False, "steps": {}, "step_s": {}, "failures": {}}
    if not cuda:
        logger.info(CPU_NOTE)
    work = Path(tempfile.mkdtemp(prefix="autoclint-device-check-"))
    try:
        run_step(summary, out, "environment", lambda: environment(sizes))
        written = run_step(summary, out, "datasets", lambda: datasets(work, sizes))
        for side in BENCH_SIDES:
            run_step(summary, out, f"bench_{side}", lambda side=side: bench(out, work, sizes, side))
        if "cifar10" in written:
            dataset_dir = Path(written["cifar10"]["dir"])
            run_step(summary, out, "starter_kit", lambda: starter_kit(out, work, sizes, dataset_dir))
        side = side_for_more_workers(summary, time.monotonic() - started, sizes)
        if side is not None:
            workers = max(1, summary["steps"]["environment"]["cores"] - 1)
            tag = f"_workers{workers}"
            run_step(summary, out, f"bench_{side}{tag}",
                     lambda: bench(out, work, sizes, side, workers, tag, rounds=1))
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    summary["machine"] = summary["steps"].get("environment", {}).get("device_name", summary["machine"])
    summary["total_s"] = time.monotonic() - started
    summary["targets"] = verdicts(summary)
    summary["complete"] = True
    write_summary(out, summary)
    return summary


def run_step(summary: dict, out: Path, name: str, action: Callable[[], dict]) -> dict:
    """Run one step into the summary (its figures, or its failure, and its seconds); returns its figures."""
    logger.info("step %s", name)
    begin = time.monotonic()
    try:
        summary["steps"][name] = action()
    except Exception as error:  # noqa: BLE001 - one broken step must not hide the others' figures
        logger.exception("step %s failed", name)
        summary["failures"][name] = f"{type(error).__name__}: {error}"
    summary["step_s"][name] = time.monotonic() - begin
    write_partial_summary(out, summary)
    return summary["steps"].get(name, {})


def side_for_more_workers(summary: dict, elapsed_s: float, sizes: Sizes) -> Optional[int]:
    """On CUDA, the image side whose searched batches kept the GPU waiting most, to measure again (one
    round) with a worker per spare core; None when none waited long, or when it would not end in time.
    """
    if not summary["cuda"] or "environment" not in summary["steps"]:
        return None
    waits = {side: float(np.median(summary["steps"][f"bench_{side}"]["data_wait_share"]["trainer_searched"]))
             for side in BENCH_SIDES if f"bench_{side}" in summary["steps"]}
    if not waits or max(waits.values()) <= WAIT_SHARE_FOR_MORE_WORKERS:
        return None
    side = max(waits, key=waits.get)
    one_round_s = summary["step_s"][f"bench_{side}"] / max(1, summary["steps"][f"bench_{side}"]["rounds"])
    if elapsed_s + 2 * one_round_s + EXTRA_BENCH_SETUP_S > sizes.total_s:
        logger.info("no time left to measure %d px again with more batch workers", side)
        return None
    logger.info("the GPU waited %.0f%% of the time for searched %d px batches", 100 * waits[side], side)
    return side


def write_partial_summary(out: Path, summary: dict) -> None:
    """summary.json as it stands ("complete": false): a run stopped from outside still tells something."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


def write_summary(out: Path, summary: dict) -> None:
    """summary.json (every figure) and summary.txt (the lines printed at the end)."""
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    text = "\n".join(summary_lines(summary)) + "\n"
    (out / "summary.txt").write_text(text)
    print(text, end="", flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the check into OUT_DIR (exit 1 when a step failed), or --prepare device_data/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder for the logs and the summary")
    parser.add_argument("--prepare", action="store_true", help="fill device_data/ from ../shared/datasets")
    parser.add_argument("--keep_work", action="store_true", help="keep the written datasets and predictions")
    args = parser.parse_args(argv)
    if args.prepare:
        for name, size in prepare_device_data().items():
            print(f"{DEVICE_DATA / name}: {size / 2**20:.1f} MiB")
        return 0
    if args.out is None:
        parser.error("the output folder is required")
    args.out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(args.out / "device_check.log")]
    logging.basicConfig(level=logging.INFO, format="[device_check %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S", handlers=handlers)
    summary = run_check(args.out, keep_work=args.keep_work)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
