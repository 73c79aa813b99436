"""`hpyn.apply(pipe, "best.json")`: run a found schedule inside a diffusers StableDiffusion(XL) pipeline.

    import hpyn
    applied = hpyn.apply(pipe, "best.json")        # an export, a preset document, a config file, dict or SamplerConfig
    image = pipe(prompt, **applied.call_kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    applied.undo()                                 # or: with hpyn.apply(pipe, ...) as applied: ...

What it installs, all through diffusers' and torch's own mechanisms and all removed by `undo()`:
  * `pipe.scheduler = HpynScheduler(...)` (hpyn.scheduler): the σ grid of the config on the pipeline's own noise
    table, fractional timesteps, the residual ending, the config's solver;
  * FreeU hooks on the UNet's decoder resnets (hpyn.freeu.FreeU, the config's mapping) and one forward pre-hook
    on the UNet that switches them per step: before each U-Net call it sets the factors of the window containing
    the scheduler's current step index (`SamplerConfig.freeu_at`), or none.
A pipeline call cannot be given defaults from outside, so the schedule's step count and guidance scale are
`applied.call_kwargs` ({"num_inference_steps": n, "guidance_scale": w}); a run with another guidance scale warns.

Same initial noise ⇒ same images as `hpyn.generate`: pass `generator=[torch.Generator().manual_seed(s) for s in
seeds]` (one CPU generator per image draws that image's noise, as hpyn.generate does) or
`latents=hpyn.generate.initial_noise(seeds, shape)`; the pipeline multiplies them by `init_noise_sigma` = σ_0 as
hpyn does. The two differ only in float rounding, because the pipeline applies classifier-free guidance to ε and
hpyn to the denoised estimate (D is affine in ε); tests/test_hpyn_scheduler.py states the tolerance.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hpyn.config import SamplerConfig, config_from_document
from hpyn.freeu import FreeU
from hpyn.noise import NoiseTable
from hpyn.solvers import check_sigmas

__all__ = ["Applied", "apply", "load_schedule"]


def load_schedule(source) -> tuple[SamplerConfig, list[float] | None]:
    """(config, the document's explicit σ grid or None) from a JSON file, a dict or a SamplerConfig."""
    if isinstance(source, SamplerConfig):
        return source, None
    where = "schedule"
    if isinstance(source, (str, Path)):
        where = str(source)
        try:
            source = json.loads(Path(source).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"schedule file not found: {where}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"schedule file {where} is not valid JSON: {e}") from None
    if not isinstance(source, Mapping):
        raise TypeError(f"a schedule is a JSON file, a dict or a SamplerConfig, got {type(source).__name__}")
    try:
        config = config_from_document(dict(source))
        sigmas = source.get("sigmas") if "config" in source else None
        if sigmas is not None:
            try:
                sigmas = check_sigmas(sigmas)
            except ValueError as e:
                raise ValueError(f"the document's \"sigmas\": {e}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
    return config, sigmas


@dataclass
class Applied:
    """What `apply` installed on a pipeline; `undo()` (or leaving a `with` block) removes all of it."""

    pipe: object
    config: SamplerConfig
    scheduler: object
    original_scheduler: object
    freeu: FreeU | None = None
    _hook: object = field(default=None, repr=False)
    _warned_guidance: float | None = field(default=None, repr=False)

    @property
    def call_kwargs(self) -> dict:
        return {"num_inference_steps": self.config.steps, "guidance_scale": self.config.guidance}

    @property
    def active(self) -> bool:
        return self._hook is not None

    def _before_unet(self, module, args) -> None:
        i = self.scheduler.step_index
        inside = i is not None and 0 <= i < self.config.steps and self.pipe.scheduler is self.scheduler
        if self.freeu is not None:
            self.freeu.set(self.config.freeu_at(i) if inside else None)
        if inside and i == 0:
            w = getattr(self.pipe, "_guidance_scale", None)  # set by SD/SDXL pipelines' __call__
            if w is not None and not math.isclose(float(w), self.config.guidance) and w != self._warned_guidance:
                self._warned_guidance = w
                warnings.warn(f"the pipeline runs with guidance_scale={w}, the schedule was found with "
                              f"{self.config.guidance}: pass **applied.call_kwargs", stacklevel=2)

    def undo(self) -> None:
        """Restore the original scheduler and remove every hook (idempotent)."""
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        if self.freeu is not None:
            self.freeu.remove()
        if self.pipe.scheduler is self.scheduler:
            self.pipe.scheduler = self.original_scheduler

    def __enter__(self) -> Applied:
        return self

    def __exit__(self, *exc) -> None:
        self.undo()


def apply(pipe, schedule) -> Applied:
    """Install a schedule (export / preset / config JSON path, dict or SamplerConfig) on a diffusers pipeline."""
    from hpyn.scheduler import HpynScheduler

    config, doc_sigmas = load_schedule(schedule)
    if isinstance(pipe.scheduler, HpynScheduler):
        raise ValueError("this pipeline already runs an hpyn schedule: undo() the earlier apply first")
    scheduler = HpynScheduler.from_sampler_config(config, pipe.scheduler.config)
    held = getattr(pipe.scheduler, "alphas_cumprod", None)  # the noise levels hpyn.models reads from a pipeline
    if held is not None and NoiseTable(held) != scheduler.table:
        raise ValueError(f"{type(pipe.scheduler).__name__}'s noise levels differ from its config's betas "
                         f"(σ_max {NoiseTable(held).sigma_max:.6g} vs {scheduler.table.sigma_max:.6g}); "
                         "hpyn reads discrete VP tables from beta_start/beta_end/beta_schedule/trained_betas")
    if doc_sigmas is not None:
        ours = scheduler.sigmas.tolist()
        if len(doc_sigmas) != len(ours) or any(not math.isclose(a, b, rel_tol=1e-5) for a, b in zip(doc_sigmas, ours)):
            raise ValueError(f"the document's sigmas {doc_sigmas} differ from its config's grid on this pipeline's "
                             f"noise table {ours}: exported for a model with another noise schedule?")
    if config.guidance_interval is not None and config.guidance != 1:
        raise ValueError(f"guidance_interval={config.guidance_interval}: a diffusers pipeline applies guidance on "
                         "every step, so hpyn.apply cannot run this schedule as found; use hpyn.generate")
    if config.freeu and not hasattr(pipe.unet, "up_blocks"):
        raise ValueError("this schedule uses FreeU windows, which need a UNet with up_blocks; this pipeline's "
                         f"denoiser is a {type(pipe.unet).__name__}")
    applied = Applied(pipe, config, scheduler, pipe.scheduler)
    if config.freeu:
        applied.freeu = FreeU(pipe.unet, config.freeu_mapping)
    applied._hook = pipe.unet.register_forward_pre_hook(applied._before_unet)
    pipe.scheduler = scheduler
    return applied
