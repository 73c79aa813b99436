"""The adapter interface, the registry of adapters (model families), and the loaded model that delegates to one.

An `Adapter` is one model family: which diffusers pipeline classes it loads, how it encodes prompts, which
noise-level object and denoiser wrapper it gives the solvers, and where FreeU acts in its network. The defaults
below are those of every family built so far: a `UNet2DConditionModel` trained on a discrete VP table (ε- or
v-prediction), wrapped as D(x, σ) in the VE frame x = x0 + σ·n (spec A). SD1.x/2.x and SDXL differ only in
their pipeline class and prompt encoding (`hpyn.models.sd`, `hpyn.models.sdxl`).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch

from hpyn.denoisers import CFGDenoiser
from hpyn.freeu import FreeU, Site, freeu_sites
from hpyn.noise import NoiseTable

__all__ = ["ADAPTERS", "Adapter", "Conditioning", "LoadedModel", "default_device", "detect_adapter", "get_adapter",
           "read_pipeline_json", "register_adapter", "spec_adapter"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Conditioning(NamedTuple):
    """Encoded prompts of one batch: text embeddings for both CFG branches and the added conditions
    (`added_cond_kwargs` of the UNet; None for families without them). Unpacks as a 4-tuple."""

    cond: torch.Tensor
    uncond: torch.Tensor | None
    added: dict | None = None
    added_uncond: dict | None = None


class Adapter(abc.ABC):
    """One model family. Subclasses set `name` and `pipeline_classes` and implement `pipeline_class`,
    `encode_prompts` and `accepts_unet_config`; the rest has VP-UNet defaults a new family may override."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]   # model_index.json "_class_name" values this family loads

    # ---- detection and loading ---------------------------------------------------------------------
    @abc.abstractmethod
    def accepts_unet_config(self, unet_config: Mapping) -> bool:
        """Whether a pipeline of an unlisted class with this unet/config.json belongs to this family."""

    @abc.abstractmethod
    def pipeline_class(self):
        """The diffusers pipeline class (imported here, so hpyn imports without diffusers)."""

    def pipeline_kwargs(self) -> dict:
        """Extra keyword arguments of `from_pretrained`."""
        return {}

    def load_pipeline(self, spec, device: torch.device, dtype: torch.dtype):
        """The diffusers pipeline of `spec` on `device`: weights in `dtype`, a replacement VAE if the spec
        names one, the VAE upcast where its config asks for it (SDXL's original VAE overflows in fp16)."""
        from diffusers import AutoencoderKL
        kw = {"dtype": dtype}
        if spec.vae:
            kw["vae"] = AutoencoderKL.from_pretrained(spec.vae, dtype=dtype)
        pipe = self.pipeline_class().from_pretrained(spec.source, **self.pipeline_kwargs(), **kw)
        pipe.to(device)
        if dtype == torch.float16 and not spec.vae and getattr(pipe.vae.config, "force_upcast", False):
            pipe.vae.to(torch.float32)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # ---- noise levels ------------------------------------------------------------------------------
    def noise_table(self, scheduler_config: Mapping) -> NoiseTable:
        """The noise-level object from a scheduler config (no weights needed): the discrete VP table."""
        return NoiseTable.from_scheduler_config(scheduler_config)

    def pipeline_table(self, pipe) -> NoiseTable | None:
        """The noise levels the loaded pipeline's scheduler holds (None: use the scheduler config)."""
        ac = getattr(pipe.scheduler, "alphas_cumprod", None)
        return None if ac is None else NoiseTable(ac)

    # ---- conditioning, denoiser, FreeU -------------------------------------------------------------
    @abc.abstractmethod
    def encode_prompts(self, model: LoadedModel, prompts: Sequence[str], resolution: int) -> Conditioning:
        """Text embeddings of `prompts` for both CFG branches (spec E: which unconditional embedding)."""

    def make_denoiser(self, model: LoadedModel, cond: Conditioning, guidance: float,
                      guidance_interval: tuple[float, float] | None = None):
        """D(x, σ) with batched classifier-free guidance, D = D_u + w·(D_c − D_u); with a guidance interval
        (σ_lo, σ_hi] only there, D = D_c (one branch, one batch) elsewhere."""
        return CFGDenoiser(model.unet, model.table, cond.cond, cond.uncond, guidance=guidance,
                           prediction_type=model.prediction_type, added_cond=cond.added,
                           added_uncond=cond.added_uncond, guidance_interval=guidance_interval)

    def freeu_sites(self, model: LoadedModel, mapping: str) -> list[Site]:
        """Where FreeU acts: the decoder resnets of the UNet's up blocks (spec D.2)."""
        return freeu_sites(model.unet, mapping)

    def freeu(self, model: LoadedModel, mapping: str) -> FreeU:
        """FreeU hooks installed on those sites, switched off until `set(factors)`."""
        return FreeU(model.unet, mapping, sites=self.freeu_sites(model, mapping))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pipeline_classes={self.pipeline_classes})"


ADAPTERS: dict[str, Adapter] = {}


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


def detect_source(source: str) -> Adapter:
    """The adapter of a local pipeline folder or hub id, read from its configs."""
    index = read_pipeline_json(source, "model_index.json")
    try:
        return detect_adapter(index)
    except ValueError:
        return detect_adapter(index, read_pipeline_json(source, "unet/config.json", required=False))


def spec_adapter(spec) -> Adapter:
    """The adapter a ModelSpec names, or the one its pipeline's configs point to."""
    return get_adapter(spec.adapter) if spec.adapter is not None else detect_source(spec.source)


@dataclass
class LoadedModel:
    """A diffusers pipeline plus what the sampler needs: noise levels, prompt encoding, denoiser, FreeU, decoding.

    Model-family specifics are asked of `adapter` (default: the adapter the spec names)."""

    name: str
    spec: object            # hpyn.models.registry.ModelSpec
    pipe: object
    table: NoiseTable
    device: torch.device
    dtype: torch.dtype
    adapter: Adapter | None = None

    def __post_init__(self):
        if self.adapter is None:
            self.adapter = spec_adapter(self.spec)

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
    def encode_prompts(self, prompts: Sequence[str], resolution: int | None = None) -> Conditioning:
        return self.adapter.encode_prompts(self, list(prompts), resolution or self.resolution)

    def make_denoiser(self, prompts: Sequence[str] | Conditioning, *, guidance: float = 7.5,
                      resolution: int | None = None, guidance_interval: tuple[float, float] | None = None):
        """D(x, σ) for a batch of prompts, or of a `Conditioning` from `encode_prompts`; guidance only for
        σ_lo < σ ≤ σ_hi when `guidance_interval` = (σ_lo, σ_hi) is given."""
        cond = prompts if isinstance(prompts, Conditioning) else self.encode_prompts(prompts, resolution)
        if guidance_interval is None:  # adapters written before the interval existed keep working
            return self.adapter.make_denoiser(self, cond, guidance)
        return self.adapter.make_denoiser(self, cond, guidance, guidance_interval=guidance_interval)

    def freeu_sites(self, mapping: str = "reference") -> list[Site]:
        return self.adapter.freeu_sites(self, mapping)

    def freeu(self, mapping: str = "reference") -> FreeU:
        return self.adapter.freeu(self, mapping)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode latents (at σ = ε or 0) to uint8 [N, 3, H, W]: clamp((y+1)/2)·255, truncated (spec C.3)."""
        vae = self.vae
        z = latents / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            z = z + vae.config.shift_factor
        y = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()
        return ((y + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).cpu()
