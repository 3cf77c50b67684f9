"""One small error hierarchy for the whole product.

Every message says what went wrong *and what to do next*; the CLI prints ``str(err)`` on one
line and exits non-zero, the service maps each class to one HTTP status (``service/errors.py``).
"""

from __future__ import annotations


class AnomalyError(Exception):
    """Base of every error this product raises on purpose."""

    #: HTTP status the service answers with; the CLI uses the exit code below.
    http_status: int = 500
    exit_code: int = 1


class InputError(AnomalyError, ValueError):
    """The caller's data is wrong: missing columns, bad dtype, NaN, undecodable image."""

    http_status = 422
    exit_code = 2


class PayloadTooLargeError(InputError):
    """An upload or image is over a configured size or pixel limit."""

    http_status = 413


class BundleError(AnomalyError):
    """A model bundle is missing, corrupt, tampered with, or from a newer schema."""

    http_status = 500
    exit_code = 3


class ModelNotFoundError(AnomalyError, LookupError):
    """No model (or version) of that name is loaded."""

    http_status = 404
    exit_code = 3


class OverloadedError(AnomalyError):
    """The scoring queue is full; the caller should retry after a short wait."""

    http_status = 503
    exit_code = 4

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthError(AnomalyError):
    """Missing or wrong API key."""

    http_status = 401
    exit_code = 5
