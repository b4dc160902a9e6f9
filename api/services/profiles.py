"""Training profiles: what each name a protection request may pick stands for in the core's settings.

`default` is the core's own defaults, so a request that names nothing trains as the core does by default: 300
UNet steps, and 300 encoder steps per protected subject. `fast` and `thorough` change the step budgets only.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.schemas.jobs import ProfileName
from persguard_core.spec import EncoderTraining, LossWeights, Training


@dataclass(frozen=True)
class Profile:
    """The internal settings of a profile. The encoder's budget grows with the number of subjects:
    `encoder_steps_per_subject` x subjects, or, when None, `encoder.steps` as it is (the core's per-subject default
    when that is unset too)."""

    training: Training
    encoder: EncoderTraining
    losses: LossWeights
    encoder_steps_per_subject: int | None = None


PROFILES: dict[ProfileName, Profile] = {
    "fast": Profile(Training(steps=100), EncoderTraining(), LossWeights(), encoder_steps_per_subject=100),
    "default": Profile(Training(), EncoderTraining(), LossWeights()),
    "thorough": Profile(Training(steps=600), EncoderTraining(), LossWeights(), encoder_steps_per_subject=600),
}
