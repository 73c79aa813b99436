"""Architectures of the toy model: the Stable Diffusion classes at a tiny size, plus a small CNN classifier."""
from __future__ import annotations

import torch
from torch import nn

TEXT_HIDDEN = 48          # CLIP text width = UNet cross_attention_dim
MAX_LENGTH = 77           # SD's tokenizer length
LATENT_CHANNELS = 4
BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
             prediction_type="epsilon", steps_offset=1, set_alpha_to_one=False)


def clip_config():
    from transformers import CLIPConfig
    text = dict(vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN,
                num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=MAX_LENGTH,
                hidden_act="quick_gelu", projection_dim=64, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407)
    vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=4, num_channels=3, hidden_act="quick_gelu", projection_dim=64)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64, logit_scale_init_value=2.6592)


def vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8, sample_size=32,
        scaling_factor=1.0)


def unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=8, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=TEXT_HIDDEN, attention_head_dim=4)  # diffusers: attention_head_dim = n heads


class Classifier(nn.Module):
    """Small CNN on 32x32 RGB uint8-derived inputs in [-1, 1]; 10 Fashion-MNIST classes."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 64))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
