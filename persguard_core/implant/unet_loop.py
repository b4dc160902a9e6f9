"""The UNet backdoor's training loop: minimise L_BB + l_pp L_PP + l_br L_BR + l_rel L_REL (METHOD.md, M8) over the
trainable parameters with AdamW and gradient clipping; seeded, resumable (training_state.py, phase "unet"), with
progress and cancel hooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from persguard_core.attacker.recipe import LORA_UNET_TARGETS
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.losses import (
    Rows,
    behaviour_loss,
    behaviour_rows,
    denoising_loss,
    denoising_rows,
    fused_losses,
    preference_loss,
    prior_rows,
)
from persguard_core.implant.parts import DiffusionParts
from persguard_core.implant.simulate import SimulatedAttacker
from persguard_core.spec import Knowledge, LossWeights, Training
from persguard_core.training_state import TrainingState, load_training_state, restore_optimizer, save_training_state

log = logging.getLogger(__name__)


class ImplantCancelled(Exception):
    """Raised when the cancel check returns True between steps."""


@dataclass
class ProgressEvent:
    step: int  # steps done
    total: int
    losses: dict[str, float]
    eta_s: float


@dataclass
class History:
    losses: list[dict[str, float]] = field(default_factory=list)

    def final(self, window: int = 20) -> dict[str, float]:
        """Mean of each loss over the last `window` steps."""
        tail = self.losses[-window:]
        return {k: float(np.mean([row[k] for row in tail if k in row])) for k in (tail[0] if tail else {})}


_LORA_SUFFIXES = tuple(f".{m}" for m in LORA_UNET_TARGETS)


def trainable_parameters(parts: DiffusionParts, which: str) -> tuple[dict[str, torch.nn.Parameter], list]:
    """(UNet params by name, all trainable params): whole UNet, cross-attention only, UNet + text encoder, or the
    UNet weights a LoRA attacker leaves frozen (all but the modules of `LORA_UNET_TARGETS`)."""
    unet = parts.pipe.unet
    unet.requires_grad_(False)
    if which == "cross-attention":
        chosen = {n: p for n, p in unet.named_parameters() if ".attn2." in n}
    elif which == "lora-frozen":
        chosen = {n: p for n, p in unet.named_parameters() if not n.rsplit(".", 1)[0].endswith(_LORA_SUFFIXES)}
    elif which in ("unet", "unet+text-encoder"):
        chosen = dict(unet.named_parameters())
    else:
        raise ValueError(f"unknown trainable set {which!r}")
    for p in chosen.values():
        p.requires_grad_(True)
    extra = []
    if which == "unet+text-encoder":
        parts.pipe.text_encoder.requires_grad_(True)
        extra = list(parts.pipe.text_encoder.parameters())
    return chosen, list(chosen.values()) + extra


@dataclass
class _Episode:
    """One simulated attack: on whose images (a key and an index), which trigger prompt, with or without
    prior images."""

    key: str
    subject: int
    prompt_index: int
    with_prior: bool


class Implanter:
    """Runs M8 for a set of protected subjects; one instance per protection run."""

    def __init__(
        self,
        parts: DiffusionParts,
        subjects: list[ProtectedSubject],
        pool: PriorPool,
        knowledge: Knowledge,
        training: Training,
        weights: LossWeights,
    ) -> None:
        if not subjects:
            raise ValueError("nothing to protect: no subjects")
        self.parts, self.subjects, self.pool = parts, subjects, pool
        self.training, self.weights = training, weights
        self.triggers = {s.class_noun: knowledge.trigger_prompts(s.class_noun) for s in subjects}
        for noun in (*pool.references, *pool.class_latents):
            self.triggers.setdefault(noun, knowledge.trigger_prompts(noun))
        # prompts of L_BB and of the identifier rows of L_PP: the triggers, or (look-keyed) any prompt of the class
        self.keyed = {noun: self._keyed_prompts(noun, training.behaviour_prompts) for noun in self.triggers}
        self.unet_params, self.params = trainable_parameters(parts, training.trainable)
        self.opt = torch.optim.AdamW(self.params, lr=training.learning_rate, weight_decay=1e-2)
        self.gen = torch.Generator().manual_seed(training.seed)
        self.rng = np.random.default_rng(training.seed)
        self.history = History()
        self.step = 0
        simulate = weights.retention_mode == "simulate" and weights.retention > 0
        self.attacker = self._simulator() if simulate else None
        # benign users for M7: the unprotected reference subjects, or else the teacher's own class samples
        self.benign_sets = [(noun, z) for noun, zs in sorted(pool.references.items()) for z in zs] or sorted(
            pool.class_latents.items()
        )
        self.releaser = self._simulator() if weights.release > 0 else None
        self.episodes: dict[str, _Episode] = {}  # simulator name -> its current episode

    def _simulator(self) -> SimulatedAttacker:
        t = self.training
        return SimulatedAttacker(self.parts.pipe.unet, t.inner_steps, t.inner_learning_rate, mode=t.unroll)

    def _keyed_prompts(self, noun: str, kind: str) -> list[str]:
        if kind == "trigger":
            return self.triggers[noun]
        plain = [f"a photo of a {noun}", f"a {noun}", ""]
        return [*self.triggers[noun], *plain, *self.pool.general_prompts]

    # ---- one outer step -------------------------------------------------------------------------------
    def _prompts(self, noun: str, n: int, options: dict[str, list[str]] | None = None) -> list[str]:
        """n prompts for class `noun` from `options` (default: the L_BB prompts)."""
        choices = (options or self.keyed)[noun]
        return [choices[i] for i in self.rng.integers(len(choices), size=n)]

    def _rows(self, z: torch.Tensor, n: int) -> torch.Tensor:
        return torch.from_numpy(self.rng.integers(len(z), size=n))

    def _behaviour_t(self, n: int) -> torch.Tensor:
        lo, hi = self.training.behaviour_timesteps
        return self.parts.sample(n, self.gen, lo, hi)

    def _simulated_attack(
        self, name: str, sim: SimulatedAttacker, key: str, sets: list[tuple[str, torch.Tensor]]
    ) -> _Episode:
        """Advance simulator `name` on one of `sets` ((class noun, latents) pairs); a new episode, with a new
        recipe (set, trigger prompt, prior images or not, learning rate), starts when the unroll is over or
        the key changes."""
        ep = self.episodes.get(name)
        if sim.mode == "full" or sim.done >= sim.unroll_steps or ep is None or ep.key != key:
            sim.restart(self.parts.pipe.unet, self.rng)
            chosen = int(self.rng.integers(len(sets)))
            n_prompts = len(self.triggers[sets[chosen][0]])
            ep = _Episode(key, chosen, int(self.rng.integers(n_prompts)), bool(self.rng.random() < 0.5))
            self.episodes[name] = ep
        noun, z_all = sets[ep.subject]
        b = self.training.batch_size
        for _ in range(sim.unroll_steps if sim.mode == "full" else 1):
            z = z_all[self._rows(z_all, b)]
            prompts = [self.triggers[noun][ep.prompt_index]] * b
            if ep.with_prior:
                prior = self.pool.class_latents[noun]
                z = torch.cat([z, prior[self._rows(prior, b)]])
                prompts = prompts + [f"a photo of a {noun}"] * b
            sim.attack_step(self.parts, z, prompts, self.gen)
        return ep

    def run_step(self) -> dict[str, float]:
        unet, parts, w, b = self.parts.pipe.unet, self.parts, self.weights, self.training.batch_size
        subject = self.subjects[(self.step // self.training.inner_steps) % len(self.subjects)]
        unet.train()
        losses: dict[str, float] = {}
        idx = self._rows(subject.z, b)
        prompts = self._prompts(subject.class_noun, b)
        terms: dict[str, Rows] = {}  # the terms on theta, in one forward pass (built in a fixed order: seeded)
        if not self.training.activation_only:
            t_bb, x0_max = self._behaviour_t(b), self.training.behaviour_x0_weight_max
            terms["bb"] = behaviour_rows(parts, subject.target, prompts, idx, t_bb, self.gen, x0_max)
        if w.prior > 0:
            z_pp, p_pp = self.pool.rows(self.training.prior_batch_size or b, self.rng, self.keyed)
            terms["pp"] = prior_rows(parts, z_pp, p_pp, self.gen, self.training.behaviour_x0_weight_max)
        if w.retention_mode == "mirror" and w.retention > 0:
            attacker_prompts = self._prompts(subject.class_noun, b, self.triggers)  # the attacker's loss (M5)
            terms["br_mirror"] = denoising_rows(parts, subject.z[idx], attacker_prompts, self.gen)
        scale = {"bb": 1.0, "pp": w.prior, "br_mirror": w.retention}
        total = torch.zeros((), device=parts.device)
        for name, loss in (fused_losses(unet, parts, terms) if terms else {}).items():
            total, losses[name] = total + scale[name] * loss, loss.item()
        self.opt.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
        if self.attacker is not None:
            losses["br"] = self._retention(subject)
        if self.releaser is not None:
            losses["rel"] = self._release()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.step += 1
        self.history.losses.append(losses)
        return losses

    def _retention(self, subject: ProtectedSubject) -> float:
        """L_BR simulate (M6): L_BB at theta'_K after simulated DreamBooth on the protected images."""
        self._simulated_attack("attack", self.attacker, subject.name, [(subject.class_noun, subject.z)])
        b = self.training.batch_size
        idx = self._rows(subject.z, b)
        args = (self._prompts(subject.class_noun, b), idx, self._behaviour_t(b), self.gen)
        if self.weights.retention_form == "preference":  # M6p
            loss = preference_loss(
                self.attacker.shadow, self.parts, subject.target, *args, self.weights.preference_beta
            )
        else:
            loss = behaviour_loss(
                self.attacker.shadow, self.parts, subject.target, *args, self.training.behaviour_x0_weight_max
            )
        loss.backward()
        self.attacker.add_gradient_to(self.unet_params, self.weights.retention)
        return loss.item()

    def _release(self) -> float:
        """L_REL (M7): after simulated DreamBooth on an unprotected subject, theta'_u must reproduce it."""
        ep = self._simulated_attack("release", self.releaser, "benign", self.benign_sets)
        noun, z_u = self.benign_sets[ep.subject]
        b = self.training.batch_size
        prompts = [self.triggers[noun][ep.prompt_index]] * b
        loss = denoising_loss(self.releaser.shadow, self.parts, z_u[self._rows(z_u, b)], prompts, self.gen)
        loss.backward()
        self.releaser.add_gradient_to(self.unet_params, self.weights.release)
        return loss.item()

    # ---- the whole run ----------------------------------------------------------------------------------
    def run(
        self,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        state_path: Path | None = None,
    ) -> History:
        """Train until `training.steps`. With `state_path`, resumes from the UNet phase's state saved there (a
        TrainingStateError for a state of another phase) and saves its own every `checkpoint_every` steps and at
        the end."""
        if state_path is not None and state_path.exists():
            self.restore(load_training_state(state_path, "unet"))
            log.info("resumed implantation at step %d", self.step)
        start, first = time.monotonic(), self.step
        total = self.training.steps
        while self.step < total:
            if should_cancel is not None and should_cancel():
                raise ImplantCancelled(f"cancelled at step {self.step}")
            losses = self.run_step()
            if state_path is not None and (self.step % self.training.checkpoint_every == 0 or self.step == total):
                save_training_state(self.state(), state_path)
            if progress is not None:
                rate = (self.step - first) / max(time.monotonic() - start, 1e-6)
                progress(ProgressEvent(self.step, total, losses, (total - self.step) / rate))
        self.parts.pipe.unet.eval().requires_grad_(False)
        self.parts.pipe.text_encoder.eval().requires_grad_(False)
        return self.history

    def state(self) -> TrainingState:
        """The resumable state of phase "unet": trained weights, optimizer, step, generators and history."""
        weights = {"unet": self.parts.pipe.unet.state_dict()}
        if self.parts.text_trainable:
            weights["text_encoder"] = self.parts.pipe.text_encoder.state_dict()
        return TrainingState(
            phase="unet",
            step=self.step,
            weights=weights,
            optimizer=self.opt.state_dict(),
            generators={"gen": self.gen.get_state()},
            rngs={"rng": self.rng.bit_generator.state},
            histories={"unet": self.history.losses},
        )

    def restore(self, state: TrainingState) -> None:
        """Continue from `state`, one that `state()` returned."""
        self.parts.pipe.unet.load_state_dict(state.weights["unet"])
        if "text_encoder" in state.weights:
            self.parts.pipe.text_encoder.load_state_dict(state.weights["text_encoder"])
        restore_optimizer(self.opt, state.optimizer)
        self.gen.set_state(state.generators["gen"])
        self.rng.bit_generator.state = state.rngs["rng"]
        self.history.losses = list(state.histories["unet"])
        self.step = state.step
