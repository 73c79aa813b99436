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
           "dpmpp_1s", "dpmpp_2m", "dpmpp_3m", "unipc_bh2"]

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


def _unipc_coefficients(h: float, rks: Sequence[float]) -> tuple[float, list[float]]:
    """B(h) and b_k of UniPC's linear system R·ρ = b (Zhao et al. 2023, Eq. 8 with B(h) = e^{−h} − 1, "bh2").

    In λ = −log σ with x0-prediction: h_k·φ_k is built by the recurrence φ_{k+1}(−h) = (φ_k(−h) − 1/k!)/(−h), and
    b_k = k!·φ_{k+1}(−h)/B(h) for k = 1..K where K = len(rks); R[j][k] = rks[k]^j.
    """
    hh = -h
    b_h = math.expm1(hh)
    phi = math.expm1(hh) / hh - 1
    b, fact = [], 1
    for k in range(1, len(rks) + 1):
        b.append(phi * fact / b_h)
        fact *= k + 1
        phi = phi / hh - 1 / fact
    return b_h, b


def _solve(rks: Sequence[float], b: Sequence[float]) -> list[float]:
    """ρ with Σ_k rks[k]^j·ρ_k = b_j (j = 0..K−1): a K×K Vandermonde system, K ≤ 3."""
    r = torch.tensor([[rk**j for rk in rks] for j in range(len(rks))], dtype=torch.float64)
    return torch.linalg.solve(r, torch.tensor(b, dtype=torch.float64)).tolist()


def unipc_bh2(x: torch.Tensor, s: Sequence[float], order: int = 2) -> Steps:
    """UniPC (Zhao et al. 2023) with B(h) = e^{−h} − 1 ("bh2"), data prediction, predictor UniP-p with p = `order`
    and corrector UniC on every step that has a denoiser call after it.

    Step i: UniC first re-does the previous step x_{i−1} → x_i with D_i (evaluated at the predicted x_i, so no
    extra call), then UniP goes x_i → x_{i+1} with divided differences D_k = (D_{i−k} − D_i)/r_k, r_k =
    (λ_{i−k} − λ_i)/h:  x_{i+1} = e^{−h}·x_i + (1 − e^{−h})·D_i − B(h)·Σ_k ρ_k·D_k (the VE form of diffusers'
    `multistep_uni_p_bh_update`). Order warm-up min(p, i+1); on a grid ending at 0 also min(p, n − i) (diffusers'
    `lower_order_final`), and the jump to 0 returns D. A residual grid keeps order p on its last step (as 2M).
    The last predicted latent is not corrected (nothing evaluates the denoiser there). UniP-2 uses ρ = 1/2 and
    UniC-1 ρ = 1/2 (diffusers' simplified coefficients); higher orders solve R·ρ = b. As in diffusers, UniC
    rebuilds x_i from x_{i−1}, so an edit a driver made to the predicted x_i is not kept.
    Equal to diffusers' UniPCMultistepScheduler(solver_type="bh2", predict_x0=True) to float64 rounding
    (tests/test_hpyn_unipc.py); globally of order p + 1.
    """
    n = len(s) - 1
    lam = [-math.log(v) if v > 0 else math.inf for v in s]
    ds: list[torch.Tensor] = []  # D_0 … D_{i−1}
    last = None                  # (x_{i−1} after UniC, its order p, r_k's, h) for the corrector of step i
    for i in range(n):
        x_eval, d = yield x, s[i]
        x = x_eval
        if last is not None:  # UniC-p: x_i ← base(x_{i−1}, D_{i−1}) − B(h)·(Σ_{k<p} ρ_k·D_k + ρ_p·(D_i − D_{i−1}))
            x_prev, p, rks, h = last
            ratio = math.exp(-h)
            b_h, b = _unipc_coefficients(h, rks + [1.0])
            rho = [0.5] if p == 1 else _solve(rks + [1.0], b)
            corr = rho[-1] * (d - ds[-1])
            for k, rk in enumerate(rks, start=1):
                corr = corr + rho[k - 1] * (ds[-1 - k] - ds[-1]) / rk
            x = ratio * x_prev + (1 - ratio) * ds[-1] - b_h * corr
        ds.append(d)
        if s[i + 1] == 0:
            x = d
            break
        p = min(order, i + 1, n - i) if s[-1] == 0 else min(order, i + 1)
        h = lam[i + 1] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, p)]
        ratio = math.exp(-h)
        last = (x, p, rks, h)
        x_next = ratio * x + (1 - ratio) * d
        if p > 1:  # UniP-p: ρ = 1/2 for p = 2, else the first p−1 equations of R·ρ = b
            b_h, b = _unipc_coefficients(h, rks + [1.0])
            rho = [0.5] if p == 2 else _solve(rks, b[:-1])
            res = sum(rho[k - 1] * (ds[-1 - k] - d) / rk for k, rk in enumerate(rks, start=1))
            x_next = x_next - b_h * res
        x = x_next
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
    Solver("unipc_bh2", 2, unipc_bh2),  # UniP-2 + UniC (diffusers' UniPCMultistepScheduler defaults)
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
