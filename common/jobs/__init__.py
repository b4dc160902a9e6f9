"""Protection job execution, shared by the api's in-process runner and the Celery worker."""

from common.jobs.config import JobConfig
from common.jobs.errors import JobCancelled, JobInputError, LeaseLost, TransientJobError
from common.jobs.execute import (
    CancelFn,
    ImplantOutcome,
    ProgressFn,
    ProtectFn,
    default_protect_fn,
    run_implant,
)
from common.jobs.runner import InProcessRunner, JobRunner, NullRunner
from common.jobs.verification import VerifyFn, VerifyOutcome, default_verify_fn, run_verification

__all__ = [
    "CancelFn",
    "ImplantOutcome",
    "InProcessRunner",
    "JobCancelled",
    "JobConfig",
    "JobInputError",
    "JobRunner",
    "LeaseLost",
    "NullRunner",
    "ProgressFn",
    "ProtectFn",
    "TransientJobError",
    "VerifyFn",
    "VerifyOutcome",
    "default_protect_fn",
    "default_verify_fn",
    "run_implant",
    "run_verification",
]
