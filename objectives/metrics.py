"""The one place for metric names: what `Evaluator.evaluate` returns and a study stores per trial and rung.

Each `Metric` says which `Evaluator` stage computes it (`Evaluator(metrics=...)` names stages), whether lower
or higher is better, and how to print it. Search, export and reports read names, directions and formats from
here; adding a metric is a line in METRICS plus the code in `objectives.evaluate` that computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "METRIC_KEYS", "STAGES", "get_metric", "stage_keys", "format_metrics"]

DIRECTIONS = ("minimize", "maximize", None)


@dataclass(frozen=True)
class Metric:
    key: str                # the result / trial-attribute key
    stage: str              # the Evaluator stage that computes it ("fid", "kid", "clip", "prd")
    direction: str | None   # "minimize" | "maximize"; None: reported beside another metric, never optimised
    label: str              # short name for tables
    description: str
    fmt: str                # format spec for one-line summaries
    digits: int             # significant digits for tables

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.key!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")

    @property
    def sign(self) -> int:
        """+1 when higher is better, −1 when lower is better, 0 when neither."""
        return {"maximize": 1, "minimize": -1, None: 0}[self.direction]

    def format(self, value: float | None) -> str:
        if value is None:
            return "–"
        return format(value, self.fmt) if math.isfinite(value) else str(value)


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fid", "fid", "minimize", "FID", "Fréchet distance of Inception pool3 (or the chosen extractor's) "
           "features to the reference; biased by ~1/N, compare at equal N", ".3f", 4),
    Metric("kid_mean", "kid", "minimize", "KID", "kernel inception distance (cubic polynomial kernel), mean over "
           "subsets; unbiased in N", ".4f", 3),
    Metric("kid_std", "kid", None, "KID std", "standard deviation of KID over its subsets (its uncertainty)",
           ".4f", 2),
    Metric("clip_score", "clip", "maximize", "CLIP score", "100·max(cos(image, prompt), 0), mean over samples",
           ".2f", 4),
    Metric("prd_f8", "prd", "maximize", "PRD F8", "max F_8 of the PRD curve (Sajjadi et al. 2018): recall, "
           "coverage of the reference", ".2f", 3),
    Metric("prd_f1_8", "prd", "maximize", "PRD F1/8", "max F_1/8 of the PRD curve: precision, how many samples "
           "look like the reference", ".2f", 3),
)}
METRIC_KEYS: tuple[str, ...] = tuple(METRICS)
STAGES: tuple[str, ...] = tuple(dict.fromkeys(m.stage for m in METRICS.values()))   # ("fid", "kid", "clip", "prd")


def get_metric(key: str) -> Metric:
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; known: {list(METRICS)}") from None


def stage_keys(stage: str) -> tuple[str, ...]:
    """The result keys one Evaluator stage produces."""
    if stage not in STAGES:
        raise ValueError(f"unknown metric stage {stage!r}; stages: {list(STAGES)}")
    return tuple(k for k, m in METRICS.items() if m.stage == stage)


def format_metrics(values: dict, keys: tuple[str, ...] | None = None) -> str:
    """'fid 12.345 kid_mean 0.0123 ...' for the metrics present in `values` (those with a direction by default)."""
    keys = keys if keys is not None else tuple(k for k, m in METRICS.items() if m.direction)
    return " ".join(f"{k} {get_metric(k).format(values[k])}" for k in keys if values.get(k) is not None)
