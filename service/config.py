"""All service settings in one place: environment variables ``ANOMALY_<FIELD>`` and the
``anomaly serve`` flags (``--<field-with-dashes>``) set the same fields; flags win over the
environment, which wins over the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]


class Settings(BaseSettings):
    """Configuration of one service process (which serves every model in ``models``)."""

    model_config = SettingsConfigDict(env_prefix="ANOMALY_", extra="ignore",
                                      validate_default=True)

    # --- model repository -------------------------------------------------------------------
    models: Path = Field(default=Path("models"), description=(
        "model repository: <models>/<name>/<version>/ bundles (a bare <models>/<name>/ "
        "bundle is version 1)"))
    poll_interval_s: float = Field(default=0.0, ge=0, description=(
        "seconds between rescans of the repository for new or changed versions; 0 = only "
        "at start and on POST /v1/models/{name}/reload"))

    # --- HTTP ---------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1",
                      description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port")
    api_key: SecretStr | None = Field(default=None, description=(
        "if set, every endpoint but health, readiness, server metadata, /metrics and the "
        "docs needs 'Authorization: Bearer <key>' (scoring, admin, and model details such as "
        "column statistics and thresholds)"))
    metrics_token: SecretStr | None = Field(default=None, description=(
        "if set, GET /metrics needs 'Authorization: Bearer <token>' (a token of its own, so "
        "that a scraper holds no scoring rights); unset, /metrics is open: restrict it by "
        "network policy"))
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description=(
        "largest request body accepted, in bytes; larger ones get 413"))
    body_timeout_s: float = Field(default=60.0, gt=0, description=(
        "seconds from a request's arrival by which its whole body must have arrived; slower "
        "ones get 408, so a stalled or vanished client cannot hold queue capacity or a model "
        "version forever"))
    max_image_pixels: int = Field(default=16_777_216, gt=0, description=(
        "largest decoded image (width * height) accepted; guards against decompression bombs"))
    max_items_per_request: int = Field(default=4096, gt=0, description=(
        "most rows or images in one scoring request"))
    resize_images: bool = Field(default=False, description=(
        "resize and convert images whose size or colour mode differ from the model's "
        "(default: reject them with 422 saying what the model takes; per request: "
        "?resize=true)"))
    ignore_unknown_columns: bool = Field(default=False, description=(
        "drop JSON or CSV columns the model does not know (default: reject them with 422 "
        "naming them; per request: ?ignore_unknown_columns=true)"))
    log_level: str = Field(default="info", description="debug, info, warning or error")
    access_log: bool = Field(default=True, description="one JSON line per HTTP request")
    otel: bool = Field(default=False, description=(
        "FastAPI's native OpenTelemetry spans, metrics and logs per request (they need an "
        "OpenTelemetry SDK provider configured in the process); off by default: Prometheus "
        "metrics are built in, and the check alone costs ~10 us per request"))

    # --- inference ----------------------------------------------------------------------------
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_PROVIDERS), description=(
            "onnxruntime execution providers in order of preference, comma-separated; "
            "CPUExecutionProvider is always the last fallback"))
    intra_op_threads: int | None = Field(default=None, gt=0, description=(
        "onnxruntime intra-op threads per session (default: onnxruntime's choice)"))
    mc_samples: int | None = Field(default=None, gt=0, le=4096, description=(
        "default Monte Carlo samples L (default: each bundle's own)"))
    max_mc_samples: int = Field(default=1024, gt=0, description=(
        "largest L a request may ask for with ?mc_samples= / parameters.mc_samples"))
    default_seed: int = Field(default=0, ge=0, description=(
        "noise seed of a sample whose request gives none (same seed, same score)"))
    explain_top_k: int = Field(default=5, gt=0,
                               description="columns listed per row with ?explain=true")

    # --- dynamic batching (as Triton's dynamic_batching block) ---------------------------------
    dynamic_batching: bool = Field(default=True, description=(
        "coalesce concurrent requests to one model version into one onnxruntime call"))
    max_batch_size: int = Field(default=64, gt=0, description=(
        "most samples in one coalesced onnxruntime call (a larger request runs alone)"))
    max_queue_delay_us: int = Field(default=500, ge=0, description=(
        "microseconds the oldest queued request may wait for a batch to fill"))
    max_queue_size: int = Field(default=2048, gt=0, description=(
        "most samples waiting per model version; beyond it requests get 503 + Retry-After"))
    instances: int = Field(default=1, gt=0, le=64, description=(
        "onnxruntime calls in flight at once per model version (Triton's instance count)"))
    retry_after_s: int = Field(default=1, gt=0, description="Retry-After seconds sent with 503")
    gc_freeze: bool = Field(default=True, description=(
        "after loading, exempt start-up objects from Python's cyclic GC scans (gc.freeze): "
        "shorter collection pauses under load"))

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        """Accept 'A,B' (env var, flag) as well as a list."""
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.lower()
        if level not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError(f"log level must be debug, info, warning or error, got {value!r}")
        return level

    def api_key_value(self) -> str | None:
        """The configured key, or None when the endpoints are open."""
        return _secret(self.api_key)

    def metrics_token_value(self) -> str | None:
        """The configured metrics token, or None when /metrics is open."""
        return _secret(self.metrics_token)


def _secret(value: SecretStr | None) -> str | None:
    """An empty secret (``ANOMALY_API_KEY=``) counts as unset."""
    return (value.get_secret_value() or None) if value is not None else None
