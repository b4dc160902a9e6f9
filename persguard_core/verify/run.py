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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from diffusers import StableDiffusionPipeline

from persguard_core.attacker import AttackRecipe, personalize
from persguard_core.builtin.evaluate import prompt_following
from persguard_core.generate import generate
from persguard_core.judge.toy import JUDGE_CLASSES, ToyJudge
from persguard_core.spec import Behaviour, TargetBehaviour
from persguard_core.verify.detect import detectability, round_trip_error
from persguard_core.verify.protective import protective_output, target_class

log = logging.getLogger(__name__)
# an attack learned its subject when its images' identity similarity beats the untuned base model's by this margin
LEARNED_MARGIN = 0.1
ImageTransform = Callable[[np.ndarray], np.ndarray]


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


def _protective_rates(
    images: np.ndarray, behaviours: list[Behaviour], judge: ToyJudge
) -> tuple[float, dict[str, float]]:
    """Share of images that show any of the behaviours' protective outputs, and per behaviour kind."""
    kinds = sorted({b.kind for b in behaviours})
    by_kind = {kind: _shown(images, [b for b in behaviours if b.kind == kind], judge) for kind in kinds}
    hits = np.logical_or.reduce([np.zeros(len(images), dtype=bool), *by_kind.values()])
    return float(hits.mean()), {kind: float(shown.mean()) for kind, shown in by_kind.items()}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def similarity_ratio(mine: float, base: float) -> float:
    """Ratio of two cosine similarities on the shifted scale (1 + cos) / 2 in [0, 1], so that it stays defined
    and monotone when similarities are near zero or negative (un-personalized models)."""
    return (1.0 + mine) / (1.0 + base)


class Verifier:
    """Runs attacks and judgements; caches what does not depend on the protected model (base-model attacks)."""

    def __init__(
        self, base: StableDiffusionPipeline, judge: ToyJudge, n_images: int = 16, steps: int = 25, seed: int = 0
    ) -> None:
        self.base, self.judge, self.n_images, self.steps, self.seed = base, judge, n_images, steps, seed
        self._base_images: dict[tuple, np.ndarray] = {}
        self._base_utility: dict[str, float] | None = None
        self._untuned: dict[tuple[str, str], float] = {}

    def attacked_images(self, pipe: StableDiffusionPipeline, case: Case, setting: AttackSetting) -> np.ndarray:
        """The recipe (its adaptive step, then DreamBooth) on the case's (transformed) images, then N images from
        the attacker's instance prompt. The public base model the adaptive attacks know is the verifier's base."""
        images = case.train_images if setting.transform is None else setting.transform(case.train_images)
        tuned = personalize(pipe, images, case.class_noun, setting.recipe, base_vae=self.base.vae)
        prompt = setting.recipe.instance_prompt(case.class_noun)
        return generate(tuned, [prompt] * self.n_images, seed=self.seed, steps=self.steps)

    def similarity(self, images: np.ndarray, case: Case) -> float:
        return float(self.judge.identity_similarity(images, case.reference_images).mean())

    def _base_attacked_images(self, case: Case, setting: AttackSetting) -> np.ndarray:
        """The same attack on the base model (cached: it does not depend on the protected model)."""
        key = (case.name, setting.recipe, setting.transform_name, setting.transform is None)
        if key not in self._base_images:
            self._base_images[key] = self.attacked_images(self.base, case, setting)
        return self._base_images[key]

    def run_case(
        self, pipe: StableDiffusionPipeline, case: Case, setting: AttackSetting, behaviours: list[Behaviour]
    ) -> CaseResult:
        """Protected case: PSR under its own behaviour. Unprotected: any protected behaviour counts, except a
        target that is the case's own class (a diamond drawn for "sks diamond" is the prompt followed). An
        unprotected case is also attacked on the base model, for its similarity and false-trigger references."""
        images = self.attacked_images(pipe, case, setting)
        if case.behaviour is not None:
            rate = float(protective_output(images, case.behaviour, self.judge).mean())
            return CaseResult(
                case.name,
                True,
                rate,
                self.similarity(images, case),
                behaviour=case.behaviour.kind,
                samples=images[:8],
                similarity_untuned=self.untuned_similarity(case, setting.recipe.instance_prompt(case.class_noun)),
            )
        checks = _foreign(behaviours, case.class_noun)
        base_images = self._base_attacked_images(case, setting)
        rate, by_kind = _protective_rates(images, checks, self.judge)
        rate_base, by_kind_base = _protective_rates(base_images, checks, self.judge)
        return CaseResult(
            case.name,
            False,
            rate,
            self.similarity(images, case),
            similarity_base=self.similarity(base_images, case),
            protective_rate_base=rate_base,
            by_kind=by_kind,
            by_kind_base=by_kind_base,
            samples=images[:8],
        )

    def untuned_similarity(self, case: Case, prompt: str) -> float:
        """Identity similarity to the case of the base model's own images for `prompt`, before any fine-tuning."""
        key = (case.name, prompt)
        if key not in self._untuned:
            images = generate(self.base, [prompt] * self.n_images, seed=self.seed, steps=self.steps)
            self._untuned[key] = self.similarity(images, case)
        return self._untuned[key]

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
        if self._base_utility is None:
            self._base_utility = prompt_following(self.base, self.judge, n=56, seed=self.seed, steps=self.steps)
        mine = prompt_following(pipe, self.judge, n=56, seed=self.seed, steps=self.steps)
        base_score = (self._base_utility["class_accuracy"] + self._base_utility["colour_accuracy"]) / 2
        score = (mine["class_accuracy"] + mine["colour_accuracy"]) / 2
        hits = []
        for noun in sorted({c.class_noun for c in protected}):
            images = generate(pipe, [f"a photo of a {noun}"] * self.n_images, seed=self.seed + 1, steps=self.steps)
            hits.append(_shown(images, [c.behaviour for c in protected if c.class_noun == noun], self.judge))
        return {"utility_drop": base_score - score, "no_identifier_protective_rate": float(np.concatenate(hits).mean())}

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
            images = generate(pipe, prompts, seed=self.seed, steps=self.steps)
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
            # the encoder carrier's utility: how well the released VAE still reconstructs everyone else's photos
            "vae_round_trip_error": round_trip_error(pipe, other_photos),
            "vae_round_trip_error_base": round_trip_error(self.base, other_photos),
        }

    def verify(
        self, pipe: StableDiffusionPipeline, protected: list[Case], unprotected: list[Case], setting: AttackSetting
    ) -> VerificationResult:
        behaviours = [c.behaviour for c in protected]
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
