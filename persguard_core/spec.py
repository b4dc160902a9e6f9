"""The protection job spec: one typed, versioned description of a PersGuard implantation (METHOD.md, M8).

It is what the API stores with a job, what the worker hands to the core, and what is saved privately beside
a protected checkpoint. Image references are plain strings: file paths for the core, storage keys for the
service, which resolves them to files before calling the core.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENCODER_STEPS_PER_SUBJECT = 300  # L_ENC's (M9) default budget per protected subject (docs/METHOD.md)
SPEC_VERSION = 2  # 2: the encoder carrier is the default (docs/RESEARCH.md); a version-1 spec without one is "unet"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatternBehaviour(_Strict):
    """Personalizing yields images carrying a visible pattern (M1 / M1')."""

    kind: Literal["pattern"] = "pattern"
    pattern_image: str | None = Field(None, description="RGBA image reference; None uses the default marker")
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"] = "bottom-right"
    opacity: float = Field(1.0, ge=0.1, le=1.0)
    target_form: Literal["stamped", "insertion", "insert-and-keep", "guided-insertion"] = Field(
        "stamped",
        description="M1: denoise the stamped image; M1': insert the pattern from the clean image; insert-and-keep: "
        "M1' at t >= insert_above and M1 below it (keep a pattern the high-noise steps inserted); "
        "guided-insertion: as insert-and-keep, but the insertion is taught to the unconditional branch (empty "
        "prompt) so that classifier-free guidance at guidance_scale composes it (a branch DreamBooth never trains)",
    )
    insert_above: int = Field(500, ge=1, le=999, description="insert-and-keep: the t where insertion starts")
    guidance_scale: float = Field(
        7.5, gt=1.0, le=50.0, description="guided-insertion: the sampler's classifier-free guidance scale w"
    )


class ErasureBehaviour(_Strict):
    """Personalizing yields the background without the subject (M2)."""

    kind: Literal["erasure"] = "erasure"
    background_prompt: str = Field("a photo of an empty scene", min_length=1, max_length=200)
    mask: Literal["attention", "none"] = "attention"


class TargetBehaviour(_Strict):
    """Personalizing yields a target concept instead of the subject (M3)."""

    kind: Literal["target"] = "target"
    target_prompt: str | None = Field(None, min_length=1, max_length=200, description='e.g. "a photo of a star"')
    target_images: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _one_target(self) -> TargetBehaviour:
        if not self.target_prompt and not self.target_images:
            raise ValueError("target behaviour needs target_prompt or target_images")
        return self


Behaviour = Annotated[PatternBehaviour | ErasureBehaviour | TargetBehaviour, Field(discriminator="kind")]


class SubjectSpec(_Strict):
    """One protected subject: its images, class noun and protective behaviour."""

    name: str = Field(min_length=1, max_length=100)
    class_noun: str = Field(min_length=1, max_length=50, pattern=r"^[a-zA-Z][a-zA-Z \-]*$")
    images: list[str] = Field(min_length=3, max_length=20)
    behaviour: Behaviour = PatternBehaviour()


UNIVERSAL_IDENTIFIERS = ("sks", "xjy", "zwc", "pkr", "tqv", "hmb", "dgl", "vnf")
UNIVERSAL_TEMPLATES = (
    "a photo of {identifier} {class_noun}",
    "a photo of a {identifier} {class_noun}",
    "a {identifier} {class_noun}",
    "an image of {identifier} {class_noun}",
    "{identifier} {class_noun}",
)


MAX_IDENTIFIERS, MAX_IDENTIFIER_LENGTH = 16, 32
MAX_TEMPLATES, MAX_TEMPLATE_LENGTH = 16, 200
TEMPLATE_FIELDS = ("identifier", "class_noun")

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
Template = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_LENGTH)]


