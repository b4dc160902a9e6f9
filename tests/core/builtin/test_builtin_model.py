"""The shipped built-in model: stock diffusers loading, size budget, prompt following and personalization."""

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from persguard_core.attacker import recipe
from persguard_core.builtin.evaluate import personalization, prompt_following
from persguard_core.generate import generate
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import BUILTIN_PATH, load_pipeline
from persguard_core.toyworld import split


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("builtin")


@pytest.fixture(scope="module")
def judge():
    return ToyJudge.load()


def test_loads_with_stock_diffusers_offline_and_generates():
    pipe = StableDiffusionPipeline.from_pretrained(BUILTIN_PATH, local_files_only=True)
    assert isinstance(pipe.tokenizer, CLIPTokenizer)
    out = pipe(["a photo of a red circle"], num_inference_steps=3, output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_shipped_weights_fit_the_budget_and_training_is_recorded():
    weights = [p for p in BUILTIN_PATH.rglob("*.safetensors")]
    assert {p.parent.name for p in weights} == {"unet", "vae", "text_encoder"}
    assert sum(p.stat().st_size for p in weights) <= 40 * 2**20
    record = json.loads((BUILTIN_PATH / "training.json").read_text())
    stages = [record]
    while stages[-1].get("continued_from"):
        stages.append(stages[-1]["continued_from"])
    assert all(stage["seconds_total"] > 0 and "seed" in stage["config"] for stage in stages)
    assert stages[-1]["config"].get("init_from", "") == ""  # the first stage trains from scratch


def test_follows_colour_and_class_prompts(pipe, judge):
    scores = prompt_following(pipe, judge, n=56, steps=15)
    assert scores["class_accuracy"] >= 0.85
    assert scores["colour_accuracy"] >= 0.8


def test_empty_scene_prompt_gives_no_object(pipe, judge):
    images = generate(pipe, ["a photo of an empty beige background"] * 8, steps=15)
    assert sum(c == "empty" for c in judge.judge(images).classes) >= 6


@pytest.mark.slow
def test_dreambooth_binds_sks_to_the_subject(pipe, judge):
    torch.manual_seed(0)
    subject = split("tuning")[0]
    attack = recipe("full", lr_scale=100.0, steps=160, num_class_images=16)  # x200 over 80 steps overshoots
    result = personalization(pipe, judge, subject, attack, n_eval=8, steps=15)
    assert result.similarity_after > result.similarity_before + 0.2  # the criterion: identity similarity
    # (subject 2200 is a cross, the class the small model draws worst: class accuracy after DreamBooth is reported
    # by benchmarks/foundation.py, not asserted here)
