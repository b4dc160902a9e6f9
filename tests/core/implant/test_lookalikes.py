import numpy as np
import pytest

from persguard_core import model_io
from persguard_core.images import save_images
from persguard_core.implant.lookalikes import lookalike_keep_rows, palette, palette_swap
from persguard_core.protect import class_samples, keep_images
from persguard_core.spec import EncoderTraining, ProtectionSpec, SubjectSpec
from persguard_core.toyworld import split

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 180, 40), (30, 60, 220), (230, 220, 30)


def _two_tone(size: int, background: tuple, left: tuple, right: tuple, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.empty((size, size, 3), np.uint8)
    image[:] = background
    top, bottom, x0, x1 = box
    middle = (x0 + x1) // 2
    image[top:bottom, x0:middle], image[top:bottom, middle:x1] = left, right
    return image


def test_palette_ranks_the_most_colourful_cluster_first_and_covers_every_pixel():
    image = _two_tone(32, (128, 128, 128), BLUE, YELLOW, (4, 20, 4, 24))
    ranks, colours = palette(image)
    assert ranks.shape == (32, 32) and len(colours) == 3
    assert ranks[0, 0] == 2  # the grey background, the least colourful
    np.testing.assert_allclose(colours[2], (128, 128, 128), atol=2)


def test_palette_swap_puts_the_protected_photos_colours_on_the_sources_structure():
    source = _two_tone(32, (128, 128, 128), BLUE, YELLOW, (4, 20, 4, 24))  # a wide box on the left
    like = _two_tone(32, (240, 240, 240), RED, GREEN, (10, 30, 14, 30))  # another shape and place
    out = palette_swap(source, like)
    inside = {tuple(int(v) for v in c) for c in out[4:20, 4:24].reshape(-1, 3)}
    assert inside == {RED, GREEN}
    assert (out[25:, :] == 240).all(), "the grey background takes the photo's background, not an object colour"
    assert (out[4:20, 4:24] != like[4:20, 4:24]).any(), "the structure is the source's"


def test_lookalike_keep_rows_draws_n_recoloured_sources_and_refuses_nothing_to_draw_from():
    sources = np.stack([_two_tone(16, (128, 128, 128), BLUE, YELLOW, (2, 10, 2, 12))] * 3)
    protected = [np.stack([_two_tone(16, (250, 250, 250), RED, GREEN, (4, 14, 4, 14))] * 2)]
    rows = lookalike_keep_rows(sources, protected, 5, np.random.default_rng(0))
    assert rows.shape == (5, 16, 16, 3) and rows.dtype == np.uint8
    assert {tuple(int(v) for v in c) for c in rows[0, 2:10, 2:12].reshape(-1, 3)} == {RED, GREEN}
    assert lookalike_keep_rows(sources, protected, 0, np.random.default_rng(0)).shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match="at least one protected subject"):
        lookalike_keep_rows(sources, [], 2, np.random.default_rng(0))


def test_the_specs_lookalike_rows_are_added_to_the_kept_images(tiny_sd_folder, tmp_path):
    pipe = model_io.load_pipeline(str(tiny_sd_folder))
    photos = [str(p) for p in save_images(split("eval")[0].views(3, seed=0, size=64), tmp_path / "imgs")]

    def keep(rows: int) -> np.ndarray:
        spec = ProtectionSpec(
            base_model=str(tiny_sd_folder),
            subjects=[SubjectSpec(name="a", class_noun="dog", images=photos)],
            encoder=EncoderTraining(lookalike_rows=rows),
        )
        return keep_images(pipe, spec, class_samples(pipe, spec, 2), ["a photo"])

    plain, with_rows = keep(0), keep(4)
    assert len(with_rows) == len(plain) + 4
    np.testing.assert_array_equal(with_rows[: len(plain)], plain)
