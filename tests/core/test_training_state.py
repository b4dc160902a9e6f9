"""The training-state file: one safetensors file, JSON metadata, no pickle; exact round trips; phase checks."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from persguard_core.training_state import (
    SCHEMA_VERSION,
    TrainingState,
    TrainingStateError,
    load_training_state,
    restore_optimizer,
    save_training_state,
    saved_phase,
)

REPO = Path(__file__).resolve().parents[2]


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
        self.b.bias.requires_grad_(False)  # a parameter without optimizer state


def _trained(steps: int) -> tuple[_Model, torch.optim.AdamW, torch.Generator, np.random.Generator, list[dict]]:
    """A model after `steps` AdamW steps on seeded random batches, with the generators that drew them."""
    model = _Model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=1e-2)
    gen, rng, history = torch.Generator().manual_seed(1), np.random.default_rng(2), []
    for _ in range(steps):
        history.append(_step(model, opt, gen, rng))
    return model, opt, gen, rng, history


def _step(model: _Model, opt: torch.optim.Optimizer, gen: torch.Generator, rng: np.random.Generator) -> dict:
    x = torch.randn(5, 4, generator=gen) * float(rng.uniform(0.5, 2.0))  # (5, 4)
    loss = model.b(model.a(x).relu()).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss": loss.item()}


def _state(phase: str = "unet", steps: int = 3) -> tuple[TrainingState, _Model, torch.optim.AdamW]:
    model, opt, gen, rng, history = _trained(steps)
    state = TrainingState(
        phase=phase,
        step=steps,
        weights={"unet": model.state_dict()},
        optimizer=opt.state_dict(),
        generators={"gen": gen.get_state()},
        rngs={"rng": rng.bit_generator.state},
        histories={phase: history},
    )
    return state, model, opt


def test_a_round_trip_restores_weights_optimizer_generators_and_histories_exactly(tmp_path):
    state, model, opt = _state()
    path = tmp_path / "state.safetensors"
    save_training_state(state, path)
    back = load_training_state(path, "unet")
    assert (back.phase, back.step, back.histories, back.rngs) == ("unet", 3, state.histories, state.rngs)
    assert back.weights.keys() == {"unet"} and back.weights["unet"].keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        assert torch.equal(back.weights["unet"][name], t) and back.weights["unet"][name].dtype == t.dtype, name
    assert torch.equal(back.generators["gen"], state.generators["gen"])
    saved = opt.state_dict()
    assert back.optimizer["state"].keys() == saved["state"].keys() == {0, 1, 2}
    for i, entries in saved["state"].items():
        assert back.optimizer["state"][i].keys() == entries.keys()
        for name, t in entries.items():
            got = back.optimizer["state"][i][name]
            assert torch.equal(got, t) and (got.shape, got.dtype) == (t.shape, t.dtype), (i, name)
    fresh = _Model()
    opt2 = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=0.5)
    restore_optimizer(opt2, back.optimizer)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999) and opt2.param_groups[0]["lr"] == 1e-2
    assert opt2.state_dict()["param_groups"] == saved["param_groups"]


def test_training_resumed_from_a_saved_state_continues_bit_identical_to_a_straight_run(tmp_path):
    straight, straight_opt, gen, rng, _ = _trained(3)
    for _ in range(2):
        _step(straight, straight_opt, gen, rng)
    state, _, _ = _state(steps=3)
    save_training_state(state, tmp_path / "state.safetensors")
    back = load_training_state(tmp_path / "state.safetensors", "unet")
    model = _Model()
    model.load_state_dict(back.weights["unet"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=1e-2)
    restore_optimizer(opt, back.optimizer)
    gen2, rng2 = torch.Generator(), np.random.default_rng()
    gen2.set_state(back.generators["gen"])
    rng2.bit_generator.state = back.rngs["rng"]
    for _ in range(2):
        _step(model, opt, gen2, rng2)
    for name, t in straight.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name


def test_the_file_is_plain_safetensors_with_json_metadata_and_no_pickle(tmp_path):
    state, _, _ = _state()
    path = tmp_path / "state.safetensors"
    save_training_state(state, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: header length, JSON header, then raw tensor bytes only
    header = json.loads(raw[8 : 8 + n])
    end = max(entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__")
    assert len(raw) == 8 + n + end
    with safe_open(path, framework="pt") as f:
        meta, keys = f.metadata(), set(f.keys())
    assert (meta["format"], meta["schema_version"], meta["phase"], meta["step"]) == (
        "persguard-training-state",
        str(SCHEMA_VERSION),
        "unet",
        "3",
    )
    assert json.loads(meta["rngs"])["rng"]["bit_generator"] == "PCG64"
    assert json.loads(meta["optimizer"])["param_groups"][0]["betas"] == [0.9, 0.999]
    assert {"weights/unet/a.weight", "optimizer/state/0/exp_avg", "optimizer/state/2/step", "generator/gen"} <= keys
    assert not list(tmp_path.glob("*.tmp")), "the temporary file was renamed into place"


def test_a_state_of_another_phase_or_schema_or_no_state_at_all_is_refused_saying_why(tmp_path):
    path = tmp_path / "state.safetensors"
    assert saved_phase(path) is None
    save_training_state(_state("encoder")[0], path)
    assert saved_phase(path) == "encoder"
    with pytest.raises(TrainingStateError, match="'encoder' phase, not of 'unet'"):
        load_training_state(path, "unet")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, path, metadata={"format": "persguard-training-state", "schema_version": "0"})
    with pytest.raises(TrainingStateError, match="schema version '0'"):
        load_training_state(path, "unet")
    save_file({"x": torch.zeros(1)}, path)
    with pytest.raises(TrainingStateError, match="not a PersGuard training state"):
        saved_phase(path)
    path.write_bytes(b"\x80\x04\x95 a pickle, say")
    with pytest.raises(TrainingStateError, match="not a readable training state"):
        load_training_state(path, "unet")
    with pytest.raises(ValueError, match="unknown training phase"):
        TrainingState("text", 0, {}, {})


def test_saving_replaces_the_file_so_a_hard_link_to_the_old_one_keeps_its_contents(tmp_path):
    path, snapshot = tmp_path / "state.safetensors", tmp_path / "upload-1.safetensors"
    save_training_state(_state("unet")[0], path)
    os.link(path, snapshot)  # what the worker's upload does
    save_training_state(_state("encoder")[0], path)
    assert (saved_phase(snapshot), saved_phase(path)) == ("unet", "encoder")


def test_carrying_an_earlier_phase_keeps_its_weights_and_history_beside_the_later_ones(tmp_path):
    earlier, _, _ = _state("unet")
    later = TrainingState("encoder", 1, {"vae": {"w": torch.ones(2)}}, {}, histories={"encoder": [{"e": 1.0}]})
    save_training_state(later.carrying(earlier), tmp_path / "state.safetensors")
    back = load_training_state(tmp_path / "state.safetensors", "encoder")
    assert set(back.weights) == {"vae", "unet"} and set(back.histories) == {"encoder", "unet"}
    assert back.generators == {} and back.optimizer == {"state": {}, "param_groups": []}
    assert later.weights.keys() == {"vae"}, "carrying returns a copy"


def test_nothing_in_the_library_or_the_service_unpickles_with_torch_load():
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for package in ("persguard_core", "common", "worker")
        for path in sorted((REPO / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "torch.load(" in line
    ]
    assert offenders == []
