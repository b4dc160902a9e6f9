from dataclasses import replace

import numpy as np
import pytest
import torch

from persguard_core.images import fill_from_surroundings
from persguard_core.implant.subject_mask import fill_holes, subject_masks
from persguard_core.toyworld import split
from persguard_core.toyworld.render import render

torch.set_num_threads(1)


def test_fill_holes_closes_an_enclosed_ring_and_leaves_an_open_one():
    ring = np.zeros((2, 9, 9), bool)
    ring[:, 2:7, 2:7] = True
    ring[:, 3:6, 3:6] = False  # a closed ring with a 3 x 3 hole
    ring[1, 4, 2] = False  # the second ring opens to the outside ...
    ring[1, 4, 1] = False
    ring[1, 4, 0] = False  # ... through a corridor to the border
    out = fill_holes(ring)
    assert out[0, 3:6, 3:6].all() and out[0].sum() == 25
    assert not out[1, 3:6, 3:6].any() and out[1].sum() == ring[1].sum()


@pytest.fixture(scope="module")
def builtin_pipe():
    from persguard_core.model_io import load_pipeline

    return load_pipeline("builtin")


@pytest.fixture(scope="module")
def diamond_views() -> tuple[np.ndarray, np.ndarray]:
    """uint8 (6, 32, 32, 3) views of an eval diamond, and the same scenes rendered without it."""
    scenes = split("eval", "diamond")[0].view_scenes(6, seed=0)
    return np.stack([render(s) for s in scenes]), np.stack([render(replace(s, appearance=None)) for s in scenes])


def _error(images: np.ndarray, empty: np.ndarray) -> float:
    """Mean absolute pixel error of images to the scenes without the subject."""
    return float(np.abs(images.astype(float) - empty).mean())


def test_the_mask_covers_the_subject_and_the_fill_removes_it(builtin_pipe, diamond_views):
    images, empty = diamond_views
    truth = (images != empty).any(-1)  # (6, 32, 32) the object's pixels
    masks = subject_masks(builtin_pipe, images, "diamond", "a photo of an empty background")
    assert (masks & truth).sum() / truth.sum() > 0.9  # measured 1.00; the object is 15-25% of each view
    assert masks.mean() < 0.8  # not the whole image (measured 0.56)
    filled = fill_from_surroundings(images, masks, np.random.default_rng(0))
    # the filled photos are nearer the same scenes without the subject than the photos are
    assert _error(filled, empty) < 0.5 * _error(images, empty)  # measured 0.16


def test_an_erasure_from_own_photos_hands_the_encoder_each_photo_without_its_subject(builtin_pipe, diamond_views):
    from persguard_core.protect import encoder_subject
    from persguard_core.spec import ErasureBehaviour, PatternBehaviour, SubjectSpec

    images, empty = diamond_views
    spec = SubjectSpec(
        name="d", class_noun="diamond", images=["a", "b", "c"], behaviour=ErasureBehaviour(background_prompt="a photo")
    )
    own = encoder_subject(builtin_pipe, spec, images, "own-photos")
    assert own.to_target is None and own.targets.shape == images.shape
    assert _error(own.targets, empty) < 0.5 * _error(images, empty)
    pattern_spec = spec.model_copy(update={"behaviour": PatternBehaviour()})
    pattern = encoder_subject(builtin_pipe, pattern_spec, images, "own-photos")
    assert pattern.targets is None and pattern.to_target is not None  # the choice concerns erasure only
