"""`persguard worker` / `persguard beat` refuse to start without a broker, saying what to set."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.worker.harness import PERSGUARD, REPO


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_commands_without_a_broker_exit_with_a_hint(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERSGUARD_BROKER_URL"}
    result = subprocess.run([str(PERSGUARD), command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PERSGUARD_BROKER_URL" in result.stderr
