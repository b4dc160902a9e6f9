"""Jobs as the client reads them (phase and ETA when the server has them) and the wait's progress display."""

from __future__ import annotations

import io

from persguard_client.models import Job
from persguard_client.progress import JobProgress, describe

BODY = {"id": "j1", "status": "running", "step": 40, "total_steps": 100, "progress": 0.4}


def test_a_job_without_phase_or_eta_is_read_with_none():
    job = Job.from_json(BODY)
    assert (job.phase, job.eta_seconds, job.finished) == (None, None, False)
    assert describe(job) == "running: step 40/100"


def test_phase_and_eta_are_shown_when_the_server_reports_them():
    job = Job.from_json({**BODY, "phase": "protecting", "eta_seconds": 75})
    assert describe(job) == "running (protecting): step 40/100, eta 1m15s"


def test_line_output_prints_each_change_of_phase_and_throttles_steps():
    out = io.StringIO()
    progress = JobProgress(out, bar=False, interval_s=3600)
    progress(Job.from_json({**BODY, "step": 1, "phase": "protecting"}))
    progress(Job.from_json({**BODY, "step": 2, "phase": "protecting"}))  # throttled
    progress(Job.from_json({**BODY, "status": "succeeded", "step": 100, "phase": "verifying"}))
    lines = out.getvalue().splitlines()
    assert lines == ["  job j1: running (protecting): step 1/100", "  job j1: succeeded (verifying): step 100/100"]


def test_the_bar_shows_step_total_phase_and_eta():
    out = io.StringIO()
    progress = JobProgress(out, bar=True)
    progress(Job.from_json({**BODY, "phase": "protecting", "eta_seconds": 12}))
    progress.close()
    text = out.getvalue()
    assert "running (protecting)" in text and "40/100" in text and "eta 12s" in text
