"""Named models (MODELS), looked up by name with the model families (adapters, `hpyn.models.base`) built in.

`resolve(name)` accepts a registry name, a local diffusers pipeline folder or a hub id 'org/name'. A folder's
family is read from its configs: model_index.json's `_class_name` through each adapter's `pipeline_classes`,
else unet/config.json (SDXL's UNet has `addition_embed_type="text_time"`). A hub id's family is read the same
way from the hub when it is first needed. Named models carry their scheduler config, so σ grids need no download.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from hpyn.models.base import (LoadedModel, default_device, detect_source, get_adapter, read_pipeline_json,
                              register_adapter, spec_adapter)
from hpyn.models.sd import SDAdapter
from hpyn.models.sdxl import SDXLAdapter
from hpyn.noise import NoiseTable
from hpyn.toy import PIPELINE as TOY_PIPELINE

__all__ = ["MODELS", "ModelSpec", "load_model", "noise_table", "register_model", "resolve", "scheduler_config"]

SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "prediction_type": "epsilon"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                 # hub id or local folder
    adapter: str | None = None  # a name in ADAPTERS; None: read from the pipeline's configs when first needed
    resolution: int | None = None
    family: str | None = None   # which published paper settings apply (hpyn.presets: {family}-{steps})
    scheduler: dict | None = None
    vae: str | None = None      # replacement VAE (hub id or folder), loaded in float32
    notes: str = ""

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Make `resolve(spec.name)` return `spec`."""
    if not replace and spec.name in MODELS:
        raise ValueError(f"a model named {spec.name!r} is registered ({MODELS[spec.name].source}); pass replace=True")
    if spec.adapter is not None:
        get_adapter(spec.adapter)
    MODELS[spec.name] = spec
    return spec


register_adapter(SDAdapter())
register_adapter(SDXLAdapter())
register_model(ModelSpec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", 512, "sd15", SD_SCHEDULER,
                         notes="Stable Diffusion 1.5 (the paper's 512² model)"))
register_model(ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024, "sdxl", SD_SCHEDULER,
                         vae="madebyollin/sdxl-vae-fp16-fix", notes="SDXL base 1.0"))
register_model(ModelSpec("dreamshaper-xl", "Lykon/dreamshaper-xl-1-0", "sdxl", 1024, "sdxl", SD_SCHEDULER,
                         vae="madebyollin/sdxl-vae-fp16-fix",
                         notes="Dreamshaper XL 1.0 with the fp16-fix VAE (the paper's 1024² model)"))
# The toy model uses SD's scaled_linear betas, so SD1.5's published settings are its paper baseline.
register_model(ModelSpec("toy", str(TOY_PIPELINE), "sd", None, "sd15", None,
                         notes="the embedded Fashion-MNIST text-to-image model (hpyn/toy); rebuild its weights "
                               "with `python -m hpyn.toy.train --out hpyn/toy/weights`"))


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def resolve(name: str) -> ModelSpec:
    """A registry name, a local diffusers pipeline folder, or a hub id 'org/name'; anything else is an error."""
    if name in MODELS:
        spec = MODELS[name]
        if Path(spec.source).is_absolute() and not (Path(spec.source) / "model_index.json").is_file():
            raise FileNotFoundError(f"model {name!r}: its pipeline folder {spec.source} is missing ({spec.notes})")
        return spec
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(path.name, str(path.resolve()), detect_source(str(path)).name)
    if _looks_like_hub_id(name):
        return ModelSpec(name, name)
    raise ValueError(f"unknown model {name!r}: use one of {sorted(MODELS)}, a local diffusers pipeline folder, "
                     "or a hub id like 'org/name'")


def scheduler_config(spec: ModelSpec) -> dict:
    if spec.scheduler is not None:
        return spec.scheduler
    return read_pipeline_json(spec.source, "scheduler/scheduler_config.json")


def noise_table(name: str | ModelSpec) -> NoiseTable:
    """The model's noise-level object from its scheduler config (no weights loaded)."""
    spec = resolve(name) if isinstance(name, str) else name
    return spec_adapter(spec).noise_table(scheduler_config(spec))


def load_model(name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a diffusers pipeline through its family's adapter: fp16 on CUDA, fp32 on CPU unless `dtype` says."""
    spec = resolve(name)
    adapter = spec_adapter(spec)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    try:
        import diffusers  # noqa: F401
    except ImportError as e:  # pragma: no cover
        raise ImportError("loading models needs diffusers: pip install diffusers transformers accelerate") from e
    pipe = adapter.load_pipeline(spec, device, dtype)
    table = adapter.pipeline_table(pipe)
    if table is None:
        table = noise_table(spec)
    if spec.scheduler is not None:
        registered = noise_table(spec)
        if not math.isclose(table.sigma_max, registered.sigma_max, rel_tol=1e-5):
            raise ValueError(f"{spec.name}: the pipeline's noise schedule (σ_max={table.sigma_max:.6g}) differs from "
                             f"the registry's (σ_max={registered.sigma_max:.6g})")
    return LoadedModel(spec.name, spec, pipe, table, device, dtype, adapter)
