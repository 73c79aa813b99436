"""SamplerConfig: one point of the search space, frozen, validated, JSON round-trip.

Mapping to the paper's symbols (spec B.4):
  steps    n (U-Net calls with CFG batched; the grid has n+1 points)
  spacing  "time" = Eq. 16/18 power law in timestep space; "karras" = Eq. 15 power law in σ space; or a published
           grid that ends in 0 by its own rule (final "zero", no sigma_min, ρ unused): "ays_sd15", "ays_sdxl" (Align
           Your Steps), "beta" (Beta sampling); see hpyn.schedules
  rho      ρ_t of Eq. 16/18 for "time" (paper: 1.2), ρ of Eq. 15 for "karras" (classic: 7)
  final    "residual": stop at σ_n = epsilon and decode (Eq. 18/19); "zero": σ_min then 0 (classic)
  epsilon  σ_end = σ^K_k(N_out, ρ_out, σ_min, σ_max): the paper's N_out, ρ_out, k act only through it
  sigma_min  last non-zero σ of a "zero" grid (None: the model's σ_min); has no effect on "residual" grids
  solver   a name in hpyn.solvers.SOLVERS: 'dpmpp_1s' (DPM-Solver++1S = DDIM), 'dpmpp_2m', 'dpmpp_3m', 'unipc_bh2'
  freeu    windows [start, end) of 0-based step indices with FreeU (b1, b2, s1, s2); () = off
  guidance_interval  (σ_lo, σ_hi): classifier-free guidance only where σ_lo < σ ≤ σ_hi (Kynkäänniemi et al. 2024),
           elsewhere the conditional prediction alone (one U-Net batch, not two); None = guidance on every step
  offsets  a "refined" grid (search.refine): steps−1 log-σ offsets o_i of the interior points, σ_i ← σ_i·exp(o_i)
           for i = 1..n−1 after the grid is built (σ_0 = σ_max and the last point stay); the result must still be
           strictly decreasing (`sigmas` checks it on the model's table). None = the grid as built

JSON schema (SCHEMA_VERSION): 1 named the solver by its integer `order` (1/2/3 = DPM-Solver++ 1S/2M/3M);
2 names it (`solver`). `from_dict` converts a version-1 `order` on read. The optional keys `guidance_interval` and
`offsets` are written only when set, so a config without them reads and writes as before (an hpyn without them
refuses a config that has them, naming the unknown key). The published presets are package data
in `hpyn.presets`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hpyn.noise import NoiseTable
from hpyn.schedules import FINALS, SPACING_NAMES, ZERO_ENDED, build
from hpyn.solvers import dpmpp_name, get_solver

__all__ = ["FreeUWindow", "SamplerConfig", "FREEU_MAPPINGS", "MAX_STEPS", "SCHEMA_VERSION", "config_from_document"]

FREEU_MAPPINGS = ("reference", "diffusers")
SCHEMA_VERSION = 2  # of configs and of documents holding one under "config" (exports); 1 had `order`
MAX_STEPS = 1000    # the training grid has 1000 timesteps: more solver steps than that is a typo, not a sampler


def _check_keys(d: dict, cls, what: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; valid keys are {valid}")


def _finite(name: str, value, *, positive: bool = False, nonneg: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")


@dataclass(frozen=True)
class FreeUWindow:
    """FreeU (Si et al. 2024) on solver steps start ≤ i < end with backbone factors b and skip factors s."""

    start: int
    end: int
    b1: float = 1.1
    b2: float = 1.1
    s1: float = 0.9
    s2: float = 0.2

    def __post_init__(self):
        for name in ("start", "end"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"FreeU window {name} must be an int, got {v!r}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"FreeU window [{self.start}, {self.end}) is empty or negative")
        for name in ("b1", "b2", "s1", "s2"):
            _finite(f"FreeU {name}", getattr(self, name), nonneg=True)

    @property
    def factors(self) -> tuple[float, float, float, float]:
        return (self.b1, self.b2, self.s1, self.s2)


@dataclass(frozen=True)
class SamplerConfig:
    steps: int
    spacing: str = "time"
    rho: float = 1.2
    final: str = "residual"
    epsilon: float | None = None
    sigma_min: float | None = None
    solver: str = "dpmpp_1s"
    freeu: tuple[FreeUWindow, ...] = field(default_factory=tuple)
    freeu_mapping: str = "reference"
    guidance: float = 7.5
    guidance_interval: tuple[float, float] | None = None
    offsets: tuple[float, ...] | None = None

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        if self.spacing not in SPACING_NAMES:
            raise ValueError(f"unknown spacing {self.spacing!r}; choose one of {sorted(SPACING_NAMES)}")
        _finite("rho", self.rho, positive=True)
        if self.final not in FINALS:
            raise ValueError(f"unknown final {self.final!r}; choose one of {list(FINALS)}")
        if self.spacing in ZERO_ENDED and self.final != "zero":
            raise ValueError(f"spacing {self.spacing!r} is a published grid ending in 0: it needs final='zero', "
                             f"got final={self.final!r}")
        if self.final == "residual":
            if self.epsilon is None:
                raise ValueError("final='residual' needs epsilon (the σ at which the latent is decoded)")
            _finite("epsilon", self.epsilon, positive=True)
            if self.sigma_min is not None:
                raise ValueError(f"sigma_min={self.sigma_min!r} has no effect with final='residual' (the grid "
                                 "ends at epsilon); leave it unset")
        else:
            if self.epsilon is not None:
                raise ValueError(f"epsilon={self.epsilon!r} has no effect with final='zero'; use sigma_min")
            if self.sigma_min is not None:
                _finite("sigma_min", self.sigma_min, positive=True)
                if self.spacing in ZERO_ENDED:
                    raise ValueError(f"sigma_min={self.sigma_min!r} has no effect with spacing {self.spacing!r} "
                                     "(its last σ's are part of the published grid); leave it unset")
        get_solver(self.solver)  # ValueError listing the solvers that exist
        windows = tuple(w if isinstance(w, FreeUWindow) else FreeUWindow(**w) for w in self.freeu)
        object.__setattr__(self, "freeu", windows)
        for w in windows:
            if w.end > self.steps:
                raise ValueError(f"FreeU window [{w.start}, {w.end}) lies outside the steps [0, {self.steps})")
        for a, b in zip(sorted(windows, key=lambda w: w.start), sorted(windows, key=lambda w: w.start)[1:]):
            if b.start < a.end:
                raise ValueError(f"FreeU windows [{a.start}, {a.end}) and [{b.start}, {b.end}) overlap")
        if self.freeu_mapping not in FREEU_MAPPINGS:
            raise ValueError(f"unknown freeu_mapping {self.freeu_mapping!r}; choose one of {list(FREEU_MAPPINGS)}")
        _finite("guidance", self.guidance, nonneg=True)
        if self.guidance_interval is not None:
            gi = self.guidance_interval
            if isinstance(gi, (str, bytes)) or not hasattr(gi, "__len__") or len(gi) != 2:
                raise ValueError(f"guidance_interval must be (σ_lo, σ_hi) or None, got {gi!r}")
            _finite("guidance_interval σ_lo", gi[0], nonneg=True)
            _finite("guidance_interval σ_hi", gi[1], positive=True)
            if not gi[0] < gi[1]:
                raise ValueError(f"guidance_interval (σ_lo, σ_hi) needs σ_lo < σ_hi, got {tuple(gi)!r}")
            object.__setattr__(self, "guidance_interval", (float(gi[0]), float(gi[1])))
        if self.offsets is not None:
            off = self.offsets
            if isinstance(off, (str, bytes)) or not hasattr(off, "__len__"):
                raise ValueError(f"offsets must be a list of {self.steps - 1} log-σ offsets or None, got {off!r}")
            if len(off) != self.steps - 1:
                raise ValueError(f"offsets must have steps−1 = {self.steps - 1} values (one log-σ offset per interior "
                                 f"grid point σ_1..σ_{self.steps - 1}), got {len(off)}: {list(off)!r}")
            for i, v in enumerate(off, 1):
                _finite(f"offsets[σ_{i}]", v)
            object.__setattr__(self, "offsets", tuple(float(v) for v in off))

    @property
    def order(self) -> int:
        """The order the named solver's multistep update reaches (1S: 1, 2M: 2, 3M: 3)."""
        return get_solver(self.solver).order

    # ---- model-dependent checks and the grid -------------------------------------------------------
    def validate(self, table: NoiseTable) -> SamplerConfig:
        """Checks that need the model's noise table; returns self."""
        if self.epsilon is not None and not table.sigma_min <= self.epsilon < table.sigma_max:
            raise ValueError(f"epsilon={self.epsilon!r} must lie in [σ_min, σ_max) = "
                             f"[{table.sigma_min:.6g}, {table.sigma_max:.6g}) of this model")
        if self.sigma_min is not None and not 0 < self.sigma_min < table.sigma_max:
            raise ValueError(f"sigma_min={self.sigma_min!r} must lie in (0, σ_max={table.sigma_max:.6g})")
        return self

    def sigmas(self, table: NoiseTable):
        """The σ grid (float64, steps+1 values) this config samples over on a model with this table."""
        self.validate(table)
        sigmas = build(table, self.steps, spacing=self.spacing, rho=self.rho, final=self.final,
                       epsilon=self.epsilon, sigma_min=self.sigma_min)
        if self.offsets is None:
            return sigmas
        refined = sigmas.clone()
        refined[1:-1] = sigmas[1:-1] * torch.exp(torch.tensor(self.offsets, dtype=sigmas.dtype))
        if not bool((refined[1:] < refined[:-1]).all()):
            raise ValueError(f"offsets {list(self.offsets)} make the σ grid not strictly decreasing: "
                             f"{[float(f'{v:.5g}') for v in refined.tolist()]} (from "
                             f"{[float(f'{v:.5g}') for v in sigmas.tolist()]})")
        return refined

    def guided_at(self, sigma: float) -> bool:
        """Whether classifier-free guidance applies at noise level σ: σ_lo < σ ≤ σ_hi, or always without an interval."""
        if self.guidance_interval is None:
            return True
        lo, hi = self.guidance_interval
        return lo < sigma <= hi

    def freeu_at(self, step: int) -> tuple[float, float, float, float] | None:
        """FreeU factors active at solver step `step`, or None when FreeU is off there."""
        for w in self.freeu:
            if w.start <= step < w.end:
                return w.factors
        return None

    # ---- JSON --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["freeu"] = [dataclasses.asdict(w) for w in self.freeu]
        if self.guidance_interval is None:
            del d["guidance_interval"]  # optional: a config without it reads and writes as before
        else:
            d["guidance_interval"] = list(self.guidance_interval)
        if self.offsets is None:
            del d["offsets"]  # optional, as guidance_interval
        else:
            d["offsets"] = list(self.offsets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplerConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a sampler config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        if "order" in d:  # schema 1 named DPM-Solver++ by its order
            if "solver" in d:
                raise ValueError(f"a sampler config has either 'solver' or the legacy 'order', not both (got "
                                 f"solver={d['solver']!r}, order={d['order']!r})")
            d["solver"] = dpmpp_name(d.pop("order"))
        _check_keys(d, cls, "sampler config")
        windows = []
        for w in d.get("freeu", ()) or ():
            if not isinstance(w, dict):
                raise ValueError(f"each FreeU window must be an object, got {w!r}")
            _check_keys(w, FreeUWindow, "FreeU window")
            windows.append(FreeUWindow(**w))
        d["freeu"] = tuple(windows)
        return cls(**d)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_json(cls, s: str) -> SamplerConfig:
        return cls.from_dict(json.loads(s))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(indent=2) + "\n")

    @classmethod
    def load(cls, path) -> SamplerConfig:
        """A config file, or any JSON document with the config under "config" (presets, study exports)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None
        try:
            return config_from_document(doc)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    def replace(self, **changes) -> SamplerConfig:
        return dataclasses.replace(self, **changes)


def config_from_document(doc) -> SamplerConfig:
    """The SamplerConfig of a config object, or of a document holding one under "config" (exports, presets);
    a document's `schema_version`, when present, must be one this version reads (1..SCHEMA_VERSION)."""
    if isinstance(doc, dict) and "config" in doc:
        version = doc.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            raise ValueError(f"unknown schema_version {version!r}: this hpyn reads versions 1 to {SCHEMA_VERSION} "
                             "(a newer hpyn wrote it?)")
        doc = doc["config"]
    return SamplerConfig.from_dict(doc)
