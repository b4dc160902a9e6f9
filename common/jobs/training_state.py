"""Training state in storage: a retried or re-queued job resumes from its last saved step, on any machine.

The core saves its resumable state to `<protection dir>/private/state/state.safetensors` every `checkpoint_every`
steps (persguard_core.training_state: one safetensors file, no pickle, written atomically: a new file replaces the
old). `TrainingStateSync` notices a new file from the progress callback and uploads a snapshot of it in a
background thread, so training never waits for storage; `restore` puts the stored state back into a fresh work
directory before the core starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

from common.jobs.lease import Lease
from common.storage import ObjectNotFound, Storage, StorageError

log = logging.getLogger(__name__)

STATE_FILE_NAME = "state.safetensors"  # persguard_core.training_state.STATE_FILE_NAME, without importing torch
STATE_FILE = Path("protection/private/state") / STATE_FILE_NAME  # relative to a job's work directory


def state_key(job_id: uuid.UUID) -> str:
    """Where the training state of job `job_id` is kept in storage."""
    return f"jobs/{job_id}/state/{STATE_FILE_NAME}"


class TrainingStateSync:
    """Uploads new training-state files of one job run; at most one upload in flight, never blocking."""

    def __init__(self, storage: Storage, lease: Lease, workdir: Path, min_interval_s: float = 0.0) -> None:
        self.storage, self.lease = storage, lease
        self.local = workdir / STATE_FILE
        self.key = state_key(lease.job_id)
        self.min_interval_s = min_interval_s
        self._seen: int | None = None
        self._last_upload = 0.0
        self._thread: threading.Thread | None = None
        self._pending: tuple[Path, int] | None = None
        self._lock = threading.Lock()
        self.uploaded_step = 0

    def restore(self) -> bool:
        """Download the stored state into the work directory; False if there is none."""
        try:
            self.storage.get_to_file(self.key, self.local)
        except ObjectNotFound:
            return False
        self._seen = self.local.stat().st_mtime_ns
        log.info("job %s: restored training state from %s", self.lease.job_id, self.key)
        return True

    def on_progress(self, step: int) -> None:
        """Call after each step: if the core wrote a new state file, snapshot it and have it uploaded (an upload
        in flight is finished first; of the snapshots waiting meanwhile only the newest is kept)."""
        try:
            stamp = self.local.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self._seen or time.monotonic() - self._last_upload < self.min_interval_s:
            return
        snapshot = self.local.with_name(f"upload-{step}-{STATE_FILE_NAME}")
        snapshot.unlink(missing_ok=True)
        os.link(self.local, snapshot)  # the core replaces the state file by rename: this inode stays as it is
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
        try:
            self.storage.put_file(self.key, snapshot)
            self.uploaded_step = step
            self.lease.fenced_update(state_step=step)
            log.info("job %s: training state of step %d saved to storage", self.lease.job_id, step)
        except (StorageError, OSError) as exc:  # best effort: the next state file is tried again
            log.warning("job %s: could not save training state of step %d: %s", self.lease.job_id, step, exc)
        finally:
            snapshot.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every snapshot taken so far is uploaded (or has failed)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


def delete_state(storage: Storage, job_id: uuid.UUID) -> None:
    """Remove a job's stored training state (best effort; the reconciler sweeps what is left)."""
    try:
        storage.delete(state_key(job_id))
    except StorageError as exc:
        log.warning("job %s: could not delete training state: %s", job_id, exc)
