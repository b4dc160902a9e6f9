"""Verifying a published checkpoint: attack it as the job's preset says, store the report, write its summary.

`run_verification(checkpoint_id, ...)` holds the job's lease while it runs (a succeeded job's lease is free, so
two runners never verify one checkpoint at once), downloads the checkpoint, calls
`verify_fn(model_dir, spec, preset, out_dir, progress) -> summary`, uploads every file the verifier wrote
(report.json, report.html, grids) under `reports/<checkpoint>/<report>/` and writes a `VerificationReport` row. A
failed verification is recorded as a report that did not pass, with the error in its summary.

`progress(step, total)` writes the verification's progress to the job row as the implantation's is written
(`PhaseProgress`: fenced, bounded rate): its first call sets `phase` to "verifying", and `step`, `total_steps` and
`progress` count the verification's work from then on. A verification that reports nothing leaves the row as the
implantation left it.

Every taking of the lease counts as an attempt (`protection_jobs.verify_attempts`, in the claim's own UPDATE):
retries after transient errors, and re-runs after a worker died mid-verification (the reconciler rings again when
its lease runs out). Attempt number `verify_max_attempts` is the last: a transient error in it is recorded as
the verification's failure, and a claim beyond it (the last attempt ended with no result, e.g. its worker was
killed) records "gave up" without running. The report row carries the count (`attempts`).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from common.db import SessionFactory
from common.jobs.callbacks import PhaseProgress, StepProgressFn
from common.jobs.config import JobConfig
from common.jobs.defaults import default_verify_fn
from common.jobs.errors import FailureKind, classify, describe
from common.jobs.execute import root_cache
from common.jobs.inputs import extract_archive, resolve_base_model, resolve_inputs
from common.jobs.lease import Lease, claim
from common.models import Checkpoint, JobPhase, JobStatus, ProtectionJob, VerificationReport, utcnow
from common.storage import Storage
from persguard_core.spec import ProtectionSpec

log = logging.getLogger(__name__)

VerifyFn = Callable[[Path, ProtectionSpec, str, Path, StepProgressFn], dict[str, Any]]
REPORT_NAMESPACE = uuid.UUID("5d0f1a8e-2b7c-4c39-8f1e-0e6b2d9c7a44")


def report_id_for(checkpoint_id: uuid.UUID, preset: str) -> uuid.UUID:
    """The same id on every attempt, so that a re-run overwrites its objects instead of adding new ones."""
    return uuid.uuid5(REPORT_NAMESPACE, f"{checkpoint_id}:{preset}")


def report_prefix(checkpoint_id: uuid.UUID, report_id: uuid.UUID) -> str:
    return f"reports/{checkpoint_id}/{report_id}/"


@dataclass(frozen=True)
class VerifyOutcome:
    """done: a report row exists now (passed or not); retry: a transient failure, try again later."""

    done: bool
    retry: bool = False
    error: str | None = None


def failed_checks(summary: dict[str, Any], min_psr: float, max_utility_drop: float) -> list[str]:
    """Why a verification does not pass, in words (empty: it passes): the protective success rate must reach
    `min_psr`, and the utility drop (prompt following lost against the base model), where measured, must not exceed
    `max_utility_drop`."""
    failed = []
    psr = _finite(summary.get("psr"))
    if psr is None or psr < min_psr:
        shown = "not measured" if psr is None else f"{psr:.3f}"
        failed.append(f"protective success rate {shown} is below {min_psr} (VERIFY_PASS_PSR)")
    drop = _finite(summary.get("utility_drop"))
    if drop is not None and drop > max_utility_drop:
        failed.append(
            f"utility drop {drop:.3f} exceeds {max_utility_drop} (VERIFY_MAX_UTILITY_DROP): the protection costs "
            "the model prompt following"
        )
    return failed


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def run_verification(
    checkpoint_id: uuid.UUID,
    session_factory: SessionFactory,
    storage: Storage,
    verify_fn: VerifyFn = default_verify_fn,
    config: JobConfig | None = None,
    *,
    final_attempt: bool = True,
) -> VerifyOutcome:
    """Verify checkpoint `checkpoint_id` once (see the module docstring)."""
    config = config or JobConfig()
    with session_factory() as session:
        checkpoint = session.get(Checkpoint, checkpoint_id)
        job_id = checkpoint.job_id if checkpoint else None
        job = session.get(ProtectionJob, job_id) if job_id else None
        if checkpoint is None or job is None or job.verification_preset == "none":
            log.info("checkpoint %s: nothing to verify", checkpoint_id)
            return VerifyOutcome(done=False)
        preset = job.verification_preset
        report_id = report_id_for(checkpoint_id, preset)
        if session.get(VerificationReport, report_id) is not None:
            log.info("checkpoint %s already verified (%s)", checkpoint_id, preset)
            return VerifyOutcome(done=True)
    lease = claim(
        session_factory,
        job_id,
        from_status=JobStatus.SUCCEEDED,
        ttl_s=config.lease_s,
        verify_attempts=ProtectionJob.verify_attempts + 1,
    )
    if lease is None:
        log.info("checkpoint %s: verification is held elsewhere; skipping", checkpoint_id)
        return VerifyOutcome(done=False)
    with session_factory() as session:  # the claim just counted this attempt; the lease keeps others from it
        attempt = session.scalar(select(ProtectionJob.verify_attempts).where(ProtectionJob.id == job_id))
    record = _Recorder(session_factory, lease, checkpoint_id, report_id, preset, config, attempt)
    if record.attempt > config.verify_max_attempts:
        message = (
            f"gave up after {config.verify_max_attempts} verification attempts: the last one ended without a "
            "result (its worker died or was stopped)"
        )
        log.error("checkpoint %s: %s", checkpoint_id, message)
        record.failure(message, attempts=config.verify_max_attempts)
        return VerifyOutcome(done=True, error=message)
    last = final_attempt or record.attempt >= config.verify_max_attempts
    lease.start_heartbeat(config.heartbeat_s)
    root = config.workdir_root or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"verify-{checkpoint_id}-", dir=root))
    try:
        summary = _verify(session_factory, storage, verify_fn, config, lease, checkpoint_id, preset, workdir)
        record.report(summary)
        return VerifyOutcome(done=True)
    except Exception as exc:
        kind = classify(exc)
        if kind is FailureKind.TRANSIENT and not last:
            log.warning(
                "checkpoint %s: transient failure in verification attempt %d: %s", checkpoint_id, record.attempt, exc
            )
            lease.release(enqueued_at=utcnow())
            return VerifyOutcome(done=False, retry=True, error=str(exc))
        message = describe(exc)  # stable, for the report's readers; the exception itself goes to the log only
        if kind is FailureKind.TRANSIENT:
            message = f"gave up after {record.attempt} verification attempts: {message}"
        log.error(
            "checkpoint %s: verification failed: %s; cause: %s: %s",
            checkpoint_id,
            message,
            type(exc).__name__,
            exc,
            exc_info=kind is FailureKind.FATAL,
        )
        record.failure(message)
        return VerifyOutcome(done=True, error=message)
    finally:
        lease.stop_heartbeat()
        shutil.rmtree(workdir, ignore_errors=True)


def _verify(
    session_factory: SessionFactory,
    storage: Storage,
    verify_fn: VerifyFn,
    config: JobConfig,
    lease: Lease,
    checkpoint_id: uuid.UUID,
    preset: str,
    workdir: Path,
) -> dict[str, Any]:
    with session_factory() as session:
        checkpoint = session.get_one(Checkpoint, checkpoint_id)
        job = session.get_one(ProtectionJob, lease.job_id)
        spec = ProtectionSpec.model_validate(job.spec)
        spec = resolve_base_model(session, storage, spec, job.base_model_id, root_cache(config))
        local_spec = resolve_inputs(session, storage, spec, workdir / "inputs")
        archive = storage.get_to_file(checkpoint.storage_key, workdir / "model.tar", expected_sha256=checkpoint.sha256)
    model_dir = extract_archive(archive, workdir / "model")
    out_dir = workdir / "report"
    out_dir.mkdir()
    progress = PhaseProgress(lease, JobPhase.VERIFYING, config.progress_interval_s)
    summary = verify_fn(model_dir, local_spec, preset, out_dir, progress)
    prefix = report_prefix(checkpoint_id, report_id_for(checkpoint_id, preset))
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        storage.put_file(prefix + path.relative_to(out_dir).as_posix(), path)
    return summary


@dataclass
class _Recorder:
    """Writes the report row of verification attempt number `attempt`, then ends the lease."""

    session_factory: SessionFactory
    lease: Lease
    checkpoint_id: uuid.UUID
    report_id: uuid.UUID
    preset: str
    config: JobConfig
    attempt: int

    def report(self, summary: dict[str, Any]) -> None:
        """The verifier's summary, stored next to the report files."""
        failed = failed_checks(summary, self.config.verify_pass_psr, self.config.verify_max_utility_drop)
        self._write(summary | {"failed_checks": failed}, not failed, stored=True, attempts=self.attempt)

    def failure(self, message: str, attempts: int | None = None) -> None:
        """A verification that ended without a result: not passed, the error in the summary."""
        self._write({"error": message}, False, stored=False, attempts=self.attempt if attempts is None else attempts)

    def _write(self, summary: dict[str, Any], ok: bool, *, stored: bool, attempts: int) -> None:
        self.lease.stop_heartbeat()
        report_id, checkpoint_id = self.report_id, self.checkpoint_id
        with self.session_factory() as session:
            if session.scalar(select(VerificationReport.id).where(VerificationReport.id == report_id)) is None:
                session.add(
                    VerificationReport(
                        id=report_id,
                        checkpoint_id=checkpoint_id,
                        preset=self.preset,
                        passed=ok,
                        summary=_json_safe(summary),
                        storage_key=report_prefix(checkpoint_id, report_id) + "report.json" if stored else None,
                        attempts=attempts,
                    )
                )
            session.commit()
        self.lease.release(enqueued_at=None, verify_attempts=attempts)
        log.info("checkpoint %s verified (%s, attempt %d): %s", checkpoint_id, self.preset, attempts, summary)
