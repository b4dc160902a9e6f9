"""Upload validation: only real PNG / JPEG / WebP images, size- and pixel-limited, normalised and de-duplicated.

Nothing is trusted from the client: not the file name, not the part's content type. Each file is identified
by Pillow from its bytes, its pixel count is checked from the header before any decoding (so decompression
bombs are refused cheaply), then it is decoded in full, turned upright by its EXIF orientation and re-encoded
as an RGB PNG without metadata. Duplicates are found by the sha256 of that normalised PNG.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


class ImageRejected(ValueError):
    """An upload that is not acceptable; the message says which file and why."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class CleanImage:
    filename: str
    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class UploadLimits:
    max_image_bytes: int
    max_image_pixels: int
    min_images: int
    max_images: int


def normalise_image(raw: bytes, filename: str, max_pixels: int) -> CleanImage:
    """Decode `raw` as PNG / JPEG / WebP and return it upright, RGB, as a metadata-free PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS) as image:
                _check_pixels(image.size, filename, max_pixels)
                image.load()
                upright = ImageOps.exif_transpose(image).convert("RGB")
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"{filename}: more than {max_pixels:,} pixels is not accepted ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected(f"{filename} is not a PNG, JPEG or WebP image; upload photos in one of those") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"{filename} is damaged or truncated and cannot be decoded ({exc})") from exc
    clean = Image.frombytes("RGB", upright.size, upright.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False)
    png = buffer.getvalue()
    return CleanImage(filename, png, hashlib.sha256(png).hexdigest(), clean.width, clean.height)


def _check_pixels(size: tuple[int, int], filename: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(
            f"{filename} is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}: "
            "downscale it before uploading"
        )


def check_count(count: int, limits: UploadLimits) -> None:
    """Refuse too few or too many images."""
    if not limits.min_images <= count <= limits.max_images:
        raise ImageRejected(
            f"a subject needs {limits.min_images} to {limits.max_images} images in the `images` field; got {count}"
        )


def check_size(filename: str, size: int, limits: UploadLimits) -> None:
    """Refuse a file larger than the per-image limit (413)."""
    if size > limits.max_image_bytes:
        raise ImageRejected(
            f"{filename} is {size:,} bytes; each image may be at most {limits.max_image_bytes:,} bytes", status=413
        )


def validate_uploads(files: list[tuple[str, bytes]], limits: UploadLimits) -> list[CleanImage]:
    """Check the count, each file's size and content, and duplicates; raise ImageRejected at the first fault."""
    check_count(len(files), limits)
    for filename, raw in files:
        check_size(filename, len(raw), limits)
    images: list[CleanImage] = []
    seen: dict[str, str] = {}
    for filename, raw in files:
        image = normalise_image(raw, filename, limits.max_image_pixels)
        if image.sha256 in seen:
            raise ImageRejected(f"{filename} is the same picture as {seen[image.sha256]}; upload each image once")
        seen[image.sha256] = filename
        images.append(image)
    return images
