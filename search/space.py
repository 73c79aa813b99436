"""The search space: define-by-run, every dimension acts, the paper's settings lie inside it.

`suggest_config(trial, steps, space)` turns an Optuna trial into a `hpyn.config.SamplerConfig`. Parameters
(names as they appear in the study and the dashboard; "where" = the condition under which it exists):

  name          where                 default range              meaning (paper symbol, spec B.4)
  spacing       grid has ≥ 3 points   time | karras              power law in DDPM-timestep space (Eq. 16/18, the
                                                                 paper) or in σ space (Eq. 15, Karras)
  rho_time      spacing = time        [0.5, 3.0]                 ρ_t: 1 = uniform in t, > 1 denser at low noise;
                                                                 paper 1.2
  rho_karras    spacing = karras      [1.0, 10.0]                Karras ρ: classic 7
  final         always                residual | zero            residual: stop at σ_n = ε and decode the latent
                                                                 (Eq. 18/19, the paper); zero: σ_min then 0
  epsilon       final = residual      [0.03, 1.0] log            ε = σ_end, the decode level. The paper's N_out,
                                                                 ρ_out, k (and its σ_min) act only through ε (B.1),
                                                                 so they are not searched: ε is. Paper 0.132
  sigma_min     final = zero          [model σ_min, 1.0] log     last non-zero σ before the jump to 0; the low end
                                                                 is the model's σ_min (the classic grid)
  order         steps ≥ 2             1 .. min(3, steps)         DPM-Solver++ 1S (DDIM) / 2M / 3M (see below)
  freeu         always                off | on                   FreeU on a window of solver steps
  freeu_start   freeu = on            [0, steps-1]               first step with FreeU (0-based)
  freeu_end     freeu = on            [freeu_start+1, steps]     window is [freeu_start, freeu_end)
  freeu_b1 ...  freeu = on            fixed 1.1, 1.1, 0.9, 0.2   FreeU backbone (b1, b2) and skip (s1, s2) factors
   freeu_s2                           ("full" space: b ∈ [1.0, 1.6], s ∈ [0.1, 1.0])
  freeu_mapping freeu = on            fixed "reference"          the paper's channel-keyed mapping, or "diffusers"
  guidance      always                fixed (--guidance)         CFG scale w; give a range to search it

Very short grids: a parameter is only asked for where it acts (`acting`): spacing and ρ need an interior grid
point (not with 1 residual step or ≤ 2 zero-ending steps), order k needs k−1 earlier steps that do not jump to 0
(order ≤ steps with a residual ending, ≤ steps − 1 with a zero ending), σ_min needs ≥ 2 zero-ending steps.

Baselines: every published paper setting (studies/paper/) but SDXL 6-step (two FreeU windows: run as a fixed
config) and classic DPM++2M-Karras are points of the default space (`baseline_params`).

A space file (JSON) overrides entries of a named base space ("default" or "full"):

    {"base": "default", "rho_time": [0.8, 2.0], "order": [1, 2], "spacing": "time", "guidance": [3.0, 9.0]}

A two-number list is a range (numbers) or the choices (names); a list of names is the choices; a single value fixes
the parameter (it is then not an Optuna parameter, but it is part of every trial's config). Unknown names are an
error that lists the valid ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpyn.config import FREEU_MAPPINGS, FreeUWindow, SamplerConfig

__all__ = ["Dim", "Space", "SPACES", "default_space", "load_space", "suggest_config", "baseline_params",
           "NotInSpace", "PARAMS", "acting"]

PAPER_FREEU = (1.1, 1.1, 0.9, 0.2)
FACTORS = ("freeu_b1", "freeu_b2", "freeu_s1", "freeu_s2")
PARAMS = ("spacing", "rho_time", "rho_karras", "final", "epsilon", "sigma_min", "order", "freeu", "freeu_start",
          "freeu_end", *FACTORS, "freeu_mapping", "guidance")
CATEGORICAL = {"spacing": ("time", "karras"), "final": ("residual", "zero"), "freeu": ("off", "on"),
               "freeu_mapping": FREEU_MAPPINGS}
INTEGER = ("order", "freeu_start", "freeu_end")
SPACES = ("default", "full")


class NotInSpace(ValueError):
    """A config that the space cannot express (a value outside a range, or two FreeU windows)."""


@dataclass(frozen=True)
class Dim:
    """One dimension: a fixed value, or choices, or a [low, high] range (log-uniform if `log`)."""

    fixed: Any = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def searched(self) -> bool:
        return self.fixed is None

    def contains(self, value) -> bool:
        if self.fixed is not None:
            return value == self.fixed if not isinstance(value, float) else math.isclose(value, self.fixed)
        if self.choices is not None:
            return value in self.choices
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.fixed is not None:
            return f"fixed {self.fixed!r}"
        if self.choices is not None:
            return " | ".join(map(str, self.choices))
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class Space:
    """Concrete ranges for one model (noise table) and one step count. Build with `load_space`."""

    dims: dict[str, Dim]
    steps: int
    sigma_min: float          # the model's σ_min (low end of `sigma_min`; that value means "the model's")
    sigma_max: float
    name: str = "default"
    source: dict = field(default_factory=dict)   # what the space was built from (recorded in the study)

    def __getitem__(self, name: str) -> Dim:
        return self.dims[name]

    def to_dict(self) -> dict:
        out = {}
        for k, d in self.dims.items():
            out[k] = d.fixed if d.fixed is not None else list(d.choices) if d.choices is not None \
                else [d.low, d.high] + (["log"] if d.log else [])
        return out

    def describe(self) -> str:
        return "\n".join(f"  {k:14s} {d.describe()}" for k, d in self.dims.items())


def default_space(table, steps: int, guidance: float = 7.5, name: str = "default") -> Space:
    """The default space on a model's noise table (see the module docstring for the table of ranges)."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; use one of {list(SPACES)} or a JSON file")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    smin, smax = float(table.sigma_min), float(table.sigma_max)
    dims = {
        "spacing": Dim(choices=CATEGORICAL["spacing"]),
        "rho_time": Dim(low=0.5, high=3.0),
        "rho_karras": Dim(low=1.0, high=10.0),
        "final": Dim(choices=CATEGORICAL["final"]),
        "epsilon": Dim(low=max(0.03, smin), high=min(1.0, smax), log=True),
        "sigma_min": Dim(low=smin, high=min(1.0, smax), log=True),
        "order": Dim(low=1, high=min(3, steps)) if steps > 1 else Dim(fixed=1),
        "freeu": Dim(choices=CATEGORICAL["freeu"]),
        "freeu_start": Dim(low=0, high=steps - 1),
        "freeu_end": Dim(low=1, high=steps),
        "freeu_mapping": Dim(fixed="reference"),
        "guidance": Dim(fixed=float(guidance)),
    }
    if name == "full":
        dims.update(freeu_b1=Dim(low=1.0, high=1.6), freeu_b2=Dim(low=1.0, high=1.6),
                    freeu_s1=Dim(low=0.1, high=1.0), freeu_s2=Dim(low=0.1, high=1.0))
    else:
        dims.update({k: Dim(fixed=v) for k, v in zip(FACTORS, PAPER_FREEU)})
    dims = {k: dims[k] for k in PARAMS}
    return Space(dims, steps, smin, smax, name, {"base": name})


