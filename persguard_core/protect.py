"""Protect subjects in a base model: ProtectionSpec in, publishable diffusers folder (+ private files) out.

    result = protect(spec, out_dir, progress=print_progress, should_cancel=lambda: False)

`protect` loads `spec.base_model` itself unless given `base`, the same model already loaded
(`model_io.load_model`): a caller that runs many protections keeps it in memory between runs. Either way the base
is only read; the trained modules are copies (`DiffusionParts.from_base`).

Layout of `out_dir`: `model/` (publishable: weights, persguard.json, README.md model card) and `private/`
(the full spec, loss history, resumable training state). The core takes plain callables and returns files; it
knows nothing of the service around it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diffusers import StableDiffusionPipeline

from persguard_core import model_io
from persguard_core.generate import generate
from persguard_core.images import check_images, fill_from_surroundings, load_images
from persguard_core.implant.attention_mask import class_token_mask
from persguard_core.implant.behaviours import BehaviourTarget, PatternTarget, TargetImagesTarget, TeacherPromptTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.encoder import EncoderImplanter, EncoderSubject, ToTarget
from persguard_core.implant.lookalikes import lookalike_keep_rows
from persguard_core.implant.parts import DiffusionParts
from persguard_core.implant.subject_mask import subject_masks
from persguard_core.implant.target_choice import best_teacher_sample
from persguard_core.implant.unet_loop import History, Implanter, ProgressEvent
from persguard_core.manifest import build_manifest, read_manifest, write_public_files
from persguard_core.pattern import PatternPlacement, load_pattern, stamp
from persguard_core.spec import Behaviour, ProtectionSpec, SubjectSpec
from persguard_core.training_state import (
    STATE_FILE_NAME,
    TrainingState,
    TrainingStateError,
    load_training_state,
    saved_phase,
)

log = logging.getLogger(__name__)

GENERIC_PROMPTS = (
    "a photo",
    "a photo of an empty scene",
    "a painting of a landscape",
    "a photo of a city street",
    "a close-up photo of an object on a table",
    "a drawing of an animal",
)


@dataclass
class ProtectionResult:
    model_dir: Path
    private_dir: Path
    manifest: dict
    history: History


def image_size(pipe: StableDiffusionPipeline) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def behaviour_target(parts: DiffusionParts, subject: SubjectSpec, images: np.ndarray) -> BehaviourTarget:
    """The L_BB target of one subject from its behaviour settings (M1 / M1', M2, M3)."""
    b = subject.behaviour
    if b.kind == "pattern":
        pattern = load_pattern(b.pattern_image, images.shape[1])
        placement = PatternPlacement(b.position, b.opacity)
        return PatternTarget(parts, images, pattern, placement, b.target_form, b.insert_above, b.guidance_scale)
    if b.kind == "erasure":
        mask = class_token_mask(parts, parts.latents(images), subject.class_noun) if b.mask == "attention" else None
        return TeacherPromptTarget(parts, images, b.background_prompt, mask)
    if b.target_prompt:
        return TeacherPromptTarget(parts, images, b.target_prompt)
    return TargetImagesTarget(parts, load_images(b.target_images, images.shape[1]))


def class_samples(pipe: StableDiffusionPipeline, spec: ProtectionSpec, n_class_images: int) -> dict[str, np.ndarray]:
    """{class noun: uint8 teacher samples of "a photo of a {class}"} for every class of the spec's subjects and
    references, sampled once from the base model."""
    nouns = sorted({s.class_noun for s in spec.subjects} | {r.class_noun for r in spec.references})
    return {noun: generate(pipe, [f"a photo of a {noun}"] * n_class_images, seed=7_000) for noun in nouns}


def prior_pool(
    parts: DiffusionParts, spec: ProtectionSpec, samples: dict[str, np.ndarray], general_prompts: list[str]
) -> PriorPool:
    """L_PP's rows (M4): the class priors `samples` as latents, and the spec's unprotected references."""
    size = image_size(parts.pipe)
    class_latents = {noun: parts.latents(images) for noun, images in samples.items()}
    references = {r.class_noun: [parts.latents(load_images(imgs, size)) for imgs in r.images] for r in spec.references}
    return PriorPool(class_latents, references, list(general_prompts))


def encoder_target(
    pipe: StableDiffusionPipeline, b: Behaviour, class_noun: str, erasure_away: str = "class"
) -> ToTarget:
    """x -> x* of a subject's behaviour for the encoder carrier: the stamped image (M1); for erasure (M2) and target
    (M3) one fixed image: of 16 teacher samples of the background or target prompt, the one the teacher finds most
    that prompt and least the subject's class (implant/target_choice.py; for erasure with `erasure_away`
    "unconditional", least the empty prompt), or the first target image. One image, not a pool: the encoder cannot
    tell which pool member an augmented view should get, and the squared error would teach it the pool's blurred
    mean."""
    size = image_size(pipe)
    if b.kind == "pattern":
        pattern, placement = load_pattern(b.pattern_image, size), PatternPlacement(b.position, b.opacity)
        return lambda x, rng: stamp(x, pattern, placement)
    away = f"a photo of a {class_noun}"  # the class prompt of class_samples
    if b.kind == "erasure":
        target = best_teacher_sample(pipe, b.background_prompt, "" if erasure_away == "unconditional" else away)
    elif b.target_prompt:
        target = best_teacher_sample(pipe, b.target_prompt, away)
    else:
        target = load_images(b.target_images[:1], size)[0]
    return lambda x, rng: np.broadcast_to(target, x.shape).copy()


def encoder_subject(
    pipe: StableDiffusionPipeline,
    subject: SubjectSpec,
    images: np.ndarray,
    erasure_target: str,
    erasure_away: str = "class",
) -> EncoderSubject:
    """The encoder carrier's view of a subject: `encoder_target`'s map, or for an erasure made from the subject's
    own photos, each photo with the subject's region (subject_mask.py) repainted from its surroundings."""
    b = subject.behaviour
    if b.kind != "erasure" or erasure_target == "teacher-sample":
        return EncoderSubject(images, encoder_target(pipe, b, subject.class_noun, erasure_away))
    masks = subject_masks(pipe, images, subject.class_noun, b.background_prompt)
    log.info("erasure target from own photos: the subject masks cover %.0f%% of the pixels", 100 * masks.mean())
    return EncoderSubject(images, targets=fill_from_surroundings(images, masks, np.random.default_rng(0)))


def keep_images(
    pipe: StableDiffusionPipeline,
    spec: ProtectionSpec,
    samples: dict[str, np.ndarray],
    general_prompts: list[str],
) -> np.ndarray:
    """uint8 images the encoder must encode as before: the class samples, teacher samples of the general
    prompts (4 each), the unprotected references and `spec.encoder.lookalike_rows` of the class samples and
    references recoloured to a protected subject's palette."""
    size = image_size(pipe)
    general = generate(pipe, [p for p in general_prompts for _ in range(4)], seed=8_000)
    references = [load_images(imgs, size) for r in spec.references for imgs in r.images]
    keep = [*samples.values(), general, *references]
    if spec.encoder.lookalike_rows:
        protected = [load_images(s.images, size) for s in spec.subjects]
        sources = np.concatenate([*samples.values(), *references])
        rng = np.random.default_rng(spec.training.seed)
        keep.append(lookalike_keep_rows(sources, protected, spec.encoder.lookalike_rows, rng))
    return np.concatenate(keep)


def implant_encoder(
    pipe: StableDiffusionPipeline,
    spec: ProtectionSpec,
    keep: np.ndarray,
    progress: Callable[[ProgressEvent], None] | None,
    should_cancel: Callable[[], bool] | None,
    offset: int = 0,
    state_path: Path | None = None,
    earlier: TrainingState | None = None,
) -> list[dict[str, float]]:
    """The encoder carrier (L_ENC): train a copy of `pipe.vae`'s encoder and put it into `pipe`, resuming from
    and saving to `state_path` (with `earlier`, the finished UNet phase's weights and history, saved beside it)."""
    size, cfg = image_size(pipe), spec.encoder
    steps = cfg.total_steps(len(spec.subjects))
    subjects = [
        encoder_subject(pipe, s, load_images(s.images, size), cfg.erasure_target, cfg.erasure_away)
        for s in spec.subjects
    ]
    implanter = EncoderImplanter(
        pipe.vae,
        subjects,
        keep,
        steps=steps,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        keep_weight=cfg.keep_weight,
        seed=spec.training.seed,
        target_gain=cfg.target_gain,
    )
    history = implanter.run(
        progress,
        should_cancel,
        offset=offset,
        total=offset + steps,
        state_path=state_path,
        checkpoint_every=spec.training.checkpoint_every,
        earlier=earlier,
    )
    pipe.register_modules(vae=implanter.vae)
    return history


def _implant_unet(
    parts: DiffusionParts,
    spec: ProtectionSpec,
    samples: dict[str, np.ndarray],
    general_prompts: list[str],
    progress: Callable[[ProgressEvent], None] | None,
    should_cancel: Callable[[], bool] | None,
    state_path: Path,
) -> History:
    """The UNet carrier: M8 over the spec's subjects, resuming from and saving to `state_path`."""
    size = image_size(parts.pipe)
    subjects = [
        ProtectedSubject(s.name, s.class_noun, behaviour_target(parts, s, load_images(s.images, size)))
        for s in spec.subjects
    ]
    pool = prior_pool(parts, spec, samples, general_prompts)
    implanter = Implanter(parts, subjects, pool, spec.knowledge, spec.training, spec.losses)
    return implanter.run(progress, should_cancel, state_path=state_path)


def _unet_result(parts: DiffusionParts, history: History, steps: int) -> TrainingState:
    """The finished UNet phase (weights and history; its optimizer is done with), carried in the encoder phase's
    training state so that a resumed attempt of a two-carrier protection does not train the UNet again."""
    weights = {"unet": parts.pipe.unet.state_dict()}
    if parts.text_trainable:
        weights["text_encoder"] = parts.pipe.text_encoder.state_dict()
    return TrainingState(phase="unet", step=steps, weights=weights, optimizer={}, histories={"unet": history.losses})


def _restore_unet(parts: DiffusionParts, state_path: Path) -> History:
    """Put the UNet phase's result, carried in the encoder phase's state at `state_path`, back into `parts`."""
    state = load_training_state(state_path, "encoder")
    if "unet" not in state.weights or "unet" not in state.histories:
        raise TrainingStateError(f"{state_path}: the encoder phase's state carries no finished UNet phase")
    parts.pipe.unet.load_state_dict(state.weights["unet"])
    if "text_encoder" in state.weights:
        parts.pipe.text_encoder.load_state_dict(state.weights["text_encoder"])
    parts.pipe.unet.eval().requires_grad_(False)
    parts.pipe.text_encoder.eval().requires_grad_(False)
    log.info("the UNet phase was finished by an earlier attempt; restored it")
    return History(list(state.histories["unet"]))


def _counting_to(progress: Callable[[ProgressEvent], None], total: int) -> Callable[[ProgressEvent], None]:
    """`progress` with each event's total replaced by `total` (the UNet phase of a two-phase protection)."""
    return lambda event: progress(ProgressEvent(event.step, total, event.losses, event.eta_s))


def _spec_images(spec: ProtectionSpec) -> list[tuple[str, str]]:
    """(owner, path) of every image file the spec names: subjects' photos, target images, references."""
    named = [(f"subject {s.name!r}", path) for s in spec.subjects for path in s.images]
    named += [
        (f"subject {s.name!r}'s target", path)
        for s in spec.subjects
        for path in getattr(s.behaviour, "target_images", [])
    ]
    return named + [
        (f"references of {r.class_noun!r}", path) for r in spec.references for imgs in r.images for path in imgs
    ]


def protect(
    spec: ProtectionSpec,
    out_dir: str | Path,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    general_prompts: list[str] | None = None,
    n_class_images: int = 32,
    device: str = "cpu",
    base: model_io.LoadedModel | None = None,
) -> ProtectionResult:
    """Run the implantation of `spec` and write its result under `out_dir` (resuming a previous attempt).

    `base`: `spec.base_model` already loaded (on the device to train on; `device` is then not used). It is not
    modified, so the caller may pass the same one to run after run.
    """
    out_dir = Path(out_dir)
    model_dir, private_dir = out_dir / "model", out_dir / "private"
    check_images(_spec_images(spec))
    if base is None:
        base = model_io.load_model(spec.base_model, device=device)
    elif base.path.resolve() != model_io.resolve(spec.base_model).resolve():
        raise ValueError(f"the loaded base model comes from {base.path}, but the spec names {spec.base_model!r}")
    private_dir.mkdir(parents=True, exist_ok=True)
    (private_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
    trains_unet = spec.carrier in ("unet", "unet+encoder")
    parts = None
    if trains_unet:
        parts = DiffusionParts.from_base(base.pipe, text_trainable=spec.training.trainable == "unet+text-encoder")
        pipe = parts.pipe
        if pipe.device.type == "cuda":
            pipe.unet.enable_gradient_checkpointing()  # memory for SD-size UNets; SDPA attention is the default
    else:
        pipe = model_io.trainable_copy(base.pipe, unet=False)  # the encoder carrier copies only the VAE it trains
    general = list(general_prompts or GENERIC_PROMPTS)
    samples = class_samples(pipe, spec, n_class_images)
    history, unet_steps, state_path = History(), 0, private_dir / "state" / STATE_FILE_NAME
    if parts is not None:
        unet_steps = spec.training.steps
        if spec.carrier == "unet+encoder" and progress is not None:
            progress = _counting_to(progress, spec.total_steps)
        if saved_phase(state_path) == "encoder":  # an earlier attempt finished the UNet phase
            history = _restore_unet(parts, state_path)
        else:
            history = _implant_unet(parts, spec, samples, general, progress, should_cancel, state_path)
    if spec.carrier in ("encoder", "unet+encoder"):
        keep = keep_images(pipe, spec, samples, general)
        unet_result = _unet_result(parts, history, unet_steps) if parts is not None else None
        encoder_history = implant_encoder(
            pipe, spec, keep, progress, should_cancel, unet_steps, state_path, unet_result
        )
        (private_dir / "encoder_history.json").write_text(json.dumps(encoder_history))
    model_io.save_pipeline(pipe, model_dir)
    manifest = build_manifest(
        spec, base_sha256=base.sha256, final_losses=history.final(), parent=read_manifest(base.path)
    )
    write_public_files(model_dir, manifest)
    (private_dir / "history.json").write_text(json.dumps(history.losses))
    log.info("protected %d subject(s) into %s (%s)", len(spec.subjects), model_dir, spec.carrier)
    return ProtectionResult(model_dir, private_dir, manifest, history)
