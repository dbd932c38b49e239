"""S3 configuration and the cache of obstore stores built from it.

Settings come from the usual AWS variables (``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ALLOW_HTTP``) unless :func:`configure_s3` overrides them.
``allow_http`` is switched on by itself for an ``http://`` endpoint. Anonymous (unsigned)
stores serve public source buckets.

One ``LocalStore`` serves the whole file system; one ``S3Store`` is cached per (bucket,
anonymous, internal retry). Stores with obstore's internal retry (3 retries, 60 s budget)
serve the single-object operations; :mod:`.bulk` asks for stores without it and applies its
own :class:`~.retry.RetryPolicy`, so its attempt counts are exact.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from obstore.store import LocalStore, S3Store

from earthcatalog_dagster.config import DEFAULT_REGION

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "clear_cache",
    "configure_s3",
    "get_store",
    "pyiceberg_properties",
    "s3_overrides",
    "s3_settings",
]

_S3_FIELDS = ("region", "endpoint_url", "access_key_id", "secret_access_key", "session_token")
_overrides: dict[str, str] = {}
_cache: dict[tuple[str, str, bool, bool], ObjectStore] = {}
_cache_lock = threading.Lock()
_TRUE = {"1", "true", "yes", "on"}


def configure_s3(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> None:
    """Override the S3 settings taken from the environment, and drop every cached store.

    Each call replaces the previous overrides: a field given here wins over its AWS
    variable, a field left ``None`` falls back to the environment. ``configure_s3()`` with
    no argument therefore returns to the plain environment.
    """
    given = dict(
        region=region,
        endpoint_url=endpoint_url,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
    )
    with _cache_lock:
        _overrides.clear()
        _overrides.update({k: v for k, v in given.items() if v})
        _cache.clear()


def s3_overrides() -> dict[str, str]:
    """The settings currently set by :func:`configure_s3` (a copy; empty: the environment)."""
    with _cache_lock:
        return dict(_overrides)


def clear_cache() -> None:
    """Forget every cached store (e.g. after the AWS environment variables changed)."""
    with _cache_lock:
        _cache.clear()


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def s3_settings() -> dict[str, str | None]:
    """Effective S3 settings: :func:`configure_s3` overrides, then the AWS variables."""
    env = {
        "region": _env("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
        "endpoint_url": _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
        "access_key_id": _env("AWS_ACCESS_KEY_ID"),
        "secret_access_key": _env("AWS_SECRET_ACCESS_KEY"),
        "session_token": _env("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
    }
    return {k: _overrides.get(k) or env[k] for k in _S3_FIELDS}


def pyiceberg_properties() -> dict[str, str]:
    """PyIceberg catalog properties for its S3 FileIO, from the settings the stores use.

    Iceberg metadata and data paths are ``s3://`` URIs when the warehouse is on S3;
    PyIceberg reads and writes them with its own (pyarrow) client, which gets the same
    region, endpoint (an ``http://`` endpoint carries its scheme, so plain HTTP works) and
    credentials as ours. Path-style addressing is kept for custom endpoints.
    """
    settings = s3_settings()
    props = {"s3.region": settings["region"] or DEFAULT_REGION}
    if settings["endpoint_url"]:
        props["s3.endpoint"] = settings["endpoint_url"]
        props["s3.force-virtual-addressing"] = "false"
    for field, name in (
        ("access_key_id", "s3.access-key-id"),
        ("secret_access_key", "s3.secret-access-key"),
        ("session_token", "s3.session-token"),
    ):
        if settings[field]:
            props[name] = settings[field]  # type: ignore[assignment]
    return props


def _make_s3_store(bucket: str, anonymous: bool, internal_retry: bool) -> S3Store:
    settings = s3_settings()
    config: dict[str, Any] = {"region": settings["region"]}
    endpoint = settings["endpoint_url"]
    client: dict[str, Any] = {"connect_timeout": timedelta(seconds=10)}
    if endpoint:
        config["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    if (os.environ.get("AWS_ALLOW_HTTP") or "").lower() in _TRUE:
        client["allow_http"] = True
    if anonymous:
        config["skip_signature"] = True
    else:
        for field in ("access_key_id", "secret_access_key", "session_token"):
            if settings[field]:
                config[field] = settings[field]
    retry: dict[str, Any] = (
        {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}
        if internal_retry
        else {"max_retries": 0}
    )
    return S3Store(bucket, config=config, client_options=client, retry_config=retry)


def get_store(
    scheme: str, bucket: str, anonymous: bool, internal_retry: bool = True
) -> ObjectStore:
    """The cached store for (scheme, bucket, anonymous); local stores ignore the last three.

    ``internal_retry=False`` gives an S3 store whose requests obstore never repeats (the
    caller retries); ``True`` keeps obstore's own retry of 5xx and connection errors.
    """
    if scheme == "file":
        key = ("file", "", False, True)
    else:
        key = (scheme, bucket, anonymous, internal_retry)
    store = _cache.get(key)
    if store is None:
        with _cache_lock:
            store = _cache.get(key)
            if store is None:
                store = (
                    LocalStore()
                    if scheme == "file"
                    else _make_s3_store(bucket, anonymous, internal_retry)
                )
                _cache[key] = store
    return store
