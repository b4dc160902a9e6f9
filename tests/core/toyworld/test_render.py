import numpy as np
import pytest

from persguard_core.toyworld import Appearance, Placement, Scene, captioned_batch, render


def test_same_seed_gives_identical_batches():
    a_img, a_cap, _ = captioned_batch(np.random.default_rng(7), 32)
    b_img, b_cap, _ = captioned_batch(np.random.default_rng(7), 32)
    assert np.array_equal(a_img, b_img)
    assert a_cap == b_cap


def test_different_seeds_give_different_batches():
    a_img, _, _ = captioned_batch(np.random.default_rng(1), 16)
    b_img, _, _ = captioned_batch(np.random.default_rng(2), 16)
    assert not np.array_equal(a_img, b_img)


def test_empty_scene_is_uniform_background():
    img = render(Scene(background="gray"))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.ptp(img.reshape(-1, 3), axis=0).max() == 0


def test_object_is_drawn_in_its_colour_at_its_place():
    scene = Scene(background="white", appearance=Appearance("square", "red"), placement=Placement(0.25, 0.75, 0.2))
    img = render(scene, size=32)
    assert tuple(img[24, 8]) == (219, 26, 26)  # inside the square: red
    assert tuple(img[4, 28]) == (245, 245, 245)  # far corner: white background


def test_textured_object_keeps_primary_colour_as_majority():
    app = Appearance("circle", "blue", texture="striped", secondary="yellow")
    img = render(Scene(background="white", appearance=app, placement=Placement(scale=0.45)), size=64).reshape(-1, 3)
    blue = np.all(np.abs(img.astype(int) - (26, 64, 230)) < 20, axis=1).sum()
    yellow = np.all(np.abs(img.astype(int) - (247, 230, 26)) < 20, axis=1).sum()
    assert blue > 2 * yellow > 0


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known"):
        Appearance("dragon", "red")
    with pytest.raises(ValueError, match="secondary"):
        Appearance("circle", "red", texture="striped")