def _dim_from_json(name: str, value, base: Dim) -> Dim:
    bad = ValueError(f"space parameter {name!r}: cannot use {value!r} (give a value, a [low, high] range"
                     f"{' or a list of choices' if name in CATEGORICAL else ''})")
    if isinstance(value, list):
        if name in CATEGORICAL:
            if not value or any(v not in CATEGORICAL[name] for v in value):
                raise ValueError(f"space parameter {name!r}: choices {value!r} must be a non-empty subset of "
                                 f"{list(CATEGORICAL[name])}")
            return Dim(fixed=value[0]) if len(value) == 1 else Dim(choices=tuple(value))
        log = len(value) == 3 and value[2] == "log"
        if len(value) not in (2, 3) or (len(value) == 3 and not log) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
            raise bad
        lo, hi = value[:2]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"space parameter {name!r}: range [{lo}, {hi}] is empty or not finite")
        if name in INTEGER:
            if int(lo) != lo or int(hi) != hi:
                raise ValueError(f"space parameter {name!r} is an integer; got range [{lo}, {hi}]")
            lo, hi = int(lo), int(hi)
        else:
            lo, hi = float(lo), float(hi)
        if lo == hi:
            return Dim(fixed=lo)
        return Dim(low=lo, high=hi, log=log or (base.log and lo > 0))
    if isinstance(value, (dict, type(None))):
        raise bad
    if name in CATEGORICAL:
        if value not in CATEGORICAL[name]:
            raise ValueError(f"space parameter {name!r}: {value!r} is not one of {list(CATEGORICAL[name])}")
        return Dim(fixed=value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    return Dim(fixed=int(value) if name in INTEGER else float(value))


def _check(space: Space) -> Space:
    """Range checks that need the model and the step count; errors name the parameter and the value."""
    d, n = space.dims, space.steps

    def within(name, lo, hi, lo_open=False, hi_open=False):
        dim = d[name]
        vals = [dim.fixed] if dim.fixed is not None else [dim.low, dim.high]
        for v in vals:
            if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
                raise ValueError(f"space parameter {name!r}: {v!r} lies outside "
                                 f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'} "
                                 f"for this model and {n} steps")

    within("rho_time", 0, math.inf, lo_open=True)
    within("rho_karras", 0, math.inf, lo_open=True)
    within("epsilon", space.sigma_min, space.sigma_max, hi_open=True)
    within("sigma_min", 0, space.sigma_max, lo_open=True, hi_open=True)
    within("order", 1, min(3, n))
    within("freeu_start", 0, n - 1)
    within("freeu_end", 1, n)
    for f in FACTORS:
        within(f, 0, math.inf)
    within("guidance", 0, math.inf)
    hi_start = d["freeu_start"].fixed if d["freeu_start"].fixed is not None else d["freeu_start"].high
    lo_start = d["freeu_start"].fixed if d["freeu_start"].fixed is not None else d["freeu_start"].low
    hi_end = d["freeu_end"].fixed if d["freeu_end"].fixed is not None else d["freeu_end"].high
    if "on" in (d["freeu"].choices or (d["freeu"].fixed,)) and lo_start >= hi_end:
        raise ValueError(f"space: freeu_start ≥ {lo_start} and freeu_end ≤ {hi_end} leave no FreeU window")
    if hi_start >= hi_end and d["freeu_start"].fixed is None:
        d["freeu_start"] = replace(d["freeu_start"], high=hi_end - 1)
    return space


def load_space(spec: str | Path | dict, table, steps: int, guidance: float = 7.5) -> Space:
    """A named space ("default", "full"), a JSON file path, or a dict of overrides (see the module docstring)."""
    if isinstance(spec, dict):
        doc, where = dict(spec), "space"
    elif str(spec) in SPACES:
        return _check(default_space(table, steps, guidance, str(spec)))
    else:
        path = Path(spec)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"--space {str(spec)!r}: no such file (or use one of {list(SPACES)})") from None
        except OSError as e:
            raise ValueError(f"--space {str(spec)!r}: cannot read it ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"--space {str(spec)!r} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"--space {str(spec)!r} must hold a JSON object of parameter: range")
        where = f"space file {str(spec)!r}"
    base = doc.pop("base", "default")
    if base not in SPACES:
        raise ValueError(f"{where}: unknown base {base!r}; use one of {list(SPACES)}")
    unknown = sorted(set(doc) - set(PARAMS))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown}; valid parameters are {list(PARAMS)} "
                         "(and 'base')")
    space = default_space(table, steps, guidance, base)
    dims = dict(space.dims)
    for name, value in doc.items():
        try:
            dims[name] = _dim_from_json(name, value, dims[name])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    try:
        return _check(Space(dims, steps, space.sigma_min, space.sigma_max, base, {"base": base, **doc}))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


