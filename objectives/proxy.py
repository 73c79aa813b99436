"""A cheap, reference-free proxy fidelity: how far a candidate's images are from a many-step teacher's.

``TeacherProxy`` generates the teacher's images once (e.g. DPM-Solver++2M on a Karras grid with 50 steps, at the
study's guidance) for fixed prompts and seeds, keeps their features (cached on disk, so a second construction
generates nothing), and scores a candidate sampler by the mean *paired* feature distance: image i of the candidate
against image i of the teacher, both drawn from the same (prompts[i], seeds[i]) initial noise. A few-step sampler
that integrates the same probability-flow ODE well lands near the teacher's image; one that does not lands far.

    from hpyn.models import load_model
    from hpyn.presets import classic_setting
    from objectives.proxy import TeacherProxy

    model = load_model("toy")
    proxy = TeacherProxy(model, classic_setting(50, guidance=2.0), prompts[:64], seeds[:64], "toy-classifier")
    proxy.score_config(candidate_config)          # {"proxy_teacher": 0.031, "n": 64, "generate_s": .., ...}
    proxy.score(images)                           # images: uint8 [64, 3, H, W] from the same prompts/seeds

Feature space, not latents or pixels: the paper's residual ending stops at σ = ε > 0 and decodes a latent that
still holds noise of that size, so its images differ from the teacher's by a little high-frequency noise that
neither FID nor a viewer cares much about; a latent or pixel distance would charge it in full. A feature extractor
(the toy classifier's penultimate features for the toy, Inception pool3 for real models, any registered one)
maps both images to what they depict first.

Distance (``distance=``): ``"cosine"`` (default) is 1 − cos(f_cand, f_teacher) per pair, i.e. half the squared L2
distance of the L2-normalised features. Normalising makes every pair weigh the same whatever its feature norm
(norms grow with contrast and with leftover noise, so raw L2 would be dominated by a few high-norm images) and
keeps the score bounded, in [0, 2] (in [0, 1] for non-negative, post-ReLU features). ``"sqeuclidean"`` is the mean
squared L2 distance of the raw features divided by their dimension, for comparison. The score is 0 for the
teacher itself; lower is better.

Cache (``objectives._cache.cache_dir``/proxy/): the teacher's images, keyed by the model's content
(``model_fingerprint``: name, source, dtype, device type and a sample of every weight tensor), the teacher config
and its σ grid on the model's noise table, the prompts+seeds hash and the resolution; and the teacher's features,
keyed by all that plus the extractor's id. Another extractor over the same teacher reuses the images.

What it is for: a first, cheapest pruning rung (seconds per trial) if its ranking agrees with held-out FID, which
``benchmarks/proxy_agreement.py`` measures. It is not registered in ``objectives.metrics`` (that would add an
Evaluator stage); ``PROXY_METRIC`` is the entry to add when the search reports it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from typing import Sequence

import torch

from hpyn.config import SamplerConfig
from hpyn.generate import generate
from objectives._cache import atomic_torch_save, cache_dir, content_key
from objectives.features import Extractor, get_extractor
from objectives.images import as_uint8_nchw
from objectives.metrics import Metric

__all__ = ["DISTANCES", "PROXY_METRIC", "TeacherProxy", "model_fingerprint", "paired_distances"]

CACHE_VERSION = 1
DISTANCES = ("cosine", "sqeuclidean")
DEFAULT_TEACHER_STEPS = 50

# The objectives.metrics entry to register when the search reports the proxy (not registered here: see the docstring).
PROXY_METRIC = Metric("proxy_teacher", "proxy", "minimize", "teacher dist.",
                      "mean paired feature distance (1 − cos) of each image to a many-step teacher's image from "
                      "the same prompt and seed; reference-free, 0 for the teacher itself", ".4f", 3)


def paired_distances(a: torch.Tensor, b: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """Per-row distance [N] between feature matrices ``a`` and ``b`` [N, D] (see the module docstring)."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"paired features need two [N, D] matrices of the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    a, b = a.double(), b.double()
    if distance == "cosine":
        # F.cosine_similarity clamps tiny norms (eps): an all-zero feature row gives 1 − 0 = 1, never NaN
        return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)
    return ((a - b) ** 2).sum(dim=1) / a.shape[1]


