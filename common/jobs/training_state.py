"""Training state in storage: a retried or re-queued job resumes from its last saved step, on any machine.

The core saves its resumable state to `<protection dir>/private/state/state.safetensors` every `checkpoint_every`
steps (persguard_core.training_state: one safetensors file, no pickle, written atomically: a new file replaces the
old). `TrainingStateSync` notices a new file from the progress callback and uploads a snapshot of it in a
background thread, so training never waits for storage, at most once per `min_interval_s` (the state upload
interval); `restore` puts the stored state back into a fresh work directory before the core starts.

Integrity: an upload happens only while the job's lease is ours (checked, and renewed, just before it, as
publishing does) and records the object's sha256 in the job row under the lease (`state_sha256`); `restore`
resumes only from an object with that sha256. Anything else (a tampered object, a stale worker's late upload, an
object no upload recorded) is discarded with a warning, and the job starts from step 0.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from common.jobs.lease import Lease
from common.models import ProtectionJob
from common.storage import ChecksumMismatch, ObjectNotFound, Storage, StorageError

log = logging.getLogger(__name__)

STATE_FILE_NAME = "state.safetensors"  # persguard_core.training_state.STATE_FILE_NAME, without importing torch
STATE_FILE = Path("protection/private/state") / STATE_FILE_NAME  # relative to a job's work directory


def state_key(job_id: uuid.UUID) -> str:
    """Where the training state of job `job_id` is kept in storage."""
    return f"jobs/{job_id}/state/{STATE_FILE_NAME}"


class TrainingStateSync:
    """Uploads new training-state files of one job run; at most one upload in flight, never blocking.

    A snapshot is taken at most every `min_interval_s` (the newest state file then; the core may write one every
    step), except by `flush`, which takes the newest file whatever the interval. Every upload is fenced: it checks
    (and renews) the lease first, and records the object's step and sha256 in the job row under the lease.
    `restore` loads a stored state only if its sha256 is the one recorded.
    """

    def __init__(self, storage: Storage, lease: Lease, workdir: Path, min_interval_s: float = 0.0) -> None:
        self.storage, self.lease = storage, lease
        self.local = workdir / STATE_FILE
        self.key = state_key(lease.job_id)
        self.min_interval_s = min_interval_s
        self._seen: tuple[int, int, int] | None = None  # the file last snapshotted (or restored)
        self._noticed: tuple[tuple[int, int, int], int] | None = None  # the newest file seen and its first step
        self._last_step = 0
        self._last_upload = float("-inf")
        self._thread: threading.Thread | None = None
        self._pending: tuple[Path, int] | None = None
        self._lock = threading.Lock()
        self.uploaded_step = 0

    def restore(self) -> bool:
        """Download the stored state into the work directory if its sha256 is the one recorded under the job's
        lease; False if there is none, or (with a warning) if it does not match: the job then starts over."""
        with self.lease.session_factory() as session:
            expected = session.scalar(select(ProtectionJob.state_sha256).where(ProtectionJob.id == self.lease.job_id))
        try:
            if expected is None:
                if not self.storage.exists(self.key):
                    return False
                raise ChecksumMismatch(f"no sha256 was recorded for {self.key!r}")
            self.storage.get_to_file(self.key, self.local, expected_sha256=expected)
        except ObjectNotFound:
            return False
        except ChecksumMismatch as exc:
            self.local.unlink(missing_ok=True)
            log.warning(
                "job %s: discarded the stored training state (%s: tampered, or a stale upload); starting from step 0",
                self.lease.job_id,
                exc,
            )
            self.lease.fenced_update(state_step=0, state_sha256=None)
            return False
        self._seen = _stamp(self.local)
        log.info("job %s: restored training state from %s", self.lease.job_id, self.key)
        return True

    def on_progress(self, step: int) -> None:
        """Call after each step: if the core wrote a new state file and the interval has passed since the last
        snapshot, snapshot it and have it uploaded (an upload in flight is finished first; of the snapshots
        waiting meanwhile only the newest is kept)."""
        self._last_step = step
        stamp = self._notice(step)
        if stamp is None or stamp == self._seen or time.monotonic() - self._last_upload < self.min_interval_s:
            return
        self._snapshot(stamp)

    def flush(self, timeout: float | None = None) -> None:
        """Have the newest state file uploaded whatever the interval (a job ending with its state kept for a
        retry), then wait for the uploads."""
        stamp = self._notice(self._last_step)
        if stamp is not None and stamp != self._seen:
            self._snapshot(stamp)
        self.wait(timeout)

    def _notice(self, step: int) -> tuple[int, int, int] | None:
        """The current state file's identity (None: no file); a new one is remembered with the step it came at."""
        try:
            stamp = _stamp(self.local)
        except FileNotFoundError:
            return None
        if self._noticed is None or self._noticed[0] != stamp:
            self._noticed = (stamp, step)
        return stamp

    def _snapshot(self, stamp: tuple[int, int, int]) -> None:
        step = self._noticed[1] if self._noticed and self._noticed[0] == stamp else self._last_step
        snapshot = self.local.with_name(f"upload-{step}-{STATE_FILE_NAME}")
        snapshot.unlink(missing_ok=True)
        try:
            os.link(self.local, snapshot)  # the core replaces the state file by rename: this inode stays as it is
        except FileNotFoundError:  # replaced between the stat and the link: the next call takes the new one
            return
        self._seen, self._last_upload = stamp, time.monotonic()
        with self._lock:
            if self._pending is not None:
                self._pending[0].unlink(missing_ok=True)
            self._pending = (snapshot, step)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="state-upload", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    self._thread = None
                    return
                (snapshot, step), self._pending = self._pending, None
            self._upload(snapshot, step)

    def _upload(self, snapshot: Path, step: int) -> None:
        """Fenced: only while the lease is ours (checked, and renewed, just before), and recorded under it."""
        try:
            if self.lease.lost or not self.lease.renew():
                log.warning("job %s: lease lost; training state of step %d not saved", self.lease.job_id, step)
                return
            stored = self.storage.put_file(self.key, snapshot)
            if not self.lease.fenced_update(state_step=step, state_sha256=stored.sha256):
                log.warning("job %s: lease lost while saving the training state of step %d", self.lease.job_id, step)
                return
            self.uploaded_step = step
            log.info("job %s: training state of step %d saved to storage", self.lease.job_id, step)
        except (StorageError, OSError, SQLAlchemyError) as exc:  # best effort: the next state file is tried again
            log.warning("job %s: could not save training state of step %d: %s", self.lease.job_id, step, exc)
        finally:
            snapshot.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every snapshot taken so far is uploaded (or has failed)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


def _stamp(path: Path) -> tuple[int, int, int]:
    """A file's identity: inode, size and modification time (the core writes each state to a new inode)."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def delete_state(storage: Storage, job_id: uuid.UUID) -> None:
    """Remove a job's stored training state (best effort; the reconciler sweeps what is left)."""
    try:
        storage.delete(state_key(job_id))
    except StorageError as exc:
        log.warning("job %s: could not delete training state: %s", job_id, exc)
