"""The CLI's progress bars: one per phase of a job, with step/total and the time left."""

from __future__ import annotations

import io
import re

import httpx

from persguard_cli.progress import PhaseBars, clock, follow_job

JOB = "/v1/jobs/j1"
CHECKPOINT = "/v1/checkpoints/c1"


def _job(status: str, phase: str | None, step: int, total: int, eta: float | None) -> dict:
    return {
        "status": status,
        "phase": phase,
        "step": step,
        "total_steps": total,
        "eta_seconds": eta,
        "losses": {"enc": 0.5} if phase == "protecting" else {"enc": 0.1},
        "verification": "quick",
        "links": {"self": JOB, "checkpoint": CHECKPOINT if status == "succeeded" else None},
    }


def _client(jobs: list[dict], verifications: list[dict | None]) -> httpx.Client:
    """A client whose API answers the next of `jobs` (the last one again at the end), and for the checkpoint the
    next of `verifications`."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer k"
        if request.url.path == JOB:
            return httpx.Response(200, json=jobs.pop(0) if len(jobs) > 1 else jobs[0])
        return httpx.Response(200, json={"verification": verifications.pop(0)})

    return httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer))


def test_a_job_is_followed_through_both_phases_with_one_bar_each() -> None:
    jobs = [
        _job("queued", None, 0, 0, None),
        _job("running", "protecting", 1, 4, None),
        _job("running", "protecting", 2, 4, 90.0),
        _job("succeeded", "protecting", 4, 4, None),
        _job("succeeded", "verifying", 3, 10, 125.0),
        _job("succeeded", "verifying", 10, 10, None),
    ]
    report = {"preset": "quick", "passed": True, "summary": {"psr": 0.9}}
    out = io.StringIO()
    followed = follow_job(
        _client(jobs, [None, report]), JOB, {"Authorization": "Bearer k"}, poll_s=0, bars=PhaseBars(out)
    )
    assert followed.verification == report and followed.job["step"] == 10
    text = out.getvalue()
    assert "protecting:  50%" in text and "2/4" in text and "ETA 1:30" in text and "enc=0.5000" in text
    assert "verifying:  30%" in text and "3/10" in text and "ETA 2:05" in text
    # the protecting bar ends at 4/4 before the verifying bar starts, each on its own line
    lines = [line.split("\r")[-1] for line in text.split("\n") if line.strip()]
    assert [re.match(r"\w+", line).group() for line in lines] == ["protecting", "verifying"]
    assert "4/4" in lines[0] and "10/10" in lines[1]


def test_a_job_without_verification_is_followed_until_it_ends() -> None:
    jobs = [_job("running", "protecting", 1, 2, None), {**_job("failed", "protecting", 1, 2, None), "error": "x"}]
    out = io.StringIO()
    followed = follow_job(_client(jobs, []), JOB, {"Authorization": "Bearer k"}, poll_s=0, bars=PhaseBars(out))
    assert (followed.job["status"], followed.verification) == ("failed", None)
    assert "1/2" in out.getvalue()


def test_a_local_bar_estimates_the_time_left_from_the_steps_since_its_first_call(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("persguard_cli.progress.time.monotonic", lambda: now[0])
    out = io.StringIO()
    bars = PhaseBars(out)
    progress = bars.local("verifying")
    progress(0, 300)
    now[0] += 60
    progress(100, 300)  # 100 steps a minute: two minutes left
    bars.close()
    assert "verifying:  33%" in out.getvalue() and "100/300" in out.getvalue() and "ETA 2:00" in out.getvalue()
    assert (clock(None), clock(59.6), clock(3725)) == ("?", "1:00", "1:02:05")
