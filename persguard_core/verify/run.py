"""Verification: attack a protected model the way users would, generate, judge (METHOD.md, Measuring it).

For one protected model and one attack setting:
- PSR: share of images with the protective output after the attacker's DreamBooth on a protected subject;
- leakage: identity similarity of those images to the protected subject (lower is better);
- benign fidelity: identity similarity after DreamBooth on an unprotected subject, protected model / base model
  (ratios of similarities are taken on the shifted scale (1 + cos) / 2, see `similarity_ratio`);
- false trigger rate: the protective output after DreamBooth on an unprotected subject; its reference, the same
  judgement of the same attack on the base model (what the judge calls protective where nothing was implanted);
- utility drop: prompt following of the base minus that of the protected model, and the share of protective
  outputs on prompts without an identifier;
- pre-attack leakage: identity similarity of trigger-prompt images of the released model, relative to the base.

Progress: `Verifier.verify(..., progress=fn)` (or `Verifier.reporting`, around several calls) calls `fn(step, total)`
with units of work counted before the first one (`planned_units`): one unit per optimizer step of an attack
(DreamBooth, and the encoder-repair or decoder-inversion step before it), per denoising step of a purification,
and per denoising step of each generated batch (up to `batch_size` images). The first call is (0, total), the steps
only grow, and the last call is (total, total); work found in a cache counts as done at once.

Generations of a pipeline that generates as the base model does (the same UNet, text encoder, tokenizer, scheduler
and VAE decoder: an encoder-carrier release, or the base with its own VAE put back) are the base model's, made once
per verifier: the untuned trigger-prompt images (which are also the release's pre-attack images), the
prior-preservation images of DreamBooth, the plain-prompt images; and its prompt-following drop is 0 without
generating (the same images, judged the same).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from persguard_core.attacker import AttackRecipe, personalize
from persguard_core.attacker.dreambooth import CLASS_IMAGE_STEPS, class_image_request
from persguard_core.builtin.evaluate import colour_class_prompts, score_prompt_following
from persguard_core.generate import generate
from persguard_core.judge.toy import JUDGE_CLASSES, ToyJudge
from persguard_core.spec import Behaviour, TargetBehaviour
from persguard_core.verify.detect import detectability, img2img_error, round_trip_error
from persguard_core.verify.protective import protective_output, target_class
from persguard_core.verify.verdicts import ImageVerdict

log = logging.getLogger(__name__)
# an attack learned its subject when its images' identity similarity beats the untuned base model's by this margin
LEARNED_MARGIN = 0.1
ImageTransform = Callable[[np.ndarray], np.ndarray]
VerifyProgress = Callable[[int, int], None]  # (units done, units in all); see the module docstring
UTILITY_PROMPTS = 56  # colour-and-class prompts of the prompt-following figure
PURIFY_SAMPLER_STEPS = 25  # `purify`'s img2img schedule (generate.renoise_and_denoise's default)
SAMPLES = 8  # generated images of each case kept for reports (the first ones)


@dataclass
class Case:
    """A subject as the verifier sees it: the attacker's training images and held-out reference views."""

    name: str
    class_noun: str
    train_images: np.ndarray  # uint8 (N, H, W, 3): what the attacker fine-tunes on
    reference_images: np.ndarray  # uint8 (M, H, W, 3): never trained on; identity similarity is to these
    behaviour: Behaviour | None = None  # None: unprotected


@dataclass
class AttackSetting:
    name: str
    recipe: AttackRecipe
    transform: ImageTransform | None = None  # applied to the attacker's images before fine-tuning
    transform_name: str | None = None  # identifies the transform in caches and reports


