import numpy as np
import pytest
import torch

from persguard_core.implant.behaviours import PatternTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.parts import DiffusionParts
from persguard_core.implant.unet_loop import ImplantCancelled, Implanter
from persguard_core.spec import Knowledge, LossWeights, Training
from persguard_core.toyworld import split
from persguard_core.training_state import TrainingState, TrainingStateError, save_training_state
from tests.tiny_sd import tiny_sd_pipeline


def _implanter(parts, images, steps=4, weights: LossWeights | None = None, **training) -> Implanter:
    z_ref = parts.latents(split("eval")[1].views(4, seed=0, size=64))
    pool = PriorPool({"cross": z_ref}, references={"cross": [z_ref]}, general_prompts=["a photo"])
    subject = ProtectedSubject("s", "cross", PatternTarget(parts, images))
    cfg = Training(steps=steps, batch_size=2, inner_steps=2, checkpoint_every=2, **training)
    return Implanter(parts, [subject], pool, Knowledge(), cfg, weights or LossWeights(release=1.0))


def _weights(parts) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parts.pipe.unet.parameters()]


def test_all_loss_terms_run_and_change_the_weights(parts, subject_images):
    before = _weights(parts)
    history = _implanter(parts, subject_images).run()
    assert set(history.losses[-1]) == {"bb", "pp", "br", "rel"}
    assert all(np.isfinite(v) for row in history.losses for v in row.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(parts), strict=True))


def test_the_preference_form_of_retention_runs_and_changes_the_weights(parts, subject_images):
    before = _weights(parts)
    weights = LossWeights(release=0.0, retention_form="preference")
    history = _implanter(parts, subject_images, weights=weights).run()
    assert set(history.losses[-1]) == {"bb", "pp", "br"} and all(np.isfinite(r["br"]) for r in history.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(parts), strict=True))


def test_same_seed_gives_the_same_weights_and_resume_matches_a_straight_run(subject_images, tmp_path):
    straight = DiffusionParts.from_pipeline(tiny_sd_pipeline("sd1"))
    straight_history = _implanter(straight, subject_images, steps=4).run()

    state = tmp_path / "state.safetensors"
    resumed = DiffusionParts.from_pipeline(tiny_sd_pipeline("sd1"))
    _implanter(resumed, subject_images, steps=2).run(state_path=state)
    fresh = DiffusionParts.from_pipeline(tiny_sd_pipeline("sd1"))  # a new process: base weights again
    implanter = _implanter(fresh, subject_images, steps=4)
    implanter.run(state_path=state)
    assert implanter.step == 4 and implanter.history.losses == straight_history.losses
    for a, b in zip(_weights(straight), _weights(fresh), strict=True):
        assert torch.equal(a, b)


def test_the_unet_loop_refuses_to_resume_from_the_encoder_phases_state(parts, subject_images, tmp_path):
    state = tmp_path / "state.safetensors"
    save_training_state(TrainingState("encoder", 3, {"vae": {"w": torch.zeros(2)}}, {}), state)
    with pytest.raises(TrainingStateError, match="'encoder' phase, not of 'unet'"):
        _implanter(parts, subject_images, steps=4).run(state_path=state)


def test_cancel_stops_between_steps(parts, subject_images):
    calls = []
    implanter = _implanter(parts, subject_images, steps=10)
    with pytest.raises(ImplantCancelled, match="step 2"):
        implanter.run(should_cancel=lambda: len(calls) >= 2, progress=calls.append)
    assert [e.step for e in calls] == [1, 2] and calls[0].total == 10 and calls[0].eta_s >= 0


def test_activation_only_skips_the_behaviour_loss_at_theta(parts, subject_images):
    history = _implanter(parts, subject_images, steps=2, activation_only=True).run()
    assert "bb" not in history.losses[-1] and "br" in history.losses[-1]


def test_full_unroll_runs_k_attacker_steps_every_outer_step(parts, subject_images):
    implanter = _implanter(parts, subject_images, steps=2, unroll="full")
    implanter.run()
    assert implanter.attacker.mode == "full" and implanter.attacker.done == 2  # K=2 steps since the last restart


def test_look_keyed_prompts_cover_plain_and_generic_prompts_while_the_attacker_keeps_the_trigger(parts, subject_images):
    trigger_keyed = _implanter(parts, subject_images, steps=1)
    assert trigger_keyed.keyed["cross"] == ["a photo of sks cross"]
    look_keyed = _implanter(parts, subject_images, steps=1, behaviour_prompts="any")
    prompts = set(look_keyed.keyed["cross"])
    assert {"a photo of sks cross", "a photo of a cross", "", "a photo"} <= prompts
    assert look_keyed.triggers["cross"] == ["a photo of sks cross"]  # simulated attacks still use p(v, k)
    drawn = {p for _ in range(20) for p in look_keyed._prompts("cross", 4)}
    assert len(drawn) > 1 and drawn <= prompts


def test_prior_batch_size_sets_the_rows_of_l_pp(parts, subject_images):
    implanter = _implanter(parts, subject_images, steps=1, prior_batch_size=6)
    asked = []
    rows = implanter.pool.rows
    implanter.pool.rows = lambda n, *args: asked.append(n) or rows(n, *args)
    implanter.run()
    assert asked == [6]
