"""FID / KID: closed forms, agreement with torch-fidelity, small-sample behaviour."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from objectives import fid as fid_module
from objectives.fid import (feature_statistics, fid_from_features, fid_from_features_and_statistics,
                            frechet_distance, kid_from_features, kid_kernel, kid_subset_size)


def _sqrtm_psd(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _random_psd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d) + 0.1 * np.eye(d)


def test_frechet_distance_diagonal_gaussians_closed_form():
    # N(m1, diag(s1²)) vs N(m2, diag(s2²)): d² = |m1 - m2|² + Σ (s1 - s2)²
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=16), rng.normal(size=16)
    s1, s2 = rng.uniform(0.5, 2, 16), rng.uniform(0.5, 2, 16)
    expected = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_gaussians_closed_form():
    # d² = |m1 - m2|² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)
    rng = np.random.default_rng(1)
    d = 12
    s1, s2 = _random_psd(rng, d), _random_psd(rng, d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    r1 = _sqrtm_psd(s1)
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * _sqrtm_psd(r1 @ s2 @ r1))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-8)


def test_fid_of_samples_converges_to_closed_form():
    rng = np.random.default_rng(2)
    d = 6
    s1, s2 = _random_psd(rng, d), _random_psd(rng, d)
    m1, m2 = np.zeros(d), np.full(d, 0.3)
    r1 = _sqrtm_psd(s1)
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * _sqrtm_psd(r1 @ s2 @ r1))
    x = rng.multivariate_normal(m1, s1, size=200_000)
    y = rng.multivariate_normal(m2, s2, size=200_000)
    assert fid_from_features(x, y) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("n1,n2", [(64, 300), (300, 64), (50, 50), (200, 3000)])
def test_small_sample_shortcut_equals_torch_fidelity(n1, n2):
    rng = np.random.default_rng(3)
    d = 128
    x = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) * 0.1
    y = rng.normal(size=(n2, d)) * 1.2 + 0.1
    general = frechet_distance(*feature_statistics(x), *feature_statistics(y))   # torch-fidelity's eigvals path
    assert fid_from_features(x, y) == pytest.approx(general, rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("n", [40, 200])
def test_fid_against_precomputed_statistics(n):
    rng = np.random.default_rng(9)
    d = 64
    x = rng.normal(size=(n, d)) * 0.5
    y = rng.normal(size=(500, d)) @ rng.normal(size=(d, d)) * 0.2 + 0.3
    mu, sigma = feature_statistics(y)
    assert fid_from_features_and_statistics(x, mu, sigma) == pytest.approx(fid_from_features(x, y), rel=1e-9)
    assert fid_from_features_and_statistics(x, mu, sigma) == pytest.approx(
        frechet_distance(*feature_statistics(x), mu, sigma), rel=1e-7)


def test_fid_of_a_set_against_itself_is_zero():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 2048)).astype(np.float32)   # N < D, like a small trial
    scale = 2 * x.var(0).sum()   # tr S1 + tr S2 ≈ 4096: zero up to round-off relative to that
    assert abs(fid_from_features(x, x)) < 1e-9 * scale
    assert abs(fid_from_features(torch.from_numpy(x), x[::-1].copy())) < 1e-9 * scale


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


@pytest.mark.parametrize("cached", [True, False])
def test_kid_equals_torch_fidelity(cached, monkeypatch):
    from torch_fidelity.metric_kid import kid_features_to_metric

    if not cached:   # per-subset kernels, the path for very large sets
        monkeypatch.setattr(fid_module, "_KERNEL_CACHE_MAX", 0)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(80, 64)), rng.normal(size=(150, 64)) + 0.2
    ours = kid_from_features(x, y, subsets=20, subset_size=50, seed=7)
    ref = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=20, kid_subset_size=50,
                                 rng_seed=7, verbose=False)
    assert ours[0] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-10)
    again = kid_from_features(x, y, subsets=20, subset_size=50, seed=7, kernel_22=kid_kernel(y))   # cached ref kernel
    assert again == pytest.approx(ours, rel=1e-12)


def test_kid_is_unbiased_on_identical_distributions():
    # E[MMD²_u] = 0 when both sets come from one distribution; the biased estimator is > 0.
    rng = np.random.default_rng(6)
    d, m, reps = 32, 20, 300
    vals = []
    for r in range(reps):
        x, y = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        vals.append(kid_from_features(x, y, subsets=1, subset_size=m, seed=r)[0])
    vals = np.array(vals)
    se = vals.std(ddof=1) / np.sqrt(reps)
    assert abs(vals.mean()) < 3 * se
    # ...and it detects a shift of the same size as the noise of a single estimate
    shifted = kid_from_features(rng.normal(size=(200, d)), rng.normal(size=(200, d)) + 0.5, subsets=10)[0]
    assert shifted > 10 * vals.std()


def test_kid_subset_size_adapts_to_small_n():
    assert kid_subset_size(64, 2000) == 64
    assert kid_subset_size(5000, 20000) == 1000
    rng = np.random.default_rng(8)
    mean, std = kid_from_features(rng.normal(size=(30, 8)), rng.normal(size=(500, 8)))   # no error at N=30
    assert np.isfinite(mean) and std >= 0
    mean, std = kid_from_features(rng.normal(size=(30, 8)), rng.normal(size=(30, 8)))    # one subset suffices
    assert std == 0
