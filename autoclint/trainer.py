"""The anytime controller behind Model.train / Model.test / Model.done_training: it decides, the modules do.

The first `train` call reads the probe and the validation split, fits the fast learner on what has been
read and returns, so that the first prediction waits neither for the network nor for more data; the next
call fits it in full on what has been read by then and returns too, and so does each call that refits it on
at least twice the examples; the first call with no refit to make builds the network. Each later call
trains until the validation NAUC improves or its time slice ends (slices grow from about a second); `test`
predicts with the best checkpoint, with flip test-time augmentation once it helps on validation. Training
stops when one more step, its validation and a test call no longer fit the budget (`budget.py`). Once
validation NAUC passes `faa_trigger_nauc`, the training augmentation is chosen once, at the start of the
next call, installed in the batch workers, and the learning rate goes back to its initial value. No
exception reaches the caller: `test` then returns the last good prediction (or the class priors).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from autoclint.augment import AugmentSelection, AugmentSettings, ValidationEvaluator, select_training_augment
from autoclint.budget import Budget, Kind
from autoclint.candidates import Choice, FastCandidate, choose_prediction
from autoclint.config import ModelConfig
from autoclint.data.bridge import count_examples, iterate_numpy
from autoclint.data.device_set import DeviceSet
from autoclint.early import FastLearnerSettings, blas_controller
from autoclint.evaluate import (
    PREDICTION_SLACK_S,
    UNKNOWN_TEST_DURATION_S,
    EvalSettings,
    FrozenScorer,
    ValidationResult,
    class_priors,
    test_pass_estimate,
    validate,
    validation_estimate,
)
from autoclint.hardware import (
    Precision,
    ThreadTuner,
    configure_threads,
    describe_machine,
    pick_device,
    seed_everything,
    use_worker_processes,
    worker_count,
)
from autoclint.loop import EpochResult, recover_from_out_of_memory, step_estimate, train_one_epoch
from autoclint.metrics import nauc
from autoclint.predictor import Predictor
from autoclint.session import LoaderSettings, Session, attach_network, read_data

logger = logging.getLogger(__name__)

MAX_FAILED_CALLS = 3
FAST_ONLY_WAIT_S = 1.0  # without a network to train, a call waits this long at most for more examples
FAST_FIT_ALLOWANCE_S = 2.0  # time a fast-learner fit may take (it subsamples to stay near a second)
FIRST_FIT_ESTIMATE_S = 0.5  # the quick first fast-learner fit, before any was measured
FIRST_CALL_MIN_S = 1.0  # with less left, a first call cannot read, fit and predict: it stops at once
REFIT_WAIT_S = 1.0  # before building the network, the longest wait for the examples a fast-learner refit needs
NETWORK_BUILD_ESTIMATE_S = 0.5  # building the network (and finding its weights), after the first predictions
MAX_FIRST_SLICE_GROWTHS = 2  # the network's first slice grows once per call before it, at most twice: the
# slice it had when the fast learner always took the first two calls, which its measured schedules assume


def augment_settings(config: ModelConfig) -> AugmentSettings:
    """The augmentation fields of the configuration, for the augmentation package."""
    return AugmentSettings(config.augmentation, config.faa_sub_policies, config.faa_candidates, config.faa_top_n,
                           config.faa_repeats, config.faa_min_candidates, config.faa_max_budget_fraction,
                           config.faa_max_search_s, config.seed)


class Trainer:
    """Anytime training under a time budget, with predictions from the best validated checkpoint."""

    def __init__(self, metadata: Any, config: ModelConfig, code_dir: str | Path | None = None,
                 now: Callable[[], float] = time.monotonic, test_calls: bool = True) -> None:
        """`test_calls`: whether test calls come within the budget (the AutoDL protocol), so that training
        keeps one in reserve; `ImageClassifier.fit` predicts after its budget and makes none."""
        self.config, self.code_dir = config, code_dir
        self.test_calls = test_calls
        self.output_dim = int(metadata.get_output_size())
        self.num_examples = int(metadata.size())
        self.device = pick_device()
        seed_everything(config.seed)
        threads = configure_threads(config.num_threads) if self.device.type == "cpu" else 0
        # the thread count is tuned only when it was left automatic, on a CPU with cores to choose from
        self.tuner = ThreadTuner(threads) if config.num_threads == 0 and threads > 1 else None
        self.precision = Precision.for_device(self.device)
        self.budget = Budget(config.safety_margin_s, config.duration_margin, now)
        processes = use_worker_processes(config.loader_kind, self.device)
        workers = worker_count(config.loader_workers, processes=processes)
        self.loader_settings = LoaderSettings(config.flip, workers, config.loader_queue, config.seed,
                                              self.precision.pin_memory, processes)
        self.done_training = False
        self.session: Optional[Session] = None
        self.augmentation: Optional[AugmentSelection] = None
        self.train_calls = self.epochs = 0
        self.network_calls = 0  # calls that trained the network: its time slices grow with them
        self._slice_offset = 0  # growths of the network's first slice (set on its first call)
        self.history: list[tuple[float, float]] = []  # (seconds since creation, validation NAUC)
        self._created = now()
        self._failures = 0
        self.fast: Optional[FastCandidate] = None
        self._test_set: Optional[DeviceSet] = None
        self._test_examples: Optional[np.ndarray] = None  # uint8, for the fast learner
        self._prediction: Optional[np.ndarray] = None
        self._prediction_key: Optional[tuple] = None
        self._network_test_scores: tuple[int, Optional[np.ndarray]] = (-1, None)
        self._augmentation_chosen = False
        if config.fast_learner:  # finding the BLAS thread pools takes 30-70 ms: here (the constructor's time
            blas_controller()    # is not the budget's), not in the first fit, which the first prediction waits on
        logger.info("autoclint on %s with %s", describe_machine(self.device, self.precision, threads, workers, processes),
                    config)

    # ------------------------------------------------------------------ platform API

    def train(self, dataset: Any, remaining_time_budget: Optional[float] = None) -> None:
        """Train for one time slice; never raises (errors are logged). Once done, returns at once."""
        self.budget.set_remaining(remaining_time_budget)
        if self.done_training:
            logger.debug("training is done: the call returns at once")
            return
        try:
            self._train_slice(dataset)
            self._failures = 0
        except Exception as error:
            if recover_from_out_of_memory(error, self.session, self.device):
                return
            logger.exception("training call failed; predictions continue from the last good checkpoint")
            self._failures += 1
            if self.session is not None:
                self.session.close_loader()
            if self._failures >= MAX_FAILED_CALLS:
                logger.error("%d training calls failed in a row: stopping", self._failures)
                self.done_training = True
        finally:
            self.train_calls += 1

    def test(self, dataset: Any, remaining_time_budget: Optional[float] = None) -> Optional[np.ndarray]:
        """Scores (num_test, output_dim) from the best checkpoint; on error the last good ones or the priors."""
        self.budget.set_remaining(remaining_time_budget)
        if self.session is None:  # no training call has read the data: nothing to predict from yet
            logger.info("test called before the training data was read: predicting the class priors")
            return self._fallback_prediction(dataset)
        try:
            if self._prediction is not None and self.budget.time_left() < self._test_reserve() + PREDICTION_SLACK_S:
                logger.warning("too little time left for a test pass: repeating the last prediction")
                return self._prediction.copy()
            return self._predict(dataset).copy()
        except Exception:
            logger.exception("test call failed; returning the last good prediction")
            return self._fallback_prediction(dataset)

    def close(self) -> None:
        """Stop the background threads (also safe when nothing was started)."""
        if self.session is not None:
            self.session.close()

    # ------------------------------------------------------------------ time

    def _test_reserve(self) -> float:
        """Planned seconds of the next test call (flip TTA only runs where time is left for it); none where
        no test call comes within the budget."""
        if not self.test_calls:
            return 0.0
        return test_pass_estimate(self.budget, None if self._test_set is None else len(self._test_set))

    def _eval_reserve(self, session: Session) -> float:
        return validation_estimate(self.budget, len(session.valid), self.config.tta_flip)

    def _training_deadline(self) -> float:
        """When training must stop: the safety margin and one test call before the budget's end."""
        return self.budget.deadline(self._test_reserve())

    def _out_of_time(self, session: Session, extra_s: float = 0.0) -> bool:
        """True when not even one more step, its validation and a test call (after `extra_s` of other work)
        fit before the budget's end."""
        return not self.budget.fits(extra_s + step_estimate(self.budget) + self._eval_reserve(session)
                                    + self._test_reserve())

    def _slice_seconds(self) -> float:
        """This call's time slice: grows with the calls that trained the network, not with the fast learner's
        calls before it (a first epoch cut at 16 s instead of 4 s after four refits left a busy machine's run
        a single network epoch)."""
        growth = self.config.slice_growth ** (self._slice_offset + self.network_calls)
        return min(self.config.max_slice_s, self.config.first_slice_s * growth)

    # ------------------------------------------------------------------ training

    def _train_slice(self, dataset: Any) -> None:
        """One call's work: read and fit the fast learner first, then build and train the network; every call
        that can do nothing useful any more sets `done_training`, so a tiny budget never spins.

        Until the network is built, a call that fits the fast learner returns at once, so that the first
        prediction waits neither for the network nor for more data, and each refit on the examples read
        meanwhile is predicted without waiting for the network's first epoch."""
        if self.session is None:
            if self.budget.time_left() < FIRST_CALL_MIN_S:
                logger.info("%.1f s left: too little to read the data and fit; predicting the class priors",
                            self.budget.time_left())
                self._stop_training()
                return
            self.session = self._read_data(dataset)
        session = self.session
        # before the network is built, every new fit is predicted at once: each sees at least twice the
        # examples of the last, and the network takes seconds to start learning
        early_fit = self._fast_fit_fits() and self._fit_fast_learner(session) and not session.has_network
        if not early_fit and not session.has_network and self.config.train_network and self._wait_for_refit(session):
            early_fit = self._fast_fit_fits() and self._fit_fast_learner(session)
        if not self.config.train_network:
            available, held_out = len(session.cache) - len(session.valid_indices), len(session.valid_indices)
            if self.fast is None or (session.filler.finished and self.fast.complete(available)
                                     and not self.fast.wants_valid_fit(available, held_out)):
                self._stop_training()
            elif early_fit:  # predicted at once; the next call refits or waits for more examples
                return
            elif self.budget.fits(FAST_ONLY_WAIT_S + self._test_reserve()):
                # nothing to train meanwhile: give the decoder time to bring more examples
                session.filler.wait_for(len(session.cache) * 2, timeout=FAST_ONLY_WAIT_S)
            else:  # neither a refit nor a wait fits before the end
                self._stop_training()
        elif not early_fit:  # the network is built and trained once the early fits were predicted
            self._train_network(session)

    def _fast_fit_fits(self) -> bool:
        """Whether a fast-learner fit is worth starting: the first one whenever it can end before the budget
        does (nothing predicts better than priors without it), later ones within the safety margin."""
        if self.fast is None:
            return False
        if self.fast.version == 0:
            return self.budget.time_left() > self.budget.planned(FIRST_FIT_ESTIMATE_S) + self._test_reserve()
        return self.budget.fits(FAST_FIT_ALLOWANCE_S + self._test_reserve())

    def _wait_for_refit(self, session: Session) -> bool:
        """Before the network is built: wait for the examples that make a fast-learner refit due when, at the
        rate measured while reading, they take at most `REFIT_WAIT_S`; returns whether a refit may now be due
        (it waited, or they were read already: during a refit that validation refused, for example).

        On a CPU the network's first epoch takes seconds and slows reading, so the next refit would wait for
        it: a fit on 300 examples predicted for the rest of a 15 s run where twice as many were a fraction
        of a second away (fer2013). Where reading is slow, the network is built at once."""
        fast, filler = self.fast, session.filler
        if fast is None or not fast.version:
            return False
        if fast.wants_fit(len(session.cache) - len(session.valid_indices), all_read=filler.finished):
            return True
        rate = filler.seconds_per_example
        if filler.finished or rate is None or self.num_examples <= 0:
            return False
        needed = min(len(session.valid_indices) + fast.refit_target(), self.num_examples)
        missing = needed - len(session.cache)
        if missing * rate > REFIT_WAIT_S:
            return False
        if not self.budget.fits(REFIT_WAIT_S + FAST_FIT_ALLOWANCE_S + self._test_reserve()):
            return False
        logger.debug("waiting for %d more examples for a fast-learner refit", missing)
        # the whole set: until the decoder has finished, which is what makes that refit due
        filler.wait_for(needed if needed < self.num_examples else math.inf, timeout=2 * REFIT_WAIT_S)
        return True

    def _train_network(self, session: Session) -> None:
        """Epochs until validation improves (after a minimum time) or the slice ends; stops when out of time.
        The network is built on the first such call."""
        building = 0.0 if session.has_network else self.budget.planned(NETWORK_BUILD_ESTIMATE_S)
        if self._out_of_time(session, building):
            self._stop_training()
            return
        if not session.has_network:
            attach_network(session, self.config, self.precision, self.code_dir)
        # At the start of a call, not right after the validation that passed the trigger: the improved
        # checkpoint is predicted first, so the search never delays a better prediction.
        self._maybe_choose_augmentation(session)
        loader = session.start_loader()
        if not self.network_calls:
            self._slice_offset = min(self.train_calls, MAX_FIRST_SLICE_GROWTHS)
        start, slice_s = self.budget.now(), self._slice_seconds()
        self.network_calls += 1
        slice_end = start + slice_s * self.config.slice_patience
        # before the network's first checkpoint: return after the first (possibly shortened) epoch
        min_seconds, epoch_end = (0.0, start + slice_s) if session.best.version == 0 else (slice_s, slice_end)
        improved_in_call = False
        while True:
            stop_at = min(epoch_end, slice_end, self._training_deadline() - self._eval_reserve(session))
            epoch = train_one_epoch(session.net, session.loss_fn, session.optimizer, session.schedule, loader,
                                    self.precision, steps=session.plan.steps_per_epoch, budget=self.budget,
                                    stop_at=stop_at, tuner=self.tuner, clock=self.budget.now)
            self._measure_steps(epoch)
            self.epochs += 1
            improved_in_call = self._validate(session) or improved_in_call
            now = self.budget.now()
            if self._out_of_time(session) or self._saturated(session):
                self._stop_training()
                return
            if (improved_in_call and now - start >= min_seconds) or now >= slice_end:
                return

    def _measure_steps(self, epoch: EpochResult) -> None:
        """Make sure a step was measured once an epoch has run.

        `train_one_epoch` does not record the run's first step (it also builds kernels and buffers), and an
        epoch's first step always runs. When the epochs so far were one step long (a step that outlasts the
        first slices: a slow or busy machine), no step was recorded, the step estimate stayed 0 and every
        later call ran one unplanned step: a 4 s run went past its budget. The epoch's time per step stands
        in until the next measured step replaces it (`Duration.add`); it errs on the slow side."""
        if epoch.steps and not self.budget.count(Kind.STEP):
            self.budget.record(Kind.STEP, epoch.seconds, units=epoch.steps)

    def _read_data(self, dataset: Any) -> Session:
        """The session's data (probe, plan, cache, split) and the fast learner over it; no network yet."""
        session = read_data(dataset, self.config, num_examples=self.num_examples, output_dim=self.output_dim,
                            budget=self.budget, loader_settings=self.loader_settings, device=self.device)
        if self.config.fast_learner:
            settings = FastLearnerSettings(self.config.fast_learner_max_examples, seed=self.config.seed)
            self.fast = FastCandidate(settings, session.plan.is_multilabel, self.output_dim)
        return session

    def _fit_fast_learner(self, session: Session) -> bool:
        """Fit the fast learner when enough new training examples arrived; on failure go on without it.
        Returns whether it was fitted. The first fit holds the decoder: the first prediction waits on it."""
        first = self.fast.version == 0
        if first:
            session.filler.pause()
        try:
            return self.fast.fit_if_grown(session.cache, session.valid_indices, all_read=session.filler.finished)
        except Exception:
            logger.exception("the fast learner failed: predictions come from the network alone")
            self.fast = None
            return False
        finally:
            if first:
                session.filler.resume()

    def _stop_training(self) -> None:
        """No more training: the remaining calls only predict, so free the CPU of the batch workers."""
        self.done_training = True
        if self.session is not None:
            self.session.close_loader()
            self.session.close_workers()

    def _saturated(self, session: Session) -> bool:
        """True once the plateau schedule has cut the learning rate to a negligible fraction."""
        return session.schedule.lr < session.schedule.initial_lr * self.config.min_lr_ratio

    def _eval_settings(self, session: Session) -> EvalSettings:
        return EvalSettings(self.config.eval_batch_size, session.plan.is_multilabel, self.config.tta_flip)

    def _validate(self, session: Session) -> bool:
        """Score the current weights; keep them as the best checkpoint when they improve. Returns that."""
        best = session.best
        if len(session.valid) == 0:  # nothing to compare on: the latest weights are the best guess
            result = ValidationResult(0.0, math.inf, tta_helps=False)
            improved = best.offer(session.net, result, force=True)
        else:
            # the first checkpoint is predicted without TTA: it doubles the cost of the earliest prediction
            result = validate(session.net, session.valid, session.loss_fn, self.precision,
                              self._eval_settings(session), self.budget, allow_tta=best.version > 0)
            improved = best.offer(session.net, result)
        self.history.append((self.budget.now() - self._created, result.nauc))
        logger.info("epoch %d: valid NAUC %.4f loss %.4f lr %.3g%s", self.epochs, result.nauc, result.loss,
                    session.schedule.lr, " (best)" if improved else "")
        return improved

    def _maybe_choose_augmentation(self, session: Session) -> None:
        """Once validation NAUC passes `faa_trigger_nauc` (once per run): choose the training augmentation
        (searching it on the frozen best checkpoint within the time left before the training deadline),
        install it in the batch workers and restore the initial learning rate without warm-up."""
        if self._augmentation_chosen or session.best.nauc < self.config.faa_trigger_nauc:
            return
        self._augmentation_chosen = True
        if self.config.augmentation == "none":
            return
        logger.info("validation NAUC %.4f passed %.2f: choosing the %r training augmentation",
                    session.best.nauc, self.config.faa_trigger_nauc, self.config.augmentation)
        evaluate = None if len(session.valid) == 0 else ValidationEvaluator(
            FrozenScorer(session.best.net, self.precision, session.plan.is_multilabel), session.valid.examples,
            session.valid.labels, nauc, seed=self.config.seed, batch_size=self.config.eval_batch_size,
            resample=self.config.faa_repeats > 1)
        selection = select_training_augment(augment_settings(self.config), evaluate, self._training_deadline(),
                                            now=self.budget.now)
        self.augmentation = selection
        if selection.augment is None:
            logger.info("training continues unaugmented (%s; %.1f s)", selection.reason, selection.elapsed_s)
            return
        session.install_augment(selection.augment)
        session.schedule.restore_initial_lr()
        logger.info("training on augmented data from now on, learning rate back to %.3g without warm-up "
                    "(%s; chosen in %.1f s)", session.schedule.lr, selection.reason, selection.elapsed_s)

    # ------------------------------------------------------------------ prediction

    def _load_test_set(self, dataset: Any, session: Session) -> DeviceSet:
        start = self.budget.now()
        pairs = iterate_numpy(dataset, keep_places=True)
        converted = [chunk for chunk, _ in session.converter.convert_chunks(pairs)]
        if not converted:
            raise ValueError("the test set is empty")
        examples = np.concatenate(converted)
        seconds = self.budget.now() - start
        self.budget.record(Kind.READ, seconds, units=len(examples))
        logger.info("test set: %d examples read and converted in %.2f s", len(examples), seconds)
        self._test_examples = examples if self.fast is not None else None
        return DeviceSet(examples, None, self.device)

    def _choose(self, session: Session) -> Optional[Choice]:
        """The candidate to predict: the best on validation among the fast learner, the network and the blend."""
        validated = len(session.valid) > 0  # without a validation set: candidates by presence alone
        empty = np.empty((0, self.output_dim), np.float32)
        fast = None if self.fast is None or not self.fast.version else self.fast.valid_scores if validated else empty
        network = None if not session.checkpoint_version else session.best.valid_scores if validated else empty
        return choose_prediction(session.valid.labels, fast, network, self.config.blend)

    def predictor(self) -> Optional[Predictor]:
        """What predicts now, as one object (None before the first training call built the session).

        The class priors when no candidate beats chance on validation: constant priors score 0, never less."""
        session = self.session
        if session is None:
            return None
        choice = self._choose(session)
        weight = None if choice is None or choice.nauc <= 0.0 else choice.network_weight
        return Predictor(session.converter, session.best.net if session.checkpoint_version else None,
                         None if self.fast is None else self.fast.learner, weight,
                         session.checkpoint_version > 0 and session.best.use_tta,
                         self.output_dim, session.plan.is_multilabel,
                         class_priors(session.probe.label_counts, self.output_dim), self.precision,
                         self.config.eval_batch_size, math.nan if choice is None else choice.nauc)

    def _predict(self, dataset: Any) -> np.ndarray:
        session = self.session
        if session is None:
            raise RuntimeError("test called before any successful training call")
        predictor = self.predictor()
        key = (session.checkpoint_version, 0 if self.fast is None else self.fast.version, predictor.network_weight)
        if self._prediction is not None and self._prediction_key == key:
            return self._prediction
        session.filler.pause()  # the platform waits on this prediction: give it the CPU
        try:
            if self._test_set is None:
                self._test_set = self._load_test_set(dataset, session)
            network = self._network_scores(predictor) if predictor.uses_network else None
            fast = self.fast.test_scores(self._test_examples) if predictor.uses_fast else None  # once per fit
            self._prediction = predictor.combine(network, fast, len(self._test_set))
            logger.info("predicting from the %s", predictor.describe())
            self._prediction_key = key
        finally:
            session.filler.resume()
        return self._prediction

    def _network_scores(self, predictor: Predictor) -> np.ndarray:
        """Test scores of the best checkpoint (one test pass per checkpoint)."""
        version, network = self._network_test_scores
        if version != self.session.checkpoint_version:
            network = predictor.network_scores(self._test_set, self.budget)
            self._network_test_scores = (self.session.checkpoint_version, network)
        return network

    def _fallback_prediction(self, dataset: Any) -> Optional[np.ndarray]:
        if self._prediction is not None:
            return self._prediction.copy()
        try:
            num_test = len(self._test_set) if self._test_set is not None else count_examples(dataset)
        except Exception:
            logger.exception("cannot count the test examples: no prediction possible")
            return None
        counts = None if self.session is None else self.session.probe.label_counts
        return np.tile(class_priors(counts, self.output_dim), (num_test, 1))
