"""FreeU (Si et al., CVPR 2024, v1) on a diffusers UNet, switchable per solver step (spec D).

Each decoder resnet receives cat([backbone h, skip]) along channels. A forward pre-hook splits that input,
scales the first half of h's channels by b and low-pass-rescales the skip by s (Fourier filter), then
concatenates again. With FreeU off the hook returns None, so the resnet runs its original forward on the
original tensor, bit for bit; `remove()` detaches the hooks entirely.

Mappings (spec D.2/D.4):
  "reference": keyed on the backbone channel width, as the paper's code (the FreeU demo): the widest decoder
               width gets (b1, s1), the second widest (b2, s2), narrower ones nothing. SD1.5: 10 sites.
  "diffusers": keyed on the up-block index as `unet.enable_freeu`: up block 0 gets (b1, s1), up block 1 (b2, s2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpyn.config import FREEU_MAPPINGS

__all__ = ["FreeU", "Site", "fourier_filter", "freeu_sites"]


@dataclass(frozen=True)
class Site:
    block: int      # index into unet.up_blocks
    resnet: int     # index into that block's resnets
    stage: int      # 1 → (b1, s1), 2 → (b2, s2)
    backbone: int   # channels of h in cat([h, skip])


def fourier_filter(x: torch.Tensor, scale: float, threshold: int = 1) -> torch.Tensor:
    """Scale the centred (2·threshold)² block of fftshift(FFT_HW(x)) by `scale` (DC included), in float32.

    Written out instead of diffusers' `fourier_filter` because that one keeps fp16 for power-of-two sizes,
    while the reference always filters in float32.
    """
    xf = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = xf.shape[-2:]
    cr, cc = h // 2, w // 2
    mask = torch.ones(h, w, device=x.device)
    mask[cr - threshold:cr + threshold, cc - threshold:cc + threshold] = scale
    xf = torch.fft.ifftshift(xf * mask, dim=(-2, -1))
    return torch.fft.ifftn(xf, dim=(-2, -1)).real.to(x.dtype)


def freeu_sites(unet, mapping: str = "reference") -> list[Site]:
    """The (up block, resnet) pairs FreeU modifies, computed from the UNet's block configuration."""
    if mapping not in FREEU_MAPPINGS:
        raise ValueError(f"unknown FreeU mapping {mapping!r}; choose one of {list(FREEU_MAPPINGS)}")
    rev = list(reversed(unet.config.block_out_channels))
    widths = sorted(set(rev), reverse=True)
    sites = []
    for i, block in enumerate(unet.up_blocks):
        prev_out, out = rev[max(i - 1, 0)], rev[i]  # as UNet2DConditionModel wires prev_output_channel
        for j, _ in enumerate(block.resnets):
            backbone = prev_out if j == 0 else out
            if mapping == "reference":
                stage = widths.index(backbone) + 1 if backbone in widths[:2] else 0
            else:
                stage = i + 1 if i < 2 else 0
            if stage:
                sites.append(Site(i, j, stage, backbone))
    return sites


class FreeU:
    """Install once per UNet; `set((b1, b2, s1, s2))` or `set(None)` between U-Net calls.

    `sites` default to `freeu_sites(unet, mapping)`; a model adapter passes its own (`Adapter.freeu_sites`)."""

    def __init__(self, unet, mapping: str = "reference", sites: list[Site] | None = None):
        self.sites = list(sites) if sites is not None else freeu_sites(unet, mapping)
        self.mapping = mapping
        self.factors: tuple[float, float, float, float] | None = None
        self._handles = [
            unet.up_blocks[s.block].resnets[s.resnet].register_forward_pre_hook(self._hook(s), with_kwargs=True)
            for s in self.sites
        ]

    def _hook(self, site: Site):
        def hook(module, args, kwargs):
            if self.factors is None:
                return None
            b1, b2, s1, s2 = self.factors
            b, s = (b1, s1) if site.stage == 1 else (b2, s2)
            x = args[0] if args else kwargs["input_tensor"]
            h, skip = x[:, :site.backbone], x[:, site.backbone:]
            half = site.backbone // 2
            h = torch.cat([h[:, :half] * b, h[:, half:]], dim=1)
            x = torch.cat([h, fourier_filter(skip, s)], dim=1)
            if args:
                return (x, *args[1:]), kwargs
            return args, {**kwargs, "input_tensor": x}
        return hook

    def set(self, factors: tuple[float, float, float, float] | None) -> None:
        self.factors = None if factors is None else tuple(float(f) for f in factors)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.factors = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
