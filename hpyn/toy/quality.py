"""Quality checks of the toy model that need nothing outside hpyn: prompted-class accuracy, caption shuffling.

Metrics live in ``objectives`` (which depends on hpyn, not the other way round), the toy CLIP score included
(``objectives.clip_score.load_clip("toy")``, registered by ``objectives.toy``); the full measurement is
``python benchmarks/toy_quality.py``. These checks back the regression test (tests/test_toy.py).
"""
from __future__ import annotations

import torch

from . import classify, label_of_prompt

__all__ = ["class_accuracy", "shuffled", "sample"]


def class_accuracy(images: torch.Tensor, prompts: list[str], classifier=None) -> float:
    """Fraction of uint8 images [N, 3, 32, 32] that the shipped classifier assigns to their prompt's class."""
    want = torch.tensor([label_of_prompt(p) for p in prompts])
    return (classify(images, classifier) == want).float().mean().item()


def shuffled(prompts: list[str], seed: int = 0) -> list[str]:
    """A seeded derangement-like shuffle: each image gets a caption of a *different* class where possible."""
    g = torch.Generator().manual_seed(seed)
    labels = [label_of_prompt(p) for p in prompts]
    shift = 1 + torch.randint(0, 9, (len(prompts),), generator=g)
    from . import CLASS_NAMES, TEMPLATES, caption
    tmpl = torch.randint(0, len(TEMPLATES), (len(prompts),), generator=g)
    return [caption((lab + int(s)) % len(CLASS_NAMES), int(t)) for lab, s, t in zip(labels, shift, tmpl)]


def sample(config, n: int = 64, seed: int = 0, model=None, batch_size: int = 64):
    """n class-balanced prompts with seeds seed..seed+n-1 through hpyn.generate: (images, prompts)."""
    from hpyn.generate import generate
    from hpyn.models import load_model
    from . import prompts as toy_prompts
    model = model or load_model("toy", device="cpu")
    caps, _ = toy_prompts(n, seed)
    return generate(model, config, caps, list(range(seed, seed + n)), batch_size=batch_size), caps
