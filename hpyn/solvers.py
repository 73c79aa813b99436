"""DPM-Solver++ ODE solvers in λ = −log σ form (spec C.1), as pure functions.

`denoiser(x, sigma) -> x0 estimate`, `sigmas` a descending float64 tensor. Each step is one denoiser call.
A grid may end at σ_n > 0 (the paper's residual ending: no extra denoise, every step keeps its full order)
or at 0 (classic: the last step returns the denoised latent, i.e. falls back to first order).
`step_hook(i)` runs before the denoiser call of step i (FreeU windows use it); `callback(info)` after.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import trange

__all__ = ["sample_dpmpp_1s", "sample_dpmpp_2m", "sample_dpmpp_3m", "get_solver", "SOLVERS"]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def _steps(sigmas: torch.Tensor, disable: bool):
    if sigmas.dim() != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D grid of ≥ 2 values, got shape {tuple(sigmas.shape)}")
    s = [float(v) for v in sigmas]
    if any(b >= a for a, b in zip(s, s[1:])) or s[-1] < 0:
        raise ValueError(f"sigmas must be strictly decreasing and ≥ 0, got {s}")
    return s, trange(len(s) - 1, disable=disable, leave=False)


def _call(denoiser, x, sigma, i, step_hook):
    if step_hook is not None:
        step_hook(i)
    return denoiser(x, sigma)


@torch.no_grad()
def sample_dpmpp_1s(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                    step_hook=None, disable: bool = True) -> torch.Tensor:
    """DPM-Solver++1S = DDIM(η=0) = Euler in σ: x' = (σ'/σ)·x + (1 − σ'/σ)·D."""
    s, it = _steps(sigmas, disable)
    for i in it:
        d = _call(denoiser, x, s[i], i, step_hook)
        ratio = s[i + 1] / s[i]
        x = ratio * x + (1 - ratio) * d
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": d})
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                    step_hook=None, disable: bool = True) -> torch.Tensor:
    """DPM-Solver++2M: first step 1S; then D̃ = (1 + 1/2r)·D_i − (1/2r)·D_{i−1}, r = h_{i−1}/h_i.

    First order only where σ_{i+1} = 0; a residual grid keeps second order on its last step (spec C.1).
    """
    s, it = _steps(sigmas, disable)
    d_prev, h_prev = None, None
    for i in it:
        d = _call(denoiser, x, s[i], i, step_hook)
        ratio = s[i + 1] / s[i]
        if s[i + 1] == 0:
            x = d
        else:
            h = math.log(s[i] / s[i + 1])
            d_use = d
            if d_prev is not None:
                r = h_prev / h
                d_use = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev
            x = ratio * x + (1 - ratio) * d_use
            h_prev = h
        d_prev = d  # the raw denoised output, not the extrapolation
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": d})
    return x


@torch.no_grad()
def sample_dpmpp_3m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                    step_hook=None, disable: bool = True) -> torch.Tensor:
    """DPM-Solver++3M: exponential integrator x' = e^{−h}x + (1−e^{−h})·D + hφ₂·D′ − h²φ₃·D″ with D′, D″ from
    divided differences of the last three denoised values (order 1, 2, 3 on the first three steps).

    With d2 = (d1_0 − d1_1)/(r0 + r1) ≈ h²·D″/2 the exact coefficient is −2φ₃ (∫₀ʰ e^{u−h}u²/2 du = −h²φ₃).
    k-diffusion's dpmpp_3m_sde (η = 0) and DPM-Solver's multistep 3rd-order update use −φ₃, which is not exact
    for a denoiser quadratic in λ; tests/test_hpyn_solvers.py checks this exactness.
    """
    s, it = _steps(sigmas, disable)
    d1 = d2 = h1 = h2 = None
    for i in it:
        d = _call(denoiser, x, s[i], i, step_hook)
        if s[i + 1] == 0:
            x = d
        else:
            h = math.log(s[i] / s[i + 1])
            phi1 = -math.expm1(-h)  # 1 − e^{−h} = 1 − σ'/σ
            x = math.exp(-h) * x + phi1 * d
            phi2 = 1 - phi1 / h  # φ₂(h)·h = (e^{−h} − 1 + h)/h
            if h2 is not None:
                r0, r1 = h1 / h, h2 / h
                d1_0 = (d - d1) / r0
                d1_1 = (d1 - d2) / r1
                first = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                second = (d1_0 - d1_1) / (r0 + r1)
                phi3 = phi2 / h - 0.5
                x = x + phi2 * first - 2 * phi3 * second
            elif h1 is not None:
                x = x + phi2 * (d - d1) / (h1 / h)
            h1, h2 = h, h1
        d1, d2 = d, d1
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": d})
    return x


SOLVERS = {1: sample_dpmpp_1s, 2: sample_dpmpp_2m, 3: sample_dpmpp_3m}


def get_solver(order: int):
    try:
        return SOLVERS[order]
    except KeyError:
        raise ValueError(f"no solver of order {order!r}; available orders: {sorted(SOLVERS)}") from None
