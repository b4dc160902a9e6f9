import numpy as np
import pytest

from persguard_core.attacker.transforms import TRANSFORMS, Transform, blur, crop, mix, noise, resize, transform
from persguard_core.toyworld import split


@pytest.fixture(scope="module")
def toy_images() -> np.ndarray:
    """(4, 64, 64, 3) uint8 views of one eval subject."""
    return split("eval")[0].views(4, seed=0, size=64)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_registered_transform_keeps_shape_and_dtype(name, toy_images):
    out = transform(name).apply(toy_images, np.random.default_rng(0))
    assert out.shape == toy_images.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"none"}))
def test_every_registered_transform_other_than_none_changes_the_pixels(name, toy_images):
    assert not np.array_equal(transform(name).apply(toy_images, np.random.default_rng(0)), toy_images)


def test_transforms_keep_non_square_sizes():
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 24, 3), dtype=np.uint8)
    for name in TRANSFORMS:
        assert transform(name).apply(images).shape == images.shape, name


def test_jpeg50_changes_pixels_but_keeps_them_close(toy_images):
    out = transform("jpeg50").apply(toy_images)
    diff = np.abs(out.astype(int) - toy_images.astype(int))
    assert diff.max() > 0
    assert diff.mean() < 20


def test_lower_jpeg_quality_moves_pixels_further(toy_images):
    def mean_diff(q: int) -> float:
        out = Transform(f"jpeg{q}", "jpeg", {"quality": q}).apply(toy_images)
        return float(np.abs(out.astype(int) - toy_images.astype(int)).mean())

    assert mean_diff(10) > mean_diff(90)


def test_resize_with_factor_one_is_the_identity(toy_images):
    assert np.array_equal(resize(toy_images, 1.0), toy_images)


def test_resize_half_loses_detail_but_keeps_the_image(toy_images):
    out = resize(toy_images, 0.5)
    assert np.abs(out.astype(int) - toy_images.astype(int)).mean() < 20


def test_resize_rejects_a_factor_outside_zero_to_one(toy_images):
    with pytest.raises(ValueError, match="factor"):
        resize(toy_images, 1.5)


def test_full_centre_crop_is_the_identity(toy_images):
    assert np.array_equal(crop(toy_images, 1.0), toy_images)


def test_centre_crop_magnifies_the_centre():
    images = np.zeros((1, 10, 10, 3), np.uint8)
    images[0, 1:9, 1:9] = 255  # white square with a 1-pixel black frame
    out = crop(images, 0.8)  # the 8x8 centre window is all white
    assert out.min() >= 250


def test_random_crop_is_seeded_and_varies_with_the_seed(toy_images):
    t = Transform("randcrop0.6", "random_crop", {"fraction": 0.6})
    a, b = t.apply(toy_images, np.random.default_rng(1)), t.apply(toy_images, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, t.apply(toy_images, np.random.default_rng(2)))


def test_blur_reduces_pixel_to_pixel_variation(toy_images):
    def roughness(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x.astype(int), axis=2)).mean())

    assert roughness(transform("blur").apply(toy_images)) < 0.8 * roughness(toy_images)


def test_blur_radius_scales_with_image_size(toy_images):
    from PIL import Image, ImageFilter

    expected = np.asarray(Image.fromarray(toy_images[0]).filter(ImageFilter.GaussianBlur(2.0)))
    assert np.array_equal(blur(toy_images[:1], 1.0)[0], expected)  # radius 1 at 32 px is radius 2 at 64 px


def test_seeded_noise_is_deterministic_and_differs_across_seeds(toy_images):
    a = noise(toy_images, 8.0, np.random.default_rng(3))
    assert np.array_equal(a, noise(toy_images, 8.0, np.random.default_rng(3)))
    assert not np.array_equal(a, noise(toy_images, 8.0, np.random.default_rng(4)))


def test_noise8_on_mid_grey_has_the_gaussian_mean_absolute_deviation():
    grey = np.full((4, 32, 32, 3), 128, np.uint8)
    diff = np.abs(transform("noise8").apply(grey, np.random.default_rng(0)).astype(float) - 128)
    assert diff.mean() == pytest.approx(8.0 * np.sqrt(2 / np.pi), rel=0.05)


def test_unknown_transform_name_raises_key_error_listing_the_known_ones():
    with pytest.raises(KeyError) as err:
        transform("sepia")
    for name in TRANSFORMS:
        assert name in str(err.value)


def test_unknown_transform_kind_is_refused():
    with pytest.raises(KeyError, match="jpeg"):
        Transform("x", "sepia")


def test_transform_rejects_non_uint8_images(toy_images):
    with pytest.raises(ValueError, match="uint8"):
        transform("jpeg50").apply(toy_images.astype(np.float32))


def test_mix_half_takes_half_protected_rows_first_then_clean_rows():
    protected = np.full((4, 8, 8, 3), 200, np.uint8)
    clean = np.full((6, 8, 8, 3), 10, np.uint8)
    out = mix(protected, clean, 0.5)
    assert out.shape == (4, 8, 8, 3) and out.dtype == np.uint8
    assert np.all(out[:2] == 200) and np.all(out[2:] == 10)


def test_mix_draws_distinct_rows_with_an_rng():
    protected = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    clean = (100 + np.arange(6, dtype=np.uint8))[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    out = mix(protected, clean, 0.25, n=8, rng=np.random.default_rng(0))
    ids = out[:, 0, 0, 0].tolist()
    assert len(set(ids)) == 8  # without replacement
    assert sum(i < 100 for i in ids) == 2 and all(i < 100 for i in ids[:2])


def test_mix_refuses_when_a_set_is_too_small():
    with pytest.raises(ValueError, match="clean"):
        mix(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8), 0.5)
