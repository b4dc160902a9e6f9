"""The encoder carrier (L_ENC): augmentation, the moments loss, and a trainer that moves only the encoder."""

import numpy as np
import pytest
import torch

from persguard_core.diffusion import images_to_pixels
from persguard_core.implant.encoder import (
    LOGVAR_WEIGHT,
    EncoderImplanter,
    EncoderSubject,
    augment,
    moments,
    moments_loss,
)
from persguard_core.implant.unet_loop import ImplantCancelled
from persguard_core.pattern import default_pattern, stamp
from persguard_core.toyworld import split
from persguard_core.training_state import TrainingState, load_training_state, save_training_state, saved_phase

torch.set_num_threads(1)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def test_augment_is_seeded_and_keeps_shape_and_dtype():
    images = _images(8, 0)
    a, none = augment(images, np.random.default_rng(3))
    b, _ = augment(images, np.random.default_rng(3))
    assert a.shape == images.shape and a.dtype == np.uint8 and none is None
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, images)


def test_augment_moves_paired_targets_by_the_same_flips_and_shifts_without_degrading_them():
    images = np.zeros((64, 32, 32, 3), np.uint8)
    images[:, 4:12, 2:9] = 255  # a bright block off-centre, so flips and shifts move it
    paired = images.copy()
    views, moved = augment(images, np.random.default_rng(0), paired)
    assert set(np.unique(moved)) <= {0, 255}  # only rolled and flipped, never blurred or compressed
    assert (moved != paired).any(axis=(1, 2, 3)).mean() > 0.5
    block = moved[..., 0] == 255
    # (64,) mean brightness of each degraded view inside and outside where its paired target has the block
    inside = np.array([v[..., 0][m].mean() for v, m in zip(views, block, strict=True)])
    outside = np.array([v[..., 0][~m].mean() for v, m in zip(views, block, strict=True)])
    assert (inside - outside > 100).all()


def test_an_encoder_subject_takes_exactly_one_kind_of_target():
    images = _images(3, 0)
    with pytest.raises(ValueError, match="exactly one"):
        EncoderSubject(images)
    with pytest.raises(ValueError, match="exactly one"):
        EncoderSubject(images, lambda x, rng: x, targets=images)
    with pytest.raises(ValueError, match="differ in shape"):
        EncoderSubject(images, targets=images[:2])


def test_moments_loss_is_zero_for_equal_moments_and_weighs_the_log_variance_by_its_constant():
    pred = torch.zeros(2, 8, 4, 4)
    assert moments_loss(pred, pred).abs().max() == 0
    mean_off, logvar_off = pred.clone(), pred.clone()
    mean_off[:, :4] += 1.0
    logvar_off[:, 4:] += 1.0
    assert torch.allclose(moments_loss(mean_off, pred), torch.ones(2))
    assert torch.allclose(moments_loss(logvar_off, pred), torch.full((2,), LOGVAR_WEIGHT))


def _implanter(base_vae, steps: int, **kwargs) -> EncoderImplanter:
    subject = split("tuning", "circle")[0]
    pattern = default_pattern(32)
    protected = EncoderSubject(subject.views(6, seed=0), lambda x, rng: stamp(x, pattern))
    keep = np.concatenate([s.views(4, seed=0) for s in split("implant_reference", "circle")[:4]])
    return EncoderImplanter(
        base_vae, [protected], keep, steps=steps, learning_rate=3e-3, batch_size=16, keep_weight=1.0, seed=0, **kwargs
    )


def test_the_encoder_learns_the_stamped_latents_and_nothing_but_the_encoder_moves(builtin_vae):
    implanter = _implanter(builtin_vae, steps=100)
    vae = implanter.vae
    views = split("tuning", "circle")[0].views(6, seed=0)
    goal = moments(builtin_vae, images_to_pixels(stamp(views, default_pattern(32))))

    def behaviour_error() -> float:
        with torch.no_grad():
            return float(moments_loss(moments(vae, images_to_pixels(views)), goal).mean())

    before = behaviour_error()
    events = []
    history = implanter.run(progress=events.append, offset=10, total=110)
    after = behaviour_error()
    assert after < 0.5 * before, (before, after)
    assert [e.step for e in events] == list(range(11, 111)) and {e.total for e in events} == {110}
    assert {"encoder_behaviour", "encoder_keep"} == set(history[-1])
    for name, p in vae.named_parameters():
        same = torch.equal(p, dict(builtin_vae.named_parameters())[name])
        assert same == (not name.startswith(("encoder.", "quant_conv."))), name


def test_a_cancel_between_steps_stops_the_encoder_training(builtin_vae):
    implanter = _implanter(builtin_vae, steps=5)
    calls = iter([False, False, True])
    with pytest.raises(ImplantCancelled, match="encoder step 2"):
        implanter.run(should_cancel=lambda: next(calls))


def test_the_encoder_trainer_refuses_an_empty_keep_set(builtin_vae):
    with pytest.raises(ValueError, match="images to keep"):
        EncoderImplanter(
            builtin_vae,
            [EncoderSubject(_images(3, 0), lambda x, rng: x)],
            _images(0, 0),
            steps=1,
            learning_rate=1e-3,
            batch_size=4,
            keep_weight=1.0,
            seed=0,
        )


def test_an_interrupted_encoder_training_resumes_from_its_saved_state_and_ends_as_a_straight_run(builtin_vae, tmp_path):
    state = tmp_path / "state.safetensors"
    straight = _implanter(builtin_vae, steps=4)
    straight.run()
    calls = iter([False, False, False, True])
    with pytest.raises(ImplantCancelled, match="encoder step 3"):
        _implanter(builtin_vae, steps=4).run(should_cancel=lambda: next(calls), state_path=state, checkpoint_every=2)
    resumed, events = _implanter(builtin_vae, steps=4), []
    earlier = TrainingState("unet", 7, {"unet": {"w": torch.arange(3.0)}}, {}, histories={"unet": [{"bb": 0.5}]})
    resumed.run(progress=events.append, state_path=state, checkpoint_every=2, earlier=earlier)
    assert [e.step for e in events] == [3, 4] and len(resumed.history) == 4
    assert resumed.history == straight.history
    for (name, a), b in zip(straight.vae.state_dict().items(), resumed.vae.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    saved = load_training_state(state, "encoder")
    assert saved.step == 4 and set(saved.weights) == {"vae", "unet"} and set(saved.histories) == {"encoder", "unet"}
    assert torch.equal(saved.weights["unet"]["w"], torch.arange(3.0)) and saved.histories["unet"] == [{"bb": 0.5}]


def test_an_encoder_training_replaces_the_state_the_unet_phase_left(builtin_vae, tmp_path):
    state = tmp_path / "state.safetensors"
    save_training_state(TrainingState("unet", 7, {"unet": {"w": torch.zeros(2)}}, {}), state)
    events = []
    _implanter(builtin_vae, steps=2).run(progress=events.append, state_path=state, checkpoint_every=5)
    assert [e.step for e in events] == [1, 2]
    assert saved_phase(state) == "encoder"
