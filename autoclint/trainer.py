"""The anytime controller behind Model.train / Model.test / Model.done_training.

Each `train` call trains until the validation NAUC improves or its time slice ends (slices grow from
a couple of seconds, so the first prediction comes early); `test` predicts with the best checkpoint by
validation score, with flip test-time augmentation once it helps on validation. Training stops a safety
margin (a few seconds plus one measured test pass) before the budget. Once validation NAUC passes
`faa_trigger_nauc`, the training augmentation is chosen once, at the start of the next call (by default
the light Fast AutoAugment search on the frozen best checkpoint, timed within the remaining budget),
installed in the batch workers, and training goes on from the initial learning rate. No exception reaches the caller: `test`
then returns the last good prediction (or the class priors).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoclint.augment import Augment, AugmentSelection, make_validation_evaluator, select_training_augment
from autoclint.config import ModelConfig
from autoclint.data.batches import BatchLoader, TrainSampler
from autoclint.data.bridge import iterate_numpy
from autoclint.data.cache import CacheFiller, ExampleCache
from autoclint.data.convert import ExampleConverter
from autoclint.data.device_set import DeviceSet, to_float
from autoclint.data.split import choose_valid_indices, must_read_all_first, prefix_needed
from autoclint.metrics import nauc
from autoclint.nn import WeightsError, build_network, init_backbone_weights, make_loss, predict_scores
from autoclint.optim import LRSchedule, make_sgd
from autoclint.plan import Plan, make_plan
from autoclint.probe import Probe, probe_examples

logger = logging.getLogger(__name__)

IMPROVEMENT_TOLERANCE = 1e-4
MAX_FAILED_CALLS = 3
UNKNOWN_TEST_DURATION_S = 1.0


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads(num_threads: int) -> int:
    """Use `num_threads` intra-op CPU threads (0: every core this process may run on)."""
    if num_threads <= 0:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(num_threads)
    return num_threads


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@dataclass
class ValidationResult:
    """Scores of one checkpoint on the validation set."""

    nauc: float
    loss: float
    tta_helps: bool


class TrainingState:
    """Everything built on the first `train` call: probe, plan, cache, split, loader, networks, optimiser."""

    def __init__(self, trainer: "Trainer", dataset: Any) -> None:
        config, device = trainer.config, trainer.device
        source = iterate_numpy(dataset)
        read_start = time.monotonic()
        sample = list(itertools.islice(source, config.probe_size))
        self.probe: Probe = probe_examples(sample)
        if self.probe.num_classes != trainer.output_dim:
            raise ValueError(f"labels have {self.probe.num_classes} columns but metadata says {trainer.output_dim}")
        total = trainer.num_examples if trainer.num_examples > 0 else len(sample)
        self.plan: Plan = make_plan(self.probe, total, config)
        logger.info("plan: %s", self.plan)
        self.converter = ExampleConverter.from_plan(self.plan, self.probe)
        self.cache = ExampleCache(self.converter.shape, self.probe.num_classes, capacity=max(total, len(sample)))
        for example, label in sample:
            self.cache.append(self.converter(example), label)
        self._probe_read_seconds = (time.monotonic() - read_start) / max(1, len(sample))
        self.filler = CacheFiller(source, self.cache, self.converter).start()
        if trainer.num_examples <= 0 or must_read_all_first(self.probe, total, config.small_dataset):
            available = self.filler.wait_for(math.inf)
        else:
            needed = prefix_needed(total, self.plan.num_valid, self.plan.batch_size, config.probe_size)
            available = self.filler.wait_for(needed)
        num_valid = min(self.plan.num_valid, max(0, available - 1))
        valid_indices = choose_valid_indices(available, num_valid, config.seed) if num_valid else np.empty(0, int)
        examples, labels = self.cache.gather(valid_indices)
        self.valid = DeviceSet(examples, labels, device)
        self.sampler = TrainSampler(self.cache, valid_indices, config.seed)
        self.net = self._build_network(trainer)
        self.best_net = copy.deepcopy(self.net).eval()
        self.loss_fn = make_loss(self.plan.is_multilabel)
        self.optimizer = make_sgd(self.net, config.lr_for_batch(self.plan.batch_size), config)
        self.schedule = LRSchedule(
            self.optimizer, self.plan.steps_per_epoch, config.warmup_epochs, config.plateau_patience, config.plateau_factor
        )
        self.loader: BatchLoader | None = None
        self.augment: Augment | None = None

    def _build_network(self, trainer: "Trainer") -> nn.Module:
        net = build_network(self.plan, trainer.config)
        if trainer.config.pretrained:
            try:
                init_backbone_weights(net.backbone, trainer.config.arch, trainer.code_dir)
            except WeightsError:
                logger.exception("unusable ImageNet weights file: training from random initialisation")
        memory_format = torch.channels_last if trainer.device.type == "cuda" else torch.contiguous_format
        return net.to(trainer.device, memory_format=memory_format)

    def read_seconds_per_example(self) -> float:
        """Measured seconds to read and convert one example (the background decoder's rate when known)."""
        measured = self.filler.seconds_per_example
        return self._probe_read_seconds if measured is None else max(measured, self._probe_read_seconds)

    def start_loader(self, config: ModelConfig, device: torch.device) -> BatchLoader:
        """The running batch loader (a fresh one after a failure closed the last)."""
        if self.loader is None:
            self.loader = BatchLoader(
                self.cache,
                self.sampler,
                self.plan.batch_size,
                flip=config.flip,
                workers=config.worker_count(),
                queue_size=config.loader_queue,
                seed=config.seed,
                pin_memory=device.type == "cuda",
            )
            self._set_loader_transform()
            self.loader.start()
        return self.loader

    def install_augment(self, augment: Augment) -> None:
        """Augment every training batch built from now on (also by loaders started later)."""
        self.augment = augment
        self._set_loader_transform()

    def _set_loader_transform(self) -> None:
        if self.loader is not None:
            self.loader.set_transform(None if self.augment is None else self.augment.augment_batch)

    def close_loader(self) -> None:
        """Stop the batch workers (they are restarted on demand)."""
        if self.loader is not None:
            self.loader.close()
            self.loader = None

    def close(self) -> None:
        """Stop every background thread."""
        self.close_loader()
        self.filler.stop()


class Trainer:
    """Anytime training under a time budget, with predictions from the best validated checkpoint."""

    def __init__(self, metadata: Any, config: ModelConfig, code_dir: str | Path | None = None) -> None:
        self.config = config
        self.code_dir = code_dir
        self.output_dim = int(metadata.get_output_size())
        self.num_examples = int(metadata.size())
        self.device = pick_device()
        seed_everything(config.seed)
        if self.device.type == "cpu":
            configure_threads(config.num_threads)
        self.done_training = False
        self.state: TrainingState | None = None
        self.train_calls = 0
        self.epochs = 0
        self.best_nauc = -math.inf
        self.best_loss = math.inf
        self.best_version = 0
        self.use_tta = False
        self.history: list[tuple[float, float]] = []  # (seconds since creation, validation NAUC)
        self._created = time.monotonic()
        self._failures = 0
        self._steps_seen = 0
        self._last_step_seconds = 0.0
        self._mean_step_seconds = 0.0
        self._valid_pass_seconds: float | None = None
        self._test_set: DeviceSet | None = None
        self._num_test: int | None = None
        self._prediction: np.ndarray | None = None
        self._prediction_version = -1
        self._test_pass_seconds: float | None = None
        self._augmentation_chosen = False
        self.augmentation: AugmentSelection | None = None
        self._autocast_dtype = self._pick_autocast_dtype()
        self._scaler = torch.amp.GradScaler("cuda", enabled=self._autocast_dtype == torch.float16)
        logger.info("autoclint trainer on %s with %s", self.device, config)

    # ------------------------------------------------------------------ platform API

    def train(self, dataset: Any, remaining_time_budget: float | None = None) -> None:
        """Train for one time slice; never raises (errors are logged)."""
        start = time.monotonic()
        try:
            self._train(dataset, start, remaining_time_budget)
            self._failures = 0
        except Exception:
            logger.exception("training call failed; predictions continue from the last good checkpoint")
            self._failures += 1
            if self.state is not None:
                self.state.close_loader()
            if self._failures >= MAX_FAILED_CALLS:
                logger.error("%d training calls failed in a row: stopping", self._failures)
                self.done_training = True
        finally:
            self.train_calls += 1

    def test(self, dataset: Any, remaining_time_budget: float | None = None) -> np.ndarray | None:
        """Scores (num_test, output_dim) from the best checkpoint; on error the last good ones or the priors."""
        try:
            if self._prediction is not None and self._no_time_to_predict(remaining_time_budget):
                logger.warning("too little time left for a test pass: repeating the last prediction")
                return self._prediction.copy()
            prediction = self._test(dataset, remaining_time_budget)
            return prediction.copy()
        except Exception:
            logger.exception("test call failed; returning the last good prediction")
            return self._fallback_prediction(dataset)

    def _no_time_to_predict(self, remaining: float | None) -> bool:
        """True when a new test pass might not end within the remaining budget."""
        if remaining is None or self.state is None:
            return False
        return remaining < self._test_estimate(self.state) + 0.5

    def close(self) -> None:
        """Stop the background threads (also safe when nothing was started)."""
        if self.state is not None:
            self.state.close()

    # ------------------------------------------------------------------ time estimates

    def _step_estimate(self) -> float:
        """Seconds the next training step may take: a margin over the slower of the last step and the mean."""
        return self.config.duration_margin * max(self._last_step_seconds, self._mean_step_seconds)

    def _record_step(self, seconds: float) -> None:
        self._steps_seen += 1
        if self._steps_seen == 1:  # the very first step also sets up kernels and buffers: not representative
            return
        self._last_step_seconds = seconds
        mean = self._mean_step_seconds
        self._mean_step_seconds = seconds if mean == 0.0 else 0.9 * mean + 0.1 * seconds

    def _forward_pass_seconds(self, state: TrainingState, count: int) -> float:
        """One forward pass over `count` examples: as measured on the test set, else scaled from the last
        validation pass (small passes cost about as much as one batch), else from the training steps."""
        if self._test_pass_seconds is not None and count == self._num_test:
            return self._test_pass_seconds
        if self._valid_pass_seconds is not None:
            return self._valid_pass_seconds * max(1.0, count / max(1, len(state.valid)))
        return self._mean_step_seconds * max(1.0, count / state.plan.batch_size)  # a step costs about 3 passes

    def _eval_estimate(self, state: TrainingState) -> float:
        """Seconds the next validation pass may take."""
        if len(state.valid) == 0:
            return 0.0
        passes = 2 if self.config.tta_flip else 1
        return self.config.duration_margin * passes * self._forward_pass_seconds(state, len(state.valid))

    def _test_estimate(self, state: TrainingState) -> float:
        """Seconds the next test call may take: reading the test set the first time, then one or two passes.

        Before the test set was seen its size is unknown; the first call is short and ends in a prediction
        anyway, so only a fixed allowance is kept then.
        """
        if self._num_test is None:
            return UNKNOWN_TEST_DURATION_S
        seconds = self._forward_pass_seconds(state, self._num_test)  # flip TTA only where time is left for it
        if self._test_set is None:
            seconds += state.read_seconds_per_example() * self._num_test
        return self.config.duration_margin * seconds

    def _deadline(self, budget_end: float) -> float:
        """When training must stop: before the budget's end by the safety margin and one test call."""
        if self.state is None:
            return budget_end - self.config.safety_margin_s - UNKNOWN_TEST_DURATION_S
        return budget_end - self.config.safety_margin_s - self._test_estimate(self.state)

    def _slice_seconds(self) -> float:
        return min(self.config.max_slice_s, self.config.first_slice_s * self.config.slice_growth**self.train_calls)

    def _train(self, dataset: Any, start: float, remaining: float | None) -> None:
        budget_end = math.inf if remaining is None else start + remaining
        now, deadline = time.monotonic(), self._deadline(budget_end)
        if now >= deadline or (self.state is not None and self._out_of_time(self.state, now, deadline)):
            self._stop_training()
            return
        if self.state is None:
            self.state = TrainingState(self, dataset)
        state = self.state
        # At the start of a call, not right after the validation that passed the trigger: the improved
        # checkpoint is predicted first, so the search never delays a better prediction.
        self._maybe_start_augmentation(state, self._deadline(budget_end))
        loader = state.start_loader(self.config, self.device)
        train_start = time.monotonic()
        slice_s = self._slice_seconds()
        slice_end = train_start + slice_s * self.config.slice_patience
        first_prediction = self.best_version == 0
        # before the first prediction: return after the first (possibly shortened) epoch
        min_seconds, epoch_end = (0.0, train_start + slice_s) if first_prediction else (slice_s, slice_end)
        improved_in_call = False
        while True:
            deadline = self._deadline(budget_end)
            self._train_epoch(state, loader, stop_at=min(epoch_end, slice_end, deadline - self._eval_estimate(state)))
            improved_in_call = self._validate(state) or improved_in_call
            now = time.monotonic()
            if self._out_of_time(state, now, self._deadline(budget_end)) or self._saturated(state):
                self._stop_training()
                return
            if (improved_in_call and now - train_start >= min_seconds) or now >= slice_end:
                return

    def _stop_training(self) -> None:
        """No more training: the remaining calls only predict, so free the CPU of the batch workers."""
        self.done_training = True
        if self.state is not None:
            self.state.close_loader()

    def _out_of_time(self, state: TrainingState, now: float, deadline: float) -> bool:
        """True when not even one more step and its evaluation would fit before the deadline."""
        return now + self._step_estimate() + self._eval_estimate(state) >= deadline

    def _saturated(self, state: TrainingState) -> bool:
        """True once the plateau schedule has cut the learning rate to a negligible fraction."""
        return state.schedule.lr < state.schedule.initial_lr * self.config.min_lr_ratio

    def _train_epoch(self, state: TrainingState, loader: BatchLoader, stop_at: float) -> None:
        state.net.train()
        total, steps = torch.zeros((), device=self.device), 0
        for _ in range(state.plan.steps_per_epoch):
            step_start = time.monotonic()
            if steps and step_start + self._step_estimate() >= stop_at:
                break
            examples, labels = loader.next_batch()
            total += self._train_step(state, examples, labels)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # step times drive the deadline: measure them completely
            self._record_step(time.monotonic() - step_start)
            steps += 1
        self.epochs += 1
        state.schedule.end_epoch(float(total) / max(1, steps))

    def _train_step(self, state: TrainingState, examples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        inputs = self._to_input(examples)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            logits = state.net(inputs)
        loss = state.loss_fn(logits.float(), labels)
        state.optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(state.optimizer)
        self._scaler.update()
        state.schedule.step()
        return loss.detach()

    def _to_input(self, examples: torch.Tensor) -> torch.Tensor:
        inputs = to_float(examples.to(self.device, non_blocking=True))
        if self.device.type == "cuda" and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _pick_autocast_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # ------------------------------------------------------------------ evaluation

    @torch.inference_mode()
    def _logits(self, net: nn.Module, device_set: DeviceSet, flip: bool) -> torch.Tensor:
        net.eval()
        outputs = []
        for batch in device_set.batches(self.config.eval_batch_size):
            if flip:
                batch = batch.flip(-1)
            with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
                outputs.append(net(batch).float())
        if not outputs:
            return torch.zeros((0, self.output_dim), device=self.device)
        return torch.cat(outputs)

    def _scores(self, net: nn.Module, device_set: DeviceSet, tta: bool, multilabel: bool) -> np.ndarray:
        scores = predict_scores(self._logits(net, device_set, flip=False), multilabel)
        if tta:
            scores = 0.5 * (scores + predict_scores(self._logits(net, device_set, flip=True), multilabel))
        return scores.cpu().numpy().astype(np.float32)

    def _evaluate(self, state: TrainingState) -> ValidationResult:
        multilabel = state.plan.is_multilabel
        logits = self._logits(state.net, state.valid, flip=False)
        labels = torch.from_numpy(state.valid.labels).to(self.device)
        loss = float(state.loss_fn(logits, labels)) if len(labels) else math.inf
        plain = predict_scores(logits, multilabel)
        plain_nauc = nauc(state.valid.labels, plain.cpu().numpy())
        if not self.config.tta_flip:
            return ValidationResult(plain_nauc, loss, tta_helps=False)
        flipped = predict_scores(self._logits(state.net, state.valid, flip=True), multilabel)
        tta_nauc = nauc(state.valid.labels, (0.5 * (plain + flipped)).cpu().numpy())
        # the first checkpoint is predicted without TTA: it doubles the cost of the earliest prediction
        helps = tta_nauc > plain_nauc + IMPROVEMENT_TOLERANCE and self.best_version > 0
        return ValidationResult(tta_nauc if helps else plain_nauc, loss, tta_helps=helps)

    def _validate(self, state: TrainingState) -> bool:
        """Score the current weights; keep them as the best checkpoint when they improve. Returns that."""
        eval_start = time.monotonic()
        if len(state.valid) == 0:
            result = ValidationResult(0.0, math.inf, tta_helps=False)
            improved = True
        else:
            result = self._evaluate(state)
            better = result.nauc > self.best_nauc + IMPROVEMENT_TOLERANCE
            tied_but_surer = result.nauc >= self.best_nauc - IMPROVEMENT_TOLERANCE and result.loss < self.best_loss
            improved = better or tied_but_surer
        if improved:
            self.best_nauc, self.best_loss = max(self.best_nauc, result.nauc), result.loss
            state.best_net.load_state_dict(state.net.state_dict())
            self.use_tta = result.tta_helps
            self.best_version += 1
        if len(state.valid):
            self._valid_pass_seconds = (time.monotonic() - eval_start) / (2 if self.config.tta_flip else 1)
        self.history.append((time.monotonic() - self._created, result.nauc))
        logger.info(
            "epoch %d: valid NAUC %.4f loss %.4f lr %.3g%s",
            self.epochs,
            result.nauc,
            result.loss,
            state.schedule.lr,
            " (best)" if improved else "",
        )
        return improved

    # ------------------------------------------------------------------ augmentation

    def _maybe_start_augmentation(self, state: TrainingState, deadline: float) -> None:
        """Once validation NAUC passes `faa_trigger_nauc` (once per run): choose the training augmentation
        (searching it on the frozen best checkpoint within the time left before `deadline`), install it
        in the batch workers and restore the initial learning rate without warm-up."""
        if self._augmentation_chosen or self.best_nauc < self.config.faa_trigger_nauc:
            return
        self._augmentation_chosen = True
        if self.config.augmentation == "none":
            return
        logger.info("validation NAUC %.4f passed %.2f: choosing the %r training augmentation",
                    self.best_nauc, self.config.faa_trigger_nauc, self.config.augmentation)
        evaluate = None
        if len(state.valid) > 0:
            evaluate = make_validation_evaluator(
                self._frozen_scores,
                state.valid.examples,
                state.valid.labels,
                nauc,
                seed=self.config.seed,
                batch_size=self.config.eval_batch_size,
                resample=self.config.faa_repeats > 1,
            )
        time_left = deadline - time.monotonic()
        selection = select_training_augment(self.config, evaluate, time_left, seed=self.config.seed)
        self.augmentation = selection
        if selection.augment is None:
            logger.info("training continues unaugmented (%s; %.1f s)", selection.reason, selection.elapsed_s)
            return
        state.install_augment(selection.augment)
        state.schedule.restore_initial_lr()
        logger.info("training on augmented data from now on, learning rate back to %.3g without warm-up "
                    "(%s; chosen in %.1f s)", state.schedule.lr, selection.reason, selection.elapsed_s)

    @torch.inference_mode()
    def _frozen_scores(self, images: torch.Tensor) -> np.ndarray:
        """Scores of the best checkpoint (eval mode, no gradients, on the device) for a uint8 batch."""
        state = self.state
        state.best_net.eval()
        inputs = self._to_input(images)
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            logits = state.best_net(inputs).float()
        return predict_scores(logits, state.plan.is_multilabel).cpu().numpy()

    # ------------------------------------------------------------------ prediction

    def _load_test_set(self, dataset: Any, state: TrainingState) -> DeviceSet:
        converted = [state.converter(example) for example, _ in iterate_numpy(dataset)]
        if not converted:
            raise ValueError("the test set is empty")
        self._num_test = len(converted)
        return DeviceSet(np.stack(converted), None, self.device)

    def _tta_fits(self, budget_end: float) -> bool:
        """Whether a second (flipped) test pass fits before the end of the budget."""
        return budget_end - time.monotonic() > 2.0 * self._test_estimate(self.state) + 0.5

    def _test(self, dataset: Any, remaining: float | None = None) -> np.ndarray:
        budget_end = math.inf if remaining is None else time.monotonic() + remaining
        state = self.state
        if state is None:
            raise RuntimeError("test called before any successful training call")
        if self._prediction is not None and self._prediction_version == self.best_version:
            return self._prediction
        state.filler.pause()  # the platform waits on this prediction: give it the CPU
        try:
            if self._test_set is None:
                self._test_set = self._load_test_set(dataset, state)
            if self.best_nauc > 0.0:
                predict_start = time.monotonic()
                tta = self.use_tta and self._tta_fits(budget_end)
                self._prediction = self._scores(state.best_net, self._test_set, tta, state.plan.is_multilabel)
                self._test_pass_seconds = (time.monotonic() - predict_start) / (2 if tta else 1)
            else:  # no better than chance on validation: constant priors score exactly 0, never below
                self._prediction = np.tile(self._priors(), (len(self._test_set), 1))
            self._prediction_version = self.best_version
        finally:
            state.filler.resume()
        return self._prediction

    def _fallback_prediction(self, dataset: Any) -> np.ndarray | None:
        if self._prediction is not None:
            return self._prediction.copy()
        try:
            num_test = self._num_test if self._num_test is not None else sum(1 for _ in iterate_numpy(dataset))
        except Exception:
            logger.exception("cannot count the test examples: no prediction possible")
            return None
        return np.tile(self._priors(), (num_test, 1))

    def _priors(self) -> np.ndarray:
        """Class frequencies of the probed labels (uniform before any were seen)."""
        if self.state is None:
            return np.full(self.output_dim, 1.0 / self.output_dim, dtype=np.float32)
        counts = np.asarray(self.state.probe.label_counts, dtype=np.float32) + 1.0
        return (counts / counts.sum()).astype(np.float32)
