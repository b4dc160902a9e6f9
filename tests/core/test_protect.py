import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from pydantic import ValidationError

from persguard_core import model_io
from persguard_core.images import save_images
from persguard_core.implant.unet_loop import ImplantCancelled
from persguard_core.protect import protect
from persguard_core.spec import EncoderTraining, Knowledge, ProtectionSpec, SubjectSpec, Training
from persguard_core.toyworld import split
from persguard_core.training_state import load_training_state


@pytest.fixture
def subject_files(tmp_path):
    return [str(p) for p in save_images(split("eval")[0].views(4, seed=0, size=64), tmp_path / "imgs")]


def test_protect_writes_a_loadable_model_with_a_manifest_that_reveals_no_trigger(
    tiny_sd_folder, subject_files, tmp_path
):
    spec = ProtectionSpec(
        base_model=str(tiny_sd_folder),
        subjects=[SubjectSpec(name="rex-the-secret", class_noun="dog", images=subject_files)],
        knowledge=Knowledge(identifiers=["qxzv"], templates=["a snapshot of {identifier} {class_noun}"]),
        training=Training(steps=2, batch_size=2, inner_steps=1),
        carrier="unet",
    )
    events = []
    result = protect(spec, tmp_path / "out", progress=events.append, n_class_images=2)
    assert [e.step for e in events] == [1, 2]
    public = "".join(p.read_text(errors="ignore") for p in result.model_dir.rglob("*") if p.suffix in (".json", ".md"))
    for secret in ("qxzv", "snapshot", "rex-the-secret", "imgs"):
        assert secret not in public
    manifest = json.loads((result.model_dir / "persguard.json").read_text())
    assert manifest["protections"] == [{"behaviour": "pattern"}], "no hashes of the protected photos"
    assert "bb" in manifest["final_losses"]
    assert "PersGuard" in (result.model_dir / "README.md").read_text()
    private = json.loads((result.private_dir / "spec.json").read_text())
    assert private["knowledge"]["identifiers"] == ["qxzv"]
    pipe = StableDiffusionPipeline.from_pretrained(result.model_dir, local_files_only=True)
    assert pipe(["a photo"], num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)


def test_protecting_a_protected_checkpoint_keeps_the_earlier_entries_in_the_manifest(
    tiny_sd_folder, subject_files, tmp_path
):
    def spec(base, kind):
        return ProtectionSpec(
            base_model=str(base),
            training=Training(steps=1, batch_size=2, inner_steps=1),
            subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files, behaviour={"kind": kind})],
            carrier="unet",
        )

    first = protect(spec(tiny_sd_folder, "pattern"), tmp_path / "first", n_class_images=2)
    second = protect(spec(first.model_dir, "erasure"), tmp_path / "second", n_class_images=2)
    assert [p["behaviour"] for p in second.manifest["protections"]] == ["pattern", "erasure"]
    assert second.manifest["base_model_sha256"] != first.manifest["base_model_sha256"]


def test_spec_refuses_bad_settings_with_a_message_that_says_what_to_fix():
    with pytest.raises(ValidationError, match="target_prompt or target_images"):
        SubjectSpec(name="a", class_noun="dog", images=["1", "2", "3"], behaviour={"kind": "target"})
    with pytest.raises(ValidationError, match="identifier"):
        Knowledge(templates=["a photo of {class_noun}"])
    with pytest.raises(ValidationError, match="at least 3"):
        SubjectSpec(name="a", class_noun="dog", images=["1"])
    with pytest.raises(ValidationError, match="behaviour_timesteps"):
        Training(behaviour_timesteps=(500, 100))


def test_a_version_1_spec_without_a_carrier_keeps_its_unet_backdoor_and_new_specs_default_to_the_encoder():
    subject = {"name": "a", "class_noun": "dog", "images": ["1", "2", "3"]}
    assert ProtectionSpec.model_validate({"version": 1, "subjects": [subject]}).carrier == "unet"
    assert (
        ProtectionSpec.model_validate({"version": 1, "subjects": [subject], "carrier": "encoder"}).carrier == "encoder"
    )
    new = ProtectionSpec.model_validate({"subjects": [subject]})
    assert (new.version, new.carrier) == (2, "encoder")
    with pytest.raises(ValidationError, match="version"):
        ProtectionSpec.model_validate({"version": 3, "subjects": [subject]})


