"""Leases, fencing, retries, resume and the reconciler's rules, in process, on SQLite and Postgres."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from api.schemas.checkpoints import VerificationSummary
from common.jobs import InProcessRunner, execute, run_implant, run_verification
from common.jobs.errors import INTERNAL_ERROR, NO_JUDGE
from common.jobs.lease import claim
from common.jobs.publish import AlreadyPublished, PublishRefused, checkpoint_id_for, checkpoint_key, publish
from common.jobs.recovery import due_doorbells, requeue_dead_jobs
from common.jobs.training_state import state_key
from common.models import Checkpoint, JobStatus, ProtectionJob, VerificationReport, utcnow
from common.storage import LocalStorage, StorageError, sha256_file
from persguard_core.judge.base import NoJudge
from tests.rows import get_job, queue_job
from tests.worker import fakes


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store", secrets.token_bytes(16))


def test_a_job_held_by_a_live_lease_cannot_be_claimed_again(session_factory, storage) -> None:
    job_id = queue_job(session_factory, storage)
    first = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert first is not None
    with session_factory() as session:  # even put back to queued, the live lease keeps it
        session.execute(update(ProtectionJob).where(ProtectionJob.id == job_id).values(status=JobStatus.QUEUED))
        session.commit()
    assert claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60) is None


def test_a_dead_workers_job_is_requeued_and_the_old_lease_can_no_longer_write(session_factory, storage) -> None:
    job_id = queue_job(session_factory, storage)
    old = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=0.01, status=JobStatus.RUNNING)
    assert old is not None
    assert requeue_dead_jobs(session_factory, utcnow() + timedelta(seconds=1)) == [job_id]
    job = get_job(session_factory, job_id)
    assert (job.status, job.lease_owner) == ("queued", None) and "stopped answering" in job.error
    new = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert new is not None
    assert old.fenced_update(step=99) is False and old.lost
    assert new.fenced_update(step=5) is True
    assert get_job(session_factory, job_id).step == 5


def test_a_job_whose_worker_died_max_attempts_times_fails_instead_of_looping(session_factory, storage) -> None:
    job_id = queue_job(session_factory, storage, attempts=7, worker_losses=1)  # many transient retries: no matter
    assert claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=0.01, status="running")
    assert requeue_dead_jobs(session_factory, utcnow() + timedelta(seconds=1), max_attempts=3) == [job_id]
    assert claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=0.01, status="running")
    assert requeue_dead_jobs(session_factory, utcnow() + timedelta(seconds=1), max_attempts=3) == []
    job = get_job(session_factory, job_id)
    assert job.status == "failed" and "died 3 times" in job.error and job.lease_owner is None
    assert job.worker_losses == 3


def test_a_runner_that_lost_its_job_mid_run_publishes_nothing(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=6)
    taken = {}

    def taken_over(spec, workdir, progress, should_cancel):
        # As if our heartbeat had stopped. The reconciler skips a row the heartbeat has locked at that instant
        # (SKIP LOCKED; it comes back on its next tick), so try again as its next ticks would.
        for _ in range(100):
            if requeue_dead_jobs(session_factory, utcnow() + timedelta(hours=1)) == [job_id]:
                break
            time.sleep(0.01)
        taken["lease"] = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status="running")
        assert taken["lease"] is not None
        return fakes.stepping_protect(spec, workdir, progress, should_cancel)

    outcome = run_implant(job_id, session_factory, storage, taken_over, config)
    assert outcome.status is None
    job = get_job(session_factory, job_id)
    assert job.status == "running" and job.lease_owner == taken["lease"].owner
    with session_factory() as session:
        assert session.scalar(select(Checkpoint)) is None
    assert not list(storage.list_objects("checkpoints/"))


def test_a_retried_job_resumes_from_the_training_state_in_storage(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=8, every=2)

    def dies_at_step_5(spec, workdir, progress, should_cancel):
        def progress_then_die(step: int, total: int, losses: dict) -> None:
            progress(step, total, losses)
            if step == 5:
                raise StorageError("connection reset")

        return fakes.stepping_protect(spec, workdir, progress_then_die, should_cancel)

    first = run_implant(job_id, session_factory, storage, dies_at_step_5, config, final_attempt=False)
    assert first.status is JobStatus.QUEUED
    assert first.error == "retrying after a transient error: storage is unavailable"
    assert get_job(session_factory, job_id).state_step == 4
    for old in config.workdir_root.glob("job-*"):  # a retry on another machine: nothing local is left
        shutil.rmtree(old)
    seen = {}

    def resumed(spec, workdir, progress, should_cancel):
        out = fakes.stepping_protect(spec, workdir, progress, should_cancel)
        seen.update(json.loads((out / "model_index.json").read_text()))
        return out

    second = run_implant(job_id, session_factory, storage, resumed, config)
    assert second.status is JobStatus.SUCCEEDED
    assert seen["resumed_from"] == 4
    job = get_job(session_factory, job_id)
    assert (job.attempts, job.step, job.error) == (2, 8, None)
    assert not storage.exists(state_key(job_id)), "the state is removed once the job succeeded"


def test_transient_failure_on_the_last_attempt_fails_the_job_saying_so(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage)

    def storage_down(*_args: object) -> Path:
        raise StorageError("S3 unreachable at http://10.0.0.7:8333 (bucket persguard-prod)")

    outcome = run_implant(job_id, session_factory, storage, storage_down, config, final_attempt=True)
    assert outcome.status is JobStatus.FAILED
    assert get_job(session_factory, job_id).error == "gave up after repeated transient errors: storage is unavailable"


def test_a_bad_spec_fails_the_job_at_once_with_a_clear_error(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage)
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        job.spec = {**job.spec, "training": {"steps": -1}}
        session.commit()
    outcome = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config, final_attempt=False)
    assert outcome.status is JobStatus.FAILED
    assert get_job(session_factory, job_id).error == "invalid protection spec: training.steps"


def test_verification_stores_the_report_files_and_a_passing_summary(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, preset="quick")
    outcome = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config)
    assert outcome.status is JobStatus.SUCCEEDED and outcome.checkpoint_id is not None
    assert run_verification(outcome.checkpoint_id, session_factory, storage, fakes.fake_verify, config).done
    with session_factory() as session:
        report = session.scalar(select(VerificationReport))
    assert report.passed and report.preset == "quick" and report.summary["psr"] == 1.0
    assert report.summary["benign_fidelity"] is None  # NaN is stored as null
    keys = {o.key.rsplit("/", 1)[1] for o in storage.list_objects(f"reports/{outcome.checkpoint_id}/")}
    assert keys == {"report.json", "report.html", "grid.png"}
    again = run_verification(outcome.checkpoint_id, session_factory, storage, fakes.fake_verify, config)
    assert again.done and get_job(session_factory, job_id).lease_owner is None


def test_a_verification_that_crashes_is_recorded_as_not_passed_with_a_stable_message(
    session_factory, storage, config, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = queue_job(session_factory, storage, preset="full")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id

    def broken(*_args: object) -> dict:
        raise ValueError("cannot load /srv/cache/models/secret-model: token hf_SECRET rejected")

    with caplog.at_level(logging.ERROR, logger="common.jobs.verification"):
        assert run_verification(checkpoint_id, session_factory, storage, broken, config).error
    with session_factory() as session:
        report = session.scalar(select(VerificationReport))
    assert not report.passed and report.summary == {"error": INTERNAL_ERROR}
    assert "hf_SECRET" in caplog.text, "the detail is in the log"


def test_a_model_the_judge_cannot_score_is_recorded_with_the_judges_message(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id

    def no_judge(*_args: object) -> dict:
        raise NoJudge("verification needs a judge for 512px images; /srv/judges has none")

    run_verification(checkpoint_id, session_factory, storage, no_judge, config)
    assert _report(session_factory).summary == {"error": NO_JUDGE}


def test_doorbells_ring_for_never_rung_and_stale_jobs_and_unverified_checkpoints(
    session_factory, storage, config
) -> None:
    now = utcnow()
    never = queue_job(session_factory, storage)
    recent = queue_job(session_factory, storage, enqueued_at=now)
    stale = queue_job(session_factory, storage, enqueued_at=now - timedelta(hours=1))
    verified_later = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(verified_later, session_factory, storage, fakes.stepping_protect, config).checkpoint_id

    with session_factory() as session:  # its verify doorbell went out an hour ago and was lost
        session.execute(
            update(ProtectionJob).where(ProtectionJob.id == verified_later).values(enqueued_at=now - timedelta(hours=1))
        )
        session.commit()

    bells = due_doorbells(session_factory, requeue_after_s=600, now=now + timedelta(seconds=60))
    assert set(bells.implant) == {never, stale}, "a job rung a minute ago is left alone"
    assert bells.verify == [checkpoint_id]
    again = due_doorbells(session_factory, requeue_after_s=600, now=now + timedelta(seconds=61))
    assert again.implant == [] and again.verify == [], "a doorbell just rung is not rung again at once"
    later = due_doorbells(session_factory, requeue_after_s=600, now=now + timedelta(hours=2))
    assert set(later.implant) == {never, recent, stale} and later.verify == [checkpoint_id]


def test_embedded_runner_at_start_resumes_a_job_its_previous_process_left_running(
    session_factory, storage, config
) -> None:
    job_id = queue_job(session_factory, storage)
    assert claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    runner = InProcessRunner(session_factory, storage, fakes.stepping_protect, config=config)
    assert runner.resume_queued() == 1
    assert runner.wait_idle(timeout=30)
    runner.shutdown()
    job = get_job(session_factory, job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)


def test_a_job_cancelled_because_its_subject_was_deleted_keeps_that_reason(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=50)

    def subject_deleted_meanwhile(spec, workdir, progress, should_cancel):
        with session_factory() as session:  # what the api's subject deletion does to a running job
            job = session.get_one(ProtectionJob, job_id)
            job.cancel_requested, job.error = True, "subject 123 was deleted"
            session.commit()
        return fakes.stepping_protect(spec, workdir, progress, should_cancel)

    outcome = run_implant(job_id, session_factory, storage, subject_deleted_meanwhile, config)
    assert outcome.status is JobStatus.CANCELLED
    job = get_job(session_factory, job_id)
    assert (job.status, job.error) == ("cancelled", "subject 123 was deleted") and job.step < 50


def _delete_subject_as_the_api_does(session_factory, storage, job_id) -> str:
    """What `api.services.subjects.delete_subject` does: image rows gone and the job's cancel flag set with the
    reason in one commit, then the objects removed. Returns the reason."""
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        subject = job.subjects[0]
        keys = [image.storage_key for image in subject.images]
        subject.images.clear()
        job.cancel_requested, job.error = True, f"subject {subject.id} was deleted"
        session.commit()
        reason = job.error
    for key in keys:
        storage.delete(key)
    return reason


@pytest.mark.parametrize("when", ["before-its-images-are-listed", "while-its-images-download"])
def test_a_job_whose_subject_is_deleted_while_it_reads_its_images_ends_cancelled_with_that_reason(
    session_factory, storage, config, monkeypatch, when
) -> None:
    job_id = queue_job(session_factory, storage)
    reasons = []
    if when == "before-its-images-are-listed":
        resolve = execute.resolve_inputs

        def resolve_after_deletion(*args, **kwargs):
            reasons.append(_delete_subject_as_the_api_does(session_factory, storage, job_id))
            return resolve(*args, **kwargs)

        monkeypatch.setattr(execute, "resolve_inputs", resolve_after_deletion)
    else:
        download = storage.get_to_file

        def download_after_deletion(*args, **kwargs):
            if not reasons:
                reasons.append(_delete_subject_as_the_api_does(session_factory, storage, job_id))
            return download(*args, **kwargs)

        monkeypatch.setattr(storage, "get_to_file", download_after_deletion)

    outcome = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config)

    assert outcome.status is JobStatus.CANCELLED
    job = get_job(session_factory, job_id)
    assert (job.status, job.error, job.lease_owner) == ("cancelled", reasons[0], None)
    assert job.finished_at is not None and job.step == 0


def test_a_job_whose_image_is_gone_without_a_cancel_still_fails(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage)
    with session_factory() as session:
        storage.delete(session.scalars(select(ProtectionJob)).one().subjects[0].images[0].storage_key)

    assert run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).status is JobStatus.FAILED
    assert get_job(session_factory, job_id).error.startswith("cannot read image ")


class WorkerDied(BaseException):
    """What the runner sees of a pool process killed mid-verification: nothing after this point runs."""


def _report(session_factory) -> VerificationReport:
    with session_factory() as session:
        return session.scalar(select(VerificationReport))


def test_verification_attempts_are_counted_and_shown_with_the_report(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    calls = []

    def flaky(*args: object) -> dict:
        calls.append(args)
        if len(calls) == 1:
            raise StorageError("connection reset")
        return fakes.fake_verify(*args)

    first = run_verification(checkpoint_id, session_factory, storage, flaky, config, final_attempt=False)
    assert first.retry and get_job(session_factory, job_id).verify_attempts == 1
    assert run_verification(checkpoint_id, session_factory, storage, flaky, config, final_attempt=False).done
    report = _report(session_factory)
    assert report.passed and report.attempts == 2 and get_job(session_factory, job_id).verify_attempts == 2
    assert VerificationSummary.model_validate(report).attempts == 2  # GET /v1/checkpoints/{id} -> verification
    assert run_verification(checkpoint_id, session_factory, storage, flaky, config).done
    assert get_job(session_factory, job_id).verify_attempts == 2, "a checkpoint already verified is not counted"


def test_transient_errors_in_verification_stop_at_the_maximum_attempts_with_a_clear_error(
    session_factory, storage, config
) -> None:
    config = dataclasses.replace(config, verify_max_attempts=3)
    job_id = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    calls = []

    def unreachable(*args: object) -> dict:
        calls.append(args)
        raise StorageError("connection reset")

    outcomes = [  # the broker would allow more retries (final_attempt=False): the maximum stops them
        run_verification(checkpoint_id, session_factory, storage, unreachable, config, final_attempt=False)
        for _ in range(3)
    ]
    assert [(o.done, o.retry) for o in outcomes] == [(False, True), (False, True), (True, False)]
    report = _report(session_factory)
    assert not report.passed and report.attempts == 3 and len(calls) == 3
    assert report.summary == {"error": "gave up after 3 verification attempts: storage is unavailable"}
    job = get_job(session_factory, job_id)
    assert (job.status, job.verify_attempts, job.lease_owner) == ("succeeded", 3, None)


def test_a_verification_whose_worker_keeps_dying_is_given_up_after_the_maximum_attempts(
    session_factory, storage, config
) -> None:
    config = dataclasses.replace(config, verify_max_attempts=2)
    job_id = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    calls = []

    def dies(*args: object) -> dict:
        calls.append(args)
        raise WorkerDied

    later = utcnow()
    for attempt in (1, 2):
        with pytest.raises(WorkerDied):
            run_verification(checkpoint_id, session_factory, storage, dies, config)
        assert get_job(session_factory, job_id).verify_attempts == attempt
        later += timedelta(hours=1)  # its lease runs out; the reconciler rings for the unverified checkpoint
        assert due_doorbells(session_factory, requeue_after_s=600, now=later).verify == [checkpoint_id]

    outcome = run_verification(checkpoint_id, session_factory, storage, dies, config)
    assert outcome.done and len(calls) == 2, "the attempt beyond the maximum does not run the verifier"
    report = _report(session_factory)
    assert not report.passed and report.attempts == 2
    assert report.summary["error"].startswith("gave up after 2 verification attempts: the last one ended without")
    assert get_job(session_factory, job_id).verify_attempts == 2
    later += timedelta(hours=1)
    assert due_doorbells(session_factory, requeue_after_s=600, now=later).verify == [], "no more doorbells"


def _model_folder(path: Path, content: bytes) -> Path:
    path.mkdir(parents=True)
    (path / "unet.safetensors").write_bytes(content)
    return path


def test_a_runner_whose_lease_was_taken_over_uploads_no_checkpoint(session_factory, storage, tmp_path) -> None:
    job_id = queue_job(session_factory, storage)
    stale = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert stale is not None
    with session_factory() as session:  # handed to another runner; the stale one has not written since
        session.execute(update(ProtectionJob).where(ProtectionJob.id == job_id).values(lease_owner="other:1:abcd"))
        session.commit()
    output = _model_folder(tmp_path / "stale-model", b"stale")
    with pytest.raises(PublishRefused) as refused:
        publish(session_factory, storage, stale, output, tmp_path, verify=False)
    assert not refused.value.cancelled
    assert not storage.exists(checkpoint_key(checkpoint_id_for(job_id))), "nothing was uploaded"
    with session_factory() as session:
        assert session.scalar(select(Checkpoint)) is None


def test_a_stale_runner_never_replaces_a_published_checkpoint(session_factory, storage, tmp_path) -> None:
    job_id = queue_job(session_factory, storage)
    stale = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=0.01, status=JobStatus.RUNNING)
    assert stale is not None
    assert requeue_dead_jobs(session_factory, utcnow() + timedelta(seconds=1)) == [job_id]
    holder = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert holder is not None
    checkpoint_id = publish(
        session_factory, storage, holder, _model_folder(tmp_path / "model", b"theirs"), tmp_path, verify=False
    )
    with pytest.raises(PublishRefused):
        publish(session_factory, storage, stale, _model_folder(tmp_path / "stale", b"mine"), tmp_path, verify=False)
    with session_factory() as session:
        published = session.get_one(Checkpoint, checkpoint_id)
    assert storage.exists(published.storage_key)
    assert sha256_file(storage.path_of(published.storage_key)) == published.sha256, "the published bytes are intact"


def test_publish_refuses_to_replace_a_checkpoint_that_exists_even_under_its_own_lease(
    session_factory, storage, tmp_path
) -> None:
    job_id = queue_job(session_factory, storage)
    lease = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert lease is not None
    checkpoint_id = checkpoint_id_for(job_id)
    existing = storage.put_bytes(checkpoint_key(checkpoint_id), b"published archive")
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        session.add(
            Checkpoint(
                id=checkpoint_id,
                tenant_id=job.tenant_id,
                job_id=job_id,
                storage_key=existing.key,
                size_bytes=existing.size,
                sha256=existing.sha256,
                manifest={},
            )
        )
        session.commit()
    with pytest.raises(AlreadyPublished):
        publish(session_factory, storage, lease, _model_folder(tmp_path / "model", b"new"), tmp_path, verify=False)
    assert sha256_file(storage.path_of(existing.key)) == existing.sha256


@pytest.mark.parametrize("died", [False, True], ids=["never-started", "worker-died-mid-verification"])
def test_embedded_runner_at_start_resumes_a_pending_verification(session_factory, storage, config, died) -> None:
    job_id = queue_job(session_factory, storage, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    assert checkpoint_id is not None  # the process stopped before (or while) verifying it
    if died:
        lease = claim(
            session_factory,
            job_id,
            from_status=JobStatus.SUCCEEDED,
            ttl_s=60,
            verify_attempts=ProtectionJob.verify_attempts + 1,
        )
        assert lease is not None
    runner = InProcessRunner(
        session_factory, storage, fakes.stepping_protect, verify_fn=fakes.fake_verify, config=config
    )
    assert runner.resume_queued() == 1
    assert runner.wait_idle(timeout=30)
    runner.shutdown()
    report = _report(session_factory)
    assert report is not None and report.checkpoint_id == checkpoint_id and report.passed
    assert report.attempts == (2 if died else 1)
    assert get_job(session_factory, job_id).lease_owner is None
