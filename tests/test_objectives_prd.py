"""PRD (Sajjadi et al. 2018): closed forms on histograms, mode dropping/adding on synthetic clusters."""
import numpy as np
import pytest

from objectives.prd import PRDCurve, max_f_beta, plot_prd, prd_from_features, prd_from_histograms


def _f(beta, p, r):
    return (1 + beta ** 2) * p * r / (beta ** 2 * p + r)


def test_identical_histograms_give_perfect_prd():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    prec, rec = prd_from_histograms(p, p)
    assert prec.max() == pytest.approx(1, abs=1e-9) and rec.max() == pytest.approx(1, abs=1e-9)
    f8, f18 = PRDCurve(prec, rec).f_beta(8)
    assert f8 == pytest.approx(1, abs=2e-3) and f18 == pytest.approx(1, abs=2e-3)


def test_dropped_modes_closed_form():
    # Reference P uniform over 10 modes, model Q uniform over 5 of them (the paper's MNIST example):
    # α(λ) = min(λ/2, 1), β(λ) = min(1/2, 1/λ): precision reaches 1, recall saturates at 1/2.
    p = np.full(10, 0.1)
    q = np.r_[np.full(5, 0.2), np.zeros(5)]
    prec, rec = prd_from_histograms(q, p)
    lam = np.tan(np.linspace(1e-10, np.pi / 2 - 1e-10, 1001))
    np.testing.assert_allclose(prec, np.minimum(lam / 2, 1), atol=1e-12)
    np.testing.assert_allclose(rec, np.minimum(0.5, 1 / lam), atol=1e-12)
    f8, f18 = PRDCurve(prec, rec).f_beta(8)
    assert f8 == pytest.approx(_f(8, 1, 0.5), abs=1e-3)      # ≈ 0.504: recall-weighted F sees the loss
    assert f18 == pytest.approx(_f(1 / 8, 1, 0.5), abs=1e-3)  # ≈ 0.985: precision-weighted F does not


def test_added_modes_closed_form():
    # Q covers P's 5 modes and 5 extra ones: precision saturates at 1/2, recall reaches 1.
    p = np.r_[np.full(5, 0.2), np.zeros(5)]
    q = np.full(10, 0.1)
    prec, rec = prd_from_histograms(q, p)
    assert prec.max() == pytest.approx(0.5, abs=1e-9) and rec.max() == pytest.approx(1, abs=1e-6)
    f8, f18 = PRDCurve(prec, rec).f_beta(8)
    assert f8 == pytest.approx(_f(8, 0.5, 1), abs=1e-3)
    assert f18 == pytest.approx(_f(1 / 8, 0.5, 1), abs=1e-3)


def _clusters(rng, modes, n, d=16, centers=None):
    """n points spread evenly over the given modes (well-separated Gaussian blobs)."""
    labels = np.arange(n) % len(modes)
    return centers[np.asarray(modes)[labels]] + 0.3 * rng.normal(size=(n, d))


@pytest.fixture
def centers():
    rng = np.random.default_rng(123)
    return rng.normal(size=(10, 16)) * 10


def test_prd_of_identical_sets_is_one(centers):
    rng = np.random.default_rng(0)
    x = _clusters(rng, range(10), 400, centers=centers)
    curve = prd_from_features(x, x.copy(), num_runs=3)
    f8, f18 = curve.f_beta(8)
    assert f8 > 0.99 and f18 > 0.99


def test_prd_of_two_samples_of_one_distribution_is_near_one(centers):
    rng = np.random.default_rng(1)
    x = _clusters(rng, range(10), 400, centers=centers)
    y = _clusters(rng, range(10), 400, centers=centers)
    f8, f18 = prd_from_features(x, y, num_runs=3).f_beta(8)
    assert f8 > 0.95 and f18 > 0.95


def test_prd_detects_dropped_modes_as_recall_loss(centers):
    rng = np.random.default_rng(2)
    ref = _clusters(rng, range(10), 400, centers=centers)
    gen = _clusters(rng, range(5), 400, centers=centers)          # mode dropping
    curve = prd_from_features(gen, ref, num_runs=3)
    assert curve.recall.max() == pytest.approx(0.5, abs=0.05)
    assert curve.precision.max() == pytest.approx(1.0, abs=0.02)
    f8, f18 = curve.f_beta(8)
    assert f8 == pytest.approx(_f(8, 1, 0.5), abs=0.05) and f18 > 0.95


def test_prd_detects_added_modes_as_precision_loss(centers):
    rng = np.random.default_rng(3)
    ref = _clusters(rng, range(5), 400, centers=centers)
    gen = _clusters(rng, range(10), 400, centers=centers)         # mode invention
    curve = prd_from_features(gen, ref, num_runs=3)
    assert curve.precision.max() == pytest.approx(0.5, abs=0.05)
    assert curve.recall.max() == pytest.approx(1.0, abs=0.02)
    f8, f18 = curve.f_beta(8)
    assert f18 == pytest.approx(_f(1 / 8, 0.5, 1), abs=0.05) and f8 > 0.95


def test_prd_is_deterministic_and_requires_balance(centers):
    rng = np.random.default_rng(4)
    x = _clusters(rng, range(10), 100, centers=centers)
    y = _clusters(rng, range(10), 100, centers=centers)
    a, b = prd_from_features(x, y, num_runs=2, seed=5), prd_from_features(x, y, num_runs=2, seed=5)
    np.testing.assert_array_equal(a.precision, b.precision)
    with pytest.raises(ValueError, match="equal set sizes"):
        prd_from_features(x, y[:50])
    assert prd_from_features(x, y[:50], num_runs=1, enforce_balance=False).precision.shape == (1001,)


def test_histogram_validation_and_f_beta():
    with pytest.raises(ValueError, match="sum to 1"):
        prd_from_histograms([0.5, 0.2], [0.5, 0.5])
    assert max_f_beta([1.0], [1.0], 8) == pytest.approx(1, abs=1e-9)


def test_plot_prd_writes_png(tmp_path):
    p = np.full(10, 0.1)
    q = np.r_[np.full(5, 0.2), np.zeros(5)]
    curves = {"same": PRDCurve(*prd_from_histograms(p, p)), "half the modes": PRDCurve(*prd_from_histograms(q, p))}
    out = plot_prd(curves, tmp_path / "sub" / "prd.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
