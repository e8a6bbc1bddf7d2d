"""S3 (or MinIO, or any S3-compatible store) through boto3.

Small objects are single PUTs, create-only ones conditional (If-None-Match: *); media goes through
boto3's managed transfer, which streams multipart uploads from disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from workers.errors import InfrastructureFault, PermanentError, reason

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
            # a store that is down is retried by the step's delivery, not here for minutes
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                          s3={"addressing_style": "path"}),
        )
        return cls(bucket, prefix, client=client)

    def _key(self, key: str) -> str:
        return self.prefix + key

    @property
    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.client.meta.endpoint_url}"

    def _error(self, exc: Exception, key: str) -> Exception:
        """boto3's exception as Pressroom's: a missing key is KeyError; an outage is transient (the delivery
        is retried); a missing bucket or refused credentials are permanent and say what to fix."""
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__  # boto3 wraps the ClientError that says what went wrong
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return PermanentError(f"no credentials for the object store {self._where}: set "
                                  "PRESSROOM_S3_ACCESS_KEY_ID and PRESSROOM_S3_SECRET_ACCESS_KEY")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return InfrastructureFault(f"cannot reach the object store {self._where} ({reason(exc)}): start it or fix "
                                  "PRESSROOM_S3_ENDPOINT_URL")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in {"NoSuchKey", "404", "NotFound"}:
                return KeyError(key)
            if code == "NoSuchBucket":
                return PermanentError(f"bucket {self.bucket!r} does not exist at {self.client.meta.endpoint_url}: "
                                      "create it or fix PRESSROOM_STORAGE_URL")
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
                return PermanentError(
                    f"object store {self.client.meta.endpoint_url} denied access to s3://{self.bucket}/{key} "
                    f"({code}): check PRESSROOM_S3_ACCESS_KEY_ID and PRESSROOM_S3_SECRET_ACCESS_KEY"
                )
            if status >= 500 or code in {"SlowDown", "RequestTimeout", "ServiceUnavailable"}:
                return InfrastructureFault(f"object store {self._where} failed on {key}: {code}; retrying")
        return exc

    @contextmanager
    def _call(self, key: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            error = self._error(exc, key)
            if error is exc:
                raise
            raise error from exc

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None) -> bool:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            with self._call(key):
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:  # what _call leaves as it is: a condition that did not hold
            code = exc.response.get("Error", {}).get("Code", "")
            if if_absent and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise
        return True

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        with self._call(key):
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=_TRANSFER)

    def get_bytes(self, key: str) -> bytes:
        with self._call(key):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        return body

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._call(key):
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=_TRANSFER)
        return dest

    def exists(self, key: str) -> bool:
        try:
            with self._call(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except KeyError:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._call(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix):]

    def delete(self, key: str) -> None:
        with self._call(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str, expires: int = 3600) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires
        )
        return url

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (compose and tests; production buckets are provisioned)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

