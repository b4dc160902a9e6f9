"""Look-alike keep rows for the encoder carrier: other images recoloured to a protected subject's palette
(docs/METHOD.md, M9, the set R_look).

The encoder carrier, trained on the subject's photos against generic keep rows, learns to recognise the subject by
its colours: a same-coloured object of another shape or texture gets the protective output too (docs/RESEARCH.md,
run 74). Keep rows with the subject's colours on someone else's structure ask it to key on more than colour.

A palette is the k colours of an image's median-cut quantisation (Pillow), ranked by chroma (max - min of the
RGB channels), the most colourful first. `palette_swap` moves every pixel of a source image by the difference
between the protected photo's colour and the source's colour of the same rank: shading survives, the source's
most colourful region takes the photo's most colourful colour, the next the next, and the greys of a background
stay grey.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PALETTE_SIZE = 6  # a subject's main and second colour and a marking, and room for a background's shades


def palette(image: np.ndarray, k: int = PALETTE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) -> (ranks (H, W) in [0, k'), colours (k', 3) float): the pixels' cluster, numbered by
    chroma, most colourful first, and each cluster's colour; k' <= k when the image has fewer colours."""
    quantised = Image.fromarray(image).quantize(colors=k, method=Image.Quantize.MEDIANCUT, kmeans=k)
    labels = np.asarray(quantised)  # (H, W) palette indices
    used = int(labels.max()) + 1
    colours = np.asarray(quantised.getpalette()[: 3 * used], dtype=np.float64).reshape(used, 3)
    chroma = colours.max(axis=1) - colours.min(axis=1)
    order = np.argsort(-chroma, kind="stable")  # palette index of rank 0, 1, ...
    rank_of = np.empty(used, dtype=np.int64)
    rank_of[order] = np.arange(used)
    return rank_of[labels], colours[order]


def palette_swap(source: np.ndarray, like: np.ndarray, k: int = PALETTE_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) `source` with its rank-r colour moved onto `like`'s rank-r colour (ranks past `like`'s
    last take its last)."""
    ranks, own = palette(source, k)
    _, theirs = palette(like, k)
    shift = theirs[np.minimum(np.arange(len(own)), len(theirs) - 1)] - own  # (k', 3)
    return np.clip(source + shift[ranks], 0, 255).round().astype(np.uint8)


def lookalike_keep_rows(
    sources: np.ndarray, protected: list[np.ndarray], n: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (n, H, W, 3): n random `sources` images (other subjects, class samples), each recoloured to the
    palette of a random photo of a random protected subject (`protected`: uint8 (N_k, H, W, 3) per subject)."""
    if n == 0:
        return sources[:0]
    if len(sources) == 0 or not protected:
        raise ValueError("look-alike keep rows need source images and at least one protected subject's photos")
    rows = []
    for _ in range(n):
        photos = protected[rng.integers(len(protected))]
        rows.append(palette_swap(sources[rng.integers(len(sources))], photos[rng.integers(len(photos))]))
    return np.stack(rows)
