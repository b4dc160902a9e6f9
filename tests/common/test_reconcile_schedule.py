"""When beat runs the reconciler (common/jobs/schedule.py), on a fake clock, on SQLite and Postgres.

`beat` below follows Celery beat's contract with a schedule: ask `is_due(last_run_at)`, run the task if due, sleep
the seconds it returns. The schedule is the one `celery_config` gives beat, so these tests hold whatever the
configured schedule is; the reconciler pass is `due_doorbells`, as the `reconcile` task runs it.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import BaseSchedule

from common.db import SessionFactory
from common.jobs.lease import Lease, claim
from common.jobs.queue import make_celery
from common.jobs.recovery import due_doorbells
from common.jobs.schedule import EXPIRY_MARGIN_S, LeaseExpirySchedule
from common.models import JobStatus, utcnow
from common.settings import Settings, get_settings
from common.storage import LocalStorage
from tests.rows import get_job, queue_job

LEASE_S, HEARTBEAT_S = 10.0, 2.0  # benchmarks/faults.py's settings
# A job is taken over at its lease's expiry + EXPIRY_MARGIN_S (beat wakes that long after the expiry it waits for);
# in a deployment the reconcile and implant messages and the claim come on top (milliseconds each).
SLACK_S = EXPIRY_MARGIN_S + 0.01


@dataclass
class Clock:
    """The fake time of beat and of the simulated workers."""

    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Worker:
    """A runner holding one job's lease, renewing it every HEARTBEAT_S of fake time until `dies_at`."""

    lease: Lease
    next_beat: datetime
    dies_at: datetime | None = None
    last_beat: datetime | None = None

    def beat_until(self, until: datetime) -> None:
        """Every heartbeat due by `until` (none after its death), each renewing the lease from its own time."""
        while self.next_beat <= until and (self.dies_at is None or self.next_beat < self.dies_at):
            expires = self.next_beat + timedelta(seconds=self.lease.ttl_s)
            if self.lease.fenced_update(heartbeat_at=self.next_beat, lease_expires_at=expires):
                self.last_beat = self.next_beat
            self.next_beat += timedelta(seconds=HEARTBEAT_S)


@dataclass
class BeatRun:
    requeued: dict[uuid.UUID, datetime] = field(default_factory=dict)
    checks: int = 0
    passes: int = 0


def reconcile_schedule(settings: Settings, clock: Clock) -> BaseSchedule:
    """The reconciler's schedule as beat builds it from `celery_config`, on the fake clock."""
    app = make_celery(settings)
    entry = ScheduleEntry(name="reconcile", app=app, **app.conf.beat_schedule["reconcile"])
    entry.schedule.nowfun = clock
    return entry.schedule


def beat(
    schedule: BaseSchedule, clock: Clock, sessions: SessionFactory, workers: list[Worker], seconds: float
) -> BeatRun:
    """Beat for `seconds` of fake time from `clock.now`, the workers' heartbeats interleaved in time order."""
    run, end = BeatRun(), clock.now + timedelta(seconds=seconds)
    last_run = wake = clock.now
    while wake <= end:
        for worker in workers:
            worker.beat_until(wake)
        clock.now = wake
        due, next_s = schedule.is_due(last_run)
        run.checks += 1
        if due:
            last_run = clock.now
            run.passes += 1
            for job_id in due_doorbells(sessions, 900, now=clock.now).requeued_dead:
                run.requeued.setdefault(job_id, clock.now)
        wake = clock.now + timedelta(seconds=max(next_s, 0.001))
    return run


def settings_for(database: str, interval_s: float) -> Settings:
    return Settings(
        database_url=database,
        broker_url="redis://127.0.0.1:1/0",  # never connected to: only the configuration is read
        job_lease_s=LEASE_S,
        job_heartbeat_s=HEARTBEAT_S,
        reconcile_interval_s=interval_s,
    )


def running_job(sessions: SessionFactory, storage: LocalStorage, clock: Clock, dies_after_s: float | None) -> Worker:
    """A job taken by a runner at `clock.now`; its heartbeats stop `dies_after_s` later (never with None)."""
    job_id = queue_job(sessions, storage)
    lease = claim(sessions, job_id, from_status=JobStatus.QUEUED, ttl_s=LEASE_S, status=JobStatus.RUNNING)
    assert lease is not None
    dies = None if dies_after_s is None else clock.now + timedelta(seconds=dies_after_s)
    worker = Worker(lease, next_beat=clock.now, dies_at=dies)
    worker.beat_until(clock.now)
    return worker


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store", secrets.token_bytes(16))


