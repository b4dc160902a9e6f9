"""Bad uploads: each is a 4xx problem that says what to fix, and nothing is stored (no rows, no objects)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from common.models import AuditEvent, Subject, SubjectImage
from tests.api.api_testkit import ApiEnv, image_bytes, upload

RH = "alpha:rights_holder"


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR says width x height, followed by a tiny IDAT: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _assert_refused(api: ApiEnv, response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and fragment in problem["detail"], problem
    assert api.count(Subject) == 0 and api.count(SubjectImage) == 0
    assert api.count(AuditEvent) == _setup_events(api), "no audit event for a refused upload"
    assert api.object_keys() == set()


def _setup_events(api: ApiEnv) -> int:
    return 2 + len(api.keys)  # the fixture's tenant.create and key.create events


def _post(api: ApiEnv, images: list[bytes], **kwargs: object):
    return api.client.post("/v1/subjects", headers=api.auth(RH), **upload(images, **kwargs))


def test_truncated_png_is_refused(api: ApiEnv) -> None:
    good = [image_bytes(i, size=(64, 64)) for i in range(3)]
    response = _post(api, [good[0], good[1], good[2][: len(good[2]) // 2]])
    _assert_refused(api, response, 422, "img2.png is damaged or truncated")


def test_text_file_named_png_is_refused(api: ApiEnv) -> None:
    response = _post(api, [image_bytes(0), image_bytes(1), b"hello, I am not a picture\n" * 10])
    _assert_refused(api, response, 422, "img2.png is not a PNG, JPEG or WebP image")


def test_png_header_claiming_20000x20000_is_refused_before_decoding(api: ApiEnv) -> None:
    response = _post(api, [image_bytes(0), image_bytes(1), _png_header_claiming(20000, 20000)])
    _assert_refused(api, response, 422, "img2.png")
    assert "pixels" in response.json()["detail"]


def test_png_over_the_configured_pixel_limit_names_the_size(api: ApiEnv) -> None:
    response = _post(api, [image_bytes(0), image_bytes(1), _png_header_claiming(5000, 5000)])
    _assert_refused(api, response, 422, "5000x5000 = 25,000,000 pixels; the limit is 16,777,216")


def test_zero_images_are_refused(api: ApiEnv) -> None:
    response = api.client.post(
        "/v1/subjects",
        headers=api.auth(RH),
        data={"name": "rex", "class_noun": "dog"},
        files={"unrelated": ("x.txt", b"x", "text/plain")},
    )
    _assert_refused(api, response, 422, "needs 3 to 20 images")


def test_200_images_are_refused(api_pg: ApiEnv) -> None:
    tiny = image_bytes(0, size=(4, 4))
    _assert_refused(api_pg, _post(api_pg, [tiny] * 200), 422, "got 200")


def test_50_megabyte_file_is_refused(api: ApiEnv) -> None:
    big = image_bytes(0) + b"\0" * (50 * 1024 * 1024)
    response = _post(api, [image_bytes(1), image_bytes(2), big])
    _assert_refused(api, response, 413, "each image may be at most 10,485,760 bytes")


def test_request_over_the_total_limit_is_refused_before_parsing(make_env) -> None:
    api = make_env("sqlite", max_request_bytes=100_000)
    response = _post(api, [image_bytes(i, size=(128, 128)) for i in range(3)])
    _assert_refused(api, response, 413, "the limit is 100,000")


def test_duplicate_images_are_refused(api: ApiEnv) -> None:
    _assert_refused(
        api,
        _post(api, [image_bytes(0), image_bytes(1), image_bytes(0)]),
        422,
        "img2.png is the same picture as img0.png",
    )


def test_json_body_is_refused_as_wrong_content_type(api: ApiEnv) -> None:
    response = api.client.post("/v1/subjects", headers=api.auth(RH), json={"name": "rex", "class_noun": "dog"})
    _assert_refused(api, response, 415, "multipart/form-data")


@pytest.mark.parametrize("class_noun", ["", "d0g!", "x" * 51])
def test_bad_class_noun_is_refused(api_pg: ApiEnv, class_noun: str) -> None:
    response = _post(api_pg, [image_bytes(i) for i in range(3)], class_noun=class_noun)
    _assert_refused(api_pg, response, 422, "class_noun")


def test_declared_content_type_is_not_trusted(api: ApiEnv) -> None:
    files = [("images", (f"{i}.jpg", image_bytes(i), "text/plain")) for i in range(3)]
    response = api.client.post(
        "/v1/subjects", headers=api.auth(RH), data={"name": "a", "class_noun": "cat"}, files=files
    )
    assert response.status_code == 201, "a real PNG is accepted whatever its name and declared type"


def test_exif_orientation_is_applied_and_metadata_stripped(api: ApiEnv) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    exif[0x010F] = "SecretCam"
    rotated = image_bytes(7, size=(40, 20), fmt="JPEG", exif=exif.tobytes(), quality=95)
    others = [image_bytes(1, fmt="WEBP"), image_bytes(2)]
    response = _post(api, [rotated, *others], ext="jpg")
    assert response.status_code == 201, response.text
    first = response.json()["images"][0]
    assert (first["width"], first["height"]) == (20, 40)
    key = next(k for k in api.object_keys(f"subjects/{response.json()['id']}/") if k.split("/")[-1].startswith("00-"))
    with api.storage.open(key) as stream:
        stored = Image.open(io.BytesIO(stream.read()))
        stored.load()
    assert stored.format == "PNG" and stored.mode == "RGB"
    assert not stored.getexif() and "exif" not in stored.info
