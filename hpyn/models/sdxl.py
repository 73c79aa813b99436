"""SDXL: `StableDiffusionXLPipeline`, two text encoders, and the added conditions of its UNet
(`addition_embed_type="text_time"`): the pooled text embedding and the six size/crop time ids.

The unconditional branch follows the pipeline's `force_zeros_for_empty_prompt` (zeros, as the paper's SDXL
scripts; spec E). Time ids are (original size, crop top-left, target size) = (res, res, 0, 0, res, res).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hpyn.models.base import Conditioning, LoadedModel
from hpyn.models.sd import SDAdapter

__all__ = ["SDXLAdapter"]


class SDXLAdapter(SDAdapter):
    name = "sdxl"
    pipeline_classes = ("StableDiffusionXLPipeline",)

    def accepts_unet_config(self, unet_config: Mapping) -> bool:
        return unet_config.get("addition_embed_type") == "text_time"

    def pipeline_class(self):
        from diffusers import StableDiffusionXLPipeline
        return StableDiffusionXLPipeline

    def pipeline_kwargs(self) -> dict:
        return {}

    def encode_prompts(self, model: LoadedModel, prompts: Sequence[str], resolution: int) -> Conditioning:
        cond, uncond, pooled, pooled_u = model.pipe.encode_prompt(
            prompts, device=model.device, num_images_per_prompt=1, do_classifier_free_guidance=True)
        time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=model.device,
                                dtype=cond.dtype).repeat(len(prompts), 1)
        return Conditioning(cond, uncond, {"text_embeds": pooled, "time_ids": time_ids},
                            {"text_embeds": pooled_u, "time_ids": time_ids})
