"""Named models and model families (adapters), looked up by name; a miss lists the names that exist.

`resolve(name)` accepts a registry name, a local diffusers pipeline folder or a hub id 'org/name'. A folder's
family is read from its configs: model_index.json's `_class_name` through each adapter's `pipeline_classes`,
else unet/config.json (SDXL's UNet has `addition_embed_type="text_time"`). A hub id's family is read the same
way from the hub when it is first needed. Named models carry their scheduler config, so σ grids need no download.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from hpyn.models.base import Adapter, LoadedModel, default_device
from hpyn.models.sd import SDAdapter
from hpyn.models.sdxl import SDXLAdapter
from hpyn.noise import NoiseTable
from hpyn.toy import PIPELINE as TOY_PIPELINE

__all__ = ["ModelSpec", "MODELS", "ADAPTERS", "register_model", "register_adapter", "get_adapter",
           "detect_adapter", "spec_adapter", "resolve", "scheduler_config", "noise_table", "load_model"]

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


ADAPTERS: dict[str, Adapter] = {}
MODELS: dict[str, ModelSpec] = {}


def register_adapter(adapter: Adapter, *, replace: bool = False) -> Adapter:
    """Make a model family known by `adapter.name` (and detectable by its pipeline classes)."""
    if not replace and adapter.name in ADAPTERS:
        raise ValueError(f"an adapter named {adapter.name!r} exists ({ADAPTERS[adapter.name]!r}); pass replace=True")
    ADAPTERS[adapter.name] = adapter
    return adapter


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown model adapter {name!r}; registered: {sorted(ADAPTERS)}") from None


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


def read_pipeline_json(source: str, relpath: str, required: bool = True) -> dict | None:
    """A JSON file of a pipeline (model_index.json, unet/config.json, ...) from a local folder or the hub."""
    if Path(source).is_dir():
        path = Path(source) / relpath
        if not path.is_file():
            if required:
                raise ValueError(f"{source} is not a diffusers pipeline folder (no {relpath})")
            return None
        return json.loads(path.read_text())
    from huggingface_hub import hf_hub_download  # a user's machine with hub access
    from huggingface_hub.errors import EntryNotFoundError
    try:
        return json.loads(Path(hf_hub_download(source, relpath)).read_text())
    except EntryNotFoundError:
        if required:
            raise
        return None


def detect_adapter(index: Mapping, unet_config: Mapping | None = None) -> Adapter:
    """The adapter of a pipeline from its model_index.json (and, for unlisted classes, its unet config)."""
    cls = index.get("_class_name")
    for adapter in ADAPTERS.values():
        if cls in adapter.pipeline_classes:
            return adapter
    if unet_config is not None:
        hits = [a for a in ADAPTERS.values() if a.accepts_unet_config(unet_config)]
        if len(hits) == 1:
            return hits[0]
    known = sorted(c for a in ADAPTERS.values() for c in a.pipeline_classes)
    raise ValueError(f"no model adapter for pipeline class {cls!r} (known classes: {known}); "
                     "register one with hpyn.models.register_adapter")


def _detect(source: str) -> Adapter:
    index = read_pipeline_json(source, "model_index.json")
    try:
        return detect_adapter(index)
    except ValueError:
        return detect_adapter(index, read_pipeline_json(source, "unet/config.json", required=False))


def resolve(name: str) -> ModelSpec:
    """A registry name, a local diffusers pipeline folder, or a hub id 'org/name'; anything else is an error."""
    if name in MODELS:
        spec = MODELS[name]
        if Path(spec.source).is_absolute() and not (Path(spec.source) / "model_index.json").is_file():
            raise FileNotFoundError(f"model {name!r}: its pipeline folder {spec.source} is missing ({spec.notes})")
        return spec
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(path.name, str(path.resolve()), _detect(str(path)).name)
    if _looks_like_hub_id(name):
        return ModelSpec(name, name)
    raise ValueError(f"unknown model {name!r}: use one of {sorted(MODELS)}, a local diffusers pipeline folder, "
                     "or a hub id like 'org/name'")


def spec_adapter(spec: ModelSpec) -> Adapter:
    return get_adapter(spec.adapter) if spec.adapter is not None else _detect(spec.source)


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