# ---- define-by-run -----------------------------------------------------------------------------------
def _suggest(trial, name: str, dim: Dim, low=None, high=None):
    if dim.fixed is not None:
        return dim.fixed
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    lo = dim.low if low is None else max(dim.low, low)
    hi = dim.high if high is None else min(dim.high, high)
    if name in INTEGER:
        return trial.suggest_int(name, int(lo), int(hi))
    return trial.suggest_float(name, lo, hi, log=dim.log)


def acting(final: str, steps: int) -> tuple[bool, int]:
    """(does the spacing/ρ act, highest order that acts) for a grid of `steps` steps with this ending.

    A grid of 2 points (1 residual step; ≤ 2 zero-ending steps, whose last point is 0) has no interior point, so
    spacing and ρ change nothing. Order k needs k−1 earlier steps and σ_{i+1} > 0 (a jump to 0 is first order).
    """
    points = steps + 1 if final == "residual" else steps
    return points >= 3, max(1, min(3, steps if final == "residual" else steps - 1))


def suggest_config(trial, steps: int, space: Space) -> SamplerConfig:
    """Ask `trial` for one point of `space` (only the parameters that act on this point) → SamplerConfig."""
    if steps != space.steps:
        raise ValueError(f"the space was built for {space.steps} steps, not {steps}")
    d = space.dims
    final = _suggest(trial, "final", d["final"])
    epsilon = sigma_min = None
    if final == "residual":
        epsilon = _suggest(trial, "epsilon", d["epsilon"])
    elif steps > 1:  # one zero-ending step jumps from σ_max straight to 0
        sigma_min = _suggest(trial, "sigma_min", d["sigma_min"])
        if sigma_min == space.sigma_min:  # the low end is the model's own σ_min: the classic grid, stored as None
            sigma_min = None
    shaped, max_order = acting(final, steps)
    spacing, rho = "time", 1.2
    if shaped:
        spacing = _suggest(trial, "spacing", d["spacing"])
        rho = _suggest(trial, "rho_time", d["rho_time"]) if spacing == "time" else \
            _suggest(trial, "rho_karras", d["rho_karras"])
    order = _suggest(trial, "order", d["order"], high=max_order) if max_order > 1 else 1
    freeu: tuple[FreeUWindow, ...] = ()
    mapping = d["freeu_mapping"].fixed if d["freeu_mapping"].fixed is not None else "reference"
    if _suggest(trial, "freeu", d["freeu"]) == "on":
        start = _suggest(trial, "freeu_start", d["freeu_start"])
        end = _suggest(trial, "freeu_end", d["freeu_end"], low=start + 1)
        factors = {f.removeprefix("freeu_"): float(_suggest(trial, f, d[f])) for f in FACTORS}
        freeu = (FreeUWindow(int(start), int(end), **factors),)
        mapping = _suggest(trial, "freeu_mapping", d["freeu_mapping"])
    guidance = _suggest(trial, "guidance", d["guidance"])
    return SamplerConfig(steps=steps, spacing=spacing, rho=float(rho), final=final,
                         epsilon=None if epsilon is None else float(epsilon),
                         sigma_min=None if sigma_min is None else float(sigma_min), order=int(order), freeu=freeu,
                         freeu_mapping=mapping, guidance=float(guidance))


