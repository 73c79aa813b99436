"""Precision and recall for distributions (PRD), Sajjadi et al. 2018, arXiv 1806.00035.

Hand-written because no maintained library implements it: torch-fidelity's ``prc`` and torchmetrics
offer the k-NN precision/recall of Kynkäänniemi et al. 2019, a different quantity. This follows the
authors' reference code (msmsajjadi/precision-recall-distributions, ``prd_score.py``):

* cluster the union of both feature sets with mini-batch k-means (20 clusters, n_init=10);
* P = histogram of the reference set, Q = histogram of the evaluated set over the clusters;
* for λ = tan θ, θ in 1001 angles equally spaced in [1e-10, π/2 - 1e-10]:
  α(λ) = Σ_ω min(λ P(ω), Q(ω)) (precision), β(λ) = α(λ) / λ (recall)  (paper eq. 3 / Thm. 2);
* average the curves over 10 clusterings; summarise by max F_8 (recall-weighted) and max F_1/8
  (precision-weighted) over the curve, F_b = (1 + b²) p r / (b² p + r).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class PRDCurve:
    precision: np.ndarray   # [num_angles]
    recall: np.ndarray      # [num_angles]

    def f_beta(self, beta: float = 8.0) -> tuple[float, float]:
        """(max F_beta, max F_1/beta): (recall-weighted, precision-weighted) for beta > 1."""
        return max_f_beta(self.precision, self.recall, beta), max_f_beta(self.precision, self.recall, 1.0 / beta)


def prd_from_histograms(eval_dist, ref_dist, num_angles: int = 1001, epsilon: float = 1e-10
                        ) -> tuple[np.ndarray, np.ndarray]:
    """PRD curve (precision α, recall β) of distribution ``eval_dist`` (Q) w.r.t. ``ref_dist`` (P)."""
    q = np.asarray(eval_dist, np.float64)
    p = np.asarray(ref_dist, np.float64)
    if q.shape != p.shape or q.ndim != 1:
        raise ValueError(f"histograms must be 1-D of equal length, got {q.shape} and {p.shape}")
    if not (np.isclose(q.sum(), 1) and np.isclose(p.sum(), 1)):
        raise ValueError(f"histograms must sum to 1, got {q.sum()} and {p.sum()}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num_angles))[:, None]
    precision = np.minimum(p[None, :] * slopes, q[None, :]).sum(axis=1)
    recall = precision / slopes[:, 0]
    # Round-off may push values slightly above 1.
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def _cluster_histograms(eval_data: np.ndarray, ref_data: np.ndarray, num_clusters: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    from threadpoolctl import threadpool_limits

    data = np.concatenate([eval_data, ref_data])
    km = MiniBatchKMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    # One BLAS/OpenMP thread: these fits are small, and on shared or busy CPUs sklearn's threads
    # spin-wait each other (measured 10-25x slower with 2 threads on a loaded 2-core machine).
    with threadpool_limits(int(os.environ.get("HPYN_PRD_THREADS", "1"))):
        labels = km.fit(data).labels_
    q = np.bincount(labels[: len(eval_data)], minlength=num_clusters) / len(eval_data)
    p = np.bincount(labels[len(eval_data):], minlength=num_clusters) / len(ref_data)
    return q, p


def prd_from_features(eval_features, ref_features, num_clusters: int = 20, num_angles: int = 1001,
                      num_runs: int = 10, seed: int = 0, enforce_balance: bool = True) -> PRDCurve:
    """PRD curve of ``eval_features`` (generated, Q) against ``ref_features`` (reference, P), averaged
    over ``num_runs`` clusterings seeded ``seed, seed + 1, ...``. Equal set sizes are required (as in the
    reference code) unless ``enforce_balance=False``: unequal sizes bias the cluster assignment."""
    x = _np(eval_features)
    y = _np(ref_features)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if enforce_balance and len(x) != len(y):
        raise ValueError(f"PRD needs equal set sizes (got {len(x)} evaluated vs {len(y)} reference); "
                         "subsample the larger set or pass enforce_balance=False")
    if len(x) + len(y) < num_clusters:
        raise ValueError(f"PRD with {num_clusters} clusters needs at least that many points, got {len(x) + len(y)}")
    def run(r: int):
        return prd_from_histograms(*_cluster_histograms(x, y, num_clusters, seed + r), num_angles=num_angles)

    # Independent, seeded runs: threads change the speed, never the result.
    jobs = int(os.environ.get("HPYN_PRD_JOBS", min(num_runs, os.cpu_count() or 1)))
    if jobs > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(jobs) as ex:
            curves = list(ex.map(run, range(num_runs)))
    else:
        curves = [run(r) for r in range(num_runs)]
    precision = np.mean([c[0] for c in curves], axis=0)
    recall = np.mean([c[1] for c in curves], axis=0)
    return PRDCurve(precision, recall)


def _np(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, np.float32)   # k-means in float32, as the reference code does with TF features
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {x.shape}")
    return x


def f_beta(precision, recall, beta: float, epsilon: float = 1e-10) -> np.ndarray:
    precision, recall = np.asarray(precision), np.asarray(recall)
    return (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall + epsilon)


def max_f_beta(precision, recall, beta: float) -> float:
    return float(np.max(f_beta(precision, recall, beta)))


def plot_prd(curves: dict[str, PRDCurve] | PRDCurve, path: str | Path, title: str | None = None,
             dpi: int = 150) -> Path:
    """Save the PRD curve(s) as a PNG (recall on x, precision on y, as in the paper's figures)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(curves, PRDCurve):
        curves = {"generated": curves}
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for label, c in curves.items():
        f8, f18 = c.f_beta(8)
        ax.plot(c.recall, c.precision, label=f"{label} (F8={f8:.3f}, F1/8={f18:.3f})", linewidth=1.5)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
