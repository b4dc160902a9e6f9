"""S3-compatible storage through boto3 (SeaweedFS, MinIO, AWS). sha256 travels as object metadata."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.storage.base import (
    ChecksumMismatch,
    ListedObject,
    ObjectNotFound,
    StorageError,
    StoredObject,
    check_key,
    sha256_file,
)

log = logging.getLogger(__name__)
NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


NO_BUCKET = {"404", "NoSuchBucket"}


class S3Storage:
    """One bucket; large files go up in parts (`multipart_threshold`), downloads are presigned GETs.

    `endpoint_url` carries the service's own traffic; presigned URLs name `public_endpoint_url` when given (the
    address at which model hosts outside the service's network reach the same server). The bucket checks list at
    most one key: that needs only the List permission (AWS's s3:ListBucket, as HeadBucket does; SeaweedFS wants
    its bucket-wide Read for HeadBucket, which an identity limited to some prefixes does not have)."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str = "us-east-1",
        multipart_threshold: int = 8 * 1024 * 1024,
        multipart_chunk: int = 8 * 1024 * 1024,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket

        def client(endpoint: str | None) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
            )

        self.client = client(endpoint_url)
        # Presigning is local (no request): the URL is signed for the host it names, the public one when given.
        self.presign_client = client(public_endpoint_url.rstrip("/")) if public_endpoint_url else self.client
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunk)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (an identity without the right to create it gets a
        StorageError that says so: in docker-compose.yml the `s3-init` service creates it)."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in NO_BUCKET:
                raise self._translate(self.bucket, exc) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 bucket check failed: {exc}") from exc
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(
                f"bucket {self.bucket!r} does not exist and these credentials cannot create it ({exc}); create it "
                "with an identity that may"
            ) from exc
        log.info("created bucket %s", self.bucket)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        self._call("put_object", Bucket=self.bucket, Key=check_key(key), Body=data, Metadata={"sha256": digest})
        return StoredObject(key=key, size=len(data), sha256=digest)

    def put_file(self, key: str, path: Path) -> StoredObject:
        digest = sha256_file(path)
        try:
            self.client.upload_file(
                str(path), self.bucket, check_key(key), ExtraArgs={"Metadata": {"sha256": digest}}, Config=self.transfer
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"upload of {key!r} failed: {exc}") from exc
        return StoredObject(key=key, size=path.stat().st_size, sha256=digest)

    def get_to_file(self, key: str, dest: Path, expected_sha256: str | None = None) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, check_key(key), str(dest), Config=self.transfer)
        except ClientError as exc:
            raise self._translate(key, exc) from exc
        except BotoCoreError as exc:
            raise StorageError(f"download of {key!r} failed: {exc}") from exc
        if expected_sha256 and sha256_file(dest) != expected_sha256:
            dest.unlink()
            raise ChecksumMismatch(f"object {key!r} does not match its recorded sha256")
        return dest

    def open(self, key: str) -> BinaryIO:
        return self._call("get_object", Bucket=self.bucket, Key=check_key(key))["Body"]

    def head(self, key: str) -> dict[str, Any]:
        """The object's S3 metadata (size, ETag, user metadata)."""
        return self._call("head_object", Bucket=self.bucket, Key=check_key(key))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("delete_object", Bucket=self.bucket, Key=check_key(key))

    def presigned_get_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": check_key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.presign_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def check(self) -> None:
        self._call("list_objects_v2", Bucket=self.bucket, MaxKeys=1)

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield ListedObject(item["Key"], int(item["Size"]), item["LastModified"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"listing {prefix!r} failed: {exc}") from exc

    def abort_stale_uploads(self, older_than: datetime) -> int:
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"aborting stale uploads failed: {exc}") from exc
        if aborted:
            log.info("aborted %d stale multipart uploads", aborted)
        return aborted

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            raise self._translate(kwargs.get("Key", self.bucket), exc) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} failed: {exc}") from exc

    @staticmethod
    def _translate(key: str, exc: ClientError) -> StorageError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in NOT_FOUND:
            return ObjectNotFound(f"no object {key!r} in the bucket")
        return StorageError(f"S3 error on {key!r}: {code or exc}")
