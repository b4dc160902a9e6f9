"""The toy-world judge: a small CNN with class, colour and identity-embedding heads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from persguard_core.diffusion import images_to_pixels
from persguard_core.judge.base import mean_similarity
from persguard_core.toyworld import CLASS_NAMES, COLOUR_NAMES

EMPTY = "empty"
JUDGE_CLASSES = (*CLASS_NAMES, EMPTY)
ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "judge"


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class JudgeNet(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> class logits (N, 8), colour logits (N, 8), embedding (N, D) unit-norm."""

    def __init__(self, width: int = 32, embed_dim: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width, 1),  # 32x32
            _block(width, width * 2, 2),  # 16x16
            _block(width * 2, width * 4, 2),  # 8x8
        )
        pooled = width * 4 * 2  # avg + max pooling
        self.class_head = nn.Linear(pooled, len(JUDGE_CLASSES))
        self.colour_head = nn.Linear(pooled, len(COLOUR_NAMES))
        self.embed_head = nn.Sequential(nn.Linear(pooled, pooled), nn.SiLU(), nn.Linear(pooled, embed_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)  # (N, 4w, 8, 8)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (N, 8w)
        return self.class_head(h), self.colour_head(h), F.normalize(self.embed_head(h), dim=1)


@dataclass
class Verdicts:
    """Per-image judgements."""

    classes: list[str]  # one of JUDGE_CLASSES
    colours: list[str | None]  # None for empty scenes
    class_probs: np.ndarray  # (N, 8)
    colour_probs: np.ndarray  # (N, 8)


class ToyJudge:
    """Scores toy-world images: class (incl. "empty"), colour, identity embedding."""

    def __init__(self, net: JudgeNet, image_size: int = 32) -> None:
        self.net = net.eval()
        self.image_size = image_size

    @classmethod
    def load(cls, path: Path | str = ASSET_DIR) -> ToyJudge:
        path = Path(path)
        if not (path / "judge.safetensors").exists():
            raise FileNotFoundError(
                f"no judge weights at {path}; train them with `python -m persguard_core.judge.train`"
            )
        config = json.loads((path / "config.json").read_text())
        net = JudgeNet(width=config["width"], embed_dim=config["embed_dim"])
        net.load_state_dict(load_file(path / "judge.safetensors"))
        return cls(net, image_size=config["image_size"])

    def save(self, path: Path | str, extra: dict | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(self.net.state_dict(), path / "judge.safetensors")
        config = {
            "width": self.net.features[0][0].out_channels,
            "embed_dim": self.net.embed_head[-1].out_features,
            "image_size": self.image_size,
            "classes": list(JUDGE_CLASSES),
            "colours": list(COLOUR_NAMES),
            **(extra or {}),
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected uint8 (N, {self.image_size}, {self.image_size}, 3), got {images.shape}")
        return images

    @torch.no_grad()
    def _forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outs = [
            self.net(images_to_pixels(chunk))
            for chunk in np.array_split(self._check(images), max(1, len(images) // 256))
        ]
        return tuple(torch.cat(parts).numpy() for parts in zip(*outs, strict=True))

    def judge(self, images: np.ndarray) -> Verdicts:
        class_logits, colour_logits, _ = self._forward(images)
        class_probs = _softmax(class_logits)
        colour_probs = _softmax(colour_logits)
        classes = [JUDGE_CLASSES[i] for i in class_probs.argmax(1)]
        colours = [
            None if c == EMPTY else COLOUR_NAMES[i] for c, i in zip(classes, colour_probs.argmax(1), strict=True)
        ]
        return Verdicts(classes, colours, class_probs, colour_probs)

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images)[2]

    def identity_similarity(self, images: np.ndarray, references: np.ndarray) -> np.ndarray:
        return mean_similarity(self, images, references)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