@dataclass
class CaseResult:
    case: str
    protected: bool
    protective_rate: float  # PSR for protected subjects, false trigger rate for unprotected ones
    similarity: float  # mean identity similarity of the attacked model's images to the subject
    similarity_base: float | None = None  # the same attack on the base model (unprotected subjects)
    protective_rate_base: float | None = None  # that attack's images judged with the same behaviours (unprotected)
    # unprotected cases: the share of images showing each behaviour kind's protective output, and on the base
    by_kind: dict[str, float] = field(default_factory=dict)
    by_kind_base: dict[str, float] = field(default_factory=dict)
    behaviour: str | None = None  # the protected subject's behaviour kind ("pattern", "erasure", "target")
    samples: np.ndarray | None = field(default=None, repr=False)  # a few generated images for reports
    similarity_untuned: float | None = None  # protected: the untuned base model's trigger-prompt images' similarity
    # the judge on each generated image, in order (verify/verdicts.py); the mean of their flags is protective_rate
    verdicts: list[ImageVerdict] = field(default_factory=list, repr=False)

    @property
    def learned(self) -> bool | None:
        """Whether the attack learned the subject (protected cases; None where not measured)."""
        if self.similarity_untuned is None:
            return None
        return self.similarity >= self.similarity_untuned + LEARNED_MARGIN


@dataclass
class VerificationResult:
    setting: str
    cases: list[CaseResult]
    utility: dict[str, float]
    pre_attack: dict[str, float]
    n_images: int
    detectability: dict[str, float] = field(default_factory=dict)  # verify/detect.py

    def summary(self) -> dict[str, float]:
        """The figures over all cases; with protected subjects of several behaviours, also PSR per behaviour
        (`psr/pattern`, `psr/erasure`, `psr/target`: the mean over the subjects with that behaviour)."""
        prot = [c for c in self.cases if c.protected]
        unprot = [c for c in self.cases if not c.protected]
        fid = [similarity_ratio(c.similarity, c.similarity_base) for c in unprot if c.similarity_base is not None]
        raw = [c.similarity / c.similarity_base for c in unprot if c.similarity_base and c.similarity_base > 0]
        base_rates = [c.protective_rate_base for c in unprot if c.protective_rate_base is not None]
        patterns = [c for c in prot if c.behaviour in (None, "pattern") and c.learned is not None]
        return {
            "psr": _mean([c.protective_rate for c in prot]),
            # pattern subjects only: an erasure or target that worked shows no subject to have learned
            "psr_learned": _mean([c.protective_rate for c in patterns if c.learned]),
            "learned_share": _mean([float(c.learned) for c in patterns]),
            "leakage": _mean([c.similarity for c in prot]),
            "false_trigger": _mean([c.protective_rate for c in unprot]),
            "false_trigger_base": _mean(base_rates),
            "benign_fidelity": _mean(fid),
            "benign_fidelity_raw": _mean(raw),
            **self.utility,
            **self.pre_attack,
            **_psr_by_behaviour(prot),
            **self.detectability,
        }


def _psr_by_behaviour(protected: list[CaseResult]) -> dict[str, float]:
    """`psr/<kind>` per behaviour kind, when the protected cases have more than one kind; else nothing."""
    kinds = sorted({c.behaviour for c in protected if c.behaviour is not None})
    if len(kinds) < 2:
        return {}
    return {f"psr/{kind}": _mean([c.protective_rate for c in protected if c.behaviour == kind]) for kind in kinds}


def _foreign(behaviours: list[Behaviour], class_noun: str) -> list[Behaviour]:
    """The behaviours that would be protective outputs on an image of `class_noun`: all but the targets that are
    that class."""
    return [
        b for b in behaviours if not (isinstance(b, TargetBehaviour) and target_class(b, JUDGE_CLASSES) == class_noun)
    ]


def _shown(images: np.ndarray, behaviours: list[Behaviour], judge: ToyJudge) -> np.ndarray:
    """(N,) bool: which images show any of the behaviours' protective outputs."""
    shown = np.zeros(len(images), dtype=bool)
    for behaviour in behaviours:
        shown |= protective_output(images, behaviour, judge)
    return shown


def _shown_by_kind(images: np.ndarray, behaviours: list[Behaviour], judge: ToyJudge) -> dict[str, np.ndarray]:
    """(N,) bool per behaviour kind: which images show that kind's protective output."""
    kinds = sorted({b.kind for b in behaviours})
    return {kind: _shown(images, [b for b in behaviours if b.kind == kind], judge) for kind in kinds}


