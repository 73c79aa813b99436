"""Stable Diffusion 1.x / 2.x: `StableDiffusionPipeline`, one CLIP text encoder, no added conditions.

The unconditional branch is the embedding of the empty prompt "" (spec E, as the paper's SD1.5 scripts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hpyn.models.base import Adapter, Conditioning, LoadedModel

__all__ = ["SDAdapter"]


class SDAdapter(Adapter):
    name = "sd"
    pipeline_classes = ("StableDiffusionPipeline",)

    def accepts_unet_config(self, unet_config: Mapping) -> bool:
        # a cross-attention UNet without added conditions (SDXL's have addition_embed_type "text_time")
        return unet_config.get("_class_name") == "UNet2DConditionModel" and \
            unet_config.get("addition_embed_type") is None

    def pipeline_class(self):
        from diffusers import StableDiffusionPipeline
        return StableDiffusionPipeline

    def pipeline_kwargs(self) -> dict:
        return {"safety_checker": None, "requires_safety_checker": False}

    def encode_prompts(self, model: LoadedModel, prompts: Sequence[str], resolution: int) -> Conditioning:
        cond, uncond = model.pipe.encode_prompt(prompts, model.device, 1, True)
        return Conditioning(cond, uncond)
