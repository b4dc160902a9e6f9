"""Unpacking a downloaded checkpoint archive (one tar of a diffusers folder) safely."""

from __future__ import annotations

import tarfile
from pathlib import Path


def extract(archive: Path, dest: Path) -> Path:
    """Unpack `archive` into `dest` with tarfile's `data` filter (no absolute paths, links out of `dest`, devices
    or special modes); returns `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest
