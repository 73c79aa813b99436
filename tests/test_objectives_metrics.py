"""objectives.metrics: the one list of metric names agrees with what the Evaluator computes."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from objectives.evaluate import METRICS as EVALUATOR_STAGES
from objectives.evaluate import Evaluator
from objectives.metrics import METRIC_KEYS, METRICS, STAGES, Metric, format_metrics, get_metric, stage_keys
from objectives.references import array_reference
from test_objectives_evaluate import _images, colour_clip, pool_extractor


def test_names_directions_and_stages():
    assert METRIC_KEYS == ("fid", "kid_mean", "kid_std", "clip_score", "prd_f8", "prd_f1_8")
    assert STAGES == EVALUATOR_STAGES == ("fid", "kid", "clip", "prd")
    assert {k for k, m in METRICS.items() if m.direction == "minimize"} == {"fid", "kid_mean"}
    assert {k for k, m in METRICS.items() if m.direction == "maximize"} == {"clip_score", "prd_f8", "prd_f1_8"}
    assert METRICS["kid_std"].direction is None and METRICS["kid_std"].sign == 0
    assert METRICS["fid"].sign == -1 and METRICS["clip_score"].sign == 1
    assert stage_keys("kid") == ("kid_mean", "kid_std") and stage_keys("prd") == ("prd_f8", "prd_f1_8")


def test_misses_name_the_known_values():
    with pytest.raises(ValueError, match=r"unknown metric 'is'; known: \['fid', 'kid_mean'"):
        get_metric("is")
    with pytest.raises(ValueError, match=r"unknown metric stage 'lpips'; stages: \['fid', 'kid', 'clip', 'prd'\]"):
        stage_keys("lpips")
    with pytest.raises(ValueError, match="direction must be one of"):
        Metric("x", "fid", "lower", "X", "", ".2f", 3)


def test_formatting():
    assert METRICS["fid"].format(12.34567) == "12.346" and METRICS["fid"].format(None) == "–"
    assert METRICS["fid"].format(float("nan")) == "nan"
    m = {"fid": 12.34567, "kid_mean": 0.012345, "kid_std": 0.001, "clip_score": 31.0, "n": 8}
    assert format_metrics(m) == "fid 12.346 kid_mean 0.0123 clip_score 31.00"
    assert format_metrics(m, ("kid_std",)) == "kid_std 0.0010"


@pytest.mark.parametrize("stages", [STAGES, ("fid",), ("kid",), ("clip",), ("prd",)])
def test_evaluator_returns_exactly_the_keys_of_its_stages(tmp_path, stages):
    ref = array_reference(_images(60, 0), name="rand", captions=["a red"] * 60)
    ev = Evaluator(ref, clip=colour_clip(), extractor=pool_extractor(), cache=tmp_path, metrics=stages,
                   prd_runs=1, prd_clusters=4, kid_subsets=5)
    out = ev.evaluate(_images(20, 1), ["a red"] * 20)
    want = [k for s in stages for k in stage_keys(s)]
    assert {k for k in out if k in METRICS} == set(want)
    assert set(out) - set(METRICS) == {"n", "conventions", "timings"}
