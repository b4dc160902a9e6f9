"""The service's `adaptive` verification adds each adaptive attacker's PSR and false trigger to the summary."""

import json

import numpy as np

from persguard_core import model_io
from persguard_core.images import save_images
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import ProtectionSpec, ReferenceSet, SubjectSpec
from persguard_core.toyworld import split
from persguard_core.verify import service
from persguard_core.verify.run import Verifier


def test_the_adaptive_preset_reports_every_adaptive_attacker_beside_the_naive_one(tmp_path, monkeypatch):
    protected, mate = split("tuning", "circle")[:2]
    spec = ProtectionSpec(
        subjects=[
            SubjectSpec(
                name="p",
                class_noun="circle",
                images=[str(p) for p in save_images(protected.views(3, seed=0), tmp_path / "p")],
            )
        ],
        references=[
            ReferenceSet(class_noun="circle", images=[[str(p) for p in save_images(mate.views(3), tmp_path / "m")]])
        ],
    )
    attackers = []

    def attacked(self, pipe, case, setting):  # the naive attack learns the pattern; the adaptive ones do not
        attackers.append(setting.recipe.adaptive)
        views = case.reference_images[:1].repeat(self.n_images, axis=0)
        return stamp(views, default_pattern(32)) if setting.recipe.adaptive == "none" else views

    monkeypatch.setattr(Verifier, "attacked_images", attacked)
    monkeypatch.setattr(Verifier, "utility", lambda self, pipe, protected: {"utility_drop": 0.0})
    monkeypatch.setattr(Verifier, "pre_attack", lambda self, pipe, cases, trigger: {})
    summary = service.verify_protection(model_io.resolve("builtin"), spec, "adaptive", tmp_path / "report")
    assert summary["psr"] == 1.0
    for name in service.ADAPTIVE_ATTACKERS:
        assert summary[f"adaptive/{name}/psr"] == 0.0 and summary[f"adaptive/{name}/false_trigger"] == 0.0
    assert set(attackers) == {"none", *service.ADAPTIVE_ATTACKERS}
    assert json.loads((tmp_path / "report" / "report.json").read_text())
    assert np.isfinite(summary["detect/round_trip_ratio"])
