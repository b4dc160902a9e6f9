"""Protection job execution, shared by the api's in-process runner and the worker."""

from common.jobs.execute import (
    CancelFn,
    JobCancelled,
    ProgressFn,
    ProtectFn,
    default_protect_fn,
    execute_job,
)
from common.jobs.runner import InProcessRunner, JobRunner, NullRunner

__all__ = [
    "CancelFn",
    "InProcessRunner",
    "JobCancelled",
    "JobRunner",
    "NullRunner",
    "ProgressFn",
    "ProtectFn",
    "default_protect_fn",
    "execute_job",
]
