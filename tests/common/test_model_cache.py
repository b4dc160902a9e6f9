"""The per-process base-model cache: hits reuse the loaded model, changed files and other devices reload, a job's
training never reaches the cached model (the next job's result is the same as from a fresh load)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from common.jobs import defaults
from common.jobs.model_cache import BaseModelCache
from persguard_core.images import save_images
from persguard_core.protect import ProtectionResult, protect
from persguard_core.spec import ProtectionSpec, SubjectSpec, Training
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline


class CountingLoader:
    """A stand-in for loading: a new object per call, and how many calls there were."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []

    def __call__(self, path: Path, device: str) -> SimpleNamespace:
        self.calls.append((path, device))
        return SimpleNamespace(path=path, device=device, n=len(self.calls))


def _model_folder(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "weights.safetensors").write_bytes(b"w" * 10)
    (folder / "model_index.json").write_text("{}")
    return folder


def test_a_second_job_on_the_same_model_gets_the_loaded_one(tmp_path: Path) -> None:
    folder, loader = _model_folder(tmp_path, "m"), CountingLoader()
    cache = BaseModelCache(capacity=1, loader=loader)
    with cache.use(str(folder), "cpu") as first:
        pass
    with cache.use(str(folder), "cpu") as second:
        assert second is first
    assert len(loader.calls) == 1 and (cache.stats().hits, cache.stats().misses) == (1, 1)


def test_a_model_whose_files_changed_or_another_device_is_loaded_again_and_replaces_the_old_entry(
    tmp_path: Path,
) -> None:
    folder, loader = _model_folder(tmp_path, "m"), CountingLoader()
    cache = BaseModelCache(capacity=2, loader=loader)
    with cache.use(str(folder), "cpu") as old:
        pass
    weights = folder / "unet" / "weights.safetensors"
    weights.write_bytes(b"x" * 10)  # retrained in place: same size, new modification time
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    with cache.use(str(folder), "cpu") as new:
        assert new is not old
    with cache.use(str(folder), "cuda") as other_device:
        assert other_device.device == "cuda"
    assert len(loader.calls) == 3 and len(cache) == 1, "stale versions of one folder are not kept"


def test_the_cache_holds_at_most_capacity_models_and_none_at_capacity_zero(tmp_path: Path) -> None:
    a, b, loader = _model_folder(tmp_path, "a"), _model_folder(tmp_path, "b"), CountingLoader()
    cache = BaseModelCache(capacity=1, loader=loader)
    for model in (a, b, a):
        with cache.use(str(model), "cpu"):
            pass
    assert len(loader.calls) == 3 and len(cache) == 1
    off = BaseModelCache(capacity=0, loader=loader)
    for _ in range(2):
        with off.use(str(a), "cpu"):
            pass
    assert len(loader.calls) == 5 and len(off) == 0


def test_a_model_lent_to_one_job_is_not_lent_to_a_concurrent_one(tmp_path: Path) -> None:
    folder, loader = _model_folder(tmp_path, "m"), CountingLoader()
    cache = BaseModelCache(capacity=1, loader=loader)
    with cache.use(str(folder), "cpu") as first, cache.use(str(folder), "cpu") as second:
        assert second is not first, "the second job gets a private copy"
    with cache.use(str(folder), "cpu") as third:
        assert third is first
    assert len(loader.calls) == 2 and len(cache) == 1


def test_the_default_implantation_takes_the_base_model_from_the_process_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "tiny"
    tiny_sd_pipeline("sd1").save_pretrained(folder, safe_serialization=True)
    cache = BaseModelCache(capacity=1)
    bases = []

    def recording_protect(spec: ProtectionSpec, out_dir: Path, **kwargs: object) -> SimpleNamespace:
        bases.append(kwargs["base"])
        return SimpleNamespace(model_dir=Path(out_dir) / "model")

    monkeypatch.setattr(defaults, "process_cache", lambda: cache)
    monkeypatch.setattr("persguard_core.protect.protect", recording_protect)
    spec = ProtectionSpec(base_model=str(folder), subjects=[SubjectSpec(name="a", class_noun="dog", images=["x"] * 3)])
    for job in ("one", "two"):
        defaults.default_protect_fn(spec, tmp_path / job, lambda *_: None, lambda: False)
    assert bases[0] is bases[1] and bases[0].path == folder.resolve()
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd1")
    tiny_sd_pipeline("sd1").save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def subject_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("subject")
    return [str(p) for p in save_images(split("eval")[0].views(4, seed=0, size=64), root)]


def _weights(pipe: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().clone()
        for name in ("unet", "text_encoder", "vae")
        for key, value in getattr(pipe, name).state_dict().items()
    }


def _saved(result: ProtectionResult) -> dict[str, torch.Tensor]:
    return {
        f"{path.parent.name}.{key}": value
        for path in sorted(result.model_dir.rglob("*.safetensors"))
        for key, value in load_file(path).items()
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("trainable", ["unet", "unet+text-encoder"])
def test_a_job_on_the_cached_model_leaves_it_unchanged_for_the_next_job(
    tiny_folder: Path, subject_files: list[str], tmp_path: Path, trainable: str
) -> None:
    def spec(seed: int) -> ProtectionSpec:
        return ProtectionSpec(
            base_model=str(tiny_folder),
            subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files)],
            training=Training(steps=2, batch_size=2, inner_steps=1, seed=seed, trainable=trainable),
            carrier="unet",
        )

    cache = BaseModelCache(capacity=1)
    results = []
    for job, seed in (("one", 1), ("two", 2)):
        with cache.use(str(tiny_folder), "cpu") as base:
            before = _weights(base.pipe)
            results.append(protect(spec(seed), tmp_path / job, n_class_images=2, base=base))
            assert _same(_weights(base.pipe), before), f"job {job} changed the cached model"
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)
    fresh = protect(spec(2), tmp_path / "fresh", n_class_images=2)  # loads the base model itself, as the CLI does
    assert _same(_saved(results[1]), _saved(fresh)), "the second job's result depends on what the first one did"
    assert not _same(_saved(results[0]), _saved(fresh)), "the jobs trained something"
    assert results[1].manifest["base_model_sha256"] == fresh.manifest["base_model_sha256"]


def test_protect_refuses_a_loaded_model_that_is_not_the_specs(
    tiny_folder: Path, subject_files: list[str], tmp_path: Path
) -> None:
    spec = ProtectionSpec(
        base_model="builtin", subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files)]
    )
    with BaseModelCache().use(str(tiny_folder), "cpu") as base, pytest.raises(ValueError, match="spec names"):
        protect(spec, tmp_path / "out", base=base)
