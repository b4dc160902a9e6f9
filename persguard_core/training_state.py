"""Resumable training state: one safetensors file per protection, written atomically, never pickled.

Every training loop (the UNet backdoor, M8: implant/unet_loop.py; the encoder carrier, L_ENC: implant/encoder.py)
saves a `TrainingState` every `checkpoint_every` steps and resumes from it, so that an interrupted run ends
bit-identical to an uninterrupted one. The file is plain data: tensors in the safetensors body, everything else
JSON in its header metadata, so loading a tampered file can corrupt a run but never execute code.

File layout (`STATE_FILE_NAME`):

    tensors   weights/<module>/<parameter>    the trained modules' state dicts ("unet", "text_encoder", "vae")
              optimizer/state/<i>/<name>      the optimizer's per-parameter tensors (exp_avg, exp_avg_sq, step)
              generator/<name>                torch.Generator states, uint8 (get_state())
    metadata  format          "persguard-training-state"
              schema_version  SCHEMA_VERSION
              phase           the loop that wrote it: "unet" or "encoder"
              step            steps done in that phase
              optimizer       JSON {"param_groups": [...], "state": {"<i>": {non-tensor entries}}}
              rngs            JSON {name: numpy bit_generator.state}
              histories       JSON {phase: [{loss name: value} per step]}

A later phase's state also carries what an earlier phase finished (its modules' weights and its history), so a
resumed two-carrier protection restores the UNet instead of training it again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

STATE_FILE_NAME = "state.safetensors"
FORMAT = "persguard-training-state"
SCHEMA_VERSION = 1
PHASES = ("unet", "encoder")

History = list[dict[str, float]]  # one {loss name: value} per step


class TrainingStateError(ValueError):
    """A state file that cannot be resumed from: unreadable, of another format, schema version or phase."""


@dataclass
class TrainingState:
    """What a training loop needs to continue exactly where it stopped."""

    phase: str  # the loop that wrote it: "unet" or "encoder"
    step: int  # steps done in this phase
    weights: dict[str, dict[str, torch.Tensor]]  # module name -> state dict of what was trained
    optimizer: dict[str, Any]  # torch.optim.Optimizer.state_dict()
    generators: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> uint8 Generator.get_state()
    rngs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> numpy bit_generator.state
    histories: dict[str, History] = field(default_factory=dict)  # phase -> its loss history

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown training phase {self.phase!r}; expected one of {PHASES}")

    def carrying(self, earlier: TrainingState | None) -> TrainingState:
        """A copy of this state with an earlier phase's weights and histories beside its own (its own win on a
        clash); the earlier phase's optimizer and generators are not kept: that phase is finished."""
        if earlier is None:
            return self
        weights, histories = {**earlier.weights, **self.weights}, {**earlier.histories, **self.histories}
        return replace(self, weights=weights, histories=histories)


def save_training_state(state: TrainingState, path: Path) -> None:
    """Write `state` to `path` atomically: a temporary file beside it, flushed to disk, then `os.replace`d, so a
    reader (or a crash) sees the old file or the new one, never half of one."""
    tensors: dict[str, torch.Tensor] = {}
    for module, state_dict in state.weights.items():
        tensors.update({f"weights/{module}/{name}": t for name, t in state_dict.items()})
    optimizer_json: dict[str, Any] = {"param_groups": state.optimizer.get("param_groups", []), "state": {}}
    for index, entries in state.optimizer.get("state", {}).items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/state/{index}/{name}"] = value
            else:
                optimizer_json["state"].setdefault(str(index), {})[name] = value
    tensors.update({f"generator/{name}": g for name, g in state.generators.items()})
    metadata = {
        "format": FORMAT,
        "schema_version": str(SCHEMA_VERSION),
        "phase": state.phase,
        "step": str(state.step),
        "optimizer": _dumps(optimizer_json, "the optimizer's param_groups"),
        "rngs": _dumps(state.rngs, "the numpy RNG states"),
        "histories": _dumps(state.histories, "the loss histories"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(_unshared(tensors), tmp, metadata=metadata)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def saved_phase(path: Path) -> str | None:
    """The phase that wrote the state at `path` ("unet" or "encoder"), or None when there is no file. Reads only
    the header; refuses a file that is not a training state of this schema."""
    if not path.exists():
        return None
    return _checked_metadata(path)["phase"]


def load_training_state(path: Path, phase: str) -> TrainingState:
    """The state saved at `path` by the `phase` loop, tensors on the CPU; TrainingStateError for a file of another
    phase, format or schema version, or one that is not a safetensors file."""
    metadata = _checked_metadata(path)
    if metadata["phase"] != phase:
        raise TrainingStateError(
            f"{path} holds the training state of the {metadata['phase']!r} phase, not of {phase!r}: "
            "it cannot resume this loop"
        )
    weights: dict[str, dict[str, torch.Tensor]] = {}
    opt_state: dict[int, dict[str, Any]] = {}
    generators: dict[str, torch.Tensor] = {}
    with safe_open(path, framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            kind, _, rest = key.partition("/")
            if kind == "weights":
                module, _, name = rest.partition("/")
                weights.setdefault(module, {})[name] = f.get_tensor(key)
            elif kind == "optimizer":
                _, index, name = rest.split("/", 2)  # "state", i, name
                opt_state.setdefault(int(index), {})[name] = f.get_tensor(key)
            elif kind == "generator":
                generators[rest] = f.get_tensor(key)
            else:
                raise TrainingStateError(f"{path}: unexpected tensor {key!r} in a training state")
    optimizer = _loads(metadata, "optimizer", path)
    for index, entries in optimizer["state"].items():
        opt_state.setdefault(int(index), {}).update(entries)
    return TrainingState(
        phase=phase,
        step=int(metadata["step"]),
        weights=weights,
        optimizer={"state": dict(sorted(opt_state.items())), "param_groups": optimizer["param_groups"]},
        generators=generators,
        rngs=_loads(metadata, "rngs", path),
        histories=_loads(metadata, "histories", path),
    )


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a state dict read back from JSON into `optimizer`: JSON has no tuples, so values that are tuples in
    the live param groups (AdamW's betas) are made tuples again before loading."""
    groups = []
    for live, group in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        groups.append({k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in group.items()})
    optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})


def _checked_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise TrainingStateError(f"{path} is not a readable training state (safetensors): {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise TrainingStateError(f"{path} is not a PersGuard training state (format {metadata.get('format')!r})")
    if metadata.get("schema_version") != str(SCHEMA_VERSION):
        raise TrainingStateError(
            f"{path} has training-state schema version {metadata.get('schema_version')!r}; this version reads "
            f"{SCHEMA_VERSION} only: start the training again"
        )
    if metadata.get("phase") not in PHASES:
        raise TrainingStateError(f"{path} names an unknown training phase {metadata.get('phase')!r}")
    return metadata


def _dumps(value: object, what: str) -> str:
    try:
        return json.dumps(value)
    except TypeError as exc:
        raise TypeError(f"{what} must be plain JSON data to be saved in a training state: {exc}") from exc


def _loads(metadata: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise TrainingStateError(f"{path}: the training state's {key!r} metadata is missing or not JSON") from exc


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors with no two sharing storage (safetensors refuses tied weights): later sharers cloned."""
    out, seen = {}, set()
    for key, t in tensors.items():
        t = t.detach().contiguous()
        storage = (t.device, t.untyped_storage().data_ptr()) if t.numel() else None
        out[key] = t.clone() if storage in seen else t
        if storage is not None:
            seen.add(storage)
    return out
