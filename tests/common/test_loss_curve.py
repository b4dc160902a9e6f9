"""The loss history a job keeps for the dashboard's plot (common/jobs/loss_curve.py)."""

from __future__ import annotations

from common.jobs.loss_curve import LossCurve


def test_a_long_run_is_thinned_evenly_keeping_the_first_and_the_newest_step() -> None:
    curve = LossCurve(max_points=10)
    for step in range(1, 101):
        curve.add(step, {"a": 1.0 / step, "b": float("nan")})
    steps = [point["step"] for point in curve.points]
    assert steps == [1, 16, 32, 48, 64, 80, 96, 100]
    assert curve.points[-1]["losses"] == {"a": 0.01}, "4 significant digits, no NaN"


def test_an_attempt_resuming_earlier_drops_the_points_it_trains_again() -> None:
    first = LossCurve(max_points=10)
    for step in range(1, 41):
        first.add(step, {"a": 1.0})
    resumed = LossCurve(first.points, max_points=10)
    resumed.add(21, {"a": 0.5})
    assert [point["step"] for point in first.points] == [1, 8, 16, 24, 32, 40]
    assert [point["step"] for point in resumed.points] == [1, 8, 16, 21]
    restarted = LossCurve(first.points, max_points=10)
    restarted.add(1, {"a": 2.0})
    assert restarted.points == [{"step": 1, "losses": {"a": 2.0}}]
