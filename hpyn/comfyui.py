"""A schedule as ComfyUI nodes take it: the σ list for ManualSigmas and the sampler for KSamplerSelect.

ComfyUI's custom-sampling graph (EmptyLatentImage → SamplerCustomAdvanced ← RandomNoise, CFGGuider, KSamplerSelect,
ManualSigmas → VAEDecode) runs k-diffusion samplers over an explicit σ list, in the same convention as hpyn
(x = x0 + σ·n). What carries over, read from ComfyUI's source (comfy_extras/nodes_custom_sampler.py,
comfy/samplers.py, comfy/model_sampling.py, comfy/k_diffusion/sampling.py):

* ManualSigmas parses its string with the regex `[-+]?(?:\\d*\\.*\\d+)`: numbers in plain decimal notation (an
  exponent such as 1e-05 would be read as two numbers), stored as float32.
* The residual ending is expressible: the σ list simply ends at ε > 0. The sampler stops there and, for an
  ε-prediction model, returns that latent unchanged (`EPS.inverse_noise_scaling` is the identity), so VAEDecode
  decodes the latent at σ = ε, as the paper does. A zero ending is a list ending in 0.
* Solvers: hpyn's dpmpp_1s is ComfyUI's "euler" (Euler in σ without churn is DDIM = DPM-Solver++1S) and dpmpp_2m
  is "dpmpp_2m" (the same update, second order also on a last step that ends at ε > 0). dpmpp_3m has no exact
  counterpart: "dpmpp_3m_sde" at eta = 0 uses the −φ₃ coefficient (see hpyn.solvers.dpmpp_3m); nor has unipc_bh2
  ("uni_pc_bh2" is UniPC of order 3).

What ComfyUI cannot express, so its images differ from hpyn's:
* a FreeU window on some steps: ComfyUI's FreeU node (v1, keyed on channel width as the "reference" mapping)
  patches the model for every step, which expresses only a window over all steps. Two runs split with
  SplitSigmas (the second with DisableNoise) would switch it per segment, which is exact for euler but restarts a
  multistep solver's history (its first step in the second segment is first order);
* fractional timesteps: ComfyUI feeds the U-Net the nearest integer timestep of each σ
  (`ModelSamplingDiscrete.timestep` is an argmin over the table), hpyn the interpolated t(σ) (spec A, map 1);
* initial noise: when σ_0 equals the model's σ_max, ComfyUI scales the noise by sqrt(1 + σ_0²) instead of σ_0
  (`max_denoise`), 0.2 % more for SD's σ_max = 14.6, and draws it with its own RNG, so seeds do not correspond.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpyn.config import SamplerConfig
from hpyn.solvers import check_sigmas

__all__ = ["COMFYUI_SAMPLERS", "comfyui_sigmas", "comfyui_recipe", "format_comfyui"]

# hpyn solver → (KSamplerSelect sampler_name, exact?)
COMFYUI_SAMPLERS = {"dpmpp_1s": ("euler", True), "dpmpp_2m": ("dpmpp_2m", True), "dpmpp_3m": ("dpmpp_3m_sde", False),
                    "unipc_bh2": ("uni_pc_bh2", False)}
_NEAREST = {  # why the nearest ComfyUI sampler differs
    "dpmpp_3m": "the nearest is 'dpmpp_3m_sde' with eta=0 (SamplerDPMPP_3M_SDE node), whose third-order term differs",
    "unipc_bh2": "the nearest is 'uni_pc_bh2', which runs UniPC of order 3 (hpyn: 2) and, for a list ending in 0, "
                 "on a re-interpolated time grid (comfy/extra_samplers/uni_pc.py)",
}


def comfyui_sigmas(sigmas: Sequence[float]) -> str:
    """'14.6146402, 4.5188…' as ManualSigmas reads it: plain decimals (no exponent), 9 significant digits
    (enough to be float32-exact)."""
    s = check_sigmas(sigmas)
    return ", ".join(np.format_float_positional(v, precision=9, unique=False, fractional=False, trim="-")
                     for v in s)


def comfyui_recipe(config: SamplerConfig, sigmas: Sequence[float]) -> dict:
    """The ComfyUI settings for a config and its σ grid (from `config.sigmas(table)` or an export's "sigmas")."""
    s = check_sigmas(sigmas)
    if len(s) != config.steps + 1:
        raise ValueError(f"a {config.steps}-step config needs {config.steps + 1} sigmas, got {len(s)}")
    try:
        sampler, exact = COMFYUI_SAMPLERS[config.solver]
    except KeyError:
        raise ValueError(f"solver {config.solver!r} has no ComfyUI sampler; known: "
                         f"{sorted(COMFYUI_SAMPLERS)}") from None
    notes = []
    if not exact:
        notes.append(f"{config.solver}: ComfyUI has no exact equivalent; {_NEAREST[config.solver]}")
    if s[-1] > 0:
        notes.append(f"residual ending: the list ends at ε = {s[-1]:.6g}; VAEDecode decodes that latent, as the "
                     "paper does (nothing to add)")
    every_step = len(config.freeu) == 1 and (config.freeu[0].start, config.freeu[0].end) == (0, config.steps)
    if every_step:
        w = config.freeu[0]
        notes.append(f"FreeU on every step: put ComfyUI's FreeU node (v1, not FreeU_V2) with b1={w.b1}, b2={w.b2}, "
                     f"s1={w.s1}, s2={w.s2} before the guider; it keys the factors on channel width, as the "
                     "'reference' mapping" + ("" if config.freeu_mapping == "reference" else
                                              f" (this config uses the '{config.freeu_mapping}' mapping)"))
    elif config.freeu:
        windows = ", ".join(f"steps [{w.start}, {w.end}) b=({w.b1}, {w.b2}) s=({w.s1}, {w.s2})" for w in config.freeu)
        notes.append(f"FreeU window ({windows}) cannot be expressed: ComfyUI's FreeU node acts on every step; "
                     "splitting the run with SplitSigmas restarts a multistep solver's history")
    if config.guidance_interval is not None and config.guidance != 1:
        lo, hi = config.guidance_interval
        notes.append(f"guidance interval: CFG only for {lo:.6g} < σ ≤ {hi:.6g}, the conditional prediction alone "
                     "elsewhere; CFGGuider applies cfg on every step, so this needs a guider that switches by σ")
    if config.offsets is not None:
        notes.append("refined grid (per-point log-σ offsets of a stage-2 search): the list above already carries "
                     "them (nothing to add)")
    notes.append("ComfyUI gives the U-Net the nearest integer timestep, not hpyn's fractional t(σ), and scales "
                 "the initial noise by sqrt(1+σ_0²) when σ_0 = σ_max: images are close to hpyn's, not identical")
    return {"sigmas": comfyui_sigmas(s), "sampler_name": sampler, "exact_sampler": exact, "cfg": config.guidance,
            "steps": config.steps, "notes": notes}


def format_comfyui(recipe: dict) -> str:
    """Text for a terminal: the node settings to type, then the notes."""
    lines = ["ComfyUI (custom sampling): SamplerCustomAdvanced with",
             f"  ManualSigmas.sigmas      {recipe['sigmas']}",
             f"  KSamplerSelect.sampler   {recipe['sampler_name']}",
             f"  CFGGuider.cfg            {recipe['cfg']:g}",
             "  RandomNoise, EmptyLatentImage as usual; VAEDecode on the output latent"]
    lines += [f"note: {n}" for n in recipe["notes"]]
    return "\n".join(lines)
