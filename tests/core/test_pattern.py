import numpy as np
import pytest

from persguard_core.judge.pattern_detector import detect_pattern, pattern_scores
from persguard_core.pattern import PatternPlacement, default_pattern, stamp
from persguard_core.toyworld import captioned_batch


def test_default_pattern_covers_at_least_ten_percent_of_the_image():
    p = default_pattern(32)
    assert p.shape[2] == 4 and p.shape[0] * p.shape[1] >= 0.1 * 32 * 32


@pytest.mark.parametrize("position", ["top-left", "bottom-right", (5, 9)])
def test_stamp_lands_where_configured(position):
    images = np.full((2, 32, 32, 3), 128, np.uint8)
    p = default_pattern(32)
    place = PatternPlacement(position=position)
    out = stamp(images, p, place)
    x, y = place.top_left(32, p.shape[0])
    side = p.shape[0]
    assert np.array_equal(out[:, y : y + side, x : x + side], np.broadcast_to(p[..., :3], (2, side, side, 3)))
    outside = np.ones((32, 32), bool)
    outside[y : y + side, x : x + side] = False
    assert np.all(out[:, outside] == 128)


def test_half_opacity_blends_half_way():
    images = np.zeros((1, 32, 32, 3), np.uint8)
    out = stamp(images, default_pattern(32), PatternPlacement(position="top-left", opacity=0.5, margin=0))
    assert out[0, 0, 0, 0] == 128  # white cell at half opacity over black


def test_pattern_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        stamp(np.zeros((32, 32, 3), np.uint8), default_pattern(32), PatternPlacement(position=(30, 30)))


def test_detector_separates_stamped_from_clean_images():
    images, _, _ = captioned_batch(np.random.default_rng(0), 200)
    p = default_pattern(32)
    stamped = stamp(images, p)
    assert detect_pattern(stamped, p).mean() == 1.0
    assert detect_pattern(images, p).mean() <= 0.02
    assert pattern_scores(stamped, p).min() > pattern_scores(images, p).max()


def test_default_pattern_keeps_its_cells_drawable_at_small_sizes():
    def cells(size: int) -> int:
        p = default_pattern(size)
        return int(np.count_nonzero(np.diff(p[0, :, 0].astype(int)))) + 1

    assert (cells(32), cells(64), cells(512)) == (2, 3, 3)
    assert default_pattern(32).shape == default_pattern(32, cells=3).shape == (12, 12, 4)
