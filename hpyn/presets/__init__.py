"""Named settings, shipped with the package: the paper's published settings and the samplers users pick today
(DPM++2M-Karras, Align Your Steps, Beta sampling, UniPC-Karras); `PRESET_INFO` describes each in one line.

The published settings (spec B.2/D.3) are JSON documents in `hpyn/presets/paper/{family}-{steps}.json`, read
through importlib.resources so they are found in an installed wheel as in a source checkout. Each holds the
SamplerConfig under "config", the σ array the spec computed ("expected_sigmas") and the paper's own knobs.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

from hpyn.config import SamplerConfig, config_from_document
from hpyn.solvers import dpmpp_name

__all__ = ["PRESETS", "PRESET_INFO", "preset", "load_preset", "preset_document", "published", "paper_setting",
           "classic_setting", "ays_setting", "beta_setting", "unipc_karras_setting"]

PRESET_INFO = {
    "paper": "the paper's published setting for the model family and step count (or its stated rule)",
    "dpmpp2m-karras": "DPM-Solver++2M on Karras σ's (ρ = 7) down to the model's σ_min, then 0",
    "ays": "Align Your Steps σ's (SD1.5 table; SDXL's for SDXL), log-linearly interpolated to the step count, "
           "DPM-Solver++2M",
    "beta": "Beta sampling (α = β = 0.6, ComfyUI's 'beta' scheduler) with DPM-Solver++2M",
    "unipc-karras": "UniPC-bh2 (predictor order 2 + corrector) on Karras σ's (ρ = 7), then 0",
}
PRESETS = tuple(PRESET_INFO)


def _paper_dir():
    return resources.files(__package__).joinpath("paper")


def published(family: str | None = None) -> list[tuple[str, int]]:
    """(family, steps) of every published setting, or of one family's, sorted."""
    out = []
    for entry in _paper_dir().iterdir():
        if entry.name.endswith(".json"):
            fam, _, steps = entry.name[:-5].rpartition("-")
            if family is None or fam == family:
                out.append((fam, int(steps)))
    return sorted(out)


def preset_document(family: str, steps: int) -> dict:
    """The whole published JSON document for (family, steps): config, expected_sigmas, paper_knobs, source."""
    entry = _paper_dir().joinpath(f"{family}-{steps}.json")
    if not entry.is_file():
        have = [f"{f}-{n}" for f, n in published()]
        raise ValueError(f"no published paper setting for {family!r} with {steps} steps; published: {have}")
    return json.loads(entry.read_text(encoding="utf-8"))


def load_preset(family: str, steps: int) -> SamplerConfig:
    """The paper's published setting (spec B.2/D.3) for a model family ('sd15', 'sdxl') and step count."""
    try:
        return config_from_document(preset_document(family, steps))
    except (TypeError, ValueError) as e:
        raise ValueError(f"preset {family}-{steps}: {e}") from None


def paper_setting(family: str | None, steps: int) -> tuple[SamplerConfig, str]:
    """The paper's setting for (family, steps) and where it comes from.

    Published (hpyn/presets/paper/) when it exists. Otherwise a rule, stated in the returned note: ε and FreeU
    factors of the nearest published step count of the family (ties → fewer steps), solver as the reference
    code picks it (1S up to 6 steps, 2M above, spec C.1), FreeU on every step if that published setting uses it
    on every step, else off. Unknown families have no paper setting.
    """
    family = family or "sd15"
    steps_published = [n for _, n in published(family)]
    if not steps_published:
        families = sorted({f for f, _ in published()})
        raise ValueError(f"no published paper settings for model family {family!r}; families: {families}")
    if steps in steps_published:
        return load_preset(family, steps), f"published: {family}-{steps}.json"
    near = min(steps_published, key=lambda n: (abs(n - steps), n))
    base = load_preset(family, near)
    all_on = len(base.freeu) == 1 and (base.freeu[0].start, base.freeu[0].end) == (0, near)
    freeu = (dataclasses.replace(base.freeu[0], start=0, end=steps),) if all_on else ()
    cfg = base.replace(steps=steps, solver=dpmpp_name(1 if steps <= 6 else 2), freeu=freeu)
    return cfg, (f"rule: no published {family} setting for {steps} steps; epsilon and FreeU from the "
                 f"{near}-step setting, solver {cfg.solver} (1S ≤ 6 steps, 2M above), FreeU "
                 f"{'on every step' if freeu else 'off'}")


def classic_setting(steps: int, guidance: float = 7.5) -> SamplerConfig:
    """Classic DPM-Solver++2M with Karras σ's (ρ = 7) down to the model's σ_min, then 0."""
    return SamplerConfig(steps=steps, spacing="karras", rho=7.0, final="zero",
                         solver=dpmpp_name(2 if steps > 1 else 1), guidance=guidance)


def ays_setting(family: str | None, steps: int, guidance: float = 7.5) -> SamplerConfig:
    """Align Your Steps: the SDXL table for the 'sdxl' family, else SD1.5's (models with SD's noise schedule, e.g.
    the toy), with DPM-Solver++2M as the authors' how-to runs it (diffusers' DPMSolverMultistepScheduler)."""
    return SamplerConfig(steps=steps, spacing="ays_sdxl" if family == "sdxl" else "ays_sd15", final="zero",
                         solver=dpmpp_name(2 if steps > 1 else 1), guidance=guidance)


def beta_setting(steps: int, guidance: float = 7.5) -> SamplerConfig:
    """Beta sampling (Lee et al. 2024, α = β = 0.6; hpyn.schedules.beta_sampling) with DPM-Solver++2M."""
    return SamplerConfig(steps=steps, spacing="beta", final="zero", solver=dpmpp_name(2 if steps > 1 else 1),
                         guidance=guidance)


def unipc_karras_setting(steps: int, guidance: float = 7.5) -> SamplerConfig:
    """UniPC-bh2 on the classic Karras grid: diffusers' UniPCMultistepScheduler(use_karras_sigmas=True) defaults
    (fractional rather than rounded U-Net timesteps)."""
    return SamplerConfig(steps=steps, spacing="karras", rho=7.0, final="zero", solver="unipc_bh2", guidance=guidance)


def preset(name: str, family: str | None, steps: int) -> SamplerConfig:
    """A named setting (PRESETS; PRESET_INFO says what each is), at guidance 7.5."""
    if name == "paper":
        return paper_setting(family, steps)[0]
    if name == "dpmpp2m-karras":
        return classic_setting(steps)
    if name == "ays":
        return ays_setting(family, steps)
    if name == "beta":
        return beta_setting(steps)
    if name == "unipc-karras":
        return unipc_karras_setting(steps)
    raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)} or give a JSON file")
