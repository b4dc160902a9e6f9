"""When beat runs the reconciler: every `run_every`, and as soon as a job's lease runs out.

A worker that dies stops renewing its lease; the reconciler can hand the job to another runner from the instant
the lease expires. With a fixed period alone that takes up to lease + period after the last heartbeat. This
schedule also wakes beat at the earliest lease expiry it finds in the database (`next_lease_expiry`, one indexed
query per check), so a dead worker's job is re-queued within the lease (+ `EXPIRY_MARGIN_S` and the delivery of
two messages) whatever the period.

Checks are few: beat asks the database once per wake-up and wakes at the earliest of the next lease expiry, the end
of the period and `max_check_s` after the check (the lease: a lease taken after a check cannot run out sooner). A
live worker renews its lease before it runs out, so a check at its old expiry finds a later one and runs nothing;
a pass runs only when a lease did run out since the last pass, or when the period is over. Every pass is the same
reconciler pass, so what fences a taken-over job is unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from celery.schedules import schedstate, schedule
from sqlalchemy.exc import SQLAlchemyError

from common.db import SessionFactory, make_engine, make_session_factory
from common.jobs.recovery import next_lease_expiry
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Beat wakes up to 10 ms before the time a schedule asks for (celery.beat.Scheduler.adjust); checking this much
# after an expiry finds it past on the first wake, instead of rechecking in a loop until it is.
EXPIRY_MARGIN_S = 0.05


class LeaseExpirySchedule(schedule):
    """Due every `run_every`, and once for every lease expiry since the last run (see the module docstring)."""

    def __init__(
        self,
        run_every: float | timedelta,
        max_check_s: float,
        database_url: str | None = None,  # None: the database of the process's settings
        nowfun: Callable[[], datetime] | None = None,
        app: Any = None,
    ) -> None:
        super().__init__(run_every, nowfun=nowfun, app=app)
        self.max_check_s = max_check_s
        self._database_url = database_url

    def is_due(self, last_run_at: datetime) -> schedstate:
        """(due, seconds until the next check): due when the period is over or a lease ran out since `last_run_at`;
        the next check is at the next lease expiry (+ margin), the end of the period or `max_check_s`, whichever
        comes first."""
        now = self.maybe_make_aware(self.now())
        periodic = super().is_due(last_run_at)
        if periodic.is_due:
            due, expiry = True, self.next_expiry(now)
        else:
            expiry = self.next_expiry(self.maybe_make_aware(last_run_at))
            due = expiry is not None and expiry < now
            if due:
                expiry = self.next_expiry(now)
        waits = [self.seconds if due else periodic.next, self.max_check_s]
        if expiry is not None:
            waits.append((expiry - now).total_seconds() + EXPIRY_MARGIN_S)
        return schedstate(is_due=due, next=max(min(waits), 0.0))

    def next_expiry(self, since: datetime) -> datetime | None:
        """The earliest lease expiry at or after `since`; None when there is none or the database cannot be asked
        (then the period alone applies until it can)."""
        try:
            return next_lease_expiry(self._session_factory(), since)
        except SQLAlchemyError as exc:
            log.warning("reconcile schedule: cannot look up lease expiries (%s); next pass on the period", exc)
            return None

    def _session_factory(self) -> SessionFactory:
        return _sessions(os.getpid(), self._database_url or get_settings().database_url)

    def __reduce__(self) -> tuple[type, tuple[timedelta, float]]:
        """Pickled into beat's schedule file without the database URL, which holds a password: read back (beat's
        schedule file re-reads its entries after each sync), it asks the database of the process's settings."""
        return self.__class__, (self.run_every, self.max_check_s)

    def __repr__(self) -> str:
        return f"<freq: {self.human_seconds}, and at each lease expiry>"


@lru_cache(maxsize=4)
def _sessions(pid: int, database_url: str) -> SessionFactory:
    """Sessions on `database_url` for process `pid`: one engine per process (beat runs in a process forked from the
    worker's, and connections are not shared), kept while beat re-reads its schedule entries."""
    return make_session_factory(make_engine(database_url))


def reconcile_schedule(settings: Settings) -> float | LeaseExpirySchedule:
    """Beat's schedule of the reconciler: every RECONCILE_INTERVAL_S, and at each lease's expiry unless
    RECONCILE_ON_LEASE_EXPIRY is off."""
    if not settings.reconcile_on_lease_expiry:
        return settings.reconcile_interval_s
    return LeaseExpirySchedule(
        settings.reconcile_interval_s, max_check_s=settings.job_lease_s, database_url=settings.database_url
    )
