"""Local-storage download links (`/v1/files`): built on the configured public base URL, every parameter signed,
and any malformed signature a 403."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from common.jobs import InProcessRunner
from tests.api.api_testkit import ApiEnv, fake_protect, make_subject, protect

PUBLIC = "https://persguard.example.com:8443/api"  # behind a proxy that strips /api


@pytest.fixture
def local_api(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    """Embedded shape (SQLite + local storage) with a finished checkpoint, served at PUBLIC."""
    api = make_env(
        "sqlite", lambda sf, storage: InProcessRunner(sf, storage, fake_protect), public_base_url=PUBLIC + "/"
    )
    protect(api, [make_subject(api)["id"]], verification="none")
    assert api.runner.wait_idle(timeout=60)
    return api


def _link(api: ApiEnv, host: str | None = None) -> str:
    checkpoint = api.client.get("/v1/checkpoints", headers=api.auth("alpha:admin")).json()["items"][0]
    headers = {**api.auth("alpha:admin"), **({"Host": host} if host else {})}
    redirect = api.client.get(checkpoint["links"]["download"], headers=headers)
    assert redirect.status_code == 307, redirect.text
    return redirect.headers["location"]


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def _files(api: ApiEnv, query: dict[str, str]):
    return api.client.get("/v1/files?" + urlencode(query))


def test_a_download_link_is_built_on_the_public_base_url_whatever_the_host_header(local_api: ApiEnv) -> None:
    link = _link(local_api, host="attacker.example")
    assert link.startswith(PUBLIC + "/v1/files?"), link
    assert "attacker.example" not in link
    response = local_api.client.get(link.removeprefix(PUBLIC))
    assert response.status_code == 200 and response.content


def test_the_filename_of_a_download_link_is_signed(local_api: ApiEnv) -> None:
    query = _query(_link(local_api))
    assert query["filename"].endswith(".tar")
    good = _files(local_api, query)
    assert good.status_code == 200 and query["filename"] in good.headers["content-disposition"]
    for forged in ({**query, "filename": "invoice.pdf.exe"}, {k: v for k, v in query.items() if k != "filename"}):
        refused = _files(local_api, forged)
        assert refused.status_code == 403 and "invalid or expired" in refused.json()["detail"], forged


@pytest.mark.parametrize("sig", ["é" * 64, "\u0663" * 64, "€", "ü0"], ids=["latin", "digits", "euro", "mixed"])
def test_a_non_ascii_signature_is_refused_like_any_bad_one(local_api: ApiEnv, sig: str) -> None:
    query = {**_query(_link(local_api)), "sig": sig}
    response = _files(local_api, query)
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert "invalid or expired" in response.json()["detail"]
