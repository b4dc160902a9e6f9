"""The typed settings: the public base URL that download links are built on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_the_public_base_url_defaults_to_the_embedded_server_and_loses_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PERSGUARD_PUBLIC_BASE_URL", raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    assert Settings(public_base_url="https://pg.example.com/api/").public_base_url == "https://pg.example.com/api"
    monkeypatch.setenv("PERSGUARD_PUBLIC_BASE_URL", "https://pg.example.com:8443")
    assert Settings().public_base_url == "https://pg.example.com:8443"


@pytest.mark.parametrize(
    "url",
    ["pg.example.com", "/v1", "ftp://pg.example.com", "https://", "https://u:p@pg.example.com", "https://a.b/?x=1"],
)
def test_a_public_base_url_that_is_not_a_plain_http_address_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="PERSGUARD_PUBLIC_BASE_URL"):
        Settings(public_base_url=url)
