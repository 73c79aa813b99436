"""Model registry and loading: named models, any diffusers hub id, or a local diffusers pipeline folder.

Named models carry their noise schedule, so σ grids (`python -m hpyn.schedule`) need no download.
`toy` is the embedded model (hpyn/toy) and loads through the same code path as `sd15`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hpyn.noise import NoiseTable

__all__ = ["ModelSpec", "MODELS", "LoadedModel", "resolve", "noise_table", "load_model", "TOY_PIPELINE"]

SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "prediction_type": "epsilon"}
TOY_PIPELINE = Path(__file__).resolve().parent / "toy" / "weights" / "pipeline"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                 # hub id or local folder
    kind: str = "sd"            # "sd" (StableDiffusionPipeline) | "sdxl" (StableDiffusionXLPipeline)
    resolution: int | None = None
    family: str | None = None   # which published paper settings apply (studies/paper/{family}-{steps}.json)
    scheduler: dict | None = None
    vae: str | None = None      # replacement VAE (hub id or folder), loaded in float32
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


MODELS: dict[str, ModelSpec] = {
    "sd15": ModelSpec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", 512, "sd15", SD_SCHEDULER,
                      notes="Stable Diffusion 1.5 (the paper's 512² model)"),
    "sdxl": ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024, "sdxl", SD_SCHEDULER,
                      vae="madebyollin/sdxl-vae-fp16-fix", notes="SDXL base 1.0"),
    "dreamshaper-xl": ModelSpec("dreamshaper-xl", "Lykon/dreamshaper-xl-1-0", "sdxl", 1024, "sdxl", SD_SCHEDULER,
                                vae="madebyollin/sdxl-vae-fp16-fix",
                                notes="Dreamshaper XL 1.0 with the fp16-fix VAE (the paper's 1024² model)"),
    # The toy model uses SD's scaled_linear betas, so SD1.5's published settings are its paper baseline.
    "toy": ModelSpec("toy", str(TOY_PIPELINE), "sd", None, "sd15", None,
                     notes="embedded Fashion-MNIST text-to-image model (hpyn/toy)"),
}


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def _pipeline_kind(folder: Path) -> str:
    index = folder / "model_index.json"
    if not index.exists():
        raise ValueError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    cls = json.loads(index.read_text()).get("_class_name", "")
    return "sdxl" if "XL" in cls else "sd"


def resolve(name: str) -> ModelSpec:
    """A registry name, a local diffusers pipeline folder, or a hub id 'org/name'; anything else is an error."""
    if name in MODELS:
        spec = MODELS[name]
        if name == "toy" and not TOY_PIPELINE.joinpath("model_index.json").exists():
            raise FileNotFoundError(f"the toy model's weights are missing at {TOY_PIPELINE}; "
                                    "rebuild them with `python -m hpyn.toy.train`")
        return spec
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(path.name, str(path.resolve()), _pipeline_kind(path))
    if _looks_like_hub_id(name):
        return ModelSpec(name, name, "sdxl" if "xl" in name.lower() else "sd")
    raise ValueError(f"unknown model {name!r}: use one of {sorted(MODELS)}, a local diffusers pipeline folder, "
                     "or a hub id like 'org/name'")


def _scheduler_config(spec: ModelSpec) -> dict:
    if spec.scheduler is not None:
        return spec.scheduler
    if spec.is_local:
        return json.loads((Path(spec.source) / "scheduler" / "scheduler_config.json").read_text())
    from huggingface_hub import hf_hub_download  # a user's machine with hub access
    return json.loads(Path(hf_hub_download(spec.source, "scheduler/scheduler_config.json")).read_text())


def noise_table(name: str | ModelSpec) -> NoiseTable:
    spec = resolve(name) if isinstance(name, str) else name
    return NoiseTable.from_scheduler_config(_scheduler_config(spec))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class LoadedModel:
    """A diffusers pipeline plus what the sampler needs: noise table, prompt encoding, latent shape, decoding."""

    name: str
    spec: ModelSpec
    pipe: object
    table: NoiseTable
    device: torch.device
    dtype: torch.dtype

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def prediction_type(self) -> str:
        return self.pipe.scheduler.config.get("prediction_type", "epsilon")

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        return self.spec.resolution or int(self.unet.config.sample_size) * self.vae_scale

    def latent_shape(self, n: int, resolution: int | None = None) -> tuple[int, ...]:
        side = (resolution or self.resolution) // self.vae_scale
        return (n, self.unet.config.in_channels, side, side)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], resolution: int | None = None):
        """(cond, uncond, added_cond, added_uncond): SD1.5 uses the "" embedding as uncond; SDXL follows the
        pipeline's force_zeros_for_empty_prompt (zeros, as the paper's SDXL scripts) — spec E."""
        if self.spec.kind == "sdxl":
            cond, uncond, pooled, pooled_u = self.pipe.encode_prompt(
                prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True)
            res = resolution or self.resolution
            time_ids = torch.tensor([[res, res, 0, 0, res, res]], device=self.device, dtype=cond.dtype)
            time_ids = time_ids.repeat(len(prompts), 1)
            return cond, uncond, {"text_embeds": pooled, "time_ids": time_ids}, \
                {"text_embeds": pooled_u, "time_ids": time_ids}
        cond, uncond = self.pipe.encode_prompt(prompts, self.device, 1, True)
        return cond, uncond, None, None

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode latents (at σ = ε or 0) to uint8 [N, 3, H, W]: clamp((y+1)/2)·255, truncated (spec C.3)."""
        vae = self.vae
        z = latents / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            z = z + vae.config.shift_factor
        y = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()
        return ((y + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).cpu()


def load_model(name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a diffusers pipeline: fp16 on CUDA, fp32 on CPU unless `dtype` says otherwise."""
    spec = resolve(name)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    try:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, AutoencoderKL
    except ImportError as e:  # pragma: no cover
        raise ImportError("loading models needs diffusers: pip install diffusers transformers accelerate") from e
    kw = {"dtype": dtype}
    if spec.vae:
        kw["vae"] = AutoencoderKL.from_pretrained(spec.vae, dtype=dtype)
    if spec.kind == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(spec.source, **kw)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(spec.source, safety_checker=None,
                                                       requires_safety_checker=False, **kw)
    pipe.to(device)
    if dtype == torch.float16 and not spec.vae and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's original VAE overflows in fp16
    pipe.set_progress_bar_config(disable=True)
    table = NoiseTable(pipe.scheduler.alphas_cumprod) if hasattr(pipe.scheduler, "alphas_cumprod") \
        else noise_table(spec)
    if spec.scheduler is not None and not math.isclose(table.sigma_max, noise_table(spec).sigma_max, rel_tol=1e-5):
        raise ValueError(f"{spec.name}: the pipeline's noise schedule (σ_max={table.sigma_max:.6g}) differs from "
                         f"the registry's (σ_max={noise_table(spec).sigma_max:.6g})")
    return LoadedModel(spec.name, spec, pipe, table, device, dtype)
