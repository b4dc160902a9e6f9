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
from PIL import Image

from persguard_core import model_io
from persguard_core.generate import generate
from persguard_core.images import file_sha256, load_images
from persguard_core.implant.attention_mask import class_token_mask
from persguard_core.implant.behaviours import BehaviourTarget, PatternTarget, TargetImagesTarget, TeacherPromptTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.loop import History, Implanter, ProgressEvent
from persguard_core.implant.parts import DiffusionParts
from persguard_core.manifest import build_manifest, read_manifest, write_public_files
from persguard_core.pattern import PatternPlacement
from persguard_core.spec import ProtectionSpec, SubjectSpec

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


def image_size(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def behaviour_target(parts: DiffusionParts, subject: SubjectSpec, images: np.ndarray) -> BehaviourTarget:
    """The L_BB target of one subject from its behaviour settings (M1 / M1', M2, M3)."""
    b = subject.behaviour
    if b.kind == "pattern":
        pattern = None
        if b.pattern_image is not None:
            pattern = np.asarray(Image.open(b.pattern_image).convert("RGBA"), dtype=np.uint8)
        placement = PatternPlacement(b.position, b.opacity)
        return PatternTarget(parts, images, pattern, placement, b.target_form, b.insert_above, b.guidance_scale)
    if b.kind == "erasure":
        mask = class_token_mask(parts, parts.latents(images), subject.class_noun) if b.mask == "attention" else None
        return TeacherPromptTarget(parts, images, b.background_prompt, mask)
    if b.target_prompt:
        return TeacherPromptTarget(parts, images, b.target_prompt)
    return TargetImagesTarget(parts, load_images(b.target_images, images.shape[1]))


def prior_pool(
    parts: DiffusionParts, spec: ProtectionSpec, n_class_images: int, general_prompts: list[str]
) -> PriorPool:
    """Class priors sampled once from the base model (the teacher), and the spec's unprotected references."""
    size = image_size(parts.pipe)
    nouns = sorted({s.class_noun for s in spec.subjects} | {r.class_noun for r in spec.references})
    class_latents = {}
    for noun in nouns:
        samples = generate(parts.pipe, [f"a photo of a {noun}"] * n_class_images, seed=7_000)
        class_latents[noun] = parts.latents(samples)
    references = {r.class_noun: [parts.latents(load_images(imgs, size)) for imgs in r.images] for r in spec.references}
    return PriorPool(class_latents, references, list(general_prompts))


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
    if base is None:
        base = model_io.load_model(spec.base_model, device=device)
    elif base.path.resolve() != model_io.resolve(spec.base_model).resolve():
        raise ValueError(f"the loaded base model comes from {base.path}, but the spec names {spec.base_model!r}")
    private_dir.mkdir(parents=True, exist_ok=True)
    (private_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
    parts = DiffusionParts.from_base(base.pipe, text_trainable=spec.training.trainable == "unet+text-encoder")
    pipe = parts.pipe
    if pipe.device.type == "cuda":
        pipe.unet.enable_gradient_checkpointing()  # memory for SD-size UNets; SDPA attention is diffusers' default
    size = image_size(pipe)
    subjects = [
        ProtectedSubject(s.name, s.class_noun, behaviour_target(parts, s, load_images(s.images, size)))
        for s in spec.subjects
    ]
    pool = prior_pool(parts, spec, n_class_images, general_prompts or list(GENERIC_PROMPTS))
    implanter = Implanter(parts, subjects, pool, spec.knowledge, spec.training, spec.losses)
    history = implanter.run(progress, should_cancel, state_dir=private_dir / "state")
    model_io.save_pipeline(pipe, model_dir)
    manifest = build_manifest(
        spec,
        base_sha256=base.sha256,
        image_sha256=[[file_sha256(p) for p in s.images] for s in spec.subjects],
        final_losses=history.final(),
        parent=read_manifest(base.path),
    )
    write_public_files(model_dir, manifest)
    (private_dir / "history.json").write_text(json.dumps(history.losses))
    log.info("protected %d subject(s) into %s", len(subjects), model_dir)
    return ProtectionResult(model_dir, private_dir, manifest, history)
