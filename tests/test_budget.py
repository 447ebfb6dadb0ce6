"""The one clock: the budget's end, measured durations, planned durations, `fits` and deadlines.

Time is injected: these tests never sleep."""

import math

import pytest

from autoclint.budget import Budget, Kind


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start=1000.0):
        self.time = start

    def __call__(self):
        return self.time

    def advance(self, seconds):
        self.time += seconds


def test_the_end_is_anchored_to_what_the_platform_says_is_left():
    clock = FakeClock()
    budget = Budget(safety_margin_s=3.0, duration_margin=1.5, now=clock)
    assert budget.time_left() == math.inf and budget.fits(1e9)
    budget.set_remaining(40.0)
    clock.advance(10.0)
    assert budget.time_left() == pytest.approx(30.0)
    assert budget.deadline() == pytest.approx(1000.0 + 40.0 - 3.0)
    assert budget.deadline(reserve_s=5.0) == pytest.approx(1000.0 + 40.0 - 3.0 - 5.0)
    budget.set_remaining(25.0)  # the platform's later word wins
    assert budget.end == pytest.approx(1010.0 + 25.0)


def test_fits_keeps_the_safety_margin():
    clock = FakeClock()
    budget = Budget(safety_margin_s=3.0, duration_margin=1.5, now=clock)
    budget.set_remaining(10.0)
    assert budget.fits(7.0) and not budget.fits(7.01)
    clock.advance(6.0)
    assert budget.fits(1.0) and not budget.fits(1.5)


def test_durations_are_per_unit_and_planned_with_the_margin_once():
    budget = Budget(safety_margin_s=0.0, duration_margin=1.5, now=FakeClock())
    assert budget.measured(Kind.FORWARD) is None and budget.count(Kind.FORWARD) == 0
    budget.record(Kind.FORWARD, 2.0, units=200)  # a pass of 200 examples
    assert budget.measured(Kind.FORWARD) == pytest.approx(0.01)
    assert budget.planned(budget.measured(Kind.FORWARD) * 1000) == pytest.approx(15.0)
    budget.record(Kind.READ, 1.0, units=0)  # nothing read: nothing recorded
    assert budget.measured(Kind.READ) is None


def test_a_machine_that_slows_down_shows_at_once_and_a_faster_one_gradually():
    budget = Budget(safety_margin_s=0.0, duration_margin=1.0, now=FakeClock())
    for _ in range(50):
        budget.record(Kind.STEP, 0.1)
    assert budget.measured(Kind.STEP) == pytest.approx(0.1)
    budget.record(Kind.STEP, 1.0)  # one slow step: planned at once as the slow one
    assert budget.measured(Kind.STEP) == pytest.approx(1.0)
    budget.record(Kind.STEP, 0.1)  # fast again: the running mean still remembers the slow step
    assert 0.1 < budget.measured(Kind.STEP) < 1.0
    for _ in range(100):
        budget.record(Kind.STEP, 0.1)
    assert budget.measured(Kind.STEP) == pytest.approx(0.1, rel=1e-3)


def test_training_stops_in_time_for_a_test_pass_on_a_slowing_machine():
    """A loop that asks `fits` before each step, on a machine whose steps grow ten times slower 10 s before
    the end. No safety margin and no margin on durations: only the measured step time keeps it in time."""
    clock = FakeClock()
    budget = Budget(safety_margin_s=0.0, duration_margin=1.0, now=clock)
    budget.set_remaining(60.0)
    test_pass_s = 1.0
    budget.record(Kind.TEST_PASS, test_pass_s)
    step_s, slow_steps = 0.1, 0
    while budget.fits(budget.planned(budget.measured(Kind.STEP) or 0.0) + budget.planned(test_pass_s)):
        clock.advance(step_s)
        budget.record(Kind.STEP, step_s)
        slow_steps += step_s == 1.0
        if budget.time_left() < 10.0:
            step_s = 1.0
    clock.advance(test_pass_s)
    assert slow_steps >= 5  # the slowdown came well before the end
    # the test pass ended inside the budget, and one more slow step would not have fitted
    assert 0.0 <= budget.time_left() < 1.0


def test_a_margin_below_one_is_refused():
    with pytest.raises(ValueError, match="duration_margin"):
        Budget(safety_margin_s=1.0, duration_margin=0.5)


@pytest.mark.parametrize("kind", [Kind.FORWARD, Kind.TEST_PASS, Kind.STEP])
def test_a_first_call_with_one_off_costs_does_not_weigh_on_later_estimates(kind):
    """The first pass also selects kernels and allocates for new shapes: the second replaces it."""
    budget = Budget(safety_margin_s=0.0, duration_margin=1.0, now=FakeClock())
    budget.record(kind, 10.0, units=100)  # cold: 0.1 s per unit
    assert budget.measured(kind) == pytest.approx(0.1)  # all there is to plan with, until the next
    budget.record(kind, 1.0, units=100)  # warm: 0.01 s per unit
    assert budget.measured(kind) == pytest.approx(0.01)
    budget.record(kind, 2.0, units=100)  # from then on, a running mean (and a slower one shows at once)
    assert budget.measured(kind) == pytest.approx(0.02)
    budget.record(kind, 1.0, units=100)
    assert budget.measured(kind) == pytest.approx(0.9 * (0.9 * 0.01 + 0.1 * 0.02) + 0.1 * 0.01)
