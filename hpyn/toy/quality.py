"""Quality checks of the toy model that need nothing outside hpyn: prompted-class accuracy and toy-CLIP score.

FID/KID/PRD live in ``objectives`` (which depends on hpyn, not the other way round); the full measurement is
``python benchmarks/toy_quality.py``. These two checks back the regression test (tests/test_toy.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import classify, label_of_prompt, load_classifier, load_clip

__all__ = ["class_accuracy", "clip_scores", "shuffled", "sample"]


def class_accuracy(images: torch.Tensor, prompts: list[str], classifier=None) -> float:
    """Fraction of uint8 images [N, 3, 32, 32] that the shipped classifier assigns to their prompt's class."""
    want = torch.tensor([label_of_prompt(p) for p in prompts])
    return (classify(images, classifier) == want).float().mean().item()


@torch.no_grad()
def clip_scores(images: torch.Tensor, prompts: list[str], clip=None) -> torch.Tensor:
    """Per-sample CLIP score 100·max(cos(image, text), 0) with the shipped toy CLIP (the paper's convention)."""
    model, tok = clip or load_clip()
    x = images.float() / 127.5 - 1.0                      # = (x/255 - 0.5) / 0.5, preprocessor_config.json
    v = model.get_image_features(pixel_values=x)
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    t = model.get_text_features(input_ids=ids)
    v, t = (o if torch.is_tensor(o) else o.pooler_output for o in (v, t))
    return 100 * (F.normalize(v, dim=-1) * F.normalize(t, dim=-1)).sum(-1).clamp_min(0)


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
