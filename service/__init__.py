"""The inference service: HTTP scoring (``/v1``), the Open Inference Protocol (``/v2``),
dynamic batching, a hot-reloading model repository and Prometheus metrics.

Importing this package is light (no web stack, no torch): the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from service.config import Settings

if TYPE_CHECKING:
    from service.batching import BatchConfig, DynamicBatcher
    from service.main import create_app
    from service.metrics import ServiceMetrics
    from service.repository import ModelRepository, ModelVersion

__all__ = ["BatchConfig", "DynamicBatcher", "ModelRepository", "ModelVersion",
           "ServiceMetrics", "Settings", "create_app"]

_LAZY = {"BatchConfig": "service.batching", "DynamicBatcher": "service.batching",
         "create_app": "service.main", "ServiceMetrics": "service.metrics",
         "ModelRepository": "service.repository", "ModelVersion": "service.repository"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
