"""Noise-level grids σ_0 > … > σ_n as plain float64 tensors (spec B).

Two spacings, looked up by name in SPACINGS:
  * "karras": the EDM power law in σ (spec Eq. 15).
  * "time":   the same power law in DDPM-timestep space, then σ(τ) by the ā interpolation (spec Eq. 16/18).
and two endings (`final`):
  * "residual": n+1 points from σ_max down to ε > 0; the latent at ε is decoded without a last denoise (the paper).
  * "zero": n points from σ_max down to σ_min, then 0 (classic Karras / DPM++; the output is the denoised latent).
`grid_info(config, table)` lists a config's grid with its U-Net timesteps and step sizes (exports, the CLI
`python -m hpyn.schedule`).
"""

from __future__ import annotations

import torch

from hpyn.noise import NoiseTable

__all__ = ["karras", "time_power", "append_zero", "build", "grid_info", "SPACINGS", "FINALS"]


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


SPACINGS = {"time": time_power, "karras": _karras_spacing}
FINALS = ("residual", "zero")


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def build(table: NoiseTable, steps: int, *, spacing: str = "time", rho: float = 1.2, final: str = "residual",
          epsilon: float | None = None, sigma_min: float | None = None) -> torch.Tensor:
    """The σ grid a solver integrates over: always steps+1 values (steps U-Net calls)."""
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {sorted(SPACINGS)}")
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
