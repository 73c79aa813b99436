"""Evaluator: one call -> all metrics with conventions; shared features; reuse across rungs."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectives.clip_score import ClipModel
from objectives.evaluate import Evaluator
from objectives.features import Extractor
from objectives.fid import fid_from_features
from objectives.references import array_reference


def pool_extractor():
    """A cheap stand-in for Inception: per-channel 2x2 average pooling, 12 features."""
    return Extractor(name="test-pool", weights_id="none", dim=12, resize="adaptive-avgpool-2",
                     module=torch.nn.Identity(), forward=lambda x: F.adaptive_avg_pool2d(x.float(), 2).flatten(1))

KEYS = {"fid", "kid_mean", "kid_std", "clip_score", "prd_f8", "prd_f1_8", "n", "conventions", "timings"}


def colour_clip():
    """A hand-made 'CLIP': images embed as mean RGB, prompts name a colour."""
    colours = {"red": [1.0, 0, 0], "green": [0, 1.0, 0], "blue": [0, 0, 1.0]}

    def enc_img(x):
        return x.mean(dim=(2, 3))

    def enc_txt(prompts):
        return torch.tensor([colours[p.split()[-1]] for p in prompts])

    return ClipModel(id="colour-clip", encode_image=enc_img, encode_text=enc_txt, image_size=8,
                     mean=(0, 0, 0), std=(1, 1, 1))


def _images(n, seed, colour=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    if colour is not None:
        x[:, [c for c in range(3) if c != colour]] //= 8
    return x


@pytest.fixture
def evaluator(tmp_path):
    ref = array_reference(_images(200, 0), name="rand", captions=["a red"] * 200)
    return Evaluator(ref, clip=colour_clip(), extractor=pool_extractor(), cache=tmp_path, prd_runs=2,
                     kid_subsets=10)


def test_evaluate_returns_every_metric_with_conventions(evaluator, tmp_path):
    imgs = _images(64, 1, colour=0)
    m = evaluator.evaluate(imgs, ["a red"] * 64, prd_plot=tmp_path / "prd.png")
    assert set(m) == KEYS and m["n"] == 64
    assert all(np.isfinite(m[k]) for k in KEYS - {"conventions", "timings", "n"})
    c = m["conventions"]
    assert c["extractor"] == "test-pool" and c["weights"] == "none" and c["clip_model"] == "colour-clip"
    assert c["n"] == 64 and c["n_reference"] == 200 and c["kid"]["subset_size"] == 64
    assert c["prd"]["n_each"] == 64 and "resize" in c and c["reference"] == "rand"
    assert (tmp_path / "prd.png").is_file()
    assert m["timings"]["total_s"] >= m["timings"]["features_s"]
    # red images with red prompts score higher than with blue prompts
    assert m["clip_score"] > evaluator.evaluate(imgs, ["a blue"] * 64)["clip_score"] + 10
    assert m["fid"] == pytest.approx(fid_from_features(evaluator.extractor(imgs), evaluator.ref_features))


def test_features_are_computed_once_and_reusable(evaluator):
    imgs = _images(32, 2)
    before = evaluator.extractor.count
    m1 = evaluator.evaluate(imgs, ["a green"] * 32)
    assert evaluator.extractor.count - before == 32          # one pass shared by FID, KID and PRD
    feats, scores = evaluator.last["features"], evaluator.last["clip_scores"]
    m2 = evaluator.evaluate(features=feats, clip_scores=scores)
    assert evaluator.extractor.count - before == 32
    for k in ("fid", "kid_mean", "prd_f8", "prd_f1_8", "clip_score"):
        assert m1[k] == pytest.approx(m2[k])


def test_per_call_metric_subset_skips_prd_without_changing_fid(evaluator):
    imgs = _images(24, 5)
    full = evaluator.evaluate(imgs)
    part = evaluator.evaluate(imgs, metrics=("fid", "kid", "clip"))
    assert "prd_f8" not in part and "prd_f8" in full
    assert part["fid"] == full["fid"] and part["kid_mean"] == full["kid_mean"]
    assert evaluator.metrics == ("fid", "kid", "clip", "prd")  # the Evaluator itself is unchanged
    with pytest.raises(ValueError, match=r"\['is'\] are not enabled"):
        evaluator.evaluate(imgs, metrics=("fid", "is"))


def test_same_distribution_scores_better_than_a_shifted_one(evaluator):
    same = evaluator.evaluate(_images(100, 3), ["a red"] * 100)
    shifted = evaluator.evaluate(_images(100, 3) // 2, ["a red"] * 100)
    assert same["fid"] < shifted["fid"] and same["kid_mean"] < shifted["kid_mean"]
    assert same["prd_f8"] > shifted["prd_f8"]


def test_prompts_default_to_the_prompt_set(evaluator):
    m = evaluator.evaluate(_images(10, 4))          # reference captions serve as prompts
    assert m["clip_score"] > 0
    with pytest.raises(ValueError, match="only 200 prompts"):
        evaluator.evaluate(_images(201, 4))


def test_metric_subset_and_validation(tmp_path):
    ref = array_reference(_images(50, 0), name="r")
    ev = Evaluator(ref, metrics=("fid",), extractor=pool_extractor(), cache=tmp_path, clip=None)
    m = ev.evaluate(_images(20, 1))
    assert set(m) == {"fid", "n", "conventions", "timings"}
    with pytest.raises(ValueError, match="unknown metrics"):
        Evaluator(ref, metrics=("fid", "is"), extractor=pool_extractor(), cache=tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        ev.evaluate(torch.zeros(4, 3, 8, 8))


def test_prd_uses_an_equal_size_seeded_reference_subsample(evaluator):
    feats = evaluator.extractor(_images(40, 5))
    a, b = evaluator.prd(feats), evaluator.prd(feats)
    np.testing.assert_array_equal(a.precision, b.precision)


def _toy_or_skip(pipeline=False):
    from hpyn import toy

    if not (toy.REFERENCE.is_file() and toy.CLIP.is_dir() and toy.CLASSIFIER.is_file()) or \
            (pipeline and not (toy.PIPELINE / "model_index.json").is_file()):
        pytest.skip("toy weights are not built")
    return toy


def test_toy_evaluator_with_classifier_features(tmp_path):
    toy = _toy_or_skip()
    ev = Evaluator("toy", extractor="toy-classifier", device="cpu", cache=tmp_path, prd_runs=2, kid_subsets=10)
    assert ev.clip.id.startswith("toy:") and len(ev.prompts) == len(ev.reference)
    real, labels = toy.load_reference()
    m = ev.evaluate(real[:100], ev.prompts[:100])       # reference images themselves: near-perfect scores
    assert m["conventions"]["extractor"] == "toy-classifier" and m["conventions"]["clip_model"] == ev.clip.id
    noise = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bad = ev.evaluate(noise, ev.prompts[:100])
    assert m["fid"] < bad["fid"] and m["prd_f8"] > bad["prd_f8"]


def test_evaluate_config_generates_and_scores_the_toy(tmp_path):
    _toy_or_skip(pipeline=True)
    from hpyn.presets import load_preset
    from hpyn.models import load_model

    from objectives.evaluate import evaluate_config

    ev = Evaluator("toy", extractor="toy-classifier", device="cpu", cache=tmp_path, prd_runs=1, prd_clusters=4,
                   kid_subsets=5)
    m = evaluate_config(load_model("toy", device="cpu"), load_preset("sd15", 5), ev, n=8)
    assert m["n"] == 8 and {"generate_s", "metrics_share"} <= set(m["timings"])
    assert 0 < m["timings"]["metrics_share"] < 1 and np.isfinite(m["fid"])


def test_cli_scores_a_folder(tmp_path, capsys):
    import json

    from PIL import Image

    from objectives.evaluate import main
    from objectives.features import EXTRACTORS, register_extractor

    register_extractor("test-pool", lambda **kw: pool_extractor())
    try:
        np.savez(tmp_path / "ref.npz", images=_images(30, 0).numpy())
        (tmp_path / "gen").mkdir()
        for i, im in enumerate(_images(12, 1)):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(tmp_path / "gen" / f"{i:03d}.png")
        main([str(tmp_path / "gen"), "--reference", f"npz:{tmp_path / 'ref.npz'}", "--clip", "none",
              "--extractor", "test-pool", "--metrics", "fid,kid", "--json", str(tmp_path / "m.json"), "--cache", str(tmp_path / "cache")])
    finally:
        EXTRACTORS.pop("test-pool")
    out = json.loads((tmp_path / "m.json").read_text())
    assert out["n"] == 12 and out["conventions"]["extractor"] == "test-pool" and "fid" in out
    assert json.loads(capsys.readouterr().out)["fid"] == out["fid"]
