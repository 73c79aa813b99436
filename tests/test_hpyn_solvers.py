"""Solver mathematics: exactness, closed-form ODE solutions, convergence order (spec C.1)."""

import math

import pytest
import torch

from hpyn.solvers import SOLVERS, get_solver, sample_dpmpp_1s, sample_dpmpp_2m

S2 = 0.5**2  # data variance of the Gaussian test problem


def gaussian_denoiser(x, sigma):
    """Exact D(x, σ) = E[x0 | x] for x0 ~ N(0, s²): x·s²/(s²+σ²)."""
    return x * S2 / (S2 + sigma**2)


def gaussian_exact(x0, sigma0, sigma1):
    # dx/dσ = (x − D)/σ = x·σ/(s²+σ²)  ⇒  x(σ) ∝ sqrt(s²+σ²)
    return x0 * math.sqrt(S2 + sigma1**2) / math.sqrt(S2 + sigma0**2)


def lam_grid(n, hi=10.0, lo=0.05):
    lam = torch.linspace(-math.log(hi), -math.log(lo), n + 1, dtype=torch.float64)
    return torch.exp(-lam)


def solve_error(solver, n):
    x0 = torch.full((3,), 10.0, dtype=torch.float64)
    x = solver(gaussian_denoiser, x0.clone(), lam_grid(n))
    return (x - gaussian_exact(x0, 10.0, 0.05)).abs().max().item()


@pytest.mark.parametrize("order", sorted(SOLVERS))
def test_constant_denoiser_is_integrated_exactly(order):
    # D ≡ c  ⇒  x(σ) = c + (x0 − c)·σ/σ0, which every DPM++ update reproduces exactly
    c = torch.tensor([0.3, -1.2])
    den = lambda x, s: c.expand_as(x).double()
    sig = torch.tensor([14.6, 5.0, 1.7, 0.4, 0.13], dtype=torch.float64)
    x0 = torch.tensor([3.0, 7.0], dtype=torch.float64)
    x = get_solver(order)(den, x0.clone(), sig)
    assert torch.allclose(x, c + (x0 - c) * 0.13 / 14.6, atol=1e-12)


@pytest.mark.parametrize("order,expected", [(1, 1.0), (2, 2.0)])
def test_convergence_order_on_gaussian_closed_form(order, expected):
    errs = [solve_error(SOLVERS[order], n) for n in (16, 32, 64)]
    rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert rates[-1] == pytest.approx(expected, abs=0.15), (errs, rates)
    assert errs[-1] < 0.05


def test_3m_is_at_least_second_order_and_more_accurate_than_2m():
    # globally second order: its first step is Euler (local O(h²)); third order after start-up
    e3 = [solve_error(SOLVERS[3], n) for n in (32, 64)]
    e2 = solve_error(SOLVERS[2], 64)
    assert math.log2(e3[0] / e3[1]) > 1.8
    assert e3[1] < e2 / 2


def _quadratic_problem():
    a, b, c = 0.3, -0.7, 0.25
    d = lambda lam: a + b * lam + c * lam * lam
    den = lambda x, sigma: torch.full_like(x, d(-math.log(sigma)))
    # dx/dλ = D(λ) − x  ⇒  x(λ1) = e^{−(λ1−λ0)} x0 + e^{−λ1}[F(λ1) − F(λ0)], F = e^λ (D − D′ + D″)
    F = lambda lam: math.exp(lam) * (d(lam) - (b + 2 * c * lam) + 2 * c)
    exact = lambda x0, l0, l1: math.exp(-(l1 - l0)) * x0 + math.exp(-l1) * (F(l1) - F(l0))
    return den, exact


def test_3m_update_is_exact_for_denoiser_quadratic_in_lambda():
    den, exact = _quadratic_problem()
    # two tiny start-up steps (their low-order error is negligible), then large steps that must be exact
    lam = [-2.0, -2.0 + 1e-4, -2.0 + 2e-4] + [-2.0 + 2e-4 + 0.6 * k for k in range(1, 8)]
    sig = torch.tensor([math.exp(-v) for v in lam], dtype=torch.float64)
    x0 = torch.tensor([1.5], dtype=torch.float64)
    ref = exact(1.5, lam[0], lam[-1])
    assert abs(SOLVERS[3](den, x0.clone(), sig).item() - ref) < 1e-7
    assert abs(SOLVERS[2](den, x0.clone(), sig).item() - ref) > 1e-3  # 2M is not exact here


def test_2m_last_step_is_second_order_on_residual_grid():
    # spec C.1: the grid ends at σ_n > 0, so 2M's last step uses D̃ with r = h_{n−2}/h_{n−1}
    seen = []
    den = lambda x, s: (seen.append(s), torch.full_like(x, s))[1]  # D(σ) = σ: varies along the path
    sig = torch.tensor([8.0, 2.0, 0.5, 0.1], dtype=torch.float64)
    x = sample_dpmpp_2m(den, torch.zeros(1, dtype=torch.float64), sig)
    # replay by hand
    xs, d_prev, h_prev = 0.0, None, None
    for i in range(3):
        s, t = sig[i].item(), sig[i + 1].item()
        d = s
        h = math.log(s / t)
        du = d if d_prev is None else (1 + 1 / (2 * h_prev / h)) * d - (1 / (2 * h_prev / h)) * d_prev
        xs = t / s * xs + (1 - t / s) * du
        d_prev, h_prev = d, h
    assert x.item() == pytest.approx(xs, rel=1e-12)
    first_order = sample_dpmpp_1s(den, torch.zeros(1, dtype=torch.float64), sig).item()
    assert abs(x.item() - first_order) > 1e-3


@pytest.mark.parametrize("order", sorted(SOLVERS))
def test_zero_ending_returns_denoised_latent(order):
    den = lambda x, s: x * 0 + 42.0
    x = get_solver(order)(den, torch.ones(2, dtype=torch.float64), torch.tensor([5.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(x, torch.full((2,), 42.0, dtype=torch.float64))


def test_hooks_and_callbacks_see_every_step():
    hooks, infos = [], []
    sample_dpmpp_2m(lambda x, s: x, torch.ones(1), torch.tensor([3.0, 2.0, 1.0, 0.5]),
                    step_hook=hooks.append, callback=infos.append)
    assert hooks == [0, 1, 2] and [i["i"] for i in infos] == [0, 1, 2]
    assert [i["sigma"] for i in infos] == [3.0, 2.0, 1.0]


@pytest.mark.parametrize("bad", [[1.0, 2.0], [3.0], [2.0, 2.0, 1.0], [1.0, -0.5]])
def test_bad_grids_are_rejected(bad):
    with pytest.raises(ValueError, match="sigmas"):
        sample_dpmpp_1s(lambda x, s: x, torch.ones(1), torch.tensor(bad))


def test_unknown_order_lists_available():
    with pytest.raises(ValueError, match=r"\[1, 2, 3\]"):
        get_solver(4)
