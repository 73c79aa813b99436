"""hpyn: the few-step sampler of "Hyperparameters are all you need" (arXiv 2510.02390) as a diffusers plugin.

    from hpyn import SamplerConfig, load_model, generate
    model = load_model("toy")
    images = generate(model, SamplerConfig.load("best.json"), ["a photo of a sneaker"], seeds=[0])

    applied = hpyn.apply(pipe, "best.json")        # a diffusers pipeline runs the schedule (hpyn.pipeline)
    image = pipe(prompt, **applied.call_kwargs).images[0]
"""

import importlib
import sys
import types

from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.models import load_model, noise_table
from hpyn.noise import NoiseTable
from hpyn.presets import classic_setting, load_preset, paper_setting

__all__ = ["FreeUWindow", "HpynScheduler", "NoiseTable", "SamplerConfig", "apply", "classic_setting", "generate",
           "load_model", "load_preset", "noise_table", "paper_setting"]
__version__ = "0.1.0"

# Imported on first use: `apply`/`HpynScheduler` import diffusers; `generate` lives in the module that is also the
# CLI `python -m hpyn.generate`, which runpy warns about if importing the package already imported it.
_LAZY = {"generate": "hpyn.generate", "apply": "hpyn.pipeline", "HpynScheduler": "hpyn.scheduler"}


def __getattr__(name):  # PEP 562
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpyn' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`hpyn.generate` is the function, as `from hpyn import generate` promises. Loading the submodule of the same
    name makes the import system set `hpyn.generate = <module hpyn.generate>`; that one assignment is dropped."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
