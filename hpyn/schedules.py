"""Noise-level grids σ_0 > … > σ_n as plain float64 tensors (spec B).

Two parametric spacings, looked up by name in SPACINGS (n points from σ_max down to an end σ, shaped by ρ):
  * "karras": the EDM power law in σ (spec Eq. 15).
  * "time":   the same power law in DDPM-timestep space, then σ(τ) by the ā interpolation (spec Eq. 16/18).
and two endings (`final`):
  * "residual": n+1 points from σ_max down to ε > 0; the latent at ε is decoded without a last denoise (the paper).
  * "zero": n points from σ_max down to σ_min, then 0 (classic Karras / DPM++; the output is the denoised latent).
Published grids that users pick, in ZERO_ENDED (steps+1 values ending in 0 by their own rule: final 'zero' only,
no σ_min or ρ): "ays_sd15" and "ays_sdxl" (Align Your Steps) and "beta" (Beta sampling). SPACING_NAMES lists all.
`grid_info(config, table)` lists a config's grid with its U-Net timesteps and step sizes (exports, the CLI
`python -m hpyn.schedule`).
"""

from __future__ import annotations

import numpy as np
import torch

from hpyn.noise import NoiseTable

__all__ = ["karras", "time_power", "ays", "beta_sampling", "append_zero", "build", "grid_info", "SPACINGS",
           "ZERO_ENDED", "SPACING_NAMES", "FINALS", "AYS_TABLES"]


