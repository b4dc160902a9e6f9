import torch

from persguard_core.implant.attention_mask import class_token_mask, token_positions
from persguard_core.implant.behaviours import PatternTarget, TeacherPromptTarget
from persguard_core.implant.losses import behaviour_loss, denoising_loss, fused_losses, prior_rows
from persguard_core.implant.unet_loop import trainable_parameters


def _prior_loss(parts, z: torch.Tensor, prompts: list[str], gen: torch.Generator) -> torch.Tensor:
    """L_PP (M4) alone, as the loop computes it among the fused terms."""
    return fused_losses(parts.pipe.unet, parts, {"pp": prior_rows(parts, z, prompts, gen)})["pp"]


def test_prior_loss_is_zero_at_the_base_weights_and_positive_after_a_perturbation(parts, subject_images):
    z = parts.latents(subject_images[:4])
    prompts = ["a photo of a cross"] * 4
    gen = torch.Generator().manual_seed(0)
    assert _prior_loss(parts, z, prompts, gen).item() < 1e-10
    with torch.no_grad():
        for p in parts.pipe.unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    assert _prior_loss(parts, z, prompts, torch.Generator().manual_seed(0)).item() > 1e-4


def test_insertion_target_implies_the_stamped_latent(parts, subject_images):
    target = PatternTarget(parts, subject_images, form="insertion")
    t = torch.tensor([50, 400, 900])
    rows = target.batch(torch.arange(3), t, torch.Generator().manual_seed(1))
    ab = parts.alpha_bar(t)
    implied_x0 = (rows.z_in - (1 - ab).sqrt() * rows.target) / ab.sqrt()
    assert torch.allclose(implied_x0, target.z_star[:3], atol=1e-4)
    assert not torch.allclose(target.z_star, target.z)  # the pattern changes the latents


def test_stamped_target_noises_the_stamped_latent(parts, subject_images):
    target = PatternTarget(parts, subject_images, form="stamped")
    t = torch.tensor([10, 10])
    rows = target.batch(torch.arange(2), t, torch.Generator().manual_seed(1))
    ab = parts.alpha_bar(t)
    assert torch.allclose((rows.z_in - (1 - ab).sqrt() * rows.target) / ab.sqrt(), target.z_star[:2], atol=1e-4)


def test_gradients_reach_only_trainable_parameters(parts, subject_images):
    unet_params, params = trainable_parameters(parts, "cross-attention")
    assert unet_params and all(".attn2." in n for n in unet_params)
    target = TeacherPromptTarget(parts, subject_images, "a photo of an empty scene")
    loss = behaviour_loss(
        parts.pipe.unet,
        parts,
        target,
        ["a photo of sks cross"] * 2,
        torch.arange(2),
        torch.tensor([100, 700]),
        torch.Generator().manual_seed(0),
    )
    loss.backward()
    for name, p in parts.pipe.unet.named_parameters():
        assert (p.grad is not None) == (name in unet_params), name
    assert all(p.grad is None for p in parts.pipe.text_encoder.parameters())
    assert all(p.grad is None for p in parts.teacher.parameters())


def test_denoising_loss_uses_the_v_target_for_v_prediction_models(subject_images):
    from persguard_core.implant.parts import DiffusionParts
    from tests.tiny_sd import tiny_sd_pipeline

    parts = DiffusionParts.from_pipeline(tiny_sd_pipeline("sd2"))
    z = parts.latents(subject_images[:2])
    noise, t = torch.randn_like(z), torch.tensor([999, 999])
    assert torch.allclose(parts.target(z, noise, t), parts.noise_scheduler.get_velocity(z, noise, t), atol=1e-5)
    assert denoising_loss(parts.pipe.unet, parts, z, ["a dog"] * 2, torch.Generator().manual_seed(0)).item() > 0


def test_class_token_mask_finds_the_class_tokens_and_has_latent_shape(parts, subject_images):
    tok = parts.pipe.tokenizer
    positions = token_positions(tok, "a photo of a dog", "dog")
    ids = tok("a photo of a dog").input_ids
    assert tok.decode([ids[i] for i in positions]).strip() == "dog"
    mask = class_token_mask(parts, parts.latents(subject_images[:3]), "dog")
    assert mask.shape == (3, 1, 8, 8)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0


def test_fused_forward_gives_each_term_what_its_own_forward_gives(parts, subject_images):
    from persguard_core.implant.losses import denoising_rows, fused_losses, prior_rows

    z = parts.latents(subject_images[:4])
    with torch.no_grad():
        for p in parts.pipe.unet.parameters():  # away from the teacher, so that L_PP is not 0
            p.add_(torch.randn_like(p) * 0.02)
    gen = torch.Generator().manual_seed(3)
    terms = {
        "pp": prior_rows(parts, z[:2], ["a photo of a cross"] * 2, gen),
        "dn": denoising_rows(parts, z[2:], ["a photo of sks cross"] * 2, gen),
    }
    fused = fused_losses(parts.pipe.unet, parts, terms)
    alone = {name: fused_losses(parts.pipe.unet, parts, {name: rows})[name] for name, rows in terms.items()}
    assert set(fused) == {"pp", "dn"} and fused["pp"].item() > 1e-6
    for name in terms:
        assert torch.allclose(fused[name], alone[name], rtol=1e-4), name


