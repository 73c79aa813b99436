"""The search dimensions, each defined once: `DIMENSIONS`.

A `Param` holds everything about one dimension: its kind, the condition under which it acts (`acts`, and the
text `where`), its range in the default and the full space (`Range`/`Fixed`/`Choices`, whose bounds may depend on
the model's σ range and the step count: `Sym`), its paper symbol and meaning, the bounds a space file must keep
to (`valid`), the per-trial narrowing of its range (`limits`), and how it maps to a `SamplerConfig` (`put`) and
back (`get`). search.space drives the suggest code, the space-file checks and the baseline mapping from it, and
`docs_table()` is the table in search.space's docstring and `python -m search.run --help`.

Adding a dimension: one `Param(...)` entry below, in the position where a trial should ask for it (the order of
the entries is the order of Optuna's draws: moving one changes every study's trials), plus the SamplerConfig
field it drives (hpyn.config) if it is new.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpyn.config import FREEU_MAPPINGS, SamplerConfig
from hpyn.solvers import dpmpp_name

__all__ = [
    "BY_NAME",
    "DIMENSIONS",
    "MAX_ORDER",
    "PARAMS",
    "Choices",
    "Ctx",
    "Dim",
    "Fixed",
    "Param",
    "Range",
    "Sym",
    "Values",
    "acting",
    "docs_table",
    "value_of",
]

MAX_ORDER = 3   # DPM-Solver++ 1S / 2M / 3M (hpyn.solvers.dpmpp_name(1..3))
SOLVER_FAMILIES = {"dpmpp": None, "unipc": "unipc_bh2"}   # family → solver (DPM-Solver++: by `order`)


def acting(final: str, steps: int) -> tuple[bool, int]:
    """(does the spacing/ρ act, highest order that acts) for a grid of `steps` steps with this ending.

    A grid of 2 points (1 residual step; ≤ 2 zero-ending steps, whose last point is 0) has no interior point, so
    spacing and ρ change nothing. Order k needs k−1 earlier steps and σ_{i+1} > 0 (a jump to 0 is first order).
    """
    points = steps + 1 if final == "residual" else steps
    return points >= 3, max(1, min(MAX_ORDER, steps if final == "residual" else steps - 1))


# ---- ranges that depend on the model and the step count --------------------------------------------------
@dataclass(frozen=True)
class Ctx:
    """What a range or a bound may depend on."""

    sigma_min: float    # the model's σ_min and σ_max
    sigma_max: float
    steps: int
    guidance: float     # --guidance


@dataclass(frozen=True)
class Sym:
    """A bound that depends on the context, with the text the docs show for it."""

    text: str
    at: Callable[[Ctx], float]


def value_of(b, ctx: Ctx):
    """A bound's value in a context (a number, or a `Sym` evaluated)."""
    return b.at(ctx) if isinstance(b, Sym) else b


def _text(b) -> str:
    return b.text if isinstance(b, Sym) else f"{b:g}" if isinstance(b, (int, float)) else str(b)


@dataclass(frozen=True)
class Dim:
    """One concrete dimension: a fixed value, or choices, or a [low, high] range (log-uniform if `log`)."""

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
class Range:
    """A default range [low, high]; `single_fixed`: a range of one value is a fixed value, not a parameter."""

    low: Any
    high: Any
    log: bool = False
    single_fixed: bool = False

    def at(self, ctx: Ctx, kind: str) -> Dim:
        lo, hi = value_of(self.low, ctx), value_of(self.high, ctx)
        if kind == "int":
            lo, hi = int(lo), int(hi)
        if self.single_fixed and lo == hi:
            return Dim(fixed=lo)
        return Dim(low=lo, high=hi, log=self.log)

    @property
    def text(self) -> str:
        return f"[{_text(self.low)}, {_text(self.high)}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class Fixed:
    value: Any

    def at(self, ctx: Ctx, kind: str) -> Dim:
        v = value_of(self.value, ctx)
        return Dim(fixed=float(v) if kind == "float" else v)

    @property
    def text(self) -> str:
        return f"fixed {_text(self.value)}"


