import numpy as np
import pytest

from persguard_core.implant.parts import DiffusionParts
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline


@pytest.fixture
def parts() -> DiffusionParts:
    return DiffusionParts.from_pipeline(tiny_sd_pipeline("sd1"))


@pytest.fixture(scope="session")
def subject_images() -> np.ndarray:
    """(6, 64, 64, 3) views of one eval subject at the tiny model's resolution."""
    return split("eval")[0].views(6, seed=0, size=64)


@pytest.fixture(scope="session")
def builtin_vae():
    """The built-in model's VAE (32 px), read-only: tests train copies."""
    from persguard_core.model_io import load_pipeline

    return load_pipeline("builtin").vae.requires_grad_(False)
