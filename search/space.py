"""The search space: define-by-run, every dimension acts, the paper's settings lie inside it.

Each dimension is defined once, in `search.dimensions.DIMENSIONS` (its range, the condition under which it acts,
its paper symbol, what it means, its valid bounds, how it maps to and from a `hpyn.config.SamplerConfig`); the
suggest code (`suggest_config`), the checks of space files (`load_space`), this table and the baseline mapping
(`baseline_params`) are all driven by it. Parameters (names as in the study and the dashboard; "acts when" = the
condition under which the trial is asked for it; ranges of the default space):

{DIMENSIONS}

Very short grids: a parameter is only asked for where it acts: spacing and ρ need an interior grid point (not
with 1 residual step or ≤ 2 zero-ending steps), order k needs k−1 earlier steps that do not jump to 0 (order ≤
steps with a residual ending, ≤ steps − 1 with a zero ending), σ_min needs ≥ 2 zero-ending steps.

Baselines: every published paper setting (hpyn/presets/paper/) but SDXL 6-step (two FreeU windows: run as a fixed
config) and classic DPM++2M-Karras are points of the default space (`baseline_params`).

A space file (JSON) overrides entries of a named base space ("default" or "full"):

    {{"base": "default", "rho_time": [0.8, 2.0], "order": [1, 2], "spacing": "time", "guidance": [3.0, 9.0]}}

A two-number list is a range (numbers) or the choices (names); a list of names is the choices; a single value fixes
the parameter (it is then not an Optuna parameter, but it is part of every trial's config). A third entry "log"
samples a range log-uniformly. Unknown names, and values outside a dimension's valid bounds, are errors that name
them.

Adding a dimension: one `Param(...)` entry in search/dimensions.py (plus the SamplerConfig field it drives, in hpyn).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpyn.config import FreeUWindow, SamplerConfig
from search.dimensions import (
    BY_NAME,
    DIMENSIONS,
    PARAMS,
    Ctx,
    Dim,
    Param,
    Range,
    Values,
    acting,
    docs_table,
    value_of,
)

__all__ = [
    "PARAMS",
    "SPACES",
    "Dim",
    "NotInSpace",
    "Space",
    "acting",
    "baseline_params",
    "default_space",
    "docs_table",
    "load_space",
    "suggest_config",
]

SPACES = ("default", "full")

__doc__ = __doc__.format(DIMENSIONS=docs_table())


class NotInSpace(ValueError):
    """A config that the space cannot express (a value outside a range, or two FreeU windows)."""


# ---- concrete spaces -------------------------------------------------------------------------------------
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


def _ctx(table, steps: int, guidance: float) -> Ctx:
    return Ctx(float(table.sigma_min), float(table.sigma_max), steps, float(guidance))


def default_space(table, steps: int, guidance: float = 7.5, name: str = "default") -> Space:
    """A named space ("default" or "full") on a model's noise table (ranges: the module docstring's table)."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; use one of {list(SPACES)} or a JSON file")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    ctx = _ctx(table, steps, guidance)
    dims = {p.name: (p.full if name == "full" and p.full is not None else p.default).at(ctx, p.kind)
            for p in DIMENSIONS}
    return Space(dims, steps, ctx.sigma_min, ctx.sigma_max, name, {"base": name})


