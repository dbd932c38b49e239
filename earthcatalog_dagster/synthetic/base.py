"""What every part of the synthetic ITS_LIVE shares: names of the real buckets and STAC
endpoints, the epoch limits, the random draws, and date parsing.

Kept apart so that footprints, missions, items, bad objects, the day generator and the
inventory writer can all use them without importing one another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

SOURCE_BUCKET = "its-live-data"
COLLECTION = "itslive-granules"
INVENTORY_BUCKET = "its-live-inventory"
#: ``<source bucket>/<inventory configuration id>``: the destination prefix of the inventory.
INVENTORY_PREFIX = f"{SOURCE_BUCKET}/daily"
INVENTORY_VERSION = "2016-11-30"

HTTPS_ROOT = f"https://{SOURCE_BUCKET}.s3.amazonaws.com"
STAC_API = "https://stac.itslive.cloud"
STAC_VERSION = "1.1.0"
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
    "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
)
ITEM_SUFFIX = ".stac.json"

_UTC = dt.UTC
_EPOCH_FLOOR = dt.date(1985, 1, 1)
_LATEST = dt.date(2026, 12, 31)
_UINTS = 64  # uniform draws per make_item call (one numpy call per item keeps it fast)


class _Draws:
    """Uniform [0, 1) numbers drawn in one numpy call, handed out one at a time."""

    __slots__ = ("_buf", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(_UINTS).tolist()
        return self._buf.pop()

    def uniform(self, lo: float, hi: float) -> float:
        """A float in ``[lo, hi)``."""
        return lo + (hi - lo) * self()

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (both ends included)."""
        return lo + min(int(self() * (hi - lo + 1)), hi - lo)

    def choice(self, seq: Sequence[Any]) -> Any:
        """One element of ``seq``, each equally likely."""
        return seq[min(int(self() * len(seq)), len(seq) - 1)]


def _as_date(date: dt.date | str) -> dt.date:
    """A date, or an ISO ``YYYY-MM-DD`` string made one."""
    if isinstance(date, dt.datetime):
        return date.date()
    return date if isinstance(date, dt.date) else dt.date.fromisoformat(date)
