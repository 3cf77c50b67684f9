"""One small error hierarchy for the whole product.

Every message says what went wrong *and what to do next*. The CLI prints ``str(err)`` on one
line and exits with the class's ``exit_code``; the service maps each class to an HTTP status
in one table (``service/errors.py``), so nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Collection


class AnomalyError(Exception):
    """Base of every error this product raises on purpose."""

    exit_code: int = 1


class InputError(AnomalyError, ValueError):
    """The caller's data is wrong: missing columns, bad dtype, NaN, undecodable image."""

    exit_code = 2


class PayloadTooLargeError(InputError):
    """An upload or image is over a configured size or pixel limit."""


class BundleError(AnomalyError):
    """A model bundle is missing, corrupt, tampered with, or from a newer schema."""

    exit_code = 3


class TrainingError(AnomalyError):
    """Training could not reach a usable model (it diverged even after the retries)."""

    exit_code = 4


class MissingExtraError(AnomalyError):
    """A feature needs an optional dependency that is not installed."""

    exit_code = 6

    def __init__(self, feature: str, extra: str, alternative: str = "") -> None:
        hint = f" ({alternative})" if alternative else ""
        super().__init__(f"{feature} needs the '{extra}' extra, which is not installed: "
                         f"pip install 'vae-anomaly[{extra}]'{hint}")
        self.extra = extra


#: Longest quotation of a client's value or name in a message, in characters of its repr.
QUOTE_LIMIT = 80


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A value as a message quotes it: its repr, cut after ``limit`` characters with how long
    it was. A hostile or broken client (a 100,000-character header, a column value that is a
    whole file) would otherwise get its input echoed back, and logged, in full."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def listed(names: list[str], limit: int = 10) -> str:
    """Names for a message: the list as Python writes it, cut after ``limit`` names with how
    many more there are (and each name after :data:`QUOTE_LIMIT` characters), so that a row
    with 20,000 stray keys or a 1,500-column schema gives a readable line rather than a
    message the size of the request."""
    shown = "[" + ", ".join(quoted(n) for n in names[:limit]) + "]"
    if len(names) <= limit:
        return shown
    return f"{shown} and {len(names) - limit:,} more"


def near_names(missing: list[str], present: Collection[str], limit: int = 3) -> str:
    """A message's hint for columns that are missing only by spaces or case (``' b'`` in a
    header written ``a, b``, ``Age`` for ``age``): names must match exactly, and such a near
    miss is hard to see in a list. Empty when there is none."""
    by_key: dict[str, str] = {}
    for name in present:
        by_key.setdefault(name.strip().casefold(), name)
    pairs = [(m, by_key[m.strip().casefold()]) for m in missing
             if m.strip().casefold() in by_key and by_key[m.strip().casefold()] != m]
    if not pairs:
        return ""
    shown = ", ".join(f"{have!r} for {want!r}" for want, have in pairs[:limit])
    more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return (f" (there is {shown}{more}: names must match exactly, spaces and case "
            "included; rename the columns or retrain)")
