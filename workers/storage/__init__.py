"""Object storage: one interface, a local-directory backend and an S3 backend."""

from __future__ import annotations

from workers.storage.base import ObjectStore, get_model, put_model

__all__ = ["ObjectStore", "get_model", "open_store", "put_model"]


def open_store(url: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
               access_key_id: str | None = None, secret_access_key: str | None = None) -> ObjectStore:
    """s3://bucket/prefix opens S3 (boto3); anything else is a local directory."""
    if url.startswith("s3://"):
        from workers.storage.s3 import S3Store

        return S3Store.from_url(url, endpoint_url=endpoint_url, region=region,
                                access_key_id=access_key_id, secret_access_key=secret_access_key)
    from workers.storage.local import LocalStore

    return LocalStore(url)
