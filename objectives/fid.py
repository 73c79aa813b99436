"""Fréchet distance (FID) and kernel distance (KID) over feature matrices.

Pure functions of features ``[N, D]`` (torch or numpy). FID's general path and KID call torch-fidelity's
own functions (``metric_fid.fid_statistics_to_metric``, ``metric_kid.kid_features_to_metric``), so the
numbers follow its conventions exactly. ``fid_from_features`` adds an exact shortcut for small samples.
"""
from __future__ import annotations

import numpy as np
import torch


def _np64(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {x.shape}")
    return x


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], unbiased covariance [D, D]) in float64, as in TF-FID / torch-fidelity."""
    x = _np64(features)
    if len(x) < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {len(x)}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2) (torch-fidelity's implementation)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1 = {"mu": np.asarray(mu1, np.float64), "sigma": np.atleast_2d(np.asarray(sigma1, np.float64))}
    s2 = {"mu": np.asarray(mu2, np.float64), "sigma": np.atleast_2d(np.asarray(sigma2, np.float64))}
    return fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID]


def fid_from_features(features_1, features_2) -> float:
    """FID between two feature sets.

    When a set has fewer samples than dimensions (small-sample trials: N = 64..1000 vs D = 2048), its
    covariance is S = AᵀA with A = (X - mu) / sqrt(N - 1), and the non-zero eigenvalues of S1 S2 are those
    of (B Aᵀ)ᵀ(B Aᵀ); so tr sqrt(S1 S2) = ||B Aᵀ||_* (nuclear norm of an N1 x N2 matrix) and tr S = ||A||²_F.
    This is exact, and much faster than the D x D eigen-decomposition of the general path.
    """
    x, y = _np64(features_1), _np64(features_2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    if min(len(x), len(y)) >= d:
        return frechet_distance(*feature_statistics(x), *feature_statistics(y))
    mx, my = x.mean(0), y.mean(0)
    a = (x - mx) / np.sqrt(len(x) - 1)
    b = (y - my) / np.sqrt(len(y) - 1)
    c = a @ b.T
    gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum()   # singular values of c
    diff = mx - my
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * cross)


def fid_from_features_and_statistics(features, mu, sigma) -> float:
    """FID between a feature set and precomputed statistics (mu, sigma) of a reference (e.g. 10k images).

    For N < D samples, tr sqrt(S1 S2) = Σ sqrt(eig(A S2 Aᵀ)) with S1 = AᵀA (an N x N symmetric problem,
    N·D² work), so a large reference costs nothing per call once its statistics are computed.
    """
    x = _np64(features)
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if x.shape[1] != mu.shape[0] or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"feature dimension {x.shape[1]} does not match statistics {mu.shape}, {sigma.shape}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 samples, got {len(x)}")
    if len(x) >= x.shape[1]:
        return frechet_distance(*feature_statistics(x), mu, sigma)
    mx = x.mean(0)
    a = (x - mx) / np.sqrt(len(x) - 1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(a @ sigma @ a.T), 0.0, None)).sum()
    diff = mx - mu
    return float(diff @ diff + (a * a).sum() + np.trace(sigma) - 2.0 * cross)


def kid_from_features(features_1, features_2, subsets: int = 100, subset_size: int = 1000, seed: int = 2020,
                      degree: int = 3, gamma: float | None = None, coef0: float = 1.0, device=None,
                      kernel_22: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD² over random subsets: torch-fidelity's KID.

    ``subset_size`` is capped at the smaller set size, so small trials work (record the value used).
    When both sets fit in one subset, every subset is the same pair of sets and one is enough. The subsets
    are drawn exactly as ``torch_fidelity.metric_kid.kid_features_to_metric`` draws them (same RNG, same
    unbiased estimator, float64), so the result equals it (checked in the tests); the kernels are computed
    once (when n1 + n2 <= ``_KERNEL_CACHE_MAX``) in torch on ``device`` (e.g. the GPU) and indexed per subset.
    ``kernel_22``: the precomputed kernel matrix of ``features_2`` (``kid_kernel(features_2)``; a fixed
    reference's, computed once by the Evaluator).
    """
    x = torch.as_tensor(_np64(features_1), device=device)
    y = torch.as_tensor(_np64(features_2), device=device)
    n1, n2 = len(x), len(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    size = kid_subset_size(n1, n2, subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n1} and {n2}")
    if size == n1 == n2:
        subsets = 1
    gamma = 1.0 / x.shape[1] if gamma is None else gamma

    def kernel(a, b):
        return (a @ b.T * gamma + coef0) ** degree

    cached = n1 + n2 <= _KERNEL_CACHE_MAX or kernel_22 is not None
    if cached:
        kyy = kernel(y, y) if kernel_22 is None else kernel_22.to(x.device, torch.float64)
        if kyy.shape != (n2, n2):
            raise ValueError(f"kernel_22 has shape {tuple(kyy.shape)}, expected {(n2, n2)}")
        kxx, kxy = kernel(x, x), kernel(x, y)
    rng = np.random.RandomState(seed)
    m = size
    mmds = torch.zeros(subsets, dtype=torch.float64, device=x.device)
    for i in range(subsets):
        i1 = torch.as_tensor(rng.choice(n1, size, replace=False), device=x.device)
        i2 = torch.as_tensor(rng.choice(n2, size, replace=False), device=x.device)
        if cached:
            k11, k22, k12 = kxx[i1][:, i1], kyy[i2][:, i2], kxy[i1][:, i2]
        else:
            a, b = x[i1], y[i2]
            k11, k22, k12 = kernel(a, a), kernel(b, b), kernel(a, b)
        # unbiased MMD² (torch-fidelity's mmd2, mmd_est="unbiased"): off-diagonal means minus 2x cross mean
        mmds[i] = ((k11.sum() - k11.diagonal().sum() + k22.sum() - k22.diagonal().sum()) / (m * (m - 1))
                   - 2 * k12.sum() / (m * m))
    mmds = mmds.cpu().numpy()
    return float(np.mean(mmds)), float(np.std(mmds))


_KERNEL_CACHE_MAX = 12_000


def kid_kernel(features, degree: int = 3, gamma: float | None = None, coef0: float = 1.0, device=None
               ) -> torch.Tensor:
    """KID's polynomial kernel matrix (x·xᵀ·gamma + coef0)^degree of one feature set, float64."""
    x = torch.as_tensor(_np64(features), device=device)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ x.T * gamma + coef0) ** degree


def kid_subset_size(n1: int, n2: int, requested: int = 1000) -> int:
    """The subset size KID actually uses: min(requested, n1, n2)."""
    return int(min(requested, n1, n2))
