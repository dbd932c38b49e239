"""S3 over HTTP for the tests: one moto server per session, ``s3://`` roots per test.

``s3_server`` (session) starts moto's threaded server on 127.0.0.1 and a free port and
creates the buckets: the public source bucket (``its-live-data``, readable by anyone
through a bucket policy), the private inventory bucket, and the catalog bucket holding
the warehouse, staging, deltas, hash index and ``catalog.db``. ``s3_env`` points the AWS
environment variables at it (endpoint, ``AWS_ALLOW_HTTP``, dummy credentials, region) for
one test and restores them afterwards — set per test, so that tests of the plain
environment never see it. ``s3_home`` gives Settings with every root on ``s3://`` under a
fresh prefix (the catalog: a local working copy plus ``CATALOG_REMOTE``), exported as the
operators' variables too, so Dagster resources and child processes see the same roots.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from earthcatalog_dagster.config import Settings, hash_index_beside
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.synthetic import INVENTORY_BUCKET, INVENTORY_PREFIX, SOURCE_BUCKET
from earthcatalog_dagster_tests.core.moto_s3 import (
    KEY_ID,
    REGION,
    SECRET,
    boto_client,
    moto_endpoint,
)

CATALOG_BUCKET = "earthcatalog-test"
_AWS_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT",
)


def public_read_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
    )


@dataclass(frozen=True)
class S3Server:
    """The session's moto server."""

    endpoint: str

    def client(self) -> Any:
        return boto_client(self.endpoint)

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The AWS variables an operator's run would have, pointing at ``endpoint``."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    with moto_endpoint() as endpoint:
        client = boto_client(endpoint)
        for bucket in (SOURCE_BUCKET, INVENTORY_BUCKET, CATALOG_BUCKET):
            client.create_bucket(Bucket=bucket)
        client.put_bucket_policy(Bucket=SOURCE_BUCKET, Policy=public_read_policy(SOURCE_BUCKET))
        yield S3Server(endpoint)


def point_env_at(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Set the AWS variables for this test and make storage use exactly them."""
    for name in _AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage.configure_s3()  # no overrides: the environment, as in an operator's run


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    point_env_at(monkeypatch, s3_server.env())
    yield s3_server
    storage.configure_s3()


def s3_settings(local_home: str, run: str | None = None) -> Settings:
    """Every root on ``s3://`` under a prefix of its own; the catalog's working copy local."""
    run = run or uuid.uuid4().hex[:12]
    base = f"s3://{CATALOG_BUCKET}/{run}"
    local = Settings.embedded(local_home)
    warehouse = f"{base}/warehouse"
    return dataclasses.replace(
        local,
        warehouse=warehouse,
        warehouse_hash=hash_index_beside(warehouse),
        staging=f"{base}/ingest",
        delta_prefix=f"{base}/delta",
        # Where S3 Inventory puts it: the manifest's data keys are relative to its bucket,
        # so this root is shared by the tests (which run one at a time).
        inventory=f"s3://{INVENTORY_BUCKET}/{INVENTORY_PREFIX}",
        source_root=f"s3://{SOURCE_BUCKET}/mirror-{run}",
        catalog_remote=f"{base}/earthcatalog.db",
        aws_region=REGION,
    )


def export_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The operators' variables for ``settings``: ``Settings.from_env()`` gives them back."""
    monkeypatch.setenv("EARTHCATALOG_HOME", settings.home)
    values = {
        "WAREHOUSE": settings.warehouse,
        "WAREHOUSE_HASH": settings.warehouse_hash,
        "STAGING": settings.staging,
        "DELTA_PREFIX": settings.delta_prefix,
        "INVENTORY": settings.inventory,
        "CATALOG": settings.catalog,
        "CATALOG_REMOTE": settings.catalog_remote,
        "SOURCE_ROOT": settings.source_root,
    }
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert Settings.from_env() == settings


@pytest.fixture
def s3_home(s3_env: S3Server, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with the warehouse, staging, deltas, inventory, hash index, source mirror
    and remote ``catalog.db`` all on the moto server."""
    settings = s3_settings(str(tmp_path / "home"))
    export_settings(monkeypatch, settings)
    return settings