@dataclass(frozen=True)
class Choices:
    values: tuple

    def at(self, ctx: Ctx, kind: str) -> Dim:
        return Dim(choices=tuple(self.values))

    @property
    def text(self) -> str:
        return " | ".join(self.values)


# ---- the dimensions --------------------------------------------------------------------------------------
Values = dict   # the values asked (or fixed) so far in a trial, by parameter name


@dataclass(frozen=True)
class Param:
    """One search dimension, defined once (see the module docstring)."""

    name: str
    kind: str                                   # "choice" | "int" | "float"
    where: str                                  # when it acts (docs)
    acts: Callable[[Values, int], bool]         # (values so far, steps) → is it asked for
    default: Any                                # Range | Fixed | Choices in the "default" space
    symbol: str                                 # paper symbol (spec B.4)
    meaning: str
    valid: tuple = ()                           # (low, high, low_open, high_open) a space file must keep to
    choices: tuple = ()                         # every valid choice of a "choice" dimension
    full: Any = None                            # its range in the "full" space (None: as in "default")
    limits: Callable[[Values, int], tuple] = lambda v, n: (None, None)   # per-trial narrowing (low, high)
    put: Callable[[dict, Any, Any], None] = None       # value → SamplerConfig keyword(s)
    get: Callable[[SamplerConfig, Any], Any] = None    # SamplerConfig → value (baselines)


def _kw(key, conv=lambda v: v):
    def put(kw, v, space):
        kw[key] = conv(v)
    return put


def _window(key, conv):
    def put(kw, v, space):
        kw["_freeu"][key] = conv(v)
    return put


def _on(v: Values, n: int) -> bool:
    return v.get("freeu") == "on"


def _shaped(v: Values, n: int) -> bool:
    return acting(v["final"], n)[0]


def _multistep(v: Values, n: int) -> bool:
    # a step after the first that does not jump to 0: where a multistep solver (or UniPC's corrector) differs from 1S
    return acting(v["final"], n)[1] > 1


def _dpmpp(v: Values, n: int) -> bool:
    return _multistep(v, n) and v.get("solver_family", "dpmpp") == "dpmpp"


def _gi_on(v: Values, n: int) -> bool:
    return v.get("cfg_interval") == "on"


def _put_gi_lo(kw, v, space):
    # asked after cfg_sigma_hi (whose put left it in kw["_gi_hi"]): the pair is the config's guidance_interval
    kw["guidance_interval"] = (float(v), float(kw.pop("_gi_hi")))


_SIGMA_MIN = Sym("model σ_min", lambda c: c.sigma_min)
_SIGMA_MAX = Sym("model σ_max", lambda c: c.sigma_max)
_FREEU = {"b1": 1.1, "b2": 1.1, "s1": 0.9, "s2": 0.2}   # the paper's FreeU factors (spec D.3)


def _factor(key: str, backbone: bool) -> Param:
    return Param(f"freeu_{key}", "float", "freeu = on", _on, Fixed(_FREEU[key]), key,
                 ("FreeU backbone" if backbone else "FreeU skip") + f" factor {key} (paper {_FREEU[key]})",
                 valid=(0.0, 10.0, False, False), full=Range(1.0, 1.6) if backbone else Range(0.1, 1.0),
                 put=_window(key, float), get=lambda c, s, k=key: getattr(c.freeu[0], k))


