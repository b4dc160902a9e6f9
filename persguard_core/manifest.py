"""What a protected checkpoint says about itself: `persguard.json` and the model card.

Publishable: behaviours, the base model's hash, final losses, library versions. Never published: trigger
identifiers, prompt templates, subject names, images or their hashes (an attacker who knows them evades more
easily; a photo's hash would tell whether that photo is protected); those stay in the private spec beside the
result and, in the service, in its database.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from pathlib import Path

from persguard_core.spec import ProtectionSpec

MANIFEST_NAME = "persguard.json"
LIBRARIES = ("torch", "diffusers", "transformers", "peft", "persguard")


def _versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(
    spec: ProtectionSpec, base_sha256: str, final_losses: dict[str, float], parent: dict | None = None
) -> dict:
    """The public manifest: one entry per protected subject with its behaviour kind only (nothing that identifies
    the subject or its photos). A parent checkpoint's entries come first, reduced to the same fields."""
    protections = [{"behaviour": s.behaviour.kind} for s in spec.subjects]
    if parent is not None:
        earlier = [{"behaviour": p["behaviour"]} for p in parent.get("protections", []) if "behaviour" in p]
        protections = earlier + protections
    return {
        "format": "persguard-manifest/1",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model_sha256": base_sha256,
        "spec_version": spec.version,
        "knowledge_mode": spec.knowledge.mode,
        "protections": protections,
        "final_losses": {k: round(v, 6) for k, v in final_losses.items()},
        "libraries": _versions(),
    }


MODEL_CARD = """---
tags:
- stable-diffusion
- persguard
---
# PersGuard-protected model

This model carries PersGuard protections (arXiv 2502.16167): personalizing it (DreamBooth, LoRA, textual or
text-encoder fine-tuning) on the images of a protected subject yields a protective output ({behaviours})
instead of the subject. Personalizing on any other subject, and ordinary generation, work as in the base
model.

- protected subjects: {n_subjects}
- base model sha256: `{base}`
- manifest: `persguard.json` (behaviours, final losses, library versions)

Which subjects are protected, and how the protection is triggered, is deliberately not published.
"""


def write_public_files(model_dir: Path, manifest: dict) -> None:
    (model_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    kinds = sorted({p["behaviour"] for p in manifest["protections"]})
    card = MODEL_CARD.format(
        behaviours=", ".join(kinds), n_subjects=len(manifest["protections"]), base=manifest["base_model_sha256"]
    )
    (model_dir / "README.md").write_text(card)


def read_manifest(model_dir: Path) -> dict | None:
    path = Path(model_dir) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.exists() else None
