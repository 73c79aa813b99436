"""diffusers UNet → denoiser D(x, σ) ≈ E[x0 | x] in the VE frame x = x0 + σ·n (spec A, "DiscreteEpsDDPMDenoiser").

The U-Net sees c_in·x with c_in = 1/sqrt(σ²+1) (the VP-scaled latent) and the fractional timestep t(σ) (map 1).
Classifier-free guidance runs uncond and cond in one batched call and combines denoised outputs,
D = D_u + w·(D_c − D_u), which equals CFG in ε-space because D is affine in ε.
With a guidance interval (σ_lo, σ_hi] (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"),
guidance applies only for σ_lo < σ ≤ σ_hi; elsewhere D = D_c, from one U-Net batch of the conditional half alone.
"""

from __future__ import annotations

import math

import torch

from hpyn.noise import NoiseTable

__all__ = ["CFGDenoiser", "PREDICTION_TYPES"]

PREDICTION_TYPES = ("epsilon", "v_prediction")


class CFGDenoiser:
    def __init__(self, unet, table: NoiseTable, cond: torch.Tensor, uncond: torch.Tensor | None = None, *,
                 guidance: float = 7.5, prediction_type: str = "epsilon", added_cond: dict | None = None,
                 added_uncond: dict | None = None, guidance_interval: tuple[float, float] | None = None):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}; supported: {list(PREDICTION_TYPES)}")
        self.unet, self.table, self.guidance, self.prediction_type = unet, table, float(guidance), prediction_type
        self.cfg = uncond is not None and self.guidance != 1.0
        if guidance_interval is not None and not float(guidance_interval[0]) < float(guidance_interval[1]):
            raise ValueError(f"guidance_interval (σ_lo, σ_hi) needs σ_lo < σ_hi, got {tuple(guidance_interval)!r}")
        self.interval = None if guidance_interval is None else tuple(map(float, guidance_interval))
        self.cond_context, self.cond_added = cond, added_cond  # the conditional branch alone
        if self.cfg:
            self.context = torch.cat([uncond, cond])
            self.added = None if added_cond is None else {k: torch.cat([added_uncond[k], added_cond[k]])
                                                          for k in added_cond}
        else:
            self.context, self.added = cond, added_cond
        self.nfe = 0

    def guided(self, sigma: float) -> bool:
        """Whether this call combines both branches: CFG on, and σ inside (σ_lo, σ_hi] when an interval is set."""
        return self.cfg and (self.interval is None or self.interval[0] < sigma <= self.interval[1])

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = float(sigma)
        c_in = 1.0 / math.sqrt(sigma * sigma + 1.0)
        t = float(self.table.t_of_sigma(sigma))
        guided = self.guided(sigma)
        xin = torch.cat([x, x]) if guided else x
        context, added = (self.context, self.added) if guided else (self.cond_context, self.cond_added)
        dtype = self.unet.dtype
        kw = {"added_cond_kwargs": added} if added is not None else {}
        out = self.unet((xin * c_in).to(dtype), torch.full((xin.shape[0],), t, device=x.device, dtype=torch.float32),
                        encoder_hidden_states=context, return_dict=False, **kw)[0].to(x.dtype)
        self.nfe += 1
        if self.prediction_type == "epsilon":
            d = xin - sigma * out
        else:  # v = α·ε − s·x0 in the VP frame with α = c_in, s = σ·c_in  ⇒  x0 = α·(c_in·x) − s·v
            d = xin * (c_in * c_in) - (sigma * c_in) * out
        if not guided:
            return d
        d_u, d_c = d.chunk(2)
        return d_u + self.guidance * (d_c - d_u)
