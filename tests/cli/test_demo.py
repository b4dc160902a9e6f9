"""The README's main job: `persguard demo` runs the whole flow over HTTP on embedded defaults."""

import re

from diffusers import StableDiffusionPipeline

from persguard_cli.main import main
from persguard_core.verify.run import CaseResult, VerificationResult, Verifier


def test_demo_protects_over_http_and_downloads_a_stock_loadable_checkpoint(tmp_path, capsys, monkeypatch):
    attacks = []

    def verify(self, pipe, protected, unprotected, setting, progress=None):  # the real one takes minutes
        attacks.append((setting.recipe.steps, [c.name for c in protected + unprotected]))
        for step in range(6):
            progress(step, 5)
        cases = [CaseResult("protected", True, 0.875, 0.5), CaseResult("unprotected", False, 0.0, 0.2)]
        return VerificationResult(setting.name, cases, {}, {}, self.n_images)

    monkeypatch.setattr(Verifier, "verify", verify)
    assert main(["demo", "--out", str(tmp_path), "--steps", "3", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    printed, bars = captured.out, captured.err
    assert "step 3/3" in printed and "downloaded checkpoint" in printed
    assert "protected  : pattern in 88%" in printed and "unprotected: pattern in 0%" in printed
    assert attacks == [(400, ["protected", "unprotected"])]
    # one bar for the implantation (from the job's fields), then one for the verification
    assert re.search(r"protecting: 100%.*3/3 \[.*ETA", bars) and re.search(r"verifying: 100%.*5/5 \[.*ETA", bars)
    assert bars.index("protecting") < bars.index("verifying")
    assert (tmp_path / "samples" / "grid.png").exists() and (tmp_path / "report" / "report.html").exists()
    model = tmp_path / "protected-model"
    assert (model / "persguard.json").exists() and (model / "README.md").exists()
    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True)
    assert pipe.unet.config.sample_size == 16