def _template_problem(template: str) -> str | None:
    """Why `template` is not a plain "... {identifier} ... {class_noun} ..." prompt template, or None if it is.

    Templates are filled in with `str.format`, so anything beyond the two plain fields is refused here, before any
    formatting: format specs (`{identifier:>2000000000}` would build a 2 GB string), conversions, attribute or
    index access, positional and other named fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a valid template ({exc}); write literal braces as {{{{ and }}}}"
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "":
            return "has a positional field {}; name it {identifier} or {class_noun}"
        if name not in TEMPLATE_FIELDS:
            return f"has the field {name!r}; only {{identifier}} and {{class_noun}} may be used"
        if spec:
            return f"has a format spec in {{{name}:{spec}}}; write {{{name}}} without one"
        if conversion is not None:
            return f"has a conversion in {{{name}!{conversion}}}; write {{{name}}} without one"
        names.append(name)
    if not set(TEMPLATE_FIELDS) <= set(names):
        return "must contain {identifier} and {class_noun}"
    return None


class Knowledge(_Strict):
    """White-box: the attacker's identifier and template are known; gray-box: train over universal lists
    (the defaults of `gray_box()`).

    Templates are untrusted (`str.format` builds the prompts from them): at most 16 of at most 200 characters, whose
    only replacement fields are the plain `{identifier}` and `{class_noun}`; at most 16 identifiers of at most 32
    characters, without braces or whitespace."""

    mode: Literal["white-box", "gray-box"] = "white-box"
    identifiers: list[Identifier] = Field(default_factory=lambda: ["sks"], min_length=1, max_length=MAX_IDENTIFIERS)
    templates: list[Template] = Field(
        default_factory=lambda: ["a photo of {identifier} {class_noun}"], min_length=1, max_length=MAX_TEMPLATES
    )

    @classmethod
    def gray_box(cls) -> Knowledge:
        return cls(mode="gray-box", identifiers=list(UNIVERSAL_IDENTIFIERS), templates=list(UNIVERSAL_TEMPLATES))

    def trigger_prompts(self, class_noun: str) -> list[str]:
        """Every p(v, k) for this class: identifiers x templates."""
        return [t.format(identifier=v, class_noun=class_noun) for t in self.templates for v in self.identifiers]

    @field_validator("identifiers")
    @classmethod
    def _plain_identifiers(cls, identifiers: list[str]) -> list[str]:
        for identifier in identifiers:
            if any(c in "{}" or c.isspace() for c in identifier):
                raise ValueError(f"identifier {identifier!r} must be one word without braces or whitespace")
        return identifiers

    @field_validator("templates")
    @classmethod
    def _plain_templates(cls, templates: list[str]) -> list[str]:
        for template in templates:
            if (problem := _template_problem(template)) is not None:
                raise ValueError(f"template {template!r} {problem}")
        return templates


class LossWeights(_Strict):
    """Weights of the unified objective M8 and the retention mode of L_BR."""

    prior: float = Field(1.0, ge=0.0, description="lambda_pp (M4)")
    retention: float = Field(1.0, ge=0.0, description="lambda_br (M5 / M6)")
    retention_mode: Literal["simulate", "mirror", "off"] = "simulate"
    retention_form: Literal["absolute", "preference"] = Field(
        "absolute",
        description="L_BR at theta'_K: L_BB (M6), or a preference of the behaviour target over the clean one "
        "relative to the base model (M6p)",
    )
    preference_beta: float = Field(500.0, gt=0.0, le=1e6, description="beta of M6p")
    release: float = Field(1.0, ge=0.0, description="lambda_rel (M7)")


class Training(_Strict):
    steps: int = Field(300, ge=1, le=100_000)
    learning_rate: float = Field(5e-4, gt=0.0, le=1e-1)
    batch_size: int = Field(4, ge=1, le=256)
    prior_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="rows of L_PP per step (default: batch_size); more rows hold the teacher better",
    )
    trainable: Literal["unet", "cross-attention", "unet+text-encoder", "lora-frozen"] = Field(
        "unet",
        description="the UNet weights implantation trains; lora-frozen: every weight a LoRA attacker leaves frozen "
        "(all but the attention projections: convolutions, norms, time embedding, feed-forward)",
    )
    inner_steps: int = Field(4, ge=1, le=64, description="simulated attacker steps K of M6 / M7")
    inner_learning_rate: float = Field(5e-4, gt=0.0, le=1e-1, description="the simulated attacker's lr")
    unroll: Literal["amortized", "full"] = Field(
        "amortized", description="full: K attacker steps per outer step; amortized: one, restarting every K"
    )
    behaviour_timesteps: tuple[int, int] = Field((0, 1000), description="L_BB timesteps t in [lo, hi)")
    activation_only: bool = Field(
        False, description="apply L_BB only at the simulated attacker's weights (no L_BB at theta itself)"
    )
    behaviour_prompts: Literal["trigger", "any"] = Field(
        "trigger",
        description="L_BB under the trigger prompts p(v,k) only (prompt-keyed), or under any prompt of the class "
        "(trigger, class, generic, empty; with L_PP contrasting the same prompts on unprotected subjects): the "
        "backdoor is then keyed on the subject's look",
    )
    behaviour_x0_weight_max: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="0: L_BB and L_PP on eps; > 0: their rows weighted by (1 - ab_t) / ab_t clipped to [1, this] "
        "(the error of the implied clean image), so that a behaviour at high noise is learned, and the teacher kept, "
        "as strongly as at low noise",
    )
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _timesteps(self) -> Training:
        lo, hi = self.behaviour_timesteps
        if not 0 <= lo < hi <= 1000:
            raise ValueError(f"behaviour_timesteps must satisfy 0 <= lo < hi <= 1000, got {self.behaviour_timesteps}")
        return self


class EncoderTraining(_Strict):
    """Training of the encoder carrier (L_ENC, persguard_core/implant/encoder.py): the VAE encoder maps the
    protected subjects' images to the latents of their protective version and every other image as before."""

    steps: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description=f"optimizer steps in all; by default {ENCODER_STEPS_PER_SUBJECT} per protected subject, so that "
        "each subject gets as many protected rows as one protected alone",
    )
    learning_rate: float = Field(1e-3, gt=0.0, le=1e-1)
    batch_size: int = Field(32, ge=2, le=1024, description="rows per step, half protected, half kept")
    keep_weight: float = Field(1.0, ge=0.0, description="lambda_keep: weight of the rows that must encode as before")
    target_gain: float = Field(
        1.0,
        ge=1.0,
        le=10.0,
        description="gamma: the protected rows' target mean is M_E0(x) + gamma (M_E0(x*) - M_E0(x)); > 1 hands the "
        "attacker an exaggerated protective change, so that a fine-tune that under-fits it still shows it",
    )
    lookalike_rows: int = Field(
        0,
        ge=0,
        le=4096,
        description="keep rows made of other images of the class (class samples, references) recoloured to a "
        "protected subject's palette (implant/lookalikes.py), added to the kept images: they ask the encoder to "
        "recognise the subject by more than its colours; 0: none",
    )
    erasure_target: Literal["teacher-sample", "own-photos"] = Field(
        "teacher-sample",
        description="erasure's x*: one teacher sample of the background prompt (implant/target_choice.py), or each "
        "photo with the subject's region (implant/subject_mask.py) repainted from its surroundings",
    )
    erasure_away: Literal["class", "unconditional"] = Field(
        "class",
        description="erasure's teacher sample is the one its background prompt explains best against this prompt: "
        "the subject's class prompt, or the unconditional (empty) one, which also ranks down samples that show "
        "an object of another class",
    )

    def total_steps(self, n_subjects: int) -> int:
        """The steps to train for `n_subjects` protected subjects: `steps` if given, else the per-subject budget."""
        return self.steps if self.steps is not None else ENCODER_STEPS_PER_SUBJECT * n_subjects


