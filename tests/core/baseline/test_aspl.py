import numpy as np
import pytest
import torch

from persguard_core.baseline import ASPLConfig, aspl
from persguard_core.baseline.aspl import _parts
from persguard_core.implant.losses import denoising_loss
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline

TINY = ASPLConfig(rounds=2, pgd_steps=3, surrogate_steps=2)


@pytest.fixture(scope="module")
def subject():
    return split("eval")[0]


@pytest.fixture(scope="module")
def images(subject) -> np.ndarray:
    """(4, 64, 64, 3) uint8 views of one eval subject at the tiny model's resolution."""
    return subject.views(4, seed=0, size=64)


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline("sd1")


@pytest.fixture(scope="module")
def protected(pipe, images, subject) -> np.ndarray:
    return aspl(pipe, images, subject.class_noun, TINY)


def _max_deviation(a: np.ndarray, b: np.ndarray) -> float:
    """L-inf distance in [-1, 1] pixel units."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / 127.5)


def _fixed_draw_loss(pipe, images: np.ndarray, prompt: str, draws: int = 128) -> float:
    """The base UNet's denoising loss averaged over `draws` fixed (t, noise) pairs per image, t spread over the
    schedule; the same pairs for any image set of the same size, so two sets compare fairly."""
    parts = _parts(pipe)
    z = parts.latents(images).repeat(draws, 1, 1, 1)  # (draws * N, 4, h, w)
    t = torch.linspace(0, parts.noise_scheduler.config.num_train_timesteps - 1, len(z)).long()
    with torch.no_grad():
        return denoising_loss(pipe.unet, parts, z, [prompt] * len(z), torch.Generator().manual_seed(123), t).item()


@pytest.mark.parametrize("version", ["sd1", "sd2"])
def test_perturbation_fills_but_never_leaves_the_eps_ball(version, images, subject):
    # alpha * pgd_steps * rounds = 0.12 > eps: the projection must bind; the uint8 rounding must not leave the ball
    config = ASPLConfig(alpha=0.02, rounds=2, pgd_steps=3, surrogate_steps=1)
    out = aspl(tiny_sd_pipeline(version), images, subject.class_noun, config)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert _max_deviation(out, images) <= config.eps
    assert _max_deviation(out, images) == pytest.approx(np.floor(config.eps * 127.5) / 127.5)


def test_default_step_size_changes_the_images_within_eps(protected, images):
    assert _max_deviation(protected, images) <= TINY.eps
    assert np.abs(protected.astype(int) - images.astype(int)).mean() > 0.5


def test_protection_raises_the_denoising_loss_more_than_random_noise_of_the_same_budget(pipe, images, subject):
    # The surrogate starts at the base UNet and moves ~1e-5 per weight at lr 5e-6, so the base UNet stands in
    # for it. A random-weight UNet's loss barely depends on the image: 16 draws per PGD gradient (EOT) give a
    # consistent ascent direction where the reference's single draw is mostly noise.
    prompt = TINY.instance_prompt(subject.class_noun)
    out = aspl(pipe, images, subject.class_noun, ASPLConfig(rounds=2, pgd_steps=3, surrogate_steps=2, pgd_samples=16))
    signs = np.random.default_rng(0).choice([-6, 6], size=images.shape)  # +-6 levels: inside eps = 6.375 levels
    noisy = np.clip(images.astype(int) + signs, 0, 255).astype(np.uint8)
    clean_loss = _fixed_draw_loss(pipe, images, prompt)
    gain = _fixed_draw_loss(pipe, out, prompt) - clean_loss
    assert gain > 0
    assert gain > 2 * abs(_fixed_draw_loss(pipe, noisy, prompt) - clean_loss)


def test_input_pipeline_weights_are_unchanged(images, subject):
    pipe = tiny_sd_pipeline("sd1")
    modules = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in modules.items()}
    aspl(pipe, images, subject.class_noun, TINY)
    for name, module in modules.items():
        after = module.state_dict()
        assert all(torch.equal(before[name][k], after[k]) for k in after), name
        assert all(p.grad is None for p in module.parameters()), name


def test_same_seed_gives_the_same_output_and_another_seed_a_different_one(pipe, images, subject, protected):
    assert np.array_equal(aspl(pipe, images, subject.class_noun, TINY), protected)
    other = aspl(pipe, images, subject.class_noun, ASPLConfig(rounds=2, pgd_steps=3, surrogate_steps=2, seed=1))
    assert not np.array_equal(other, protected)


def test_progress_is_reported_once_per_round(pipe, images, subject):
    calls = []
    aspl(pipe, images[:2], subject.class_noun, TINY, progress=lambda r, n, loss: calls.append((r, n, loss)))
    assert [(r, n) for r, n, _ in calls] == [(0, 2), (1, 2)]
    assert all(np.isfinite(loss) and loss > 0 for _, _, loss in calls)


def test_prior_images_change_the_surrogate_and_so_the_output(pipe, images, subject, protected):
    prior = split("eval")[1].views(2, seed=0, size=64)
    assert not np.array_equal(aspl(pipe, images, subject.class_noun, TINY, prior_images=prior), protected)


def test_a_budget_below_one_uint8_level_returns_the_input(pipe, images, subject):
    config = ASPLConfig(eps=0.5 / 127.5, alpha=0.5 / 127.5, rounds=1, pgd_steps=2, surrogate_steps=1)
    assert np.array_equal(aspl(pipe, images[:2], subject.class_noun, config), images[:2])


def test_no_images_is_refused(pipe):
    with pytest.raises(ValueError, match="at least one image"):
        aspl(pipe, np.zeros((0, 64, 64, 3), np.uint8), "cross", TINY)


def test_float_images_are_refused(pipe, images):
    with pytest.raises(ValueError, match="uint8"):
        aspl(pipe, images.astype(np.float32), "cross", TINY)
