"""HpynScheduler: an exported schedule as a diffusers scheduler, for StableDiffusion / StableDiffusionXL pipelines.

    from hpyn.scheduler import HpynScheduler
    pipe.scheduler = HpynScheduler.from_sampler_config(SamplerConfig.load("best.json"), pipe.scheduler.config)
    image = pipe(prompt, num_inference_steps=pipe.scheduler.num_inference_steps).images[0]

(`hpyn.apply(pipe, "best.json")` does this plus the FreeU window; see hpyn.pipeline.)

The scheduler holds an explicit σ grid σ_0 > … > σ_n ≥ 0 in the VE frame x = x0 + σ·n (k-diffusion convention) and
the name of an hpyn solver. A pipeline drives it as any diffusers scheduler:
  * `init_noise_sigma` = σ_0: the pipeline multiplies its N(0, I) latents by it (x_0 = σ_0·z, as hpyn.generate);
  * `timesteps`: the fractional U-Net timestep t(σ_i) of each of the n steps (spec A, map 1), float32;
  * `scale_model_input(x, t)` = x / sqrt(σ_i² + 1), the VP-scaled latent the U-Net expects;
  * `step(model_output, t, x)`: D = x − σ_i·ε (or the v-prediction form), then one update of the solver.

Stepping uses the solver's own generator (`hpyn.solvers.Solver.steps`), so the mathematics exists once: `step()`
sends (x, D) into the generator and returns what it yields next; the multistep history stays in the generator.
The first `step()` after `set_timesteps` starts a new generator. The scheduler keeps the latent in float32 (or
float64) between steps and hands the pipeline a copy in the pipeline's dtype; when the pipeline passes that copy
back unchanged, the full-precision latent is used, so an fp16 pipeline integrates like hpyn.generate does.

A residual grid (σ_n = ε > 0) ends with the latent at σ = ε, which the pipeline then decodes (the paper's ending);
a zero grid's last step returns the denoised latent. The schedule has exactly n steps: the pipeline must be called
with num_inference_steps = n (a different count is an error naming both). It runs a whole grid from σ_0, so
img2img / `strength` < 1 / `denoising_start` are refused (the timestep check in `step` names the mismatch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from hpyn.config import SamplerConfig
from hpyn.denoisers import PREDICTION_TYPES
from hpyn.noise import NoiseTable
from hpyn.solvers import check_sigmas, get_solver

__all__ = ["HpynScheduler", "TABLE_KEYS"]

# the scheduler-config keys that define the noise table (diffusers' names)
TABLE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")


class HpynScheduler(SchedulerMixin, ConfigMixin):
    """Runs a fixed σ grid with an hpyn solver; `save_pretrained` / `from_pretrained` keep grid, solver and betas."""

    order = 1

    @register_to_config
    def __init__(self, sigmas: list[float] | None = None, solver: str = "dpmpp_1s", num_train_timesteps: int = 1000,
                 beta_start: float = 0.00085, beta_end: float = 0.012, beta_schedule: str = "scaled_linear",
                 trained_betas: list[float] | None = None, prediction_type: str = "epsilon",
                 sampler_config: dict | None = None):
        if sigmas is None:
            raise ValueError("HpynScheduler needs the σ grid (sigmas=[σ_0, …, σ_n]); build it with HpynScheduler."
                             "from_sampler_config(config, pipe.scheduler.config) or hpyn.apply(pipe, ...)")
        self._grid = check_sigmas(sigmas)
        self._solver = get_solver(solver)
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}; supported: {list(PREDICTION_TYPES)}")
        if sampler_config is not None:
            SamplerConfig.from_dict(sampler_config)  # provenance must at least be a valid config
        self.table = NoiseTable.from_scheduler_config(
            {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
             "beta_schedule": beta_schedule, "trained_betas": trained_betas})
        self.num_inference_steps = len(self._grid) - 1
        # map 1 per σ, as hpyn.denoisers.CFGDenoiser computes it (scalar calls: bit-identical t)
        self._t = [float(self.table.t_of_sigma(s)) for s in self._grid[:-1]]
        self.sigmas = torch.tensor(self._grid, dtype=torch.float64)
        self.timesteps = torch.tensor(self._t, dtype=torch.float32)
        self._step_index: int | None = None
        self._gen = self._x = self._handed_out = None

    @classmethod
    def from_sampler_config(cls, config: SamplerConfig, scheduler_config: Mapping) -> HpynScheduler:
        """The grid of `config` on the noise table of a diffusers scheduler config (e.g. `pipe.scheduler.config`)."""
        kw = {k: scheduler_config[k] for k in TABLE_KEYS if scheduler_config.get(k) is not None}
        if kw.get("trained_betas") is not None:
            kw["trained_betas"] = [float(b) for b in kw["trained_betas"]]
        table = NoiseTable.from_scheduler_config(kw)
        return cls(sigmas=config.sigmas(table).tolist(), solver=config.solver,
                   prediction_type=scheduler_config.get("prediction_type", "epsilon"),
                   sampler_config=config.to_dict(), **kw)

    # ---- what pipelines read ------------------------------------------------------------------------
    @property
    def init_noise_sigma(self) -> float:
        return self._grid[0]

    @property
    def step_index(self) -> int | None:
        """Index of the step the next U-Net call belongs to (None before `set_timesteps`)."""
        return self._step_index

    @property
    def begin_index(self) -> None:
        return None

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        """Start a run of the grid's n steps; `num_inference_steps` must be n (or None)."""
        n = self.num_inference_steps
        if num_inference_steps is not None and num_inference_steps != n:
            raise ValueError(f"this schedule has {n} steps (a grid of {n + 1} σ values); call the pipeline with "
                             f"num_inference_steps={n}, got num_inference_steps={num_inference_steps}")
        self.timesteps = self.timesteps.to(device)
        if self._gen is not None:
            self._gen.close()
        self._step_index, self._gen, self._x, self._handed_out = 0, None, None, None

    def _index(self, timestep) -> int:
        i = self._step_index
        if i is None:
            raise RuntimeError("call set_timesteps before scale_model_input/step")
        if i >= self.num_inference_steps:
            raise RuntimeError(f"all {self.num_inference_steps} steps are done; call set_timesteps to start again")
        if timestep is not None:
            t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
            if abs(t - self._t[i]) > 1e-3:
                raise ValueError(f"timestep {t:.4f} at step {i}, expected {self._t[i]:.4f}: HpynScheduler runs its "
                                 "whole grid from σ_0 (img2img, strength < 1 and denoising_start are not supported)")
        return i

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """c_in·x with c_in = 1/sqrt(σ_i² + 1): the U-Net's input is the VP-scaled latent."""
        s = self._grid[self._index(timestep)]
        return sample * (1.0 / math.sqrt(s * s + 1.0))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             return_dict: bool = True) -> SchedulerOutput | tuple:
        """One solver step from σ_i to σ_{i+1} given the U-Net's (guided) output at (sample, σ_i)."""
        i = self._index(timestep)
        # our full-precision latent when the pipeline hands back what we returned, else the latent it edited
        x = self._x if sample is self._handed_out else sample
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        s = self._grid[i]
        out = model_output.to(x.dtype)
        if self.config.prediction_type == "epsilon":
            d = x - s * out
        else:  # v = α·ε − s·x0 in the VP frame (α = c_in, s = σ·c_in) ⇒ x0 = α·(c_in·x) − s·v
            c_in = 1.0 / math.sqrt(s * s + 1.0)
            d = x * (c_in * c_in) - (s * c_in) * out
        if self._gen is None:
            self._gen = self._solver.steps(x, self._grid)
            next(self._gen)
        try:
            x, s_next = self._gen.send((x, d))
            if s_next != self._grid[i + 1]:
                raise RuntimeError(f"solver {self._solver.name!r} asked for σ={s_next} between grid points; "
                                   "HpynScheduler steps one grid interval per U-Net call")
        except StopIteration as stop:
            x = stop.value
        self._step_index = i + 1
        self._x = x
        self._handed_out = x.to(sample.dtype)
        return SchedulerOutput(prev_sample=self._handed_out) if return_dict else (self._handed_out,)
