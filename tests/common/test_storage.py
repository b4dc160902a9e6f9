"""Both storage backends behave the same: round trips, sha256 checks, deletes, presigned downloads."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.settings import Settings
from common.storage import (
    ChecksumMismatch,
    LocalStorage,
    ObjectNotFound,
    S3Storage,
    Storage,
    StorageError,
    storage_from_settings,
)


def _key() -> str:
    return f"tests/{secrets.token_hex(8)}/object.bin"


def test_put_bytes_records_size_and_sha256_and_reads_back(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(1000)
    stored = storage.put_bytes(key := _key(), data)
    assert (stored.size, stored.sha256) == (1000, hashlib.sha256(data).hexdigest())
    out = storage.get_to_file(key, tmp_path / "out.bin", expected_sha256=stored.sha256)
    assert out.read_bytes() == data
    with storage.open(key) as stream:
        assert stream.read() == data


def test_get_with_a_wrong_sha256_raises_and_leaves_no_file(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes(key := _key(), b"payload")
    with pytest.raises(ChecksumMismatch):
        storage.get_to_file(key, tmp_path / "out.bin", expected_sha256="0" * 64)
    assert not (tmp_path / "out.bin").exists()


def test_delete_removes_the_object_and_is_idempotent(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes(key := _key(), b"x")
    assert storage.exists(key)
    storage.delete(key)
    storage.delete(key)
    assert not storage.exists(key)
    with pytest.raises(ObjectNotFound):
        storage.get_to_file(key, tmp_path / "gone.bin")


@pytest.mark.parametrize("bad_key", ["../escape", "/absolute", "a//b", "a/./b", ""])
def test_keys_that_could_escape_are_refused(storage: Storage, bad_key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.put_bytes(bad_key, b"x")


def test_put_file_checks_sha256_of_a_file(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(3000))
    stored = storage.put_file(key := _key(), source)
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert storage.get_to_file(key, tmp_path / "out.bin", stored.sha256).read_bytes() == source.read_bytes()


def test_s3_large_file_goes_up_in_parts_with_its_sha256(s3_storage: S3Storage, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    stored = s3_storage.put_file(key := _key(), source)
    head = s3_storage.head(key)
    assert head["ETag"].strip('"').endswith("-3"), "11 MiB in 5 MiB parts is a 3-part upload"
    assert head["Metadata"]["sha256"] == stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert s3_storage.get_to_file(key, tmp_path / "out.bin", stored.sha256).stat().st_size == source.stat().st_size


def test_s3_presigned_url_downloads_without_credentials(s3_storage: S3Storage) -> None:
    s3_storage.put_bytes(key := _key(), b"checkpoint bytes")
    url = s3_storage.presigned_get_url(key, expires_in=60, filename="model.tar")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"checkpoint bytes"
        assert "model.tar" in response.headers["Content-Disposition"]


def _public(endpoint_url: str) -> str:
    """The same test server under another host name, as a model host outside the compose network names it."""
    assert "127.0.0.1" in endpoint_url
    return endpoint_url.replace("127.0.0.1", "localhost")


def test_s3_presigned_url_names_the_public_endpoint_and_downloads_through_it(s3_server, tmp_path: Path) -> None:
    storage = S3Storage(
        bucket="persguard-test",
        endpoint_url=s3_server.endpoint_url,
        public_endpoint_url=_public(s3_server.endpoint_url) + "/",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    storage.ensure_bucket()
    storage.put_bytes(key := _key(), b"checkpoint bytes")  # the service's own traffic: the internal endpoint
    assert storage.client.meta.endpoint_url == s3_server.endpoint_url
    url = storage.presigned_get_url(key, expires_in=60, filename="model.tar")
    assert urlsplit(url).netloc == urlsplit(_public(s3_server.endpoint_url)).netloc
    with urllib.request.urlopen(url) as response:  # signed for the public host: the server accepts it there
        assert response.read() == b"checkpoint bytes"
    internal = S3Storage(
        bucket="persguard-test",
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    assert urlsplit(internal.presigned_get_url(key, 60)).netloc == urlsplit(s3_server.endpoint_url).netloc


def test_storage_from_settings_uses_the_public_endpoint_and_the_process_s3_credentials(s3_server) -> None:
    settings = Settings(
        storage_backend="s3",
        s3_bucket="persguard-test",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_public_endpoint_url="https://s3.persguard.example.com",
        s3_api_access_key=s3_server.access_key,
        s3_api_secret_key=s3_server.secret_key,
        s3_worker_access_key=s3_server.access_key,
        s3_worker_secret_key="not-the-worker-secret",
    )
    api = storage_from_settings(settings, role="api")
    assert isinstance(api, S3Storage)
    api.put_bytes(key := _key(), b"x")
    url = urlsplit(api.presigned_get_url(key, 60))
    assert (url.scheme, url.netloc, url.path) == ("https", "s3.persguard.example.com", f"/persguard-test/{key}")
    with pytest.raises(StorageError):  # the worker's (wrong) secret: the server refuses its signatures
        storage_from_settings(settings, role="worker")


def test_s3_rejects_an_unsigned_or_tampered_request(s3_storage: S3Storage) -> None:
    s3_storage.put_bytes(key := _key(), b"secret")
    plain = f"{s3_storage.client.meta.endpoint_url}/{s3_storage.bucket}/{key}"
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(plain)
    assert unsigned.value.code == 403
    tampered = s3_storage.presigned_get_url(key, expires_in=60).replace("Signature=", "Signature=00")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(tampered)
    assert bad.value.code == 403


def test_s3_server_checks_signatures_of_a_wrong_secret(make_s3_storage: Callable[..., S3Storage]) -> None:
    wrong = make_s3_storage(secret_key="not-the-secret")
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        wrong.put_bytes(_key(), b"x")


def test_local_presigned_url_is_signed_and_expires(local_storage: LocalStorage) -> None:
    local_storage.put_bytes(key := "checkpoints/abc/model.tar", b"x")
    url = local_storage.presigned_get_url(key, expires_in=60)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    expires, sig = int(query["expires"]), query["sig"]
    assert url.startswith("/v1/files?")
    assert local_storage.verify_signature(key, expires, sig)
    assert not local_storage.verify_signature("checkpoints/other/model.tar", expires, sig)
    assert not local_storage.verify_signature(key, expires + 1, sig)
    past = int(time.time()) - 1
    assert not local_storage.verify_signature(key, past, local_storage.sign(key, past))


def test_local_signature_covers_the_filename(local_storage: LocalStorage) -> None:
    key = "checkpoints/abc/model.tar"
    url = local_storage.presigned_get_url(key, expires_in=60, filename="abc.tar")
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    expires, sig = int(query["expires"]), query["sig"]
    assert query["filename"] == "abc.tar"
    assert local_storage.verify_signature(key, expires, sig, filename="abc.tar")
    assert not local_storage.verify_signature(key, expires, sig, filename="other.exe")
    assert not local_storage.verify_signature(key, expires, sig), "dropping the filename breaks the signature too"
    plain = local_storage.presigned_get_url(key, expires_in=60)
    plain_query = dict(part.split("=", 1) for part in plain.split("?", 1)[1].split("&"))
    assert not local_storage.verify_signature(key, int(plain_query["expires"]), plain_query["sig"], filename="x.tar")


@pytest.mark.parametrize("sig", ["é" * 64, "\u0663" * 64, "", "\x00"], ids=["latin", "digits", "empty", "nul"])
def test_local_signature_check_refuses_malformed_signatures_without_raising(
    local_storage: LocalStorage, sig: str
) -> None:
    assert not local_storage.verify_signature("checkpoints/abc/model.tar", int(time.time()) + 60, sig)
