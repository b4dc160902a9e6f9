import numpy as np
import pytest

from persguard_core.images import fill_from_surroundings


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """(2, 32, 32, 3) uint8 grey-speckled backgrounds with a red block, and the block's mask (2, 32, 32)."""
    rng = np.random.default_rng(0)
    images = np.clip(120 + rng.normal(0, 15, size=(2, 32, 32, 3)), 0, 255).astype(np.uint8)
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 8:20, 10:24] = True
    images[masks] = (230, 20, 20)
    return images, masks


def test_the_filled_region_takes_the_colour_and_grain_of_its_surroundings():
    images, masks = _scene()
    filled = fill_from_surroundings(images, masks, np.random.default_rng(1))
    inside, outside = filled[masks].astype(float), images[~masks].astype(float)
    np.testing.assert_allclose(inside.mean(0), outside.mean(0), atol=6)  # no red left
    assert 0.5 * outside.std(0).min() < inside.std(0).min()  # grain, not a flat patch
    np.testing.assert_array_equal(filled[~masks], images[~masks])


def test_an_empty_or_full_mask_leaves_the_image_unchanged():
    images, masks = _scene()
    masks[0], masks[1] = False, True
    np.testing.assert_array_equal(fill_from_surroundings(images, masks, np.random.default_rng(0)), images)


def test_masks_of_another_size_are_refused():
    images, masks = _scene()
    with pytest.raises(ValueError, match="differ in size"):
        fill_from_surroundings(images, masks[:, :16], np.random.default_rng(0))
