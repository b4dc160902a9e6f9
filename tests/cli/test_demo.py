"""The README's main job: `persguard demo` runs the whole flow over HTTP on embedded defaults."""

from diffusers import StableDiffusionPipeline

from persguard_cli.main import main


def test_demo_protects_over_http_and_downloads_a_stock_loadable_checkpoint(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "3", "--no-verify", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "step 3/3" in printed and "downloaded checkpoint" in printed
    assert (tmp_path / "samples" / "grid.png").exists()
    model = tmp_path / "protected-model"
    assert (model / "persguard.json").exists() and (model / "README.md").exists()
    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True)
    assert pipe.unet.config.sample_size == 16
