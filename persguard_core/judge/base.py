"""The judge interface: what verification needs to score generated images.

`ToyJudge` implements it for the toy world; `EmbeddingJudge` wraps a CLIP- or DINO-style image model given
by local path for real photos (identity similarity only: class/colour heads are toy-world concepts).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class NoJudge(ValueError):
    """No judge available can score the images of the model to verify (e.g. not the toy judge's image size)."""


class Judge(Protocol):
    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D) unit-norm identity embeddings."""
        ...

    def identity_similarity(self, images: np.ndarray, references: np.ndarray) -> np.ndarray:
        """(N,) cosine similarity of each image to the mean embedding of the reference images."""
        ...


def mean_similarity(judge: Judge, images: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each image's embedding to the normalized mean reference embedding."""
    ref = judge.embed(references).mean(axis=0)
    ref /= np.linalg.norm(ref) + 1e-8
    return judge.embed(images) @ ref
