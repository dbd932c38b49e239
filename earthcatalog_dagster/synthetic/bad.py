"""The deliberately bad objects a generated day holds, and the bytes each kind is made of.

Real buckets hold objects an ingest must survive: items without a geometry, numbers
written as strings, truncated bodies, S3 error pages stored as objects, keys listed but
gone, items without an id. :func:`object_body` turns a good item into one of them.
"""

from __future__ import annotations

from typing import Any

from earthcatalog_dagster.synthetic.base import _Draws
from earthcatalog_dagster.synthetic.items import item_json

#: The kinds of bad objects :func:`generate_day` adds, in :attr:`GeneratedDay.expected`.
BAD_KINDS = (
    "null_geometry",
    "coercible",
    "uncoercible",
    "truncated",
    "error_page",
    "missing",
    "no_id",
)
#: Bad kinds whose items are still valid and belong in the warehouse.
GOOD_BAD_KINDS = ("null_geometry", "coercible")


def _error_page(draw: _Draws) -> bytes:
    """The XML body of an S3 500 error, as a misbehaving uploader once stored it as an object."""
    request_id = "".join(draw.choice("0123456789ABCDEF") for _ in range(16))
    host_id = "".join(draw.choice("abcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(76))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>InternalError</Code>"
        "<Message>We encountered an internal error. Please try again.</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}=</HostId></Error>"
    ).encode()


def _coerce_to_strings(item: dict[str, Any]) -> None:
    """Numbers written as strings that convert back without loss ("85", "16.0", "61.2345")."""
    props = item["properties"]
    props["percent_valid_pixels"] = str(props["percent_valid_pixels"])
    props["date_dt"] = repr(props["date_dt"])
    props["latitude"] = repr(props["latitude"])
    props["longitude"] = repr(props["longitude"])


def object_body(item: dict[str, Any], kind: str | None, draw: _Draws) -> bytes:
    """Spoil ``item`` in place as ``kind`` says and return the bytes its object holds.

    ``kind`` ``None`` is a good object: the item as pretty JSON. ``null_geometry``,
    ``coercible``, ``uncoercible`` and ``no_id`` change the item itself (so the caller's
    copy is what was written); ``truncated`` cuts the JSON in half; ``error_page`` stores an
    S3 error document instead (drawing its request ids from ``draw``); ``missing`` returns
    the body the caller then does not write.
    """
    if kind == "null_geometry":
        item["geometry"] = None
        del item["bbox"]
    elif kind == "coercible":
        _coerce_to_strings(item)
    elif kind == "uncoercible":
        item["properties"]["percent_valid_pixels"] = "high"
    elif kind == "no_id":
        del item["id"]

    if kind == "error_page":
        return _error_page(draw)
    body = item_json(item)
    if kind == "truncated":
        body = body[: len(body) // 2]
    return body
