"""CLIP score: 100 * max(cos(E_image, E_text), 0) per sample, averaged (spec E, torchmetrics' definition).

``clip_scores`` / ``clip_score`` are pure functions of embeddings. ``load_clip(spec)`` gives a
:class:`ClipModel` that embeds uint8 images and prompts. Model specs:

* ``"open_clip:ViT-B-32/openai"`` (default; the paper used the same OpenAI ViT-B/32 weights through
  transformers' ``openai/clip-vit-base-patch32``); ``"open_clip:NAME/TAG"`` for any open_clip model and tag,
  ``"open_clip:NAME/PATH"`` for a local checkpoint file, ``"open_clip:hf-hub:ORG/REPO"`` or
  ``"open_clip:local-dir:PATH"``;
* ``"hf:PATH_OR_ID"`` or a local folder: a transformers ``CLIPModel`` saved with ``save_pretrained`` plus
  its tokenizer (e.g. ``"hf:openai/clip-vit-base-patch32"`` online, or the toy model's CLIP);
* a registered name (``CLIP_MODELS``, ``register_clip(name, loader)``): ``"toy"``, the small CLIP shipped with
  the embedded toy model, registered by ``objectives.toy``.

Images go through the CLIP processors' steps on tensors: bicubic (antialiased) resize of the shortest
side to the model's input size, centre crop, rounding to uint8 levels, then the model's mean/std.
Prompts longer than the context (77 tokens for OpenAI CLIP) are truncated. (torchmetrics 1.9's
``CLIPScore`` is not used: it breaks with transformers 5, whose ``get_*_features`` return ModelOutputs.)
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from objectives.images import as_uint8_nchw, default_device

DEFAULT_CLIP = "open_clip:ViT-B-32/openai"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_scores(image_features, text_features) -> np.ndarray:
    """Per-sample 100 * max(cos, 0) of paired rows (embeddings need not be normalised)."""
    a = torch.as_tensor(image_features, dtype=torch.float64)
    b = torch.as_tensor(text_features, dtype=torch.float64)
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"need paired embeddings of equal shape [N, E], got {tuple(a.shape)} and {tuple(b.shape)}")
    cos = F.cosine_similarity(a, b, dim=1)
    return (100.0 * cos.clamp(min=0)).numpy()


def clip_score(image_features, text_features) -> float:
    """Mean CLIP score of paired image/text embeddings."""
    return float(clip_scores(image_features, text_features).mean())


def preprocess(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> normalised float [N, 3, size, size] (shortest-side resize + centre crop)."""
    x = images.float()
    h, w = x.shape[-2:]
    if min(h, w) != size:
        scale = size / min(h, w)
        nh, nw = max(size, int(h * scale)), max(size, int(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    x = x[..., top: top + size, left: left + size] / 255.0
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass
class ClipModel:
    """A CLIP model that embeds uint8 images and prompts; ``id`` is recorded beside every score."""

    id: str
    encode_image: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    encode_text: Callable[[list[str]], torch.Tensor] = field(repr=False)
    image_size: int = 224
    mean: tuple = OPENAI_MEAN
    std: tuple = OPENAI_STD
    device: torch.device = torch.device("cpu")
    batch_size: int = 64
    seconds: float = 0.0
    count: int = 0

    @torch.inference_mode()
    def image_features(self, images) -> torch.Tensor:
        images = as_uint8_nchw(images)
        out = []
        for i in range(0, len(images), self.batch_size):
            x = preprocess(images[i: i + self.batch_size].to(self.device), self.image_size, self.mean, self.std)
            out.append(self.encode_image(x).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        prompts = list(prompts)
        return torch.cat([self.encode_text(prompts[i: i + 256]).float().cpu() for i in range(0, len(prompts), 256)])

    def scores(self, images, prompts: Sequence[str]) -> np.ndarray:
        """Per-sample CLIP scores of images[i] with prompts[i]."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        t0 = time.perf_counter()
        s = clip_scores(self.image_features(images), self.text_features(prompts))
        self.seconds += time.perf_counter() - t0
        self.count += len(prompts)
        return s

    def conventions(self) -> dict:
        return {"clip_model": self.id, "clip_score": "100*max(cos,0), mean over samples",
                "clip_preprocess": f"bicubic-aa shortest side {self.image_size}, center crop, uint8 rounding"}


def _features(out) -> torch.Tensor:
    # transformers >= 5 returns a ModelOutput whose pooler_output holds the projected features.
    return out if torch.is_tensor(out) else out.pooler_output


def load_open_clip(name: str, pretrained: str | None, device=None, batch_size: int = 64,
                   model=None, model_id: str | None = None) -> ClipModel:
    """open_clip model ``name`` with weights ``pretrained`` (tag or local file); or wrap a built ``model``."""
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover
        raise ImportError("CLIP score with open_clip models needs open_clip_torch: pip install open_clip_torch") from e
    dev = default_device(device)
    if model is None:
        try:
            model = open_clip.create_model(name, pretrained=pretrained, device=dev)
        except RuntimeError as e:
            raise RuntimeError(
                f"could not load open_clip model {name!r} with weights {pretrained!r} ({e}). Offline, pass a "
                f"local checkpoint ('open_clip:{name}/PATH') or a transformers folder ('hf:PATH')") from e
    model = model.to(dev).eval()
    tokenizer = open_clip.get_tokenizer(name) if name in open_clip.list_models() else open_clip.tokenize
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else int(size)

    def enc_img(x):
        return model.encode_image(x)

    def enc_txt(prompts):
        return model.encode_text(tokenizer(prompts).to(dev))

    return ClipModel(id=model_id or f"open_clip:{name}/{pretrained}", encode_image=enc_img, encode_text=enc_txt,
                     image_size=size, mean=tuple(cfg.get("mean", OPENAI_MEAN)), std=tuple(cfg.get("std", OPENAI_STD)),
                     device=dev, batch_size=batch_size)


def load_hf_clip(path: str | os.PathLike, device=None, batch_size: int = 64, model=None, tokenizer=None,
                 model_id: str | None = None) -> ClipModel:
    """transformers ``CLIPModel`` from a folder / hub id (or wrap a built ``model`` + ``tokenizer``)."""
    import json

    from transformers import AutoTokenizer, CLIPModel

    dev = default_device(device)
    path = str(path)
    if model is None:
        model = CLIPModel.from_pretrained(path)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(path)
    model = model.to(dev).eval()
    size = model.config.vision_config.image_size
    mean, std = OPENAI_MEAN, OPENAI_STD
    pp = Path(path) / "preprocessor_config.json"
    if pp.is_file():
        cfg = json.loads(pp.read_text())
        crop = cfg.get("crop_size", size)
        size = crop.get("height", size) if isinstance(crop, dict) else int(crop)
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    max_len = min(getattr(tokenizer, "model_max_length", 77) or 77, model.config.text_config.max_position_embeddings)

    def enc_img(x):
        return _features(model.get_image_features(pixel_values=x))

    def enc_txt(prompts):
        tok = tokenizer(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return _features(model.get_text_features(input_ids=tok["input_ids"].to(dev),
                                                 attention_mask=tok["attention_mask"].to(dev)))

    return ClipModel(id=model_id or f"hf:{path}", encode_image=enc_img, encode_text=enc_txt, image_size=size,
                     mean=mean, std=std, device=dev, batch_size=batch_size)


CLIP_MODELS: dict[str, Callable[..., ClipModel]] = {}


def register_clip(name: str, loader: Callable[..., ClipModel], *, replace: bool = False) -> None:
    """Make ``load_clip(name, device, batch_size)`` return ``loader(device=device, batch_size=batch_size)``."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"bad CLIP model name {name!r}: letters, digits, '_', '.', '-' (':' marks a spec)")
    if name in CLIP_MODELS and not replace:
        raise ValueError(f"a CLIP model named {name!r} is registered; pass replace=True")
    CLIP_MODELS[name] = loader


def load_clip(spec: str | None = DEFAULT_CLIP, device=None, batch_size: int = 64) -> ClipModel:
    """Load a CLIP model from a spec string (see the module docstring)."""
    spec = spec or DEFAULT_CLIP
    if spec in CLIP_MODELS:
        return CLIP_MODELS[spec](device=device, batch_size=batch_size)
    if spec.startswith("open_clip:"):
        rest = spec[len("open_clip:"):]
        if rest.startswith(("hf-hub:", "local-dir:")):
            return load_open_clip(rest, None, device, batch_size, model_id=spec)
        name, _, pretrained = rest.partition("/")
        return load_open_clip(name, pretrained or None, device, batch_size, model_id=spec)
    if spec.startswith("hf:"):
        return load_hf_clip(spec[3:], device, batch_size, model_id=spec)
    if Path(spec).is_dir():
        return load_hf_clip(spec, device, batch_size)
    raise ValueError(f"unknown CLIP spec {spec!r}; use 'open_clip:NAME/TAG_OR_FILE', 'hf:PATH_OR_ID', a registered "
                     f"name {sorted(CLIP_MODELS)} or a transformers CLIPModel folder")