def baseline_params(config: SamplerConfig, space: Space) -> dict[str, Any]:
    """The trial parameters under which `suggest_config` returns `config` (for `study.enqueue_trial`).

    Raises NotInSpace, naming the parameter, when the space cannot express the config (e.g. a value outside a
    range, or the SDXL 6-step setting's two FreeU windows); such a baseline is run as a fixed config instead.
    """
    if config.steps != space.steps:
        raise NotInSpace(f"config has {config.steps} steps, the space {space.steps}")
    values: dict[str, Any] = {"final": config.final}
    shaped, max_order = acting(config.final, config.steps)
    if config.final == "residual":
        values["epsilon"] = config.epsilon
    elif config.steps > 1:
        values["sigma_min"] = space.sigma_min if config.sigma_min is None else config.sigma_min
    if shaped:
        values.update({"spacing": config.spacing, "rho_time" if config.spacing == "time" else "rho_karras": config.rho})
    if max_order > 1:
        values["order"] = min(config.order, max_order)  # higher orders act like max_order here
    if len(config.freeu) > 1:
        raise NotInSpace(f"the space has one FreeU window; this config has {len(config.freeu)}")
    values["freeu"] = "on" if config.freeu else "off"
    if config.freeu:
        w = config.freeu[0]
        values.update(freeu_start=w.start, freeu_end=w.end, freeu_b1=w.b1, freeu_b2=w.b2, freeu_s1=w.s1,
                      freeu_s2=w.s2, freeu_mapping=config.freeu_mapping)
    values["guidance"] = config.guidance
    params = {}
    for name, v in values.items():
        dim = space.dims[name]
        if not dim.contains(v):
            raise NotInSpace(f"{name}={v!r} is outside the space ({dim.describe()})")
        if dim.searched:
            params[name] = v
    return params