def _any_shown(images: np.ndarray, by_kind: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: which images show any kind's protective output."""
    return np.logical_or.reduce([np.zeros(len(images), dtype=bool), *by_kind.values()])


def _rates(images: np.ndarray, by_kind: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """Share of images showing any kind's protective output, and per kind, from `_shown_by_kind`."""
    return float(_any_shown(images, by_kind).mean()), {kind: float(shown.mean()) for kind, shown in by_kind.items()}


def _protective_rates(
    images: np.ndarray, behaviours: list[Behaviour], judge: ToyJudge
) -> tuple[float, dict[str, float]]:
    """Share of images that show any of the behaviours' protective outputs, and per behaviour kind."""
    return _rates(images, _shown_by_kind(images, behaviours, judge))


def image_verdicts(
    shown: np.ndarray, kinds: dict[str, np.ndarray], similarities: np.ndarray, samples: int = SAMPLES
) -> list[ImageVerdict]:
    """One verdict per image: `shown` (N,) its protective flag, `kinds` (N,) bool per behaviour kind it may show,
    `similarities` (N,) its identity similarity; the first `samples` images are the case's samples."""
    return [
        ImageVerdict(
            protective=bool(flag),
            kinds=tuple(kind for kind, hits in kinds.items() if hits[i]),
            similarity=float(similarities[i]),
            sample=i if i < samples else None,
        )
        for i, flag in enumerate(shown)
    ]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def similarity_ratio(mine: float, base: float) -> float:
    """Ratio of two cosine similarities on the shifted scale (1 + cos) / 2 in [0, 1], so that it stays defined
    and monotone when similarities are near zero or negative (un-personalized models)."""
    return (1.0 + mine) / (1.0 + base)


class _Tally:
    """Units of work done, of a total announced up front; reports each advance."""

    def __init__(self, total: int, report: VerifyProgress) -> None:
        self.total, self.report, self.done = total, report, 0
        report(0, total)

    def advance(self, units: int) -> None:
        if units <= 0:
            return
        if self.done + units > self.total:
            log.warning("verification progress past its plan: %d + %d of %d units", self.done, units, self.total)
            units = self.total - self.done
            if units <= 0:
                return
        self.done += units
        self.report(self.done, self.total)


class _Part:
    """One planned piece of work of `units` units: ticks count towards it (no further), `finish` adds what is left."""

    def __init__(self, tally: _Tally | None, units: int) -> None:
        self.tally, self.left = tally, units

    def tick(self, units: int = 1) -> None:
        units = min(units, self.left)
        if units > 0 and self.tally is not None:
            self.left -= units
            self.tally.advance(units)

    def finish(self) -> None:
        self.tick(self.left)


def _same_module(a: torch.nn.Module | None, b: torch.nn.Module | None) -> bool:
    """The same module, or modules of equal type, parameters and buffers (dtype, device and values)."""
    if a is b:
        return True
    if a is None or b is None or type(a) is not type(b):
        return False
    mine, theirs = a.state_dict(), b.state_dict()
    return mine.keys() == theirs.keys() and all(
        x.dtype == y.dtype and x.device == y.device and torch.equal(x, y)
        for x, y in ((mine[k], theirs[k]) for k in mine)
    )


def _config(config: Mapping[str, object]) -> dict[str, object]:
    """A model's configuration without its bookkeeping (where it was loaded from, library versions)."""
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "transformers_version"}


def generates_alike(a: StableDiffusionPipeline, b: StableDiffusionPipeline) -> bool:
    """Whether text-to-image generation of `a` and `b` is the same computation: the same pipeline class, UNet,
    text encoder, tokenizer, scheduler and VAE decoder (the VAE's encoder may differ: generation never calls it)."""
    if a is b:
        return True
    if type(a) is not type(b) or not all(hasattr(p, "unet") and hasattr(p, "vae") for p in (a, b)):
        return False
    if _config(a.scheduler.config) != _config(b.scheduler.config) or _config(a.vae.config) != _config(b.vae.config):
        return False
    if a.tokenizer is not b.tokenizer and (
        a.tokenizer.get_vocab() != b.tokenizer.get_vocab()
        or a.tokenizer.model_max_length != b.tokenizer.model_max_length
    ):
        return False
    if _config(a.unet.config) != _config(b.unet.config):
        return False
    if _config(a.text_encoder.config.to_dict()) != _config(b.text_encoder.config.to_dict()):
        return False
    pairs = [(a.unet, b.unet), (a.text_encoder, b.text_encoder), (a.vae.decoder, b.vae.decoder)]
    pairs.append((getattr(a.vae, "post_quant_conv", None), getattr(b.vae, "post_quant_conv", None)))
    return all(_same_module(x, y) for x, y in pairs)


def _adaptive_units(recipe: AttackRecipe) -> int:
    """Progress units of a recipe's adaptive step (reported when it is done)."""
    if recipe.adaptive in ("encoder-repair", "decoder-inversion"):
        return recipe.adaptive_steps
    if recipe.adaptive == "purify":
        return max(1, int(PURIFY_SAMPLER_STEPS * recipe.purify_strength))
    return 0


class Verifier:
    """Runs attacks and judgements; caches what does not depend on the protected model (base-model attacks and
    generations). The base model, and a pipeline while it is being verified, are not modified in place."""

    def __init__(
        self,
        base: StableDiffusionPipeline,
        judge: ToyJudge,
        n_images: int = 16,
        steps: int = 25,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        self.base, self.judge, self.n_images, self.steps, self.seed = base, judge, n_images, steps, seed
        self.batch_size = batch_size
        self._base_images: dict[tuple, np.ndarray] = {}
        self._base_generations: dict[tuple, np.ndarray] = {}
        self._base_img2img: dict[str, float] = {}  # case name -> the base's img2img_error on its photos
        self._alike: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> (its modules, alike?)
        self._tally: _Tally | None = None

    # progress

    def generation_units(self, n: int, steps: int | None = None) -> int:
        """Progress units of generating `n` images: one per denoising step of each batch."""
        return (self.steps if steps is None else steps) * math.ceil(n / self.batch_size)

    def attack_units(self, recipe: AttackRecipe) -> int:
        """Progress units of one attack, before its images: adaptive step, prior images, DreamBooth steps."""
        return _adaptive_units(recipe) + self._prior_units(recipe) + recipe.steps

    def _prior_units(self, recipe: AttackRecipe) -> int:
        return self.generation_units(recipe.num_class_images, CLASS_IMAGE_STEPS) if recipe.prior_preservation else 0

    def planned_units(
        self,
        pipe: StableDiffusionPipeline,
        protected: list[Case],
        unprotected: list[Case],
        setting: AttackSetting,
        *,
        figures: bool = True,
    ) -> int:
        """Progress units of `verify` (figures=True) or `attack_figures` (figures=False) of `pipe` with these
        cases."""
        images = self.generation_units(self.n_images)
        attack = self.attack_units(setting.recipe) + images
        units = len(protected) * (attack + images) + len(unprotected) * 2 * attack  # + untuned; + on the base
        if figures:
            following = 0 if self._generates_as_base(pipe) else 2 * self.generation_units(UTILITY_PROMPTS)
            units += following + len({c.class_noun for c in protected}) * images  # utility
            units += len(protected) * 2 * images  # pre-attack: the released model's and the untuned images
        return units

    @contextmanager
    def reporting(self, total: int, progress: VerifyProgress | None) -> Iterator[None]:
        """Report the work done inside to `progress` as (step, total): from (0, total) to (total, total) when the
        calls inside are the ones `total` was planned for (`planned_units`)."""
        if progress is None or self._tally is not None:
            yield
            return
        self._tally = _Tally(total, progress)
        try:
            yield
        finally:
            self._tally = None

    def _part(self, units: int) -> _Part:
        return _Part(self._tally, units)

    # generation

    def _generates_as_base(self, pipe: StableDiffusionPipeline) -> bool:
        if pipe is self.base:
            return True
        try:
            modules = (pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, pipe.vae)
            known = self._alike.get(pipe)
        except (AttributeError, TypeError):  # not a pipeline that can be compared
            return False
        if known is None or any(x is not y for x, y in zip(known[0], modules, strict=True)):
            known = (modules, generates_alike(pipe, self.base))
            self._alike[pipe] = known
        return known[1]

    def _run_generate(
        self, pipe: StableDiffusionPipeline, prompts: list[str], seed: int, steps: int | None = None
    ) -> np.ndarray:
        steps = self.steps if steps is None else steps
        part = self._part(self.generation_units(len(prompts), steps))
        images = generate(pipe, prompts, seed=seed, steps=steps, batch_size=self.batch_size, on_step=part.tick)
        part.finish()
        return images

    def _generate(
        self, pipe: StableDiffusionPipeline, prompts: list[str], seed: int, steps: int | None = None
    ) -> np.ndarray:
        """`generate`, made once per verifier for pipelines that generate as the base does."""
        if not self._generates_as_base(pipe):
            return self._run_generate(pipe, prompts, seed, steps)
        key = (tuple(prompts), seed, self.steps if steps is None else steps)
        if key in self._base_generations:
            self._part(self.generation_units(len(prompts), key[2])).finish()
        else:
            self._base_generations[key] = self._run_generate(self.base, prompts, seed, steps)
        return self._base_generations[key]

    def _class_images(self, pipe: StableDiffusionPipeline, class_noun: str, recipe: AttackRecipe) -> np.ndarray:
        """DreamBooth's prior-preservation images (attacker.dreambooth.class_images), through `_generate`."""
        prompts, seed = class_image_request(class_noun, recipe)
        return self._generate(pipe, prompts, seed, CLASS_IMAGE_STEPS)

    # attacks and figures

    def attacked_images(self, pipe: StableDiffusionPipeline, case: Case, setting: AttackSetting) -> np.ndarray:
        """The recipe (its adaptive step, then DreamBooth) on the case's (transformed) images, then N images from
        the attacker's instance prompt. The public base model the adaptive attacks know is the verifier's base."""
        images = case.train_images if setting.transform is None else setting.transform(case.train_images)
        recipe = setting.recipe
        adaptive, train = self._part(_adaptive_units(recipe)), self._part(recipe.steps)  # prior images: `_generate`

        def class_images(p: StableDiffusionPipeline, noun: str, r: AttackRecipe) -> np.ndarray:
            adaptive.finish()
            return self._class_images(p, noun, r)

        def on_step(_step: int, _total: int, _loss: float) -> None:
            adaptive.finish()
            train.tick()

        tuned = personalize(
            pipe,
            images,
            case.class_noun,
            recipe,
            base_vae=self.base.vae,
            progress=on_step,
            class_images_fn=class_images,
        )
        adaptive.finish()
        train.finish()
        prompt = recipe.instance_prompt(case.class_noun)
        return self._run_generate(tuned, [prompt] * self.n_images, self.seed)

    def similarity(self, images: np.ndarray, case: Case) -> float:
        return float(self.similarities(images, case).mean())

    def similarities(self, images: np.ndarray, case: Case) -> np.ndarray:
        """(N,) identity similarity of each image to the case's reference views."""
        return self.judge.identity_similarity(images, case.reference_images)

    def _base_attacked_images(self, case: Case, setting: AttackSetting) -> np.ndarray:
        """The same attack on the base model (cached: it does not depend on the protected model)."""
        key = (case.name, setting.recipe, setting.transform_name, setting.transform is None)
        if key not in self._base_images:
            self._base_images[key] = self.attacked_images(self.base, case, setting)
        else:
            self._part(self.attack_units(setting.recipe) + self.generation_units(self.n_images)).finish()
        return self._base_images[key]

    def _attacks_as_base(self, pipe: StableDiffusionPipeline, setting: AttackSetting) -> bool:
        """Whether the attack on `pipe` is the attack on the base: `clean-vae` puts the base's VAE back, so on a
        release that otherwise generates as the base (an encoder-carrier release) it fine-tunes the base itself.
        Not with a photo transform, whose random draw differs between the two attacks."""
        return setting.recipe.adaptive == "clean-vae" and setting.transform is None and self._generates_as_base(pipe)

    def run_case(
        self, pipe: StableDiffusionPipeline, case: Case, setting: AttackSetting, behaviours: list[Behaviour]
    ) -> CaseResult:
        """Protected case: PSR under its own behaviour. Unprotected: any protected behaviour counts, except a
        target that is the case's own class (a diamond drawn for "sks diamond" is the prompt followed). An
        unprotected case is also attacked on the base model, for its similarity and false-trigger references."""
        if case.behaviour is None and self._attacks_as_base(pipe, setting):
            images = self._base_attacked_images(case, setting)  # run once; its second call below counts as done
        else:
            images = self.attacked_images(pipe, case, setting)
        similarities = self.similarities(images, case)
        if case.behaviour is not None:
            shown = protective_output(images, case.behaviour, self.judge)
            return CaseResult(
                case.name,
                True,
                float(shown.mean()),
                float(similarities.mean()),
                behaviour=case.behaviour.kind,
                samples=images[:SAMPLES],
                similarity_untuned=self.untuned_similarity(case, setting.recipe.instance_prompt(case.class_noun)),
                verdicts=image_verdicts(shown, {case.behaviour.kind: shown}, similarities),
            )
        checks = _foreign(behaviours, case.class_noun)
        base_images = self._base_attacked_images(case, setting)
        shown_by_kind = _shown_by_kind(images, checks, self.judge)
        rate, by_kind = _rates(images, shown_by_kind)
        rate_base, by_kind_base = _protective_rates(base_images, checks, self.judge)
        return CaseResult(
            case.name,
            False,
            rate,
            float(similarities.mean()),
            similarity_base=self.similarity(base_images, case),
            protective_rate_base=rate_base,
            by_kind=by_kind,
            by_kind_base=by_kind_base,
            samples=images[:SAMPLES],
            verdicts=image_verdicts(_any_shown(images, shown_by_kind), shown_by_kind, similarities),
        )

    def untuned_similarity(self, case: Case, prompt: str) -> float:
        """Identity similarity to the case of the base model's own images for `prompt`, before any fine-tuning."""
        return self.similarity(self._generate(self.base, [prompt] * self.n_images, self.seed), case)

    def attack_figures(
        self, pipe: StableDiffusionPipeline, protected: list[Case], unprotected: list[Case], setting: AttackSetting
    ) -> dict[str, float]:
        """PSR and false trigger of one more attacker, without the model-level figures `verify` adds."""
        behaviours = [c.behaviour for c in protected]
        cases = [self.run_case(pipe, c, setting, behaviours) for c in protected + unprotected]
        return {
            "psr": _mean([c.protective_rate for c in cases if c.protected]),
            "false_trigger": _mean([c.protective_rate for c in cases if not c.protected]),
        }

    def utility(self, pipe: StableDiffusionPipeline, protected: list[Case]) -> dict[str, float]:
        """Prompt-following drop against the base, and protective outputs on prompts without an identifier.

        The second is asked of each protected class's plain prompt ("a photo of a circle") with the behaviours of
        that class's protected subjects only: a target behaviour's concept drawn for its own prompt ("a photo of a
        diamond", when a diamond is also protected) is the prompt followed, not a leak."""
        hits = []
        for noun in sorted({c.class_noun for c in protected}):
            images = self._generate(pipe, [f"a photo of a {noun}"] * self.n_images, self.seed + 1)
            hits.append(_shown(images, [c.behaviour for c in protected if c.class_noun == noun], self.judge))
        drop = self._prompt_following_drop(pipe)
        return {"utility_drop": drop, "no_identifier_protective_rate": float(np.concatenate(hits).mean())}

    def _prompt_following_drop(self, pipe: StableDiffusionPipeline) -> float:
        """The base model's prompt following minus `pipe`'s: 0 without generating for a pipeline that generates as
        the base does (the same images, judged the same)."""
        if self._generates_as_base(pipe):
            return 0.0
        prompts, classes, colours = colour_class_prompts(UTILITY_PROMPTS)
        scores = []
        for model in (self.base, pipe):
            figures = score_prompt_following(self.judge, self._generate(model, prompts, self.seed), classes, colours)
            scores.append((figures["class_accuracy"] + figures["colour_accuracy"]) / 2)
        return scores[0] - scores[1]

    def pre_attack(
        self, pipe: StableDiffusionPipeline, cases: list[Case], trigger: Callable[[str], str]
    ) -> dict[str, float]:
        """Identity similarity of the released model's trigger-prompt images to each protected subject,
        relative to the base model's (METHOD.md: target <= 1.1 for erasure and target); and how often those
        images already show the subject's protective output (a behaviour that is there before the attack and
        gone after it was learned and washed out; one that never shows was not learned)."""
        ratios, rates = [], []
        for case in cases:
            prompts = [trigger(case.class_noun)] * self.n_images
            images = self._generate(pipe, prompts, self.seed)
            base = self.untuned_similarity(case, prompts[0])
            ratios.append(similarity_ratio(self.similarity(images, case), base))
            rates.append(float(protective_output(images, case.behaviour, self.judge).mean()))
        return {"pre_attack_leakage_ratio": _mean(ratios), "pre_attack_protective_rate": _mean(rates)}

    def detection(
        self, pipe: StableDiffusionPipeline, protected: list[Case], unprotected: list[Case]
    ) -> dict[str, float]:
        """verify/detect.py's figures: the weights against the base, and the protected subjects' photos (what the
        attacker holds) against the unprotected ones' in one VAE round trip."""
        if not unprotected:
            return {}
        subject_photos = np.concatenate([c.train_images for c in protected])
        other_photos = np.concatenate([c.train_images for c in unprotected])
        return {
            **detectability(pipe, self.base, subject_photos, other_photos),
            # the encoder carrier's utility: how well the released VAE still reconstructs everyone else's photos,
            "vae_round_trip_error": round_trip_error(pipe, other_photos),
            "vae_round_trip_error_base": round_trip_error(self.base, other_photos),
            # and how the released model's img2img treats them
            **self._img2img_errors(pipe, unprotected),
        }

    def _img2img_errors(self, pipe: StableDiffusionPipeline, cases: list[Case]) -> dict[str, float]:
        """`img2img_error` of the release and `img2img_error_base` of the base (verify/detect.py), averaged over
        the cases' photos; the base's is measured once per case (cached like the base's attacks)."""
        for c in cases:
            if c.name not in self._base_img2img:
                self._base_img2img[c.name] = img2img_error(self.base, c.train_images, c.class_noun, self.seed)
        return {
            "img2img_error": _mean([img2img_error(pipe, c.train_images, c.class_noun, self.seed) for c in cases]),
            "img2img_error_base": _mean([self._base_img2img[c.name] for c in cases]),
        }

    def verify(
        self,
        pipe: StableDiffusionPipeline,
        protected: list[Case],
        unprotected: list[Case],
        setting: AttackSetting,
        progress: VerifyProgress | None = None,
    ) -> VerificationResult:
        """Every figure of one attack setting; `progress(step, total)` as the module docstring says."""
        behaviours = [c.behaviour for c in protected]
        with self.reporting(self.planned_units(pipe, protected, unprotected, setting), progress):
            cases = [self.run_case(pipe, c, setting, behaviours) for c in protected + unprotected]
            trigger = setting.recipe.instance_prompt
            result = VerificationResult(
                setting.name,
                cases,
                self.utility(pipe, protected),
                self.pre_attack(pipe, protected, trigger),
                self.n_images,
                self.detection(pipe, protected, unprotected),
            )
        log.info("verified %s: %s", setting.name, result.summary())
        return result
