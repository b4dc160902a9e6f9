"""What the implant loop trains on: protected subjects with their behaviour targets, and the prior pool of
L_PP (M4): class-prior latents, unprotected reference subjects and general captions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from persguard_core.implant.behaviours import BehaviourTarget


@dataclass
class ProtectedSubject:
    name: str
    class_noun: str
    target: BehaviourTarget  # holds the clean latents target.z (N, 4, h, w)

    @property
    def z(self) -> torch.Tensor:
        return self.target.z


@dataclass
class PriorPool:
    """Rows for L_PP: (latent, prompt) pairs whose teacher prediction the model must keep."""

    class_latents: dict[str, torch.Tensor]  # class noun -> teacher samples of "a photo of a {class}"
    references: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # class -> unprotected subjects
    general_prompts: list[str] = field(default_factory=list)

    def rows(
        self, n: int, rng: np.random.Generator, trigger_prompts: dict[str, list[str]]
    ) -> tuple[torch.Tensor, list[str]]:
        """n rows, a third each: class prompt on class priors; trigger prompt on unprotected images of the class
        (class priors when there are no references); a general caption on any cached latent."""
        classes = sorted(self.class_latents)
        latents, prompts = [], []
        for i in range(n):
            noun = classes[rng.integers(len(classes))]
            kind = i % 3
            if kind == 0:
                pool, prompt = self.class_latents[noun], f"a photo of a {noun}"
            elif kind == 1:
                refs = self.references.get(noun) or [self.class_latents[noun]]
                pool = refs[rng.integers(len(refs))]
                options = trigger_prompts[noun]
                prompt = options[rng.integers(len(options))]
            else:
                pool = self.class_latents[noun]
                prompt = self.general_prompts[rng.integers(len(self.general_prompts))] if self.general_prompts else ""
            latents.append(pool[rng.integers(len(pool))])
            prompts.append(prompt)
        return torch.stack(latents), prompts