def _power_law(start: float, end: float, n: int, rho: float) -> torch.Tensor:
    """(start^{1/ρ} + i/(n−1)·(end^{1/ρ} − start^{1/ρ}))^ρ for i = 0..n−1 (Eq. 15/16), float64."""
    if n < 2:
        raise ValueError(f"a grid needs at least 2 points, got n={n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    a, b = start ** (1 / rho), end ** (1 / rho)
    out = (a + ramp * (b - a)) ** rho
    out[0], out[-1] = start, end  # exact end points (x^{1/ρ})^ρ ≠ x in floating point
    return out


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Spec Eq. 15: n σ's from σ_max down to σ_min, power law with exponent ρ in σ."""
    return _power_law(sigma_max, sigma_min, n, rho)


def time_power(table: NoiseTable, n: int, sigma_end: float, rho: float = 1.2) -> torch.Tensor:
    """Spec Eq. 16/18: n points τ from t_max (999) down to t(σ_end) (map 1), power law ρ in t, σ = σ(τ) (map 2)."""
    t_end = float(table.t_of_sigma(sigma_end))
    return table.sigma_of_t(_power_law(table.t_max, t_end, n, rho))


def _karras_spacing(table: NoiseTable, n: int, sigma_end: float, rho: float) -> torch.Tensor:
    return karras(n, sigma_end, table.sigma_max, rho)


# Align Your Steps (Sabour, Fidler, Kreis, ICML 2024): the published 10-step schedules for SD1.5 and SDXL, from
# σ_max to σ_min of SD's noise table (both models share it). Source: the timesteps of NVIDIA's how-to page
# (research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html; diffusers' AysSchedules "StableDiffusionTimesteps"
# [999, 850, 736, …, 24] and "StableDiffusionXLTimesteps" [999, 845, 730, …, 13], then t = 0) as σ's with
# 10 decimals, exactly as ComfyUI carries them (comfy_extras/nodes_align_your_steps.py, NOISE_LEVELS["SD1"/"SDXL"]).
# diffusers' AysSchedules "…Sigmas" lists are the continuous σ's to 3 decimals: up to 1.4 % away from these
# (SDXL 0.113 vs 0.1114).
AYS_TABLES = {
    "ays_sd15": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
                 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "ays_sdxl": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
                 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
}


def ays(table: NoiseTable, steps: int, name: str = "ays_sd15") -> torch.Tensor:
    """AYS for `steps` steps: the published table log-linearly interpolated to steps+1 points (the authors'
    `loglinear_interp`: log σ linear in the point's position), its last point (σ_min) replaced by 0; exactly
    ComfyUI's AlignYourStepsScheduler at denoise 1. The tables hold σ's of SD's noise table, so the model's σ range
    must be SD's (SD1.x/2.x, SDXL and the toy share it)."""
    ref = AYS_TABLES[name]
    if abs(table.sigma_max / ref[0] - 1) > 1e-4 or abs(table.sigma_min / ref[-1] - 1) > 1e-4:
        raise ValueError(f"{name}: Align Your Steps σ's were published for SD's noise schedule (σ from {ref[-1]:.6g} "
                         f"to {ref[0]:.6g}); this model's runs from {table.sigma_min:.6g} to {table.sigma_max:.6g}")
    sig = np.asarray(ref, dtype=np.float64)
    if steps + 1 != len(sig):  # loglinear_interp, as the authors and ComfyUI write it
        xs, new_xs = np.linspace(0, 1, len(sig)), np.linspace(0, 1, steps + 1)
        sig = np.exp(np.interp(new_xs, xs, np.log(sig[::-1])))[::-1].copy()
    out = torch.from_numpy(sig)
    out[-1] = 0.0
    return out


def beta_sampling(table: NoiseTable, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Beta sampling (Lee et al. 2024, arXiv 2407.12173) as ComfyUI's "beta" scheduler computes it
    (comfy/samplers.py `beta_scheduler`): timesteps t_i = rint(T·F⁻¹(1 − i/n)), i = 0..n−1, F the Beta(α, β) CDF,
    σ_i = the table's σ_d[t_i], then 0. diffusers' `use_beta_sigmas` differs: it puts the same quantiles
    linearly in σ between σ_min and σ_max. ComfyUI drops repeated timesteps (fewer steps); here that is an error."""
    from scipy.stats import beta as beta_dist

    t_max = len(table.sigmas) - 1
    q = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(beta_dist.ppf(q, alpha, beta) * t_max).astype(np.int64)
    if len(set(ts.tolist())) < steps:
        raise ValueError(f"beta: {steps} steps put two grid points on one of the {t_max + 1} timesteps "
                         f"(t = {ts.tolist()}); use fewer steps")
    return append_zero(table.sigmas[torch.from_numpy(ts)].clone())


SPACINGS = {"time": time_power, "karras": _karras_spacing}
ZERO_ENDED = {"ays_sd15": lambda table, steps: ays(table, steps, "ays_sd15"),
              "ays_sdxl": lambda table, steps: ays(table, steps, "ays_sdxl"),
              "beta": beta_sampling}
SPACING_NAMES = (*SPACINGS, *ZERO_ENDED)
FINALS = ("residual", "zero")


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def build(table: NoiseTable, steps: int, *, spacing: str = "time", rho: float = 1.2, final: str = "residual",
          epsilon: float | None = None, sigma_min: float | None = None) -> torch.Tensor:
    """The σ grid a solver integrates over: always steps+1 values (steps U-Net calls)."""
    if spacing in ZERO_ENDED:
        if final != "zero" or sigma_min is not None:
            raise ValueError(f"spacing {spacing!r} ends in 0 by its own rule: needs final='zero' and no sigma_min, "
                             f"got final={final!r}, sigma_min={sigma_min!r}")
        return ZERO_ENDED[spacing](table, steps)
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {sorted(SPACING_NAMES)}")
    fn = SPACINGS[spacing]
    if final == "residual":
        if epsilon is None:
            raise ValueError("final='residual' needs epsilon (the σ at which the latent is decoded)")
        return fn(table, steps + 1, epsilon, rho)
    if final == "zero":
        end = table.sigma_min if sigma_min is None else sigma_min
        if steps == 1:  # one step straight from σ_max to 0
            return append_zero(torch.tensor([table.sigma_max], dtype=torch.float64))
        return append_zero(fn(table, steps, end, rho))
    raise ValueError(f"unknown final {final!r}; choose one of {list(FINALS)}")


def grid_info(config, table: NoiseTable) -> dict:
    """A SamplerConfig's σ grid on a noise table, its U-Net timesteps (map 1, one per σ > 0) and log-σ step sizes
    h_i = λ_{i+1} − λ_i over the σ > 0; keys config, sigmas, timesteps, h, sigma_min, sigma_max."""
    sigmas = config.sigmas(table)
    nonzero = sigmas[sigmas > 0]
    ts = table.t_of_sigma(nonzero).tolist()
    lam = (-nonzero.log()).tolist()
    return {"config": config.to_dict(), "sigmas": sigmas.tolist(), "timesteps": ts,
            "h": [b - a for a, b in zip(lam, lam[1:])], "sigma_min": table.sigma_min, "sigma_max": table.sigma_max}
