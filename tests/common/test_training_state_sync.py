"""The service's name for the core's training-state file."""

import uuid

from common.jobs.training_state import STATE_FILE, state_key
from persguard_core import training_state


def test_the_service_syncs_the_file_the_core_writes_under_the_same_name():
    job = uuid.uuid4()
    assert STATE_FILE.name == training_state.STATE_FILE_NAME == "state.safetensors"
    assert STATE_FILE.parent.as_posix() == "protection/private/state"  # protect(spec, workdir / "protection")
    assert state_key(job) == f"jobs/{job}/state/state.safetensors"
