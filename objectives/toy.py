"""The embedded toy model's evaluation assets, registered once (imported by ``objectives/__init__.py``).

The toy model itself is ``hpyn.toy`` (registered as the model ``"toy"`` in ``hpyn.models``); what measuring it
needs is registered here under the names the specs use:

=========================  =======================================================================
prompt set ``"toy"``       2,000 class-balanced Fashion-MNIST captions (class i % 10, seeded template)
reference ``"toy"``        2,000 held-out test images, 200 per class (``hpyn/toy/weights/reference.npz``);
                           its prompts default to ``"toy"`` and its CLIP to ``"toy"``
CLIP ``"toy"``             the small CLIP shipped with the model (``hpyn/toy/weights/clip``); its text tower
                           is the pipeline's frozen text encoder. The toy CLIP score is this, nothing else.
extractor                  ``"toy-classifier"``: penultimate features of the shipped Fashion-MNIST CNN
=========================  =======================================================================

Another bundled model would add a module like this one and import it in ``objectives/__init__.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from hpyn import toy as toy_model
from objectives._cache import file_sha256
from objectives.clip_score import ClipModel, load_hf_clip, register_clip
from objectives.features import Extractor, default_device, register_extractor
from objectives.prompts import register_prompt_set
from objectives.references import Reference, npz_reference, register_reference

__all__ = ["NAME", "prompts", "reference", "clip", "classifier_extractor"]

NAME = "toy"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"the toy {what} is missing at {path}: rebuild the toy weights with "
                                "`python -m hpyn.toy.train --out hpyn/toy/weights`")
    return path


def prompts(n: int = 2000, seed: int = 0) -> list[str]:
    """Fashion-MNIST captions of the toy model, class-balanced: ``hpyn.toy.prompts(n, seed)``; the toy
    reference is balanced too (200 held-out images per class)."""
    return toy_model.prompts(n, seed=seed)[0]


def reference() -> Reference:
    """The held-out Fashion-MNIST test images, used at native size (32x32)."""
    return npz_reference(_need(Path(toy_model.REFERENCE), "reference"), name=NAME)


def clip(device=None, batch_size: int = 64) -> ClipModel:
    """The toy CLIP as a ClipModel: images 32x32, scaled to [-1, 1] by its preprocessor_config.json."""
    path = Path(toy_model.CLIP)
    _need(path / "config.json", "CLIP")
    tokenizer = None
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(Path(toy_model.PIPELINE) / "tokenizer")   # same CLIP BPE
    return load_hf_clip(path, device, batch_size, tokenizer=tokenizer, model_id="toy:hpyn/toy/weights/clip")


def classifier_extractor(weights: str | os.PathLike | None = None, device=None, batch_size: int = 256,
                         **_ignored) -> Extractor:
    """Penultimate features (1024-d) of the toy model's Fashion-MNIST classifier: a fast, domain-specific
    stand-in for Inception on 32x32 toy images (like the LeNet features used for MNIST FIDs).
    Numbers are NOT comparable with Inception FIDs; the extractor id says so in every result."""
    dev = default_device(device)
    path = Path(weights) if weights else Path(toy_model.CLASSIFIER)
    clf = toy_model.load_classifier(path, device=dev)
    res = toy_model.RESOLUTION

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-2:] != (res, res):
            x = torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear", antialias=True)
        return clf.features(x / 127.5 - 1.0).flatten(1)   # the classifier's input scaling, [-1, 1]

    return Extractor(name="toy-classifier", weights_id=f"sha256-{file_sha256(path)[:12]}", dim=1024,
                     resize=f"bilinear-{res} (if needed)", module=clf, device=dev, batch_size=batch_size,
                     forward=forward)


register_prompt_set(NAME, prompts)
register_reference(NAME, reference, prompts=NAME, clip=NAME)
register_clip(NAME, clip)
register_extractor("toy-classifier", classifier_extractor)
