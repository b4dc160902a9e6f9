"""The OpenAPI document, completed with the rules the routes' annotations cannot state because they come from the
settings: how many images a subject takes (`MIN_IMAGES_PER_SUBJECT`, `MAX_IMAGES_PER_SUBJECT`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from common.settings import Settings

SUBJECTS_PATH = "/v1/subjects"


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make `app.openapi()` (and so `/openapi.json`) state the settings' limits."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI caches it in app.openapi_schema: completed once, served as is
            document_subject_images(document, settings)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def document_subject_images(document: dict[str, Any], settings: Settings) -> None:
    """`images` of `POST /v1/subjects` as the route enforces it: required, between the configured minimum and
    maximum of files, no file twice (identical pictures are refused as duplicates)."""
    operation = document.get("paths", {}).get(SUBJECTS_PATH, {}).get("post")
    if operation is None:
        return
    content = operation["requestBody"]["content"]["multipart/form-data"]
    body = _resolve(document, content["schema"])
    body["properties"]["images"] = {
        "type": "array",
        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
        "minItems": settings.min_images_per_subject,
        "maxItems": settings.max_images_per_subject,
        "uniqueItems": True,
        "title": "Images",
        "description": f"{settings.min_images_per_subject}-{settings.max_images_per_subject} PNG, JPEG or WebP "
        "images, each a different picture",
    }
    body["required"] = sorted({*body.get("required", []), "images"})


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node
