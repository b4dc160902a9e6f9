"""Worker settings that would lose or duplicate jobs are refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_a_visibility_timeout_not_above_the_hard_time_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT_S must exceed"):
        Settings(job_soft_time_limit_s=3600, job_time_limit_s=7200, broker_visibility_timeout_s=7200)


def test_a_heartbeat_not_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match="HEARTBEAT_S must be shorter"):
        Settings(job_lease_s=10, job_heartbeat_s=10)


def test_the_defaults_are_consistent() -> None:
    settings = Settings()
    assert settings.job_soft_time_limit_s < settings.job_time_limit_s < settings.broker_visibility_timeout_s
