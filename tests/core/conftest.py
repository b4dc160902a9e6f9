"""Fixtures for the core: small random-weight Stable Diffusion folders (tests/tiny_sd.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_sd import tiny_sd_pipeline


@pytest.fixture(scope="session", params=["sd1", "sd2"])
def tiny_sd_folder(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(f"tiny-{request.param}")
    tiny_sd_pipeline(request.param).save_pretrained(path, safe_serialization=True)
    return path
