"""hpyn: the few-step sampler of "Hyperparameters are all you need" (arXiv 2510.02390) as a diffusers plugin.

    from hpyn import SamplerConfig, load_model, generate
    model = load_model("toy")
    images = generate(model, SamplerConfig.load("best.json"), ["a photo of a sneaker"], seeds=[0])
"""

from hpyn.config import FreeUWindow, SamplerConfig
from hpyn.generate import generate
from hpyn.models import load_model, noise_table
from hpyn.noise import NoiseTable
from hpyn.presets import classic_setting, load_preset, paper_setting

__all__ = ["FreeUWindow", "SamplerConfig", "NoiseTable", "load_preset", "paper_setting", "classic_setting",
           "generate", "load_model", "noise_table"]
__version__ = "0.1.0"
