"""The request guard (api/request_guard.py), which answers before the app reads a byte of the body.

A request to the API without a well-formed key is the dependency's 401, however large its body; a body over its
cap (declared, or streamed without a length) is a 413 as soon as that shows; health, docs and signed download
links need no key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.api.api_testkit import ApiEnv, image_bytes, upload

RH = "alpha:rights_holder"
MIB = 1024 * 1024
CHUNK = 64 * 1024
MISSING_KEY = "send an API key as `Authorization: Bearer <key>`"
UNKNOWN_KEY = "the API key is unknown or revoked; ask an admin for a new one"


@dataclass
class StreamedBody:
    """A request body handed over chunk by chunk, counting what the app pulled."""

    total: int
    head: bytes = b"{"
    consumed: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        piece = self.head + b" " * (CHUNK - len(self.head))
        while self.consumed < self.total:
            size = min(CHUNK, self.total - self.consumed)
            self.consumed += size
            yield piece[:size]
            piece = b" " * CHUNK


def _stream(
    env: ApiEnv, path: str, body: StreamedBody, headers: dict[str, str], *, declare_length: bool
) -> httpx.Response:
    """POST `body` to the app in streamed chunks (httpx's ASGI transport pulls one per `receive`), on the app's loop."""
    headers = {"content-type": "application/json", **headers}
    if declare_length:
        headers["content-length"] = str(body.total)  # else httpx sends it chunked

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=env.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(path, content=body.chunks(), headers=headers)
            await response.aread()
            return response

    assert env.client.portal is not None
    return env.client.portal.call(call)


def _assert_problem(response: httpx.Response, status: int, fragment: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and fragment in problem["detail"], problem
    return problem


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_80_megabyte_json_body_without_a_key_is_a_401_before_any_of_it_is_read(
    make_env: Callable[..., ApiEnv], declare_length: bool
) -> None:
    env = make_env("sqlite")
    body = StreamedBody(80 * 1000 * 1000)
    response = _stream(env, "/v1/protections", body, {}, declare_length=declare_length)
    _assert_problem(response, 401, MISSING_KEY)
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"].endswith("/unauthenticated")
    assert body.consumed == 0, f"the app read {body.consumed:,} bytes of an unauthenticated body"
    assert response.headers["connection"] == "close", "the server is not left to read the rest either"


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", MISSING_KEY),
        ("Bearer", MISSING_KEY),
        ("Bearer not-a-persguard-key", UNKNOWN_KEY),
        ("Bearer pgk__secret", UNKNOWN_KEY),
        ("Bearer pgk_abc", UNKNOWN_KEY),
        ("Bearer pgk_abc_" + "x" * 1000, UNKNOWN_KEY),
    ],
)
def test_a_malformed_key_is_the_dependencys_401_before_the_body(
    make_env: Callable[..., ApiEnv], authorization: str, detail: str
) -> None:
    env = make_env("sqlite")
    body = StreamedBody(10 * MIB)
    response = _stream(env, "/v1/protections", body, {"Authorization": authorization}, declare_length=True)
    _assert_problem(response, 401, detail)
    assert response.headers["www-authenticate"] == "Bearer"
    assert body.consumed == 0


def test_a_well_formed_but_unknown_key_still_reaches_the_dependency(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite")
    response = env.client.get("/v1/models", headers={"Authorization": "Bearer pgk_000000000000_nope"})
    _assert_problem(response, 401, UNKNOWN_KEY)


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_json_body_with_a_key_is_a_413_without_reading_the_rest(
    make_env: Callable[..., ApiEnv], declare_length: bool
) -> None:
    env = make_env("sqlite", max_json_body_bytes=100_000)
    body = StreamedBody(80 * 1000 * 1000)
    response = _stream(env, "/v1/protections", body, env.auth(RH), declare_length=declare_length)
    _assert_problem(response, 413, "limit")
    assert "100,000 bytes" in response.json()["detail"]
    if declare_length:
        assert body.consumed == 0, "a declared length over the cap is refused before reading"
    else:
        assert body.consumed <= 100_000 + CHUNK, f"read {body.consumed:,} bytes past a cap of 100,000"
    assert response.headers["connection"] == "close"


def test_the_json_cap_defaults_to_one_mebibyte(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite")
    assert env.settings.max_json_body_bytes == MIB
    over = StreamedBody(MIB + 1)
    _assert_problem(_stream(env, "/v1/models", over, env.auth("alpha:admin"), declare_length=True), 413, "1,048,576")
    assert over.consumed == 0
    under = StreamedBody(MIB)  # at the cap: read, then refused as invalid JSON, not as too large
    response = _stream(env, "/v1/models", under, env.auth("alpha:admin"), declare_length=True)
    assert response.status_code == 422 and under.consumed == MIB


def test_a_json_body_under_the_cap_is_served(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", max_json_body_bytes=1000)
    body = {"name": "sd15", "source": "/m/sd15"}
    assert env.client.post("/v1/models", headers=env.auth("alpha:admin"), json=body).status_code == 201


def test_an_oversized_multipart_part_without_a_key_is_a_401_not_a_400(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite")
    form = upload([image_bytes(i) for i in range(3)], name="x" * (2 * MIB))  # a field over the parser's part limit
    _assert_problem(env.client.post("/v1/subjects", **form), 401, MISSING_KEY)
    headers = {"Authorization": "Bearer nonsense"}
    _assert_problem(env.client.post("/v1/subjects", headers=headers, **form), 401, UNKNOWN_KEY)


def test_a_streamed_upload_over_the_request_limit_is_cut_off(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", max_request_bytes=200_000)
    part = b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
    body = StreamedBody(50 * MIB, head=part)  # one file part that never ends
    headers = {**env.auth(RH), "content-type": "multipart/form-data; boundary=xyz"}
    response = _stream(env, "/v1/subjects", body, headers, declare_length=False)
    _assert_problem(response, 413, "the limit of 200,000 bytes")
    assert body.consumed <= 200_000 + CHUNK


def test_uploads_keep_their_own_cap_above_the_json_cap(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", max_json_body_bytes=1000)
    form = upload([image_bytes(i, size=(64, 64)) for i in range(3)])
    response = env.client.post("/v1/subjects", headers=env.auth(RH), **form)
    assert response.status_code == 201, response.text


def test_health_docs_and_signed_links_need_no_key(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite")
    assert env.client.get("/healthz").json() == {"status": "ok"}
    assert env.client.get("/readyz").status_code == 200
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
        assert env.client.get(path).status_code == 200, path
    link = env.client.get("/v1/files", params={"key": "checkpoints/x/model.tar", "expires": 1, "sig": "forged"})
    _assert_problem(link, 403, "invalid or expired")


def test_everything_else_needs_a_key_even_a_route_that_does_not_exist(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite")
    for path in ("/metrics", "/v1/jobs", "/v1/nothing", "/healthz/more"):
        _assert_problem(env.client.get(path), 401, MISSING_KEY)
    missing = env.client.get("/v1/nothing", headers=env.auth(RH))
    assert missing.status_code == 404
