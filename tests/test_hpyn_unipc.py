"""UniPC-bh2 (hpyn.solvers.unipc_bh2): convergence order, and step-for-step equality with diffusers'
UniPCMultistepScheduler driven by the same analytic denoiser. Exactness on a constant denoiser, the zero ending and
the generator protocol are checked for every registered solver in tests/test_hpyn_solvers.py."""

import itertools
import math

import pytest
import torch
from test_hpyn_solvers import solve_error

from hpyn.solvers import SOLVERS, Solver, get_solver, unipc_bh2

UNIPC = get_solver("unipc_bh2")
S2 = 0.5**2


def denoiser(x, sigma):
    """The Gaussian closed form E[x0 | x] = x·s²/(s²+σ²) plus a nonlinear term, so D depends on x non-trivially."""
    return x * S2 / (S2 + sigma**2) + 0.1 * torch.tanh(x)


def with_order(p: int) -> Solver:
    return Solver(f"unipc_bh2_{p}", p, lambda x, s: unipc_bh2(x, s, order=p))


def test_registered_as_unipc_2():
    assert SOLVERS["unipc_bh2"].order == 2 and UNIPC.steps is unipc_bh2


@pytest.mark.parametrize("p,expected", [(1, 2.0), (2, 3.0)])
def test_convergence_order_is_predictor_order_plus_one(p, expected):
    # UniC raises UniP-p to order p+1 (Zhao et al. 2023, Thm. 3.1); the grid ends at σ > 0
    errs = [solve_error(with_order(p), n) for n in (16, 32, 64)]
    rates = [math.log2(a / b) for a, b in itertools.pairwise(errs)]
    assert rates[-1] == pytest.approx(expected, abs=0.15), (errs, rates)


def test_more_accurate_than_dpmpp_2m_and_the_corrector_matters():
    assert solve_error(UNIPC, 32) < solve_error(SOLVERS["dpmpp_2m"], 32) / 3


def _diffusers_trajectory(n: int, order: int, float64: bool):
    """Run diffusers' scheduler (VP frame, ε output) with `denoiser`; return its σ grid, x_0 and the VE latents."""
    from diffusers import UniPCMultistepScheduler

    sch = UniPCMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  solver_order=order, solver_type="bh2", predict_x0=True, use_karras_sigmas=True,
                                  final_sigmas_type="zero", lower_order_final=True, disable_corrector=[])
    sch.set_timesteps(n)
    if float64:  # diffusers keeps σ in float32; in float64 its coefficients are as exact as ours
        sch.sigmas = sch.sigmas.double()
    sig = [float(v) for v in sch.sigmas]
    x0 = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(n)) * sig[0]
    sample, traj = x0 / math.sqrt(sig[0] ** 2 + 1), []
    for i, t in enumerate(sch.timesteps):
        x = sample * math.sqrt(sig[i] ** 2 + 1)                 # VP → VE
        eps = (x - denoiser(x, sig[i])) / sig[i]                  # D = x − σ·ε
        sample = sch.step(eps, t, sample).prev_sample
        traj.append(sample * math.sqrt(sig[i + 1] ** 2 + 1))
    return sig, x0, traj


@pytest.mark.parametrize("float64", [True, False], ids=["float64", "diffusers-float32-sigmas"])
@pytest.mark.parametrize("n,order", [(4, 2), (10, 2), (6, 3)])
def test_equals_diffusers_unipc_multistep_scheduler(n, order, float64):
    sig, x0, traj = _diffusers_trajectory(n, order, float64)
    solver = UNIPC if order == 2 else with_order(order)
    seen = []
    out = solver(denoiser, x0.clone(), torch.tensor(sig, dtype=torch.float64), callback=seen.append)
    assert len(seen) == len(traj) == n
    scale = x0.abs().max().item()
    tol = 1e-12 if float64 else 1e-6
    for i, (info, ref) in enumerate(zip(seen, traj)):
        assert (info["x"] - ref).abs().max().item() <= tol * scale, f"step {i}"
    assert torch.equal(out, seen[-1]["x"])
    # not a weak check: DPM-Solver++2M on the same grid lands ≥ 30× the float32 tolerance away
    other = SOLVERS["dpmpp_2m"](denoiser, x0.clone(), torch.tensor(sig, dtype=torch.float64))
    assert (other - traj[-1]).abs().max().item() > 30 * 1e-6 * scale


def test_last_step_to_zero_returns_the_denoised_uncorrected_latent():
    # diffusers' lower_order_final: the jump to σ = 0 is first order, x = D(x_{n−1}) at the predicted x_{n−1}
    seen = []
    sig = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.0], dtype=torch.float64)
    out = UNIPC(denoiser, torch.ones(4, dtype=torch.float64), sig, callback=seen.append)
    assert torch.equal(out, seen[-1]["denoised"])