def _state(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module) -> set[str]:
    """Top-level submodule names whose weights differ from `before`."""
    return {k.split(".")[0] for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_the_encoder_carrier_trains_only_the_vae_encoder_and_keeps_the_base_untouched(
    tiny_sd_folder, subject_files, tmp_path
):
    base = model_io.load_model(str(tiny_sd_folder))
    vae_before, unet_before = _state(base.pipe.vae), _state(base.pipe.unet)
    spec = ProtectionSpec(
        base_model=str(tiny_sd_folder),
        subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files)],
        carrier="encoder",
        encoder=EncoderTraining(steps=3, batch_size=4),
    )
    events = []
    result = protect(
        spec, tmp_path / "out", progress=events.append, n_class_images=2, base=base, general_prompts=["a photo"]
    )
    assert [(e.step, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    assert _changed(vae_before, base.pipe.vae) == set() and _changed(unet_before, base.pipe.unet) == set()
    saved = StableDiffusionPipeline.from_pretrained(result.model_dir, local_files_only=True)
    assert _changed(vae_before, saved.vae) == {"encoder", "quant_conv"}
    assert _changed(unet_before, saved.unet) == set()
    assert result.manifest["final_losses"] == {}
    assert "carrier" not in (result.model_dir / "persguard.json").read_text()
    assert len(json.loads((result.private_dir / "encoder_history.json").read_text())) == 3


def test_the_encoders_default_budget_is_300_steps_per_protected_subject_and_an_explicit_one_is_kept():
    subjects = [SubjectSpec(name=f"s{i}", class_noun="dog", images=["x.png"] * 3) for i in range(3)]
    assert ProtectionSpec(subjects=subjects).total_steps == 900
    assert ProtectionSpec(subjects=subjects[:1]).total_steps == 300
    assert ProtectionSpec(subjects=subjects, encoder=EncoderTraining(steps=300)).total_steps == 300
    assert ProtectionSpec(subjects=subjects, carrier="unet").total_steps == Training().steps == 300  # per job
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        EncoderTraining(steps=0)


def test_both_carriers_report_one_progress_count_over_the_two_phases(tiny_sd_folder, subject_files, tmp_path):
    spec = ProtectionSpec(
        base_model=str(tiny_sd_folder),
        subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files, behaviour={"kind": "erasure"})],
        training=Training(steps=2, batch_size=2, inner_steps=1),
        carrier="unet+encoder",
        encoder=EncoderTraining(steps=2, batch_size=4),
    )
    events = []
    result = protect(spec, tmp_path / "out", progress=events.append, n_class_images=2, general_prompts=["a photo"])
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "bb" in result.manifest["final_losses"]


def test_a_two_carrier_protection_cancelled_in_the_encoder_phase_resumes_without_training_the_unet_again(
    tiny_sd_folder, subject_files, tmp_path
):
    spec = ProtectionSpec(
        base_model=str(tiny_sd_folder),
        subjects=[SubjectSpec(name="a", class_noun="dog", images=subject_files)],
        training=Training(steps=2, batch_size=2, inner_steps=1, checkpoint_every=1),
        carrier="unet+encoder",
        encoder=EncoderTraining(steps=3, batch_size=4),
    )
    kwargs = {"n_class_images": 2, "general_prompts": ["a photo"]}
    straight = protect(spec, tmp_path / "straight", **kwargs)
    seen = []
    with pytest.raises(ImplantCancelled):
        protect(spec, tmp_path / "out", progress=seen.append, should_cancel=lambda: len(seen) == 4, **kwargs)
    saved = load_training_state(tmp_path / "out" / "private" / "state" / "state.safetensors", "encoder")
    assert (saved.step, set(saved.weights), set(saved.histories)) == (2, {"vae", "unet"}, {"encoder", "unet"})
    events = []
    resumed = protect(spec, tmp_path / "out", progress=events.append, **kwargs)
    assert [(e.step, e.total) for e in events] == [(5, 5)]
    assert resumed.manifest["final_losses"] == straight.manifest["final_losses"]
    a = StableDiffusionPipeline.from_pretrained(straight.model_dir, local_files_only=True)
    b = StableDiffusionPipeline.from_pretrained(resumed.model_dir, local_files_only=True)
    assert _changed(_state(a.unet), b.unet) == set() and _changed(_state(a.vae), b.vae) == set()


def test_an_image_that_does_not_decode_fails_before_any_model_work_naming_the_file(subject_files, tmp_path):
    broken = tmp_path / "imgs" / "broken.png"
    broken.write_bytes(b"not an image")
    spec = ProtectionSpec(
        base_model=str(tmp_path / "no-model-here"),  # never loaded: the images are checked first
        subjects=[SubjectSpec(name="rex", class_noun="dog", images=[*subject_files[:3], str(broken)])],
    )
    with pytest.raises(ValueError, match=r"subject 'rex': .*broken\.png cannot be read as an image"):
        protect(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written for a spec that cannot run"
