"""A real S3 endpoint for tests: moto's threaded server on a free local port.

Use :func:`moto_endpoint` from a module-scoped fixture, then :func:`use_endpoint` in each
test (``storage.configure_s3`` is reset between tests). Buckets are created with boto3,
which moto depends on; obstore cannot create buckets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from earthcatalog_dagster.core import storage

REGION = "us-east-1"
KEY_ID = "testing-key-id"
SECRET = "testing-secret-value"


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 and a free port; yield ``http://host:port``."""
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def use_endpoint(endpoint: str) -> None:
    """Point storage's S3 stores at the moto endpoint with dummy credentials."""
    storage.configure_s3(
        endpoint_url=endpoint, region=REGION, access_key_id=KEY_ID, secret_access_key=SECRET
    )


def boto_client(endpoint: str) -> Any:
    """A boto3 S3 client for setup steps obstore does not offer (buckets, ACLs)."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
