"""Solver mathematics: exactness, closed-form ODE solutions, convergence order (spec C.1); the registry and the
step-generator protocol the diffusers scheduler drives."""

import math

import pytest
import torch

from hpyn.solvers import SOLVERS, dpmpp_name, get_solver, solver_order

ONE_S, TWO_M, THREE_M = (get_solver(dpmpp_name(k)) for k in (1, 2, 3))

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


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_constant_denoiser_is_integrated_exactly(name):
    # D ≡ c  ⇒  x(σ) = c + (x0 − c)·σ/σ0, which every DPM++ update reproduces exactly
    c = torch.tensor([0.3, -1.2])
    den = lambda x, s: c.expand_as(x).double()
    sig = torch.tensor([14.6, 5.0, 1.7, 0.4, 0.13], dtype=torch.float64)
    x0 = torch.tensor([3.0, 7.0], dtype=torch.float64)
    x = get_solver(name)(den, x0.clone(), sig)
    assert torch.allclose(x, c + (x0 - c) * 0.13 / 14.6, atol=1e-12)


@pytest.mark.parametrize("name,expected", [("dpmpp_1s", 1.0), ("dpmpp_2m", 2.0)])
def test_convergence_order_on_gaussian_closed_form(name, expected):
    errs = [solve_error(SOLVERS[name], n) for n in (16, 32, 64)]
    rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert rates[-1] == pytest.approx(expected, abs=0.15), (errs, rates)
    assert errs[-1] < 0.05


def test_3m_is_at_least_second_order_and_more_accurate_than_2m():
    # globally second order: its first step is Euler (local O(h²)); third order after start-up
    e3 = [solve_error(THREE_M, n) for n in (32, 64)]
    e2 = solve_error(TWO_M, 64)
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
    assert abs(THREE_M(den, x0.clone(), sig).item() - ref) < 1e-7
    assert abs(TWO_M(den, x0.clone(), sig).item() - ref) > 1e-3  # 2M is not exact here