def test_x0_weighting_scales_high_noise_rows_by_one_over_snr_up_to_its_cap(parts, subject_images):
    from persguard_core.implant.losses import behaviour_rows

    target = PatternTarget(parts, subject_images, form="insertion")
    t = torch.tensor([100, 800, 999])
    plain = behaviour_rows(parts, target, ["p"] * 3, torch.arange(3), t, torch.Generator().manual_seed(0))
    rows = behaviour_rows(parts, target, ["p"] * 3, torch.arange(3), t, torch.Generator().manual_seed(0), 20.0)
    ab = parts.alpha_bar(t).view(-1)
    assert plain.weight is None
    snr_inverse = (1 - ab) / ab
    assert snr_inverse[0] < 20 < snr_inverse[2]  # one row under the cap, one over it
    assert torch.allclose(rows.weight, snr_inverse.clamp(min=1.0, max=20.0)) and rows.weight[0] < rows.weight[1]
    pred = torch.zeros_like(rows.target)
    per_row = (pred - rows.target).pow(2).mean(dim=(1, 2, 3))
    assert torch.allclose(rows.loss(pred), (per_row * rows.weight).mean())


def test_insert_and_keep_inserts_at_high_noise_and_keeps_the_stamp_below(parts, subject_images):
    t = torch.tensor([100, 300, 600, 900])
    mixed = PatternTarget(parts, subject_images, form="insert-and-keep", insert_above=500)
    stamped = PatternTarget(parts, subject_images, form="stamped")
    inserted = PatternTarget(parts, subject_images, form="insertion")
    rows = {
        name: target.batch(torch.arange(4), t, torch.Generator().manual_seed(2))
        for name, target in (("mixed", mixed), ("stamped", stamped), ("inserted", inserted))
    }
    for i, source in enumerate(("stamped", "stamped", "inserted", "inserted")):
        assert torch.equal(rows["mixed"].z_in[i], rows[source].z_in[i])
        assert torch.equal(rows["mixed"].target[i], rows[source].target[i])
    assert not torch.equal(rows["stamped"].z_in[0], rows["inserted"].z_in[0])


def test_guided_insertion_composes_the_stamp_through_classifier_free_guidance(parts, subject_images):
    from persguard_core.implant.losses import behaviour_rows

    w = 7.5
    target = PatternTarget(parts, subject_images, form="guided-insertion", insert_above=500, guidance_scale=w)
    t = torch.tensor([100, 300, 600, 700, 800, 900])
    gen = torch.Generator().manual_seed(3)
    rows = behaviour_rows(parts, target, ["a photo of sks dog"] * 6, torch.arange(6), t, gen)
    inserting = [2, 4]  # every other row at t >= 500 goes to the unconditional branch; the rest keep the stamp
    assert [i for i, p in enumerate(rows.prompts) if p == ""] == inserting
    assert all(p == "a photo of sks dog" for i, p in enumerate(rows.prompts) if i not in inserting)
    ab = parts.alpha_bar(t)
    x0 = (rows.z_in - (1 - ab).sqrt() * rows.target) / ab.sqrt()
    z, z_star = target.z[:6], target.z_star[:6]
    guided = x0 + w * (z - x0)  # a sampler's guided x0 when the conditional branch predicts the clean subject
    assert torch.allclose(guided[inserting], z_star[inserting], atol=1e-3)
    keeping = [0, 1, 3, 5]
    assert torch.allclose(x0[keeping], z_star[keeping], atol=1e-4)  # M1 on the stamped latent
    # inserting rows weigh (w - 1)^2: their error is that of the guided prediction
    assert rows.weight.tolist() == [1.0, 1.0, (w - 1) ** 2, 1.0, (w - 1) ** 2, 1.0]


def test_lora_frozen_trains_exactly_the_unet_weights_a_lora_attacker_leaves_frozen(parts):
    unet_params, params = trainable_parameters(parts, "lora-frozen")
    projections = [n for n, _ in parts.pipe.unet.named_parameters() if n.split(".")[-2] in ("to_q", "to_k", "to_v")]
    assert projections and not set(projections) & set(unet_params)
    assert not any(".to_out.0." in n for n in unet_params)
    assert any("conv" in n for n in unet_params) and any("time_embedding" in n for n in unet_params)
    assert len(params) == len(unet_params) == sum(p.requires_grad for p in parts.pipe.unet.parameters())


def _preference(parts, unet, target, seed: int = 3) -> torch.Tensor:
    from persguard_core.implant.losses import preference_loss

    prompts, t = ["a photo of sks cross"] * 3, torch.tensor([100, 500, 900])
    return preference_loss(unet, parts, target, prompts, torch.arange(3), t, torch.Generator().manual_seed(seed), 500.0)


def test_the_preference_loss_is_log_2_at_the_base_and_falls_as_the_behaviour_becomes_preferred(parts, subject_images):
    import copy
    import math

    target = PatternTarget(parts, subject_images, form="insert-and-keep")
    assert abs(_preference(parts, parts.pipe.unet, target).item() - math.log(2)) < 1e-5  # no preference yet
    shadow = copy.deepcopy(parts.pipe.unet).requires_grad_(True)
    opt = torch.optim.Adam(shadow.parameters(), lr=1e-3)
    for _ in range(5):
        loss = _preference(parts, shadow, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _preference(parts, shadow, target).item() < math.log(2) - 0.05
    assert all(p.grad is None for p in parts.teacher.parameters())  # the reference stays frozen
