"""ODE solvers in λ = −log σ form (spec C.1), looked up by name, each written once as a step generator.

A solver's mathematics is a generator `steps(x, sigmas)` over a validated list of floats σ_0 > … > σ_n ≥ 0:

    x, d = yield x, sigmas[i]     # "evaluate the denoiser here": the driver sends back (x it used, D(x, σ_i))
    ...                           # the update from σ_i to σ_{i+1}; history (D_{i−1}, h_{i−1}, …) lives in locals
    return x                      # the latent at σ_n

Two drivers run the same generator: `Solver.__call__` (the plain loop `solver(denoiser, x, sigmas)`, the shape of
k-diffusion's samplers) and `hpyn.scheduler.HpynScheduler.step()` (diffusers calls it once per U-Net evaluation).
A generator keeps the multistep history in its frame between `send`s, so a step-at-a-time caller needs no second
copy of the update rules and no state object per solver. The driver sends back the x it evaluated at, so a
pipeline that edits the latent between steps (inpainting blends, callbacks) is integrated from the edited latent.

A grid may end at σ_n > 0 (the paper's residual ending: no extra denoise, every step keeps its full order)
or at 0 (classic: the last step returns the denoised latent, i.e. falls back to first order).
`step_hook(i)` runs before the denoiser call of step i (FreeU windows use it); `callback(info)` after.

Adding a solver: write its generator below and add one `Solver(...)` line to SOLVERS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import trange

__all__ = ["Solver", "SOLVERS", "get_solver", "solver_order", "dpmpp_name", "check_sigmas",
           "dpmpp_1s", "dpmpp_2m", "dpmpp_3m"]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
# yields (x, σ) where the denoiser is wanted, receives (x, D(x, σ)), returns the final latent
Steps = Generator[tuple[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor], torch.Tensor]


def check_sigmas(sigmas) -> list[float]:
    """The grid as Python floats; ValueError naming it unless 1-D, ≥ 2 values, strictly decreasing and ≥ 0."""
    shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else (len(sigmas),)
    if len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D grid of ≥ 2 values, got shape {shape}")
    try:
        s = [float(v) for v in sigmas]  # a list keeps float64 values exact (torch.as_tensor would make float32)
    except (TypeError, ValueError):
        raise ValueError(f"sigmas must be numbers, got {sigmas!r}") from None
    if any(not math.isfinite(v) for v in s) or any(b >= a for a, b in zip(s, s[1:])) or s[-1] < 0:
        raise ValueError(f"sigmas must be finite, strictly decreasing and ≥ 0, got {s}")
    return s


def dpmpp_1s(x: torch.Tensor, s: Sequence[float]) -> Steps:
    """DPM-Solver++1S = DDIM(η=0) = Euler in σ: x' = (σ'/σ)·x + (1 − σ'/σ)·D."""
    for i in range(len(s) - 1):
        x, d = yield x, s[i]
        ratio = s[i + 1] / s[i]
        x = ratio * x + (1 - ratio) * d
    return x


def dpmpp_2m(x: torch.Tensor, s: Sequence[float]) -> Steps:
    """DPM-Solver++2M: first step 1S; then D̃ = (1 + 1/2r)·D_i − (1/2r)·D_{i−1}, r = h_{i−1}/h_i.

    First order only where σ_{i+1} = 0; a residual grid keeps second order on its last step (spec C.1).
    """
    d_prev, h_prev = None, None
    for i in range(len(s) - 1):
        x, d = yield x, s[i]
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
    return x


def dpmpp_3m(x: torch.Tensor, s: Sequence[float]) -> Steps:
    """DPM-Solver++3M: exponential integrator x' = e^{−h}x + (1−e^{−h})·D + hφ₂·D′ − h²φ₃·D″ with D′, D″ from
    divided differences of the last three denoised values (order 1, 2, 3 on the first three steps).

    With d2 = (d1_0 − d1_1)/(r0 + r1) ≈ h²·D″/2 the exact coefficient is −2φ₃ (∫₀ʰ e^{u−h}u²/2 du = −h²φ₃).
    k-diffusion's dpmpp_3m_sde (η = 0) and DPM-Solver's multistep 3rd-order update use −φ₃, which is not exact
    for a denoiser quadratic in λ; tests/test_hpyn_solvers.py checks this exactness.
    """
    d1 = d2 = h1 = h2 = None
    for i in range(len(s) - 1):
        x, d = yield x, s[i]
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
    return x


@dataclass(frozen=True)
class Solver:
    """A named solver: `steps` is its generator; calling it runs the plain loop over a denoiser."""

    name: str
    order: int  # the order its multistep update reaches (1S: 1, 2M: 2, 3M: 3)
    steps: Callable[[torch.Tensor, Sequence[float]], Steps]

    @torch.no_grad()
    def __call__(self, denoiser: Denoiser, x: torch.Tensor, sigmas, *, callback=None, step_hook=None,
                 disable: bool = True) -> torch.Tensor:
        s = check_sigmas(sigmas)
        gen = self.steps(x, s)
        x, sigma = next(gen)
        for i in trange(len(s) - 1, disable=disable, leave=False):
            if step_hook is not None:
                step_hook(i)
            d = denoiser(x, sigma)
            try:
                x, sigma = gen.send((x, d))
            except StopIteration as stop:
                x = stop.value
            if callback is not None:
                callback({"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": d})
        return x


SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("dpmpp_1s", 1, dpmpp_1s),
    Solver("dpmpp_2m", 2, dpmpp_2m),
    Solver("dpmpp_3m", 3, dpmpp_3m),
)}
_DPMPP_BY_ORDER = {1: "dpmpp_1s", 2: "dpmpp_2m", 3: "dpmpp_3m"}


def get_solver(name: str) -> Solver:
    """The solver called `name`; ValueError listing the names that exist."""
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; available solvers: {sorted(SOLVERS)}") from None


def solver_order(name: str) -> int:
    return get_solver(name).order


def dpmpp_name(order: int) -> str:
    """DPM-Solver++ of order 1/2/3 → 'dpmpp_1s'/'dpmpp_2m'/'dpmpp_3m' (the legacy integer `order`)."""
    if isinstance(order, bool) or order not in _DPMPP_BY_ORDER:
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order!r}")
    return _DPMPP_BY_ORDER[order]
