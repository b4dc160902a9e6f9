"""The judge's verdict on each generated image of an attacked case, and its wording in reports and pages.

A protected case's image is protective when it shows the case's own behaviour's protective output (pattern found,
subject erased, target drawn); an unprotected case's image is protective when it shows any protected behaviour's
output: a false trigger. The mean of a case's `protective` flags is its `protective_rate`. Light on imports, so
that the service's pages can word report.json's verdicts as the verifier's report.html does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# what a protected case's image shows, and does not show, per behaviour kind
FOUND = {"pattern": "pattern found", "erasure": "subject erased", "target": "target drawn"}
MISSED = {"pattern": "no pattern", "erasure": "subject not erased", "target": "no target"}


@dataclass(frozen=True)
class ImageVerdict:
    """The judge on one generated image of a case (its place in `CaseResult.verdicts` is the image's)."""

    protective: bool  # protected: the case's behaviour's protective output; unprotected: a false trigger
    kinds: tuple[str, ...] = ()  # the behaviour kinds whose protective output the image shows
    similarity: float | None = None  # identity similarity of the image to the case's subject
    sample: int | None = None  # its place among the case's samples (the report's grid); None: not kept


def verdict_label(protected: bool, behaviour: str | None, protective: bool, kinds: Iterable[str] = ()) -> str:
    """One image's verdict in words: "pattern found" / "no pattern" (and erasure, target) for a protected case,
    "false trigger (pattern)" / "no false trigger" for an unprotected one."""
    if not protected:
        shown = ", ".join(kinds)
        return (f"false trigger ({shown})" if shown else "false trigger") if protective else "no false trigger"
    if behaviour in FOUND:
        return FOUND[behaviour] if protective else MISSED[behaviour]
    return "protective output" if protective else "no protective output"