@pytest.mark.parametrize("interval_s", [2.0, 60.0], ids=["reconcile-every-2s", "reconcile-every-60s"])
@pytest.mark.parametrize("dies_after_s", [7.0, 7.9, 8.5])
def test_a_job_whose_worker_stopped_heartbeating_is_requeued_within_one_lease_of_its_last_heartbeat(
    database, session_factory, storage, interval_s, dies_after_s
) -> None:
    clock = Clock()
    schedule = reconcile_schedule(settings_for(database, interval_s), clock)
    worker = running_job(session_factory, storage, clock, dies_after_s)

    run = beat(schedule, clock, session_factory, [worker], seconds=120)

    assert worker.last_beat is not None
    taken_after_s = (run.requeued[worker.lease.job_id] - worker.last_beat).total_seconds()
    assert LEASE_S < taken_after_s <= LEASE_S + SLACK_S, f"re-queued {taken_after_s:.2f} s after the last heartbeat"
    assert get_job(session_factory, worker.lease.job_id).status == "queued"
    assert worker.lease.fenced_update(step=1) is False, "the dead runner's lease no longer writes"


def test_an_earlier_live_lease_does_not_delay_the_takeover_of_a_dead_one(database, session_factory, storage) -> None:
    clock = Clock()
    schedule = reconcile_schedule(settings_for(database, 60.0), clock)
    live = running_job(session_factory, storage, clock, dies_after_s=None)
    clock.now += timedelta(seconds=0.5)  # its lease always runs out half a second after the live one's
    dying = running_job(session_factory, storage, clock, dies_after_s=9.0)

    run = beat(schedule, clock, session_factory, [live, dying], seconds=60)

    assert dying.last_beat is not None and list(run.requeued) == [dying.lease.job_id]
    assert (run.requeued[dying.lease.job_id] - dying.last_beat).total_seconds() <= LEASE_S + SLACK_S
    assert get_job(session_factory, live.lease.job_id).status == "running"


def test_live_leases_are_never_taken_and_the_checks_stay_bounded(database, session_factory, storage) -> None:
    clock = Clock()
    interval_s, minutes = 60.0, 10
    schedule = reconcile_schedule(settings_for(database, interval_s), clock)
    workers = [running_job(session_factory, storage, clock, dies_after_s=None) for _ in range(3)]

    run = beat(schedule, clock, session_factory, workers, seconds=minutes * 60)

    assert run.requeued == {}
    assert run.passes <= minutes * 60 / interval_s + 1, "no pass but the periodic ones while every lease is live"
    # One check per lease period at most, one at each lease expiry the renewals moved, one per pass.
    assert run.checks <= minutes * 60 / (LEASE_S - HEARTBEAT_S) + run.passes + 1


def test_turned_off_the_reconciler_runs_on_its_period_alone(sqlite_database) -> None:
    settings = settings_for(sqlite_database, 2.0).model_copy(update={"reconcile_on_lease_expiry": False})
    app = make_celery(settings)
    assert app.conf.beat_schedule["reconcile"]["schedule"] == 2.0


def test_beat_keeps_its_schedule_file_without_the_database_password(tmp_path: Path) -> None:
    password = secrets.token_hex(8)
    settings = settings_for(f"postgresql+psycopg://persguard:{password}@127.0.0.1:9/persguard", 60.0)
    app = make_celery(settings)
    filename = str(tmp_path / "celerybeat-schedule")
    for _ in range(2):  # written, then read back by a restarted beat
        scheduler = PersistentScheduler(app=app, schedule_filename=filename, lazy=False)
        scheduler.sync()
        stored = scheduler.schedule["reconcile"].schedule
        assert isinstance(stored, LeaseExpirySchedule) and stored.max_check_s == LEASE_S
        scheduler.close()
    assert password.encode() not in b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert password not in repr(stored)


def test_the_schedule_beat_reads_back_from_its_file_looks_up_the_leases_of_the_configured_database(
    database, session_factory, storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSGUARD_DATABASE_URL", database)  # beat's settings (worker/app.py: get_settings())
    monkeypatch.setenv("PERSGUARD_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        clock = Clock()
        worker = running_job(session_factory, storage, clock, dies_after_s=None)
        app = make_celery(get_settings())
        scheduler = PersistentScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=False)
        scheduler.sync()  # beat's schedule file re-reads its entries after a sync: these are unpickled
        restored = scheduler.schedule["reconcile"].schedule
        scheduler.close()
    finally:
        get_settings.cache_clear()
    expected = get_job(session_factory, worker.lease.job_id).lease_expires_at
    assert restored.next_expiry(clock.now - timedelta(seconds=1)) == expected


def test_with_the_database_away_the_schedule_falls_back_to_its_period(tmp_path: Path) -> None:
    clock = Clock()
    schedule = LeaseExpirySchedule(30, max_check_s=LEASE_S, database_url="postgresql+psycopg://u@127.0.0.1:9/x")
    schedule.nowfun = clock
    assert schedule.is_due(clock.now - timedelta(seconds=5)) == (False, LEASE_S)
    assert schedule.is_due(clock.now - timedelta(seconds=31)) == (True, LEASE_S)
