"""hpyn: the few-step sampler of "Hyperparameters are all you need" (arXiv 2510.02390) as a diffusers plugin.

    from hpyn import SamplerConfig, load_model, generate
    model = load_model("toy")
    images = generate(model, SamplerConfig.load("best.json"), ["a photo of a sneaker"], seeds=[0])

    applied = hpyn.apply(pipe, "best.json")        # a diffusers pipeline runs the schedule (hpyn.pipeline)
    image = pipe(prompt, **applied.call_kwargs).images[0]
"""

from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.generate import generate
from hpyn.models import load_model, noise_table
from hpyn.noise import NoiseTable
from hpyn.presets import classic_setting, load_preset, paper_setting

__all__ = ["FreeUWindow", "SamplerConfig", "NoiseTable", "load_preset", "paper_setting", "classic_setting",
           "generate", "load_model", "noise_table", "apply", "HpynScheduler"]
__version__ = "0.1.0"

_LAZY = {"apply": "hpyn.pipeline", "HpynScheduler": "hpyn.scheduler"}  # import diffusers only when used


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpyn' has no attribute {name!r}")