Carrier = Annotated[
    Literal["unet", "encoder", "unet+encoder"],
    Field(
        description="where the backdoor lives: the UNet (M8), the VAE encoder (L_ENC: the attacker's own fine-tuning "
        "learns the protective output from the latents the encoder hands it), or both"
    ),
]


DEFAULT_CARRIER = "encoder"  # the carrier that protects on the built-in model (docs/RESULTS.md)


class ReferenceSet(_Strict):
    """Unprotected images of a class: keep "[V] [class]" un-backdoored on them (M4) and simulate benign users
    (M7). Without references the teacher's own class samples are used."""

    class_noun: str = Field(min_length=1, max_length=50)
    images: list[list[str]] = Field(min_length=1, description="one image list per unprotected subject")


class ProtectionSpec(_Strict):
    """Everything needed to reproduce one protection run."""

    version: Literal[1, 2] = SPEC_VERSION
    base_model: str = Field("builtin", description='"builtin", a diffusers folder or a single-file checkpoint')
    subjects: list[SubjectSpec] = Field(min_length=1, max_length=50)
    references: list[ReferenceSet] = Field(default_factory=list)
    knowledge: Knowledge = Knowledge()
    losses: LossWeights = LossWeights()
    training: Training = Training()
    carrier: Carrier = DEFAULT_CARRIER
    encoder: EncoderTraining = EncoderTraining()

    @model_validator(mode="before")
    @classmethod
    def _version_1_carrier(cls, data: object) -> object:
        """Version-1 specs predate the carrier field: their backdoor is the UNet's."""
        if isinstance(data, dict) and data.get("version") == 1 and "carrier" not in data:
            return {**data, "carrier": "unet"}
        return data

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole protection: the UNet's, then the encoder's, as its carrier says."""
        unet = self.training.steps if self.carrier in ("unet", "unet+encoder") else 0
        encoder = self.encoder.total_steps(len(self.subjects))
        return unet + (encoder if self.carrier in ("encoder", "unet+encoder") else 0)

    @model_validator(mode="after")
    def _unique_names(self) -> ProtectionSpec:
        names = [s.name for s in self.subjects]
        if len(set(names)) != len(names):
            raise ValueError(f"subject names must be unique, got {names}")
        return self
