"""VP noise table of a discrete-time model and its two continuous σ↔t maps (spec A).

Convention (k-diffusion): x = x0 + σ·n with σ = sqrt((1 − ā)/ā). All σ arithmetic is float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["NoiseTable", "betas_from_config"]


def betas_from_config(config: Mapping) -> torch.Tensor:
    """β_j of a diffusers scheduler config (the keys of `scheduler_config.json`), in float32 as diffusers builds them."""
    n = int(config.get("num_train_timesteps", 1000))
    start = float(config.get("beta_start", 0.0001))
    end = float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float32)
    if kind == "linear":
        return torch.linspace(start, end, n, dtype=torch.float32)
    if kind == "scaled_linear":  # SD: linear in sqrt(β)
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float32) ** 2
    raise ValueError(f"unsupported beta_schedule {kind!r}: expected 'linear' or 'scaled_linear' (or trained_betas)")


class NoiseTable:
    """σ_d[j] = sqrt((1 − ā_j)/ā_j) for j = 0..T−1, with the paper's two interpolations."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        ac = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).flatten()
        if ac.numel() < 2 or not bool(((ac > 0) & (ac < 1)).all()) or not bool((ac[1:] < ac[:-1]).all()):
            raise ValueError("alphas_cumprod must be a strictly decreasing sequence in (0, 1) of length ≥ 2")
        self.alphas_cumprod = ac
        self.sigmas = ((1 - ac) / ac).sqrt()
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_betas(cls, beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = 1000,
                   beta_schedule: str = "scaled_linear") -> NoiseTable:
        cfg = dict(beta_start=beta_start, beta_end=beta_end, num_train_timesteps=num_train_timesteps,
                   beta_schedule=beta_schedule)
        return cls.from_scheduler_config(cfg)

    @classmethod
    def from_scheduler_config(cls, config: Mapping) -> NoiseTable:
        # float32 cumprod, exactly as diffusers' schedulers (and the reference code) compute ā
        return cls(torch.cumprod(1.0 - betas_from_config(config), dim=0))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def t_max(self) -> float:
        return float(len(self.sigmas) - 1)

    def t_of_sigma(self, sigma) -> torch.Tensor:
        """Map 1: piecewise-linear interpolation in log σ (the U-Net's fractional timestep)."""
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log()
        dists = log_sigma[None] - self.log_sigmas.view(-1, *([1] * log_sigma.dim()))
        # lo = last j with log σ_d[j] ≤ log σ, clamped to ≤ T−2
        lo = (dists >= 0).to(torch.int64).cumsum(dim=0).argmax(dim=0).clamp(max=len(self.sigmas) - 2)
        hi = lo + 1
        low, high = self.log_sigmas[lo], self.log_sigmas[hi]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return lo.to(torch.float64) + w

    def sigma_of_t(self, t) -> torch.Tensor:
        """Map 2: linear interpolation of ā at a fractional timestep, σ = sqrt((1 − ā)/ā)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if bool((t < 0).any()) or bool((t > self.t_max).any()):
            raise ValueError(f"timestep outside [0, {self.t_max:g}]: {t.tolist()}")
        lo = t.floor().long().clamp(max=len(self.sigmas) - 1)
        hi = t.ceil().long().clamp(max=len(self.sigmas) - 1)
        w = t - t.floor()
        ac = (1 - w) * self.alphas_cumprod[lo] + w * self.alphas_cumprod[hi]
        return ((1 - ac) / ac).sqrt()

    def __repr__(self) -> str:
        return f"NoiseTable(T={len(self.sigmas)}, sigma_min={self.sigma_min:.6g}, sigma_max={self.sigma_max:.6g})"

    def __eq__(self, other) -> bool:
        return isinstance(other, NoiseTable) and torch.equal(self.alphas_cumprod, other.alphas_cumprod)

    __hash__ = None  # mutable tensors inside