def test_2m_last_step_is_second_order_on_residual_grid():
    # spec C.1: the grid ends at σ_n > 0, so 2M's last step uses D̃ with r = h_{n−2}/h_{n−1}
    seen = []
    den = lambda x, s: (seen.append(s), torch.full_like(x, s))[1]  # D(σ) = σ: varies along the path
    sig = torch.tensor([8.0, 2.0, 0.5, 0.1], dtype=torch.float64)
    x = TWO_M(den, torch.zeros(1, dtype=torch.float64), sig)
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
    first_order = ONE_S(den, torch.zeros(1, dtype=torch.float64), sig).item()
    assert abs(x.item() - first_order) > 1e-3


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_zero_ending_returns_denoised_latent(name):
    den = lambda x, s: x * 0 + 42.0
    x = get_solver(name)(den, torch.ones(2, dtype=torch.float64), torch.tensor([5.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(x, torch.full((2,), 42.0, dtype=torch.float64))


def test_hooks_and_callbacks_see_every_step():
    hooks, infos = [], []
    TWO_M(lambda x, s: x, torch.ones(1), torch.tensor([3.0, 2.0, 1.0, 0.5]),
                    step_hook=hooks.append, callback=infos.append)
    assert hooks == [0, 1, 2] and [i["i"] for i in infos] == [0, 1, 2]
    assert [i["sigma"] for i in infos] == [3.0, 2.0, 1.0]


@pytest.mark.parametrize("bad", [[1.0, 2.0], [3.0], [2.0, 2.0, 1.0], [1.0, -0.5]])
def test_bad_grids_are_rejected(bad):
    with pytest.raises(ValueError, match="sigmas"):
        ONE_S(lambda x, s: x, torch.ones(1), torch.tensor(bad))


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"'dpmpp_4m'.*\['dpmpp_1s', 'dpmpp_2m', 'dpmpp_3m', 'unipc_bh2'\]"):
        get_solver("dpmpp_4m")
    with pytest.raises(ValueError, match="dpmpp_1s"):
        get_solver(2)  # integers were the old keys; names now
    with pytest.raises(ValueError, match="order must be 1, 2 or 3, got 4"):
        dpmpp_name(4)


def test_names_and_orders():
    assert [dpmpp_name(k) for k in (1, 2, 3)] == ["dpmpp_1s", "dpmpp_2m", "dpmpp_3m"]
    assert [solver_order(n) for n in ("dpmpp_1s", "dpmpp_2m", "dpmpp_3m")] == [1, 2, 3]
    assert all(SOLVERS[n].name == n for n in SOLVERS)


# x after 5 steps of each solver from x0 = [1.5, -3, 0.25, 7] with D(x, σ) = 0.7·tanh x + 0.1·sin σ + 0.05·x², in
# float64, written by the loop implementation before the solvers became generators (float.hex: bit-exact)
FROZEN = {
    "1-float64-res": ['0x1.def401b389e33p-2', '-0x1.13ee4cb2b6520p-2', '0x1.98100e2b20ebcp-3', '0x1.e136eed4565c7p-1'],
    "2-float64-res": ['0x1.838bfabd5d1c0p-2', '-0x1.e12ca61d6d7c4p-3', '0x1.739be97d5c516p-3', '0x1.50c717acd4056p-1'],
    "3-float64-res": ['0x1.96a831c753773p-2', '-0x1.e3bfbce5e68bcp-4', '0x1.a35ea4ac3e224p-3', '0x1.bd28717d8a53bp-1'],
    "1-float64-zero": ['0x1.31cbd6175b762p-2', '-0x1.55447a2046060p-3', '0x1.f8cdacdaa2a87p-4', '0x1.073680c7e035cp-1'],
    "2-float64-zero": ['0x1.a2244edc3b692p-3', '-0x1.d3a1997b1cf10p-5', '0x1.f64adc40686a3p-4', '0x1.8fd6aaa5c42bep-3'],
    "3-float64-zero": ['0x1.6b37b71652810p-2', '0x1.0c0b420072ce5p-1', '0x1.3e7307b64d4abp-2', '0x1.9341d3c6c72cdp-1']
}


@pytest.mark.parametrize("key", sorted(FROZEN))
def test_bit_identical_to_the_loop_implementation(key):
    order, _, ending = key.split("-")
    grid = [14.6, 6.1, 2.2, 0.9, 0.31, 0.13] if ending == "res" else [14.6, 5.0, 1.7, 0.4, 0.029, 0.0]
    den = lambda x, s: torch.tanh(x) * 0.7 + math.sin(s) * 0.1 + 0.05 * x * x
    x = get_solver(dpmpp_name(int(order)))(den, torch.tensor([1.5, -3.0, 0.25, 7.0], dtype=torch.float64),
                                            torch.tensor(grid, dtype=torch.float64))
    assert [float(v).hex() for v in x] == FROZEN[key]


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_generator_driven_step_by_step_equals_the_loop(name):
    # the protocol the diffusers scheduler uses: yield (x, σ_i), receive (x, D), return the final latent
    den = lambda x, s: torch.sin(x) + 0.2 * s
    sig = [9.0, 3.0, 1.1, 0.4, 0.2]
    x0 = torch.tensor([0.3, -2.0], dtype=torch.float64)
    gen = SOLVERS[name].steps(x0, sig)
    x, sigma = next(gen)
    seen = []
    while True:
        seen.append(sigma)
        try:
            x, sigma = gen.send((x, den(x, sigma)))
        except StopIteration as stop:
            x = stop.value
            break
    assert seen == sig[:-1]
    assert torch.equal(x, SOLVERS[name](den, x0, torch.tensor(sig, dtype=torch.float64)))


def test_driver_integrates_from_the_latent_it_sends_back():
    # a caller that edits the latent between steps (inpainting) is integrated from its edit: for 1S the result is
    # the same as restarting from the edited latent
    den = lambda x, s: 0.5 * x
    sig = [4.0, 2.0, 1.0]
    gen = ONE_S.steps(torch.ones(1, dtype=torch.float64), sig)
    x, s0 = next(gen)
    x1, s1 = gen.send((x, den(x, s0)))
    edited = x1 + 1.0
    with pytest.raises(StopIteration) as stop:
        gen.send((edited, den(edited, s1)))
    ref = ONE_S(den, edited, torch.tensor(sig[1:], dtype=torch.float64))
    assert torch.equal(stop.value.value, ref)
