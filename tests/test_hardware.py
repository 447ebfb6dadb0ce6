"""Machine choices: batch workers from the cores, mixed precision and channels-last, the thread tuner."""

import pytest
import torch

from autoclint import hardware
from autoclint.hardware import Precision, ThreadTuner, worker_count


def test_worker_count_comes_from_the_cores_unless_set():
    assert worker_count(0, cores=2) == 1
    assert worker_count(0, cores=1) == 1
    assert worker_count(0, cores=16) == hardware.MAX_AUTO_WORKERS
    assert worker_count(2, cores=16) == 2
    assert worker_count(0, cores=16, processes=True) == hardware.MAX_AUTO_PROCESSES > hardware.MAX_AUTO_WORKERS


def test_batch_workers_are_processes_on_cuda_with_cores_to_spare_or_when_asked(monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert hardware.use_worker_processes("auto", cuda, cores=16)
    assert not hardware.use_worker_processes("auto", cuda, cores=2)  # one worker: a thread starts at once
    assert not hardware.use_worker_processes("auto", cpu, cores=16)  # the training step needs the cores
    assert hardware.use_worker_processes("processes", cpu, cores=2)
    assert not hardware.use_worker_processes("threads", cuda, cores=16)
    monkeypatch.setattr(hardware, "SHARED_MEMORY_AVAILABLE", False)  # no memfd (not Linux): threads
    assert not hardware.use_worker_processes("processes", cpu) and not hardware.use_worker_processes("auto", cuda)


def fake_gpu(monkeypatch, capability: tuple[int, int], bf16_supported: bool = True) -> None:
    """Make torch report a CUDA GPU of a compute capability (`is_bf16_supported` counts emulation too)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"GPU sm_{capability[0]}{capability[1]}")


def test_cpu_precision_is_plain_float32_and_cuda_gets_mixed_precision(monkeypatch):
    cpu = Precision.for_device(torch.device("cpu"))
    assert cpu.dtype is None and not cpu.channels_last and not cpu.pin_memory
    assert not cpu.scaler.is_enabled()
    inputs = cpu.to_input(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert inputs.dtype == torch.float32 and torch.all(inputs == 1.0)
    # CUDA: bfloat16 without a loss scaler where the GPU runs it natively (Ampere: 8.0 and later) ...
    for capability in ((8, 0), (9, 0)):
        fake_gpu(monkeypatch, capability)
        ampere = Precision.for_device(hardware.pick_device())
        assert ampere.dtype == torch.bfloat16 and ampere.channels_last and ampere.pin_memory
        assert not ampere.scaler.is_enabled()
    # ... float16 with a GradScaler before it (V100 7.0, T4 7.5, P100 6.0), even though torch says
    # bfloat16 is "supported" there: it is emulated, several times slower
    for capability in ((6, 0), (7, 0), (7, 5)):
        fake_gpu(monkeypatch, capability, bf16_supported=True)
        older = Precision.for_device(hardware.pick_device())
        assert older.dtype == torch.float16 and older.channels_last and older.pin_memory
        assert older.scaler.is_enabled()


def test_the_cuda_device_carries_its_index_so_tensors_on_it_compare_equal(monkeypatch):
    fake_gpu(monkeypatch, (8, 0))
    assert hardware.pick_device() == torch.device("cuda:0")
    assert hardware.pick_device() != torch.device("cuda")  # what tensors never report


def test_the_machine_line_reports_the_intra_op_threads_torch_uses_on_cuda(monkeypatch):
    fake_gpu(monkeypatch, (9, 0))
    device = hardware.pick_device()
    line = hardware.describe_machine(device, Precision.for_device(device), 0, 3, processes=True)
    assert f" {torch.get_num_threads()} intra-op threads" in line and " 0 intra-op" not in line
    assert "3 batch worker processes (1 intra-op thread each)" in line and line.startswith("GPU sm_90: cuda:0, bfloat16")


def test_bfloat16_autocast_and_channels_last_work_on_cpu():
    """The CUDA settings (autocast, channels-last) exercised where torch allows it: on the CPU."""
    precision = Precision(torch.device("cpu"), torch.bfloat16, channels_last=True)
    inputs = precision.to_input(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
    assert inputs.is_contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(3, 4, 3)
    with precision.autocast():
        out = conv(inputs)
    assert out.dtype == torch.bfloat16
    assert "bfloat16" in precision.describe() and "channels-last" in precision.describe()


def feed(tuner, timings_by_threads, steps):
    """Step the tuner with durations that depend on its current thread count; returns the switches."""
    switches = []
    for _ in range(steps):
        switched = tuner.observe(timings_by_threads[tuner.current])
        if switched is not None:
            switches.append(switched)
    return switches


def test_tuner_keeps_all_threads_on_an_idle_machine():
    tuner = ThreadTuner(2)
    switches = feed(tuner, {2: 0.05, 1: 0.09}, 40)
    assert switches == [1, 2] and tuner.current == 2 and not tuner.tuning
    assert tuner.reference_s == pytest.approx(0.05)


def test_tuner_drops_to_fewer_threads_when_a_core_is_busy_and_comes_back_when_it_frees():
    tuner = ThreadTuner(2)
    steps_at = []
    for _ in range(40):  # another process holds one core: two threads crawl
        steps_at.append(tuner.current)
        tuner.observe({2: 3.0, 1: 0.10}[tuner.current])
    assert tuner.current == 1 and tuner.reference_s == pytest.approx(0.10)
    assert steps_at.count(2) <= 3  # a crawling count is dropped after its first timed step
    feed(tuner, {2: 0.05, 1: 0.05}, 10)  # the other process ended: steps are fast, not yet for long
    assert tuner.current == 1 and not tuner.tuning
    feed(tuner, {2: 0.03, 1: 0.06}, 200)  # ...sustained: tuned again, back to both cores
    assert tuner.current == 2


def test_tuner_on_one_core_has_nothing_to_try():
    tuner = ThreadTuner(1)
    assert feed(tuner, {1: 0.1}, 20) == [] and not tuner.tuning


def test_tuner_tries_max_half_and_one_thread_on_a_big_machine():
    assert ThreadTuner(16).candidates == [1, 8, 16]
