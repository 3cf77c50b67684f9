"""The bodies the service sends and takes, as pydantic models: they exist for the OpenAPI
document (``/openapi.json``), which schemathesis checks responses against. The handlers build
their JSON directly with orjson (FastAPI's validation and encoding pass would cost more than
scoring one row), so every model here must match what the handlers write; the schemathesis
test in tests/service holds them together.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from anomaly.bundle import InputSchema

# --- shared ---------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error, whatever its status: one message saying what went wrong and what to do."""

    error: str = Field(examples=["no model named 'sensors' is loaded (loaded: breast_cancer, "
                                 "digits)"])


# --- operations -----------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """200 when every model has a serving version, else 503 with the same body."""

    ready: bool
    models: list[str]
    not_ready: list[str] = Field(description="models with no version that loaded")


# --- /v1 ------------------------------------------------------------------------------------


class TopColumn(BaseModel):
    column: str
    score: float | None = Field(description="the column's share of the score, nats")


class ScoreItem(BaseModel):
    """One row's or image's result. Scores are -log reconstruction probability in nats
    (higher = more anomalous); null only where the value is not finite."""

    score: float | None
    threshold: float | None
    is_anomaly: bool
    p_value: float | None
    model: str
    version: int
    mc_samples: int
    filename: str | None = Field(None, description="multipart uploads: the part's file name")
    top_columns: list[TopColumn] | None = Field(None, description="rows, with ?explain=true")
    heatmap_png: str | None = Field(None, description="images, with ?explain=true: the "
                                    "per-pixel score map as a base64 PNG")
    heatmap: list[list[float]] | None = Field(None, description="images, with ?explain=true"
                                              "&raw_map=true: the (H, W) map, nats per pixel")


class ScoreResponse(BaseModel):
    model: str
    version: int
    results: list[ScoreItem]


class ModelVersionInfo(BaseModel):
    version: int
    kind: Literal["tabular", "image"]
    input: InputSchema = Field(description="the bundle's input schema (columns with their "
                               "training statistics, or the image size)")
    input_dim: int
    threshold: float
    target_fpr: float
    mc_samples: int
    provider: str
    providers: list[str]
    bundle_name: str
    created_at: str
    loaded_at: str
    path: str


class LoadError(BaseModel):
    version: int
    error: str
    at: str = Field(description="UTC, ISO 8601")


class ModelListing(BaseModel):
    name: str
    ready: bool
    default_version: int | None
    versions: list[ModelVersionInfo]
    load_errors: list[LoadError]


class ModelList(BaseModel):
    models: list[ModelListing]


class ReloadReport(BaseModel):
    """What a reload did. A version in ``failed`` did not load (its previous load, if any,
    keeps serving); that is an outcome to act on, not a server error."""

    model: str
    loaded: list[int]
    unchanged: list[int]
    unloaded: list[int]
    failed: list[LoadError]
    serving: list[int]


# --- /v2 ------------------------------------------------------------------------------------

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BYTES"]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1: any size (the batch)")


class ModelParameters(BaseModel):
    kind: Literal["tabular", "image"]
    threshold: float
    target_fpr: float
    mc_samples: int
    provider: str


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class RequestTensor(BaseModel):
    name: str = Field(min_length=1, description="'x' (required) or 'seed' (optional)")
    shape: list[int] = Field(min_length=1)
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the "
                                              "tensor's bytes in the binary tail")
    data: list[Any] | None = Field(None, description="row-major values, unless sent as "
                                   "binary data")


class RequestedOutput(BaseModel):
    name: Literal["score", "feature_scores", "is_anomaly", "p_value"]
    parameters: dict[str, Any] | None = Field(None, description="binary_data: true for the "
                                              "binary tensor extension")


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="seed (int), mc_samples "
                                              "(int), binary_data_output (bool)")
    inputs: list[RequestTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class ResponseTensor(BaseModel):
    name: str
    datatype: Literal["FP32", "FP64", "BOOL"]
    shape: list[int]
    data: list[float | bool | None] | None = None
    parameters: dict[str, int] | None = Field(None, description="binary_data_size, for a "
                                              "tensor in the binary tail")


class InferResponseParameters(BaseModel):
    mc_samples: int
    threshold: float


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: InferResponseParameters
    outputs: list[ResponseTensor]


# --- /v2 extensions (Triton) ------------------------------------------------------------------


class DurationStat(BaseModel):
    count: int
    ns: int


class InferenceStatistics(BaseModel):
    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    cache_hit: DurationStat
    cache_miss: DurationStat


class BatchStatistics(BaseModel):
    batch_size: int
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Unix time of the last execution, ms")
    inference_count: int
    execution_count: int
    inference_stats: InferenceStatistics
    batch_stats: list[BatchStatistics]


class StatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(False, description="only models ready for inference")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class RepositoryLoadRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(None, max_length=0, description=(
        "none are supported (Triton's config and file: overrides): a model loads from its "
        "directory as it is"))


class RepositoryUnloadRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(None, description="unload_dependents (bool)")


class ModelConfig(BaseModel):
    """Triton's ModelConfig (model_config.proto) as JSON, the fields that describe this
    service's models."""

    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any] | None = None
    instance_group: list[dict[str, Any]]
    parameters: dict[str, dict[str, str]]
