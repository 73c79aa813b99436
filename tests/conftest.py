"""Shared fixtures: everything offline, small, CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# tiny test models gain nothing from threads, and OpenMP threads oversubscribed by a parallel job (pytest -n,
# a training run) slow a 2-core machine down ~10x
torch.set_num_threads(1)


def tiny_unet(cross_dim: int = 32, prediction_type: str = "epsilon"):
    """A UNet2DConditionModel with SD1.5's block layout (4 stages, 2 layers per block, cross-attention in the
    first three), at small widths 32/64/128/128 in place of 320/640/1280/1280."""
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 128, 128), norm_num_groups=8, cross_attention_dim=cross_dim,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()


def build_tiny_pipeline(folder, prediction_type: str = "epsilon"):
    """A StableDiffusionPipeline folder from local configs with random weights (SD's scaled_linear betas)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from hpyn.toy.tokenizer import write_clip_tokenizer

    tok_dir = write_clip_tokenizer(folder / "_tok")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id)).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=16).eval()
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False,
                          steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=tiny_unet(32),
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    out = folder / "pipeline"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_model(tiny_pipeline_dir):
    from hpyn.models import load_model
    return load_model(str(tiny_pipeline_dir), device="cpu")


@pytest.fixture(scope="session")
def sd_table():
    from hpyn.noise import NoiseTable
    return NoiseTable.from_betas()


def build_tiny_sdxl_pipeline(folder):
    """A StableDiffusionXLPipeline folder from local configs: two text encoders, text_time added conditions."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from hpyn.toy.tokenizer import write_clip_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok"))
    cfg = dict(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
               num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    te1 = CLIPTextModel(CLIPTextConfig(**cfg)).eval()
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg, projection_dim=16)).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=16 + 6 * 4,
        transformer_layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=16, scaling_factor=0.13025).eval()
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=sched)
    out = folder / "pipeline"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny_sdxl"))
