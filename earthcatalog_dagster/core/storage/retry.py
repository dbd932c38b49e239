"""Which failures are transient, and how long to wait before trying again.

S3 answers 500 InternalError and 503 SlowDown, drops connections and cuts bodies short
(fewer bytes than its ``Content-Length``): all four succeed on a later try, so every read
retries them under a :class:`RetryPolicy` before reporting a failure. Only answers that
can never succeed are final: 404 (missing), 403/401 (denied), other 4xx, an invalid path,
a directory where a file was expected.

The decision is made on the HTTP status when the error carries one (obstore's text
``Server returned non-2xx status code: <status>``), never on digits found elsewhere in the
message: an error body's request id, a key or an elapsed time such as ``in 413.2ms`` must
not turn a 500 into a permanent failure.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from obstore import exceptions as obs_exc

__all__ = ["READ_RETRY", "RetryPolicy", "call_with_retry", "is_retryable"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient failures: exponential backoff with full jitter.

    Attempt ``n`` (1-based) that fails transiently sleeps a uniform random time in
    ``[0, min(max_delay, base_delay * 2**(n-1))]`` before attempt ``n + 1``.
    """

    max_attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """The sleep after failed attempt ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


#: The policy of the single-object reads (``read_bytes``, ``read_parquet``, ``open_input``…).
READ_RETRY = RetryPolicy()

_STATUS = re.compile(r"non-2xx status code: (\d{3})\b")
# Without a status: texts of requests that can never succeed.
_PERMANENT_TEXT = re.compile(
    r"InvalidArgument|InvalidRequest|InvalidBucketName|NoSuchBucket|not supported"
    r"|Is a directory|Not a directory|os error (?:20|21|36)\b",
    re.IGNORECASE,
)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an obstore error reports, or ``None`` (no response: network, body)."""
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def is_retryable(exc: BaseException) -> bool:
    """Transient unless known permanent: 5xx, 408, 429, dropped connections, short bodies.

    With a status: 5xx, 408 (timeout) and 429 (throttled) retry, every other status is
    final. Without one (the connection dropped, the body ended early, a timeout) the error
    is retried unless its type or text says the request can never succeed; unknown errors
    are retried too, since a crawl of 40 M objects meets many odd transient failures.
    """
    if isinstance(
        exc,
        FileNotFoundError
        | PermissionError
        | obs_exc.NotFoundError
        | obs_exc.PermissionDeniedError
        | obs_exc.UnauthenticatedError
        | obs_exc.AlreadyExistsError
        | obs_exc.PreconditionError
        | obs_exc.InvalidPathError
        | obs_exc.NotSupportedError
        | obs_exc.UnknownConfigurationKeyError
        | IsADirectoryError
        | NotADirectoryError
        | ValueError
        | TypeError,
    ):
        return False
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return not _PERMANENT_TEXT.search(str(exc).split("\n\nDebug source:", 1)[0])


def call_with_retry(
    operation: Callable[[], T],
    policy: RetryPolicy = READ_RETRY,
    *,
    sleep: Callable[[float], object] | None = None,
) -> T:
    """``operation()``, repeated under ``policy`` while it fails transiently.

    The last error (or the first permanent one) propagates unchanged, for the caller to
    map. ``sleep`` replaces :func:`time.sleep` (tests).
    """
    wait = sleep or time.sleep
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as exc:
            if attempt >= policy.max_attempts or not is_retryable(exc):
                raise
            wait(policy.delay(attempt))
