"""The public manifest (`persguard.json`) of a protected checkpoint names nothing that identifies the protected
photos."""

from __future__ import annotations

import json
from pathlib import Path

from persguard_core.manifest import build_manifest, write_public_files
from persguard_core.spec import ProtectionSpec, SubjectSpec

HASHES = ["a" * 64, "b" * 64, "c" * 64]


def _spec() -> ProtectionSpec:
    return ProtectionSpec(subjects=[SubjectSpec(name="rex", class_noun="dog", images=["1.png", "2.png", "3.png"])])


def test_the_public_manifest_lists_no_hashes_of_the_protected_photos(tmp_path: Path) -> None:
    manifest = build_manifest(_spec(), base_sha256="d" * 64, final_losses={"bb": 0.5})
    assert manifest["protections"] == [{"behaviour": "pattern"}]
    write_public_files(tmp_path, manifest)
    public = (tmp_path / "persguard.json").read_text() + (tmp_path / "README.md").read_text()
    assert "image_sha256" not in public and "image hashes" not in public
    assert json.loads((tmp_path / "persguard.json").read_text())["base_model_sha256"] == "d" * 64


def test_a_parent_manifest_that_still_lists_photo_hashes_is_not_copied_with_them() -> None:
    parent = {"protections": [{"behaviour": "erasure", "image_sha256": HASHES}]}
    manifest = build_manifest(_spec(), base_sha256="d" * 64, final_losses={}, parent=parent)
    assert manifest["protections"] == [{"behaviour": "erasure"}, {"behaviour": "pattern"}]