# In the order a trial asks for them (the order of Optuna's draws: changing it changes every study's trials).
DIMENSIONS: tuple[Param, ...] = (
    Param("final", "choice", "always", lambda v, n: True, Choices(("residual", "zero")), "Eq. 18/19",
          "residual: stop at σ_n = ε and decode the latent (the paper); zero: σ_min then 0 (classic)",
          choices=("residual", "zero"), put=_kw("final"), get=lambda c, s: c.final),
    Param("epsilon", "float", "final = residual", lambda v, n: v["final"] == "residual",
          Range(Sym("max(0.03, model σ_min)", lambda c: max(0.03, c.sigma_min)),
                Sym("min(1, model σ_max)", lambda c: min(1.0, c.sigma_max)), log=True), "ε = σ_end",
          "the decode level. The paper's N_out, ρ_out, k (and its σ_min) act only through ε (spec B.1), so they "
          "are not searched: ε is. Paper 0.132",
          valid=(_SIGMA_MIN, _SIGMA_MAX, False, True), put=_kw("epsilon", float), get=lambda c, s: c.epsilon),
    Param("sigma_min", "float", "final = zero, steps ≥ 2", lambda v, n: v["final"] == "zero" and n > 1,
          Range(_SIGMA_MIN, Sym("min(1, model σ_max)", lambda c: min(1.0, c.sigma_max)), log=True), "σ_min",
          "last non-zero σ before the jump to 0; the low end is the model's σ_min (the classic grid)",
          valid=(0.0, _SIGMA_MAX, True, True),
          # the low end is the model's own σ_min: the classic grid, stored as None in the config
          put=_kw("sigma_min", lambda v: v), get=lambda c, s: s.sigma_min if c.sigma_min is None else c.sigma_min),
    Param("spacing", "choice", "the grid has an interior point", _shaped, Choices(("time", "karras")),
          "Eq. 16/18 | Eq. 15", "power law in DDPM-timestep space (time, the paper) or in σ space (karras)",
          choices=("time", "karras"), put=_kw("spacing"), get=lambda c, s: c.spacing),
    Param("rho_time", "float", "spacing = time", lambda v, n: _shaped(v, n) and v["spacing"] == "time",
          Range(0.5, 3.0), "ρ_t", "1 = uniform in t, > 1 denser at low noise; paper 1.2",
          valid=(0.1, 20.0, False, False), put=_kw("rho", float), get=lambda c, s: c.rho),
    Param("rho_karras", "float", "spacing = karras", lambda v, n: _shaped(v, n) and v["spacing"] == "karras",
          Range(1.0, 10.0), "ρ (Karras)", "Karras ρ; classic 7",
          valid=(0.1, 50.0, False, False), put=_kw("rho", float), get=lambda c, s: c.rho),
    Param("solver_family", "choice", "an earlier step that does not jump to 0", _multistep, Fixed("dpmpp"), "",
          "dpmpp: DPM-Solver++ of order k (below); unipc: UniPC-bh2, predictor order 2 with the corrector UniC "
          "(solver unipc_bh2)", choices=tuple(SOLVER_FAMILIES), full=Choices(tuple(SOLVER_FAMILIES)),
          put=lambda kw, v, s: kw.update(solver=SOLVER_FAMILIES[v]) if SOLVER_FAMILIES[v] else None,
          get=lambda c, s: next((f for f, name in SOLVER_FAMILIES.items() if name == c.solver), "dpmpp")),
    Param("order", "int", "solver_family = dpmpp", _dpmpp,
          Range(1, Sym("min(3, steps)", lambda c: min(MAX_ORDER, c.steps)), single_fixed=True), "k",
          "DPM-Solver++ 1S (DDIM) / 2M / 3M (solver dpmpp_1s / dpmpp_2m / dpmpp_3m)",
          valid=(1, Sym("min(3, steps)", lambda c: min(MAX_ORDER, c.steps)), False, False),
          limits=lambda v, n: (None, acting(v["final"], n)[1]),
          put=_kw("solver", lambda v: dpmpp_name(int(v))),
          get=lambda c, s: min(c.order, acting(c.final, c.steps)[1])),   # higher orders act like the highest here
    Param("freeu", "choice", "always", lambda v, n: True, Choices(("off", "on")), "FreeU",
          "FreeU on a window of solver steps", choices=("off", "on"),
          put=lambda kw, v, s: kw.update(_freeu={} if v == "on" else None),
          get=lambda c, s: "on" if c.freeu else "off"),
    Param("freeu_start", "int", "freeu = on", _on, Range(0, Sym("steps-1", lambda c: c.steps - 1)), "",
          "first step with FreeU (0-based)", valid=(0, Sym("steps-1", lambda c: c.steps - 1), False, False),
          put=_window("start", int), get=lambda c, s: c.freeu[0].start),
    Param("freeu_end", "int", "freeu = on", _on, Range(1, Sym("steps", lambda c: c.steps)), "",
          "the window is [freeu_start, freeu_end)", valid=(1, Sym("steps", lambda c: c.steps), False, False),
          limits=lambda v, n: (v["freeu_start"] + 1, None), put=_window("end", int), get=lambda c, s: c.freeu[0].end),
    _factor("b1", True), _factor("b2", True), _factor("s1", False), _factor("s2", False),
    Param("freeu_mapping", "choice", "freeu = on", _on, Fixed("reference"), "",
          "reference: the paper's channel-keyed mapping (spec D.2); diffusers: diffusers' block mapping",
          choices=FREEU_MAPPINGS, put=_kw("freeu_mapping"), get=lambda c, s: c.freeu_mapping),
    Param("guidance", "float", "always", lambda v, n: True, Fixed(Sym("--guidance", lambda c: c.guidance)), "w",
          "CFG scale; give a range in a space file to search it", valid=(0.0, 100.0, False, False),
          put=_kw("guidance", float), get=lambda c, s: c.guidance),
    Param("cfg_interval", "choice", "guidance ≠ 1", lambda v, n: v["guidance"] != 1, Fixed("off"), "",
          "on: guidance only for σ_lo < σ ≤ σ_hi, the conditional prediction alone (one U-Net batch, not two) "
          "elsewhere (Kynkäänniemi et al. 2024); off: every step (the paper)", choices=("off", "on"),
          full=Choices(("off", "on")), put=lambda kw, v, s: None,
          get=lambda c, s: "off" if c.guidance_interval is None else "on"),
    Param("cfg_sigma_hi", "float", "cfg_interval = on", _gi_on,
          Range(Sym("min(0.5, model σ_max)", lambda c: min(0.5, c.sigma_max)), _SIGMA_MAX, log=True), "σ_hi",
          "upper end of the guidance interval; model σ_max = no upper cut", valid=(0.0, _SIGMA_MAX, True, False),
          put=_kw("_gi_hi", float), get=lambda c, s: c.guidance_interval[1]),
    Param("cfg_sigma_lo", "float", "cfg_interval = on", _gi_on,
          Range(Sym("model σ_min/2", lambda c: c.sigma_min / 2), Sym("min(2, model σ_max/4)",
                                                                    lambda c: min(2.0, c.sigma_max / 4)), log=True),
          "σ_lo", "lower end (open) of the guidance interval, below σ_hi; under model σ_min = no lower cut",
          valid=(0.0, _SIGMA_MAX, False, True), limits=lambda v, n: (None, v["cfg_sigma_hi"] / 1.01),
          put=_put_gi_lo, get=lambda c, s: c.guidance_interval[0]),
)
BY_NAME = {p.name: p for p in DIMENSIONS}
PARAMS = tuple(BY_NAME)


def docs_table(width: int = 112) -> str:
    """The table of dimensions in the module docstring and `search.run --help`."""
    rows = [f"  {'name':15s}{'acts when':42s}default range", f"  {'':15s}(paper symbol) meaning. Valid bounds"]
    for p in DIMENSIONS:
        rng = p.default.text + (f"; full space: {p.full.text}" if p.full is not None else "")
        rows.append(f"  {p.name:15s}{p.where:42s}{rng}")
        meaning = (f"({p.symbol}) " if p.symbol else "") + p.meaning
        if p.valid:
            lo, hi, lo_open, hi_open = p.valid
            meaning += f". Space files: within {'(' if lo_open else '['}{_text(lo)}, {_text(hi)}{')' if hi_open else ']'}"
        rows += [" " * 17 + line for line in textwrap.wrap(meaning, width - 17)]
    return "\n".join(rows)
