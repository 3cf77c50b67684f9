"""Raw input -> the graph's ``x``: table rows (``tabular``, one encoder for every caller),
images (``image``), and what a raw value means (``values``)."""

from anomaly.preprocessing.image import DEFAULT_MAX_PIXELS, ImagePreprocessor, upright
from anomaly.preprocessing.tabular import (
    MAX_STANDARD,
    Prepared,
    TabularPreprocessor,
    rejected_rows_error,
)
from anomaly.preprocessing.values import (
    MISSING_TOKENS,
    TextNumbers,
    all_finite,
    as_durations,
    as_numbers,
    category_key,
    csv_category,
    formatted_number,
    is_missing,
    rows_to_columns,
    seconds,
    to_float,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_STANDARD",
    "MISSING_TOKENS",
    "ImagePreprocessor",
    "Prepared",
    "TabularPreprocessor",
    "TextNumbers",
    "all_finite",
    "as_durations",
    "as_numbers",
    "category_key",
    "csv_category",
    "formatted_number",
    "is_missing",
    "rejected_rows_error",
    "rows_to_columns",
    "seconds",
    "to_float",
    "upright",
]
