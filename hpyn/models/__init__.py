"""Models by name, one adapter per model family.

    from hpyn.models import load_model, resolve, noise_table, MODELS
    model = load_model("toy")                      # a name in MODELS, a diffusers folder, or a hub id 'org/name'
    model.table                                    # its noise levels (σ_min, σ_max, σ↔t maps)
    denoiser = model.make_denoiser(["a photo of a bag"], guidance=2.0)   # D(x, σ) ≈ E[x0 | x], CFG batched
    freeu = model.freeu("reference")               # FreeU hooks on the family's sites, off until freeu.set(...)
    images = model.decode(latents)                 # uint8 [N, 3, H, W] on the CPU

Two registries, both looked up by name (a miss lists the names that exist):

* `MODELS` (`register_model(ModelSpec(...))`): named models — where the weights are, which adapter, the
  resolution, the scheduler config (so σ grids need no download) and `family`, the published paper settings
  that apply (`hpyn.presets`). The embedded toy model is registered here, once, as an SD pipeline folder.
* `ADAPTERS` (`register_adapter(...)`): model families. An adapter (`hpyn.models.base.Adapter`) owns loading
  (`pipeline_class`, `load_pipeline`), prompt encoding (`encode_prompts`, with SDXL's added conditions), its
  noise-level object (`noise_table`), `make_denoiser` and its FreeU sites. `sd` (SD1.x/2.x) and `sdxl` exist;
  a folder or hub model is assigned to one by model_index.json's `_class_name`, else by its unet config.

`hpyn.generate.generate` asks the model (and so its adapter) for every family-specific step; solvers and
schedules only see σ values and a denoiser.

A family whose noise is not a discrete VP table (flow matching, as SD3 and Flux) is a new adapter that adds:

1. Its own noise-level object with the interface schedules and `SamplerConfig` use — `sigma_min`, `sigma_max`,
   `t_max`, `t_of_sigma(σ)`, `sigma_of_t(t)` — built from its scheduler config (FlowMatchEulerDiscreteScheduler:
   `shift`, or Flux's resolution-dependent `use_dynamic_shifting`). Rectified flow is x_t = (1−t)·x0 + t·n with
   t ∈ [0, 1]; in the VE frame the solvers integrate in, σ = t/(1−t) and x = x_t/(1−t), so t_of_sigma(σ) =
   σ/(1+σ) (times 1000 for the transformer's timestep input, after the shift) and sigma_of_t(t) = t/(1−t).
   t = 1 is σ = ∞: the object caps σ_max at t_max slightly below 1 (the initial latent is n·σ_max, error
   O(1/σ_max)), or the solvers learn the scaled frame x_t = α·x0 + s·n so the first step leaves t = 1 exactly.
2. A denoiser wrapper for velocity prediction. In the rectified-flow frame (σ_rf ≡ t, x = (1−σ_rf)·x0 +
   σ_rf·n) the network predicts v = n − x0, so x0 = x − σ_rf·v. From the VE frame: feed the transformer
   x_t = x/(1+σ) (c_in = 1/(1+σ) in place of 1/sqrt(σ²+1)) at t = σ/(1+σ), return D = x_t − t·v. CFG combines
   D's as `CFGDenoiser` does; Flux-dev is guidance-distilled (guidance is an input, one branch, no CFG batch).
3. `encode_prompts` for its encoders (SD3: two CLIPs + T5 with pooled projections; Flux: CLIP pooled + T5),
   `pipeline_class`, and `accepts_unet_config`/`pipeline_classes` for detection.
4. FreeU sites: a DiT has no UNet decoder, so `freeu_sites` returns [] and a config with FreeU windows must be
   refused (the search drops FreeU dimensions for it). Latent shape: `pipe.transformer` in place of
   `pipe.unet`, 16 latent channels; Flux packs 2×2 patches, which the wrapper does so solvers see the plain latent.
   `LoadedModel.decode` already applies a VAE `shift_factor` (SD3/Flux VAEs have one).
5. A `ModelSpec` with `family=None`: the paper published no settings for it, so the classic baseline applies.
"""

from hpyn.models.base import (ADAPTERS, Adapter, Conditioning, LoadedModel, default_device, detect_adapter, get_adapter,
                              register_adapter, spec_adapter)
from hpyn.models.registry import MODELS, ModelSpec, load_model, noise_table, register_model, resolve, scheduler_config

__all__ = ["Adapter", "Conditioning", "LoadedModel", "default_device", "ADAPTERS", "MODELS", "ModelSpec",
           "detect_adapter", "get_adapter", "load_model", "noise_table", "register_adapter", "register_model",
           "resolve", "scheduler_config", "spec_adapter"]
