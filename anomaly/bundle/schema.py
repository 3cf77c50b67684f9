"""The typed contents of ``bundle.json``: input schema, model, threshold, training summary.

Everything a scorer needs to turn raw rows or image bytes into the graph's input lives here,
so a bundle is self-contained: no training code or data is needed to score with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

#: Bumped when bundle.json changes incompatibly; loaders refuse newer versions and migrate
#: older ones (:mod:`anomaly.bundle.io`). v2: the score kind is a typed field of ``model``.
SCHEMA_VERSION = 2

#: Extra category slot every categorical column gets: values never seen in training land
#: here, and since the model gave it ~zero mass in training they score as anomalous.
UNKNOWN_CATEGORY = "<unknown>"
#: The category of a missing value (a null or blank field), in the categories of a column
#: whose training rows had missing values. Blank text is never a category otherwise (blank
#: means missing), so it cannot clash with a real one.
MISSING_CATEGORY = ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericColumn(_Model):
    """A real-valued column, standardised as (value - mean) / std before scoring. ``mean`` and
    ``std`` are the centre and scale training chose (since schema v2 by default the median
    and the interquartile range / 1.349, robust to extreme rows; see training/tabular.py).

    ``fill``: the value (in the column's own units, the median of its training values) that
    a missing value stands for, set when some training rows had none in this column: the
    model was fitted with them filled so, and scoring fills them the same way. Without it
    (the column was always filled in training) a missing value makes its row a bad row.
    Left out of ``bundle.json`` when unset, so bundles without it read as before."""

    name: str
    type: Literal["numeric"] = "numeric"
    mean: float
    std: float = Field(gt=0)
    fill: float | None = None

    @model_serializer(mode="wrap")
    def _without_unset_fill(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("fill") is None:
            out.pop("fill", None)
        return out


class CategoricalColumn(_Model):
    """A discrete column, one-hot encoded over ``categories`` plus an unknown slot."""

    name: str
    type: Literal["categorical"] = "categorical"
    categories: list[str] = Field(min_length=1)


Column = Annotated[NumericColumn | CategoricalColumn, Field(discriminator="type")]


class TabularInput(_Model):
    """``columns`` are what the model reads, in order; ``ignored`` the columns of the training
    data it does not read (excluded, constant, or a copy of another), which scoring input may
    still carry."""

    kind: Literal["tabular"] = "tabular"
    columns: list[Column] = Field(min_length=1)
    ignored: list[str] = Field(default_factory=list)

    def to_frame(self) -> Any:
        """The columns as a pandas DataFrame, one row each: ``name``, ``type``, ``mean`` and
        ``std`` (numeric, in the column's units; NaN for categorical), ``n_categories`` and
        ``categories`` (categorical; the unknown slot not counted). For inspection; needs
        pandas (the ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError as exc:
            from anomaly.errors import MissingExtraError

            raise MissingExtraError("the schema as a DataFrame", "pandas") from exc
        rows = [{"name": c.name, "type": c.type,
                 "mean": c.mean if isinstance(c, NumericColumn) else float("nan"),
                 "std": c.std if isinstance(c, NumericColumn) else float("nan"),
                 "n_categories": len(c.categories) if isinstance(c, CategoricalColumn) else 0,
                 "categories": list(c.categories) if isinstance(c, CategoricalColumn) else None}
                for c in self.columns]
        return pd.DataFrame(rows, columns=["name", "type", "mean", "std", "n_categories",
                                           "categories"])


class ImageInput(_Model):
    """Images are decoded, turned upright by their EXIF orientation when
    ``exif_orientation`` (as viewers and OpenCV show them: a phone photo stored sideways
    with an orientation tag), converted to ``channels`` (1 = grey, 3 = RGB), resized to
    height x width, divided by ``scale`` into [0, 1] and flattened channel-first. Bundles
    written before the field ignore the tag (False), and keep scoring as they were trained."""

    kind: Literal["image"] = "image"
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    scale: float = 255.0
    exif_orientation: bool = False


InputSchema = Annotated[TabularInput | ImageInput, Field(discriminator="kind")]


#: What a bundle's score is, in nats (higher = more anomalous):
#: ``reconstruction_probability``: -log RP(x), An & Cho's score;
#: ``likelihood_ratio``: -log RP(x) + log p_ref(x), against a local-smoothness reference
#: fitted on the normal training images (see ``training/reference.py``);
#: ``free_energy``: -log RP(x) + KL(q(z|x) || p(z)), the reconstruction probability plus how
#: atypical x's latent code is under the prior;
#: ``aggregate_free_energy``: -log RP(x) + w D(x), D how atypical x's code is among the codes
#: of the normal rows the model was fitted on, w (in the manifest's ``model.config``) the
#: ratio of the two terms' spreads over those rows (the tables' default, ``--latent-codes``;
#: ``training/aggregate_posterior.py``).
ScoreKind = Literal["reconstruction_probability", "likelihood_ratio", "free_energy",
                    "aggregate_free_energy"]


class ModelInfo(_Model):
    """What the ONNX graph is: ``x`` (B, input_dim) and ``eps`` (L, B, latent_dim) in,
    ``score`` (B,), ``feature_scores`` (B, input_dim), ``reconstruction`` (B, input_dim) out."""

    score: ScoreKind
    likelihood: Literal["gaussian", "bernoulli", "mixed"]
    architecture: Literal["mlp", "conv"]
    input_dim: int = Field(gt=0)
    latent_dim: int = Field(gt=0)
    mc_samples: int = Field(gt=0, description="default L, the number of latent samples")
    noise: Literal["iid", "antithetic", "sobol"] = Field(
        default="iid", description="how the L latent draws are made by default "
        "(anomaly.inference.noise); bundles from before the choice drew iid")
    precision: Literal["fp32", "int8"] = Field(
        default="fp32", description="arithmetic of the graphs' matrix products: int8 graphs "
        "are quantized from the fp32 export, their threshold calibrated on their own scores")
    feature_names: list[str]
    config: dict[str, Any] = Field(default_factory=dict)


class ThresholdPoint(_Model):
    fpr: float = Field(gt=0, lt=1)
    threshold: float


class McErrorInfo(_Model):
    """The Monte Carlo error of normal scores near the threshold, against the score spread
    there (:func:`anomaly.inference.uncertainty.error_at_threshold`): ``median_se`` the median
    standard error (nats) of the normal scores above their (1 - 2 target_fpr) quantile, ``n``
    of them; ``fpr_band`` the share of normal scores above threshold + median_se and above
    threshold - median_se: how far one standard error moves the false-positive rate."""

    median_se: float
    fpr_band: tuple[float, float]
    n: int
    mc_samples: int
    noise: str


class ThresholdInfo(_Model):
    """The anomaly threshold calibrated on held-out normal data (see
    :mod:`anomaly.calibration.threshold` for the order-statistic argument).

    ``value`` is the calibration score of rank ``rank`` (ascending), chosen so that the
    expected FPR on new normal data, ``expected_fpr``, is at most ``target_fpr`` (when the
    data can support it: ``min_supported_fpr`` is the smallest it can). ``fpr_ci`` is an exact
    ``confidence`` interval of the FPR it gives (the Beta distribution of the order statistic;
    bundles written before that hold a bootstrap interval and no rank). ``fpr_estimate`` is
    the share of calibration scores above it. ``method``: how the calibration scores were
    obtained (``holdout``: rows no model was fitted or selected on; ``cross_fit``: out-of-fold
    scores).
    """

    target_fpr: float = Field(gt=0, lt=1)
    value: float
    fpr_estimate: float
    fpr_ci: tuple[float, float]
    confidence: float = 0.95
    table: list[ThresholdPoint]
    calibration_size: int
    calibration_seed: int
    rank: int | None = None
    expected_fpr: float | None = None
    min_supported_fpr: float | None = None
    method: str = "holdout"
    #: absent in bundles from before scores had standard errors
    mc_error: McErrorInfo | None = None


class TrainingSummary(_Model):
    rows_train: int
    rows_holdout: int
    epochs: int
    best_epoch: int
    val_elbo: float
    data_fingerprint: str
    seed: int
    duration_s: float
    device: str
    versions: dict[str, str]
    history: list[dict[str, float]] = Field(default_factory=list)


class BundleFiles(_Model):
    """The bundle's files. ``model`` is the full graph (score, feature_scores,
    reconstruction); ``score_model`` the same model's score-only graph, which plain scoring
    runs (absent in bundles written before it existed: they score with ``model``)."""

    model: str = "model.onnx"
    model_sha256: str
    score_model: str | None = None
    score_model_sha256: str | None = None
    calibration: str = "calibration_scores.npy"
    plots: list[str] = Field(default_factory=list)


class Manifest(_Model):
    schema_version: int
    name: str
    kind: Literal["tabular", "image"]
    created_at: str
    input: InputSchema
    model: ModelInfo
    threshold: ThresholdInfo
    training: TrainingSummary
    files: BundleFiles
