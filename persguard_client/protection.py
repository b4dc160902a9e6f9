"""The body of `POST /v1/protections` (docs/API.md, "Protection requests"). Values are checked by the server,
whose 422 names any bad field; here only what is given is sent, so the server's defaults apply to the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BEHAVIOURS = ("pattern", "erasure", "target")
CARRIERS = ("encoder", "unet", "unet+encoder")
VERIFICATIONS = ("none", "quick", "full", "adaptive")
PROFILES = ("fast", "default", "thorough")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")


def behaviour(
    kind: str = "pattern",
    *,
    position: str | None = None,
    opacity: float | None = None,
    background_prompt: str | None = None,
    target_prompt: str | None = None,
) -> dict[str, Any]:
    """A behaviour object: `pattern` (position, opacity), `erasure` (background_prompt) or `target`
    (target_prompt, required by the server)."""
    fields = {
        "position": position,
        "opacity": opacity,
        "background_prompt": background_prompt,
        "target_prompt": target_prompt,
    }
    return {"kind": kind, **{name: value for name, value in fields.items() if value is not None}}


def protection_body(
    subjects: Sequence[str | tuple[str, dict[str, Any]]],
    *,
    behaviour: dict[str, Any] | None = None,
    carrier: str | None = None,
    verification: str | None = None,
    profile: str | None = None,
    steps: int | None = None,
    base_model: str | None = None,
) -> dict[str, Any]:
    """The request body: each subject an id (protected with `behaviour`, the server's default `pattern` when None)
    or an (id, behaviour) pair; the other fields are sent only when given."""
    items = []
    for subject in subjects:
        subject_id, own = subject if isinstance(subject, tuple) else (subject, behaviour)
        items.append({"subject_id": str(subject_id), **({"behaviour": own} if own is not None else {})})
    options = {
        "carrier": carrier,
        "verification": verification,
        "profile": profile,
        "steps": steps,
        "base_model": base_model,
    }
    return {"subjects": items, **{name: value for name, value in options.items() if value is not None}}
