"""What each adaptive attacker hands DreamBooth, before any fine-tuning: protect a tuning subject with the encoder
carrier (the service's defaults), then decode the latents each attacker would train on for the subject's photos
and count the pattern (and the reconstruction error against the photos). The naive attacker gets the stamped
latents; an attacker whose step undoes the carrier gets clean ones. A class-mate's photos check that the step
itself adds no pattern. One JSON line per attacker.

    .venv/bin/python research/probes/adaptive_handover.py --seed 0 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from persguard_core.attacker import RECIPES
from persguard_core.attacker.adaptive import invert_decoder, purify, repair_encoder
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import default_pattern
from persguard_core.protect import protect
from research.presets import PRESETS
from research.subjects import GENERAL_PROMPTS, protection_spec, subjects_for_seed


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    return ((pixels.clamp(-1, 1) + 1) * 127.5 + 0.5).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def handed_over(name: str, released, base, photos: np.ndarray, noun: str) -> np.ndarray:
    """The images whose latents the attacker's DreamBooth trains on, decoded by the VAE it generates with."""
    recipe = RECIPES[name]
    with torch.no_grad():
        if name == "full":
            return round_trip(released.vae, photos)
        if name == "clean-vae":
            return round_trip(base.vae, photos)
        if name == "purify":
            return round_trip(released.vae, purify(released, photos, noun, recipe.purify_strength))
    if name == "encoder-repair":
        repaired = repair_encoder(released.vae, photos, recipe.adaptive_steps, recipe.adaptive_lr)
        with torch.no_grad():
            return round_trip(repaired, photos)
    z = invert_decoder(released.vae, photos, recipe.adaptive_steps, recipe.adaptive_lr)  # decoder-inversion
    with torch.no_grad():
        return _to_uint8(released.vae.decode(z / released.vae.config.scaling_factor).sample.float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="an encoder-protected model of the seed's subject (default: protect one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS["levers"]
    setting = next(s for s in preset.settings if s.name == "encoder")
    protected, mate, _ = subjects_for_seed(args.seed, preset.split)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            t0 = time.time()
            spec = protection_spec(setting, preset, args.seed, Path(tmp))
            model = str(protect(spec, Path(tmp) / "protect", general_prompts=GENERAL_PROMPTS).model_dir)
            print(json.dumps({"protected": protected.id, "protect_s": round(time.time() - t0, 1)}), flush=True)
        released, base = load_pipeline(model), load_pipeline("builtin")
        pattern = default_pattern(32)
        for name in ("full", "clean-vae", "encoder-repair", "decoder-inversion", "purify"):
            line = {"attacker": name, "seed": args.seed}
            for who, subject in (("protected", protected), ("class-mate", mate)):
                photos = subject.views(6, seed=0)
                t0 = time.time()
                images = handed_over(name, released, base, photos, subject.class_noun)
                error = float(np.abs(images.astype(int) - photos.astype(int)).mean() / 255)
                line |= {
                    f"{who}_pattern": float(detect_pattern(images, pattern).mean()),
                    f"{who}_abs_error": round(error, 4),
                    f"{who}_s": round(time.time() - t0, 1),
                }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