def _dim_from_json(p: Param, value) -> Dim:
    name = p.name
    bad = ValueError(f"space parameter {name!r}: cannot use {value!r} (give a value, a [low, high] range"
                     f"{' or a list of choices' if p.kind == 'choice' else ''})")
    if isinstance(value, list):
        if p.kind == "choice":
            if not value or any(v not in p.choices for v in value):
                raise ValueError(f"space parameter {name!r}: choices {value!r} must be a non-empty subset of "
                                 f"{list(p.choices)}")
            return Dim(fixed=value[0]) if len(value) == 1 else Dim(choices=tuple(value))
        log = len(value) == 3 and value[2] == "log"
        if len(value) not in (2, 3) or (len(value) == 3 and not log) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
            raise bad
        lo, hi = value[:2]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"space parameter {name!r}: range [{lo}, {hi}] is empty or not finite")
        if p.kind == "int":
            if int(lo) != lo or int(hi) != hi:
                raise ValueError(f"space parameter {name!r} is an integer; got range [{lo}, {hi}]")
            lo, hi = int(lo), int(hi)
        else:
            lo, hi = float(lo), float(hi)
        if lo == hi:
            return Dim(fixed=lo)
        default_log = isinstance(p.default, Range) and p.default.log
        return Dim(low=lo, high=hi, log=log or (default_log and lo > 0))
    if isinstance(value, (dict, type(None))):
        raise bad
    if p.kind == "choice":
        if value not in p.choices:
            raise ValueError(f"space parameter {name!r}: {value!r} is not one of {list(p.choices)}")
        return Dim(fixed=value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    if not math.isfinite(value):
        raise ValueError(f"space parameter {name!r}: {value!r} is not finite")
    return Dim(fixed=int(value) if p.kind == "int" else float(value))


def _check(space: Space, guidance: float) -> Space:
    """Each dimension within its valid bounds (they need the model and the step count); errors name the value."""
    d, n = space.dims, space.steps
    ctx = Ctx(space.sigma_min, space.sigma_max, n, guidance)
    for p in DIMENSIONS:
        if not p.valid:
            continue
        lo, hi, lo_open, hi_open = value_of(p.valid[0], ctx), value_of(p.valid[1], ctx), p.valid[2], p.valid[3]
        dim = d[p.name]
        for v in ([dim.fixed] if dim.fixed is not None else [dim.low, dim.high]):
            if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
                raise ValueError(f"space parameter {p.name!r}: {v!r} lies outside "
                                 f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'} "
                                 f"for this model and {n} steps")
    start, end = d["freeu_start"], d["freeu_end"]
    lo_start = start.fixed if start.fixed is not None else start.low
    hi_start = start.fixed if start.fixed is not None else start.high
    hi_end = end.fixed if end.fixed is not None else end.high
    if "on" in (d["freeu"].choices or (d["freeu"].fixed,)) and lo_start >= hi_end:
        raise ValueError(f"space: freeu_start ≥ {lo_start} and freeu_end ≤ {hi_end} leave no FreeU window")
    if hi_start >= hi_end and start.fixed is None:
        d["freeu_start"] = replace(start, high=hi_end - 1)
    return space


def load_space(spec: str | Path | dict, table, steps: int, guidance: float = 7.5) -> Space:
    """A named space ("default", "full"), a JSON file path, or a dict of overrides (see the module docstring)."""
    if isinstance(spec, dict):
        doc, where = dict(spec), "space"
    elif str(spec) in SPACES:
        return _check(default_space(table, steps, guidance, str(spec)), guidance)
    else:
        path = Path(spec)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"--space {str(spec)!r}: no such file (or use one of {list(SPACES)})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--space {str(spec)!r}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"--space {str(spec)!r} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            # a ValueError like every other bad space file (callers report ValueErrors as bad input)
            raise ValueError(f"--space {str(spec)!r} must hold a JSON object of parameter: range")  # noqa: TRY004
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
            dims[name] = _dim_from_json(BY_NAME[name], value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    try:
        return _check(Space(dims, steps, space.sigma_min, space.sigma_max, base, {"base": base, **doc}), guidance)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


# ---- define-by-run ---------------------------------------------------------------------------------------
def _suggest(trial, p: Param, dim: Dim, low=None, high=None):
    if dim.fixed is not None:
        return dim.fixed
    if dim.choices is not None:
        return trial.suggest_categorical(p.name, list(dim.choices))
    lo = dim.low if low is None else max(dim.low, low)
    hi = dim.high if high is None else min(dim.high, high)
    if p.kind == "int":
        return trial.suggest_int(p.name, int(lo), int(hi))
    return trial.suggest_float(p.name, lo, hi, log=dim.log)


def _config(values: Values, space: Space) -> SamplerConfig:
    mapping = space["freeu_mapping"].fixed
    kw: dict[str, Any] = {"steps": space.steps, "freeu_mapping": "reference" if mapping is None else mapping}
    for name, v in values.items():
        BY_NAME[name].put(kw, v, space)
    if kw.get("sigma_min") is not None and kw["sigma_min"] == space.sigma_min:
        kw["sigma_min"] = None   # the low end is the model's own σ_min: the classic grid
    elif kw.get("sigma_min") is not None:
        kw["sigma_min"] = float(kw["sigma_min"])
    window = kw.pop("_freeu", None)
    kw["freeu"] = (FreeUWindow(**window),) if window else ()
    return SamplerConfig(**kw)


def suggest_config(trial, steps: int, space: Space) -> SamplerConfig:
    """Ask `trial` for one point of `space` (only the parameters that act on this point) → SamplerConfig."""
    if steps != space.steps:
        raise ValueError(f"the space was built for {space.steps} steps, not {steps}")
    values: Values = {}
    for p in DIMENSIONS:
        if p.acts(values, steps):
            values[p.name] = _suggest(trial, p, space[p.name], *p.limits(values, steps))
    return _config(values, space)


def baseline_params(config: SamplerConfig, space: Space) -> dict[str, Any]:
    """The trial parameters under which `suggest_config` returns `config` (for `study.enqueue_trial`).

    Raises NotInSpace, naming the parameter, when the space cannot express the config (e.g. a value outside a
    range, or the SDXL 6-step setting's two FreeU windows); such a baseline is run as a fixed config instead.
    """
    if config.steps != space.steps:
        raise NotInSpace(f"config has {config.steps} steps, the space {space.steps}")
    if len(config.freeu) > 1:
        raise NotInSpace(f"the space has one FreeU window; this config has {len(config.freeu)}")
    values: Values = {}
    for p in DIMENSIONS:
        if p.acts(values, config.steps):
            values[p.name] = p.get(config, space)
    params = {}
    for name, v in values.items():
        dim = space[name]
        if not dim.contains(v):
            raise NotInSpace(f"{name}={v!r} is outside the space ({dim.describe()})")
        if dim.searched:
            params[name] = v
    return params
