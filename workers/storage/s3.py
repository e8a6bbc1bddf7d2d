"""S3 (or MinIO, or any S3-compatible store) through boto3.

Small objects are single PUTs, create-only ones conditional (If-None-Match: *); media goes through
boto3's managed transfer, which streams multipart uploads from disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from workers.errors import PermanentError, TransientError

_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None) -> S3Store:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )
        return cls(bucket, prefix, client=client)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _error(self, exc: Exception, key: str) -> Exception:
        if isinstance(exc, EndpointConnectionError):
            return TransientError(f"object store unreachable ({exc}): check PRESSROOM_S3_ENDPOINT_URL")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in {"NoSuchKey", "404", "NotFound"}:
                return KeyError(key)
            if code == "NoSuchBucket":
                return PermanentError(f"bucket {self.bucket!r} does not exist: create it or fix PRESSROOM_STORAGE_URL")
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
                return PermanentError(
                    f"object store denied access to s3://{self.bucket}/{key} ({code}): check the S3 credentials"
                )
            if status >= 500 or code in {"SlowDown", "RequestTimeout"}:
                return TransientError(f"object store error on {key}: {code}")
        return exc

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None) -> bool:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if if_absent and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise self._error(exc, key) from exc
        return True

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=_TRANSFER)
        except (ClientError, EndpointConnectionError) as exc:
            raise self._error(exc, key) from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, EndpointConnectionError) as exc:
            raise self._error(exc, key) from exc
        return body

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=_TRANSFER)
        except (ClientError, EndpointConnectionError) as exc:
            raise self._error(exc, key) from exc
        return dest

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            err = self._error(exc, key)
            if isinstance(err, KeyError):
                return False
            raise err from exc
        return True

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str, expires: int = 3600) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires
        )
        return url

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (compose and tests; production buckets are provisioned)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
