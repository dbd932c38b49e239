"""URIs: what a storage address is, and how it splits into (scheme, bucket, store path).

A URI is either ``s3://bucket/key`` (``s3a://`` accepted) — an S3 object on AWS or any
S3-compatible endpoint — or a local path, absolute or relative (made absolute against the
current directory), or a ``file://`` URL. Any other scheme is refused, so a typo such as
``gs://`` fails at once instead of becoming a local folder named ``gs:``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Location", "is_local", "local_path", "parse"]


@dataclass(frozen=True)
class Location:
    """A parsed URI: ``scheme`` is ``"file"`` or ``"s3"``; ``bucket`` is ``""`` locally.

    ``path`` is the path inside the store: the S3 key, or the absolute local path without
    its leading ``/`` (obstore's ``LocalStore`` is rooted at ``/``).
    """

    scheme: str
    bucket: str
    path: str

    @property
    def uri(self) -> str:
        """The canonical URI: ``s3://bucket/key`` or an absolute local path."""
        return f"s3://{self.bucket}/{self.path}" if self.scheme == "s3" else "/" + self.path

    @property
    def local(self) -> str:
        """The absolute file-system path (only meaningful when ``scheme == "file"``)."""
        return "/" + self.path


def parse(uri: str) -> Location:
    """Split a URI into (scheme, bucket, store path); relative local paths become absolute."""
    if uri.startswith("s3://") or uri.startswith("s3a://"):
        rest = uri.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"S3 URI without a bucket: {uri!r}")
        return Location("s3", bucket, key)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        raise ValueError(f"unsupported URI scheme (only local paths and s3://): {uri!r}")
    return Location("file", "", os.path.abspath(uri).lstrip("/"))


def is_local(uri: str) -> bool:
    """True for a local path or ``file://`` URL, False for ``s3://``."""
    return parse(uri).scheme == "file"


def local_path(uri: str) -> str | None:
    """The absolute file-system path of a local URI, ``None`` for a remote one."""
    loc = parse(uri)
    return loc.local if loc.scheme == "file" else None