def model_fingerprint(model) -> dict:
    """What identifies a loaded hpyn model's outputs: registry name, source, VAE, dtype, device type, and a hash of
    every weight tensor's name, shape and a strided sample of its values (so retrained weights in the same folder
    give another key). Cheap: a few values per tensor, also for SD-sized models."""
    spec = getattr(model, "spec", None)
    h = hashlib.sha256()
    pipe = getattr(model, "pipe", None)
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, comp, None)
        if not isinstance(module, torch.nn.Module):
            continue
        h.update(comp.encode())
        for name, t in module.state_dict().items():
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 16)
            sample = flat[::step][:16].to("cpu", torch.float64)
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(sample.numpy().tobytes())
    device = getattr(model, "device", None)
    return {"name": getattr(model, "name", None), "source": getattr(spec, "source", None),
            "vae": getattr(spec, "vae", None), "dtype": str(getattr(model, "dtype", None)),
            "device": torch.device(device).type if device is not None else None, "weights": h.hexdigest()[:20]}


def _pairs_hash(prompts: Sequence[str], seeds: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps([list(prompts), [int(s) for s in seeds]]).encode()).hexdigest()


class TeacherProxy:
    """Scores sampler configs by their paired feature distance to a many-step teacher (see the module docstring).

    Args:
        model: a loaded hpyn model (``hpyn.models.load_model``).
        teacher: the teacher's SamplerConfig (e.g. ``hpyn.presets.classic_setting(50, guidance)``: use the
            study's guidance, since the candidates are sampled with it).
        prompts, seeds: the pairs every candidate and the teacher sample (one seed per prompt).
        extractor: a registered extractor name (``"toy-classifier"``, ``"inception-v3-compat"``, ...) or an
            :class:`~objectives.features.Extractor`.
        distance: ``"cosine"`` (default) or ``"sqeuclidean"``.
        batch_size: images per generation batch (does not change the images).
        resolution: image resolution (None: the model's).
        cache: cache folder (default ``$HPYN_CACHE`` or ``~/.cache/hpyn``); ``use_cache=False`` skips it.
        device: device of the extractor when ``extractor`` is a name.

    Attributes: ``features`` (the teacher's [N, D]), ``teacher_seconds`` (time spent on the teacher in this
    construction: 0.0 when everything came from the cache), ``from_cache`` ("features", "images" or None),
    ``key`` (the features' cache key).
    """

    def __init__(self, model, teacher: SamplerConfig, prompts: Sequence[str], seeds: Sequence[int],
                 extractor: str | Extractor = "toy-classifier", *, distance: str = "cosine", batch_size: int = 16,
                 resolution: int | None = None, cache: str | os.PathLike | None = None, use_cache: bool = True,
                 device=None, progress: bool = False):
        if not isinstance(teacher, SamplerConfig):
            raise ValueError(f"teacher must be a hpyn.config.SamplerConfig, got {type(teacher).__name__}")
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of prompts, not one string")
        prompts, seeds = list(prompts), list(seeds)
        if not prompts or len(prompts) != len(seeds):
            raise ValueError(f"need one seed per prompt and at least one pair, got {len(prompts)} prompts and "
                             f"{len(seeds)} seeds")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise ValueError(f"seeds must be integers ≥ 0, got {bad[:5]}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
        self.model, self.teacher, self.prompts, self.seeds = model, teacher, prompts, seeds
        self.distance, self.batch_size, self.resolution = distance, batch_size, resolution
        self.extractor = extractor if isinstance(extractor, Extractor) else get_extractor(extractor, device=device)
        self.progress = progress

        sigmas = [float(s) for s in teacher.sigmas(model.table)]
        images_desc = {"v": CACHE_VERSION, "model": model_fingerprint(model), "teacher": teacher.to_dict(),
                       "sigmas": [round(s, 8) for s in sigmas], "pairs": _pairs_hash(prompts, seeds),
                       "resolution": resolution}
        self.images_key = content_key(images_desc)
        self.key = content_key({**images_desc, "extractor": self.extractor.id})
        folder = cache_dir(cache) / "proxy" if use_cache else None
        self.teacher_seconds, self.from_cache = 0.0, None
        self.features = self._teacher_features(folder)
        if len(self.features) != len(prompts):
            raise ValueError(f"the teacher's features have {len(self.features)} rows for {len(prompts)} pairs "
                             f"(cache file {self.key} is corrupt: delete it)")

    # ---- the teacher, once -------------------------------------------------------------------------------
    def _teacher_features(self, folder) -> torch.Tensor:
        feat_path = folder / f"teacher-{self.key}.features.pt" if folder is not None else None
        img_path = folder / f"teacher-{self.images_key}.images.pt" if folder is not None else None
        if feat_path is not None and feat_path.is_file():
            self.from_cache = "features"
            return torch.load(feat_path, map_location="cpu", weights_only=True)["features"]
        t0 = time.perf_counter()
        images = None
        if img_path is not None and img_path.is_file():
            images = torch.load(img_path, map_location="cpu", weights_only=True)["images"]
            self.from_cache = "images"
        if images is None:
            images = generate(self.model, self.teacher, self.prompts, self.seeds, batch_size=self.batch_size,
                              progress=self.progress, resolution=self.resolution)
            if img_path is not None:
                atomic_torch_save({"images": images, "teacher": self.teacher.to_dict()}, img_path)
        feats = self.extractor(images).float()
        if feat_path is not None:
            atomic_torch_save({"features": feats, "extractor": self.extractor.id,
                               "teacher": self.teacher.to_dict()}, feat_path)
        self.teacher_seconds = time.perf_counter() - t0
        return feats

    def __len__(self) -> int:
        return len(self.prompts)

    # ---- scoring -----------------------------------------------------------------------------------------
    def distances(self, images=None, *, features: torch.Tensor | None = None, prefix: bool = False) -> torch.Tensor:
        """Per-pair distances [n] of a candidate's images (uint8 [n, 3, H, W], from the same prompts and seeds) or
        of their features [n, D] from this proxy's extractor. n must equal len(self) unless ``prefix=True``, when
        the n images are pairs 0..n−1 (like a rung's first n samples)."""
        if (images is None) == (features is None):
            raise ValueError("give either images or features")
        if features is None:
            images = as_uint8_nchw(images)
            n = len(images)
        else:
            n = len(features)
        if n == 0:
            raise ValueError("no candidate images to score")
        if n != len(self) and not (prefix and n < len(self)):
            raise ValueError(f"the candidate has {n} images, the teacher {len(self)} (pass images of all {len(self)} "
                             "prompt/seed pairs, or prefix=True for the first n)")
        if features is None:
            features = self.extractor(images)
        if features.ndim != 2 or features.shape[1] != self.features.shape[1]:
            raise ValueError(f"candidate features have shape {tuple(features.shape)}, the teacher's "
                             f"{tuple(self.features.shape)} (extractor {self.extractor.id})")
        return paired_distances(features.float().cpu(), self.features[:n], self.distance)

    def score(self, images=None, *, features: torch.Tensor | None = None, prefix: bool = False) -> float:
        """The proxy: mean paired distance to the teacher (lower is better; 0 for the teacher itself)."""
        value = float(self.distances(images, features=features, prefix=prefix).mean())
        if not math.isfinite(value):
            raise FloatingPointError(f"the proxy is {value} (non-finite candidate features)")
        return value

    def score_config(self, config: SamplerConfig, n: int | None = None) -> dict:
        """Generate a candidate's images for the first ``n`` pairs (default all) and score them.

        Returns ``{"proxy_teacher": score, "proxy_std": std of the per-pair distances, "n", "generate_s",
        "features_s", "total_s"}``."""
        if not isinstance(config, SamplerConfig):
            raise ValueError(f"config must be a hpyn.config.SamplerConfig, got {type(config).__name__}")
        n = len(self) if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(self):
            raise ValueError(f"n must be an integer in [1, {len(self)}] (the teacher's pairs), got {n!r}")
        t0 = time.perf_counter()
        images = generate(self.model, config, self.prompts[:n], self.seeds[:n], batch_size=self.batch_size,
                          resolution=self.resolution)
        t1 = time.perf_counter()
        d = self.distances(features=self.extractor(images), prefix=True)
        t2 = time.perf_counter()
        return {"proxy_teacher": float(d.mean()), "proxy_std": float(d.std()) if n > 1 else 0.0, "n": n,
                "generate_s": t1 - t0, "features_s": t2 - t1, "total_s": t2 - t0}

    def conventions(self) -> dict:
        return {"proxy": "mean paired feature distance to a teacher (same prompts and seeds)",
                "teacher": self.teacher.to_dict(), "distance": self.distance, "n_pairs": len(self),
                "pairs_sha256": _pairs_hash(self.prompts, self.seeds)[:16], **self.extractor.conventions()}
