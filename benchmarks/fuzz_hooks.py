"""schemathesis hooks for benchmarks/fuzz.sh (SCHEMATHESIS_HOOKS=benchmarks.fuzz_hooks).

- A schema can say "3-20 distinct files" but not "each a real picture": the files of the positive (schema-valid)
  cases of `POST /v1/subjects` are turned into small PNGs, one per distinct content, so that generated subjects are
  created instead of all being refused at decoding. Everything else the fuzzer sends is left as generated.
- Two kinds of failure are the fuzzer's, not the API's, and are dropped (the run's report counts them, `filtered`;
  with FUZZ_DROPPED_LOG set each is logged, and benchmarks/fuzz.sh prints them by kind): a stateful step whose
  inferred link carried a null into a path parameter (`checkpoint_id: null` of a model, sent as
  `/v1/checkpoints/None`) is no schema-valid request, so its "valid data rejected" is not the API's; and a subject
  body whose files the hook above replaced is labelled schema-violating by schemathesis (4.32.5 revalidates an edited
  body and counts any body holding binary data as invalid), so its "invalid data accepted" is dropped when the body
  does validate against the schema.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from typing import Any

import jsonschema_rs
import schemathesis
from PIL import Image
from schemathesis.transport.serialization import Binary

SUBJECTS = "POST /v1/subjects"


def png_from(data: bytes) -> bytes:
    """A 16x16 noise PNG seeded by `data`: distinct inputs give distinct pictures."""
    rng = random.Random(hashlib.sha256(data).digest())
    image = Image.frombytes("RGB", (16, 16), rng.randbytes(16 * 16 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _raw(item: Any) -> bytes | None:
    data = getattr(item, "data", item)  # schemathesis wraps generated binary in `Binary`
    if isinstance(data, str):
        return data.encode()
    return bytes(data) if isinstance(data, bytes | bytearray) else None


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    """Runs before every request of every phase (coverage, fuzzing, stateful)."""
    if case.operation.label != SUBJECTS or not isinstance(case.body, dict):
        return
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return  # schema-violating cases stay as generated
    images = case.body.get("images")
    if isinstance(images, list) and images and all(_raw(item) is not None for item in images):
        # a new body (the generated one may be shared with other cases), files wrapped as schemathesis wraps them
        case.body = {**case.body, "images": [Binary(png_from(_raw(item) or b"")) for item in images]}


@schemathesis.hook
def filter_failure(context: schemathesis.HookContext, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    code = getattr(failure, "code", None)
    null_in_path = code == "ST202" and any(value is None for value in (case.path_parameters or {}).values())
    valid_subject = code == "ST201" and case.operation.label == SUBJECTS and _valid_subject_body(case)
    if (null_in_path or valid_subject) and (log := os.environ.get("FUZZ_DROPPED_LOG")):
        with open(log, "a") as out:
            out.write(f"{code} {case.operation.label} {'null in path' if null_in_path else 'valid body'}\n")
    return not (null_in_path or valid_subject)


def _valid_subject_body(case: schemathesis.Case) -> bool:
    """Whether a `POST /v1/subjects` body labelled schema-violating validates against the schema after all."""
    document = case.operation.schema.raw_schema
    schema = document["paths"]["/v1/subjects"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    for part in schema["$ref"].removeprefix("#/").split("/") if "$ref" in schema else ():
        document = document[part]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("images"), list):
        # files as the strings JSON Schema describes them: distinct contents stay distinct
        images = [
            hashlib.sha256(raw).hexdigest() if (raw := _raw(item)) is not None else item for item in body["images"]
        ]
        body = {**body, "images": images}
    return jsonschema_rs.validator_for(document if "$ref" in schema else schema).is_valid(body)
