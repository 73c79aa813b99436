"""Reference image sets and their cached features.

``load_reference(spec)`` resolves a spec string:

=============================  ==================================================================
``"toy"``                      the toy model's held-out Fashion-MNIST images (registered by ``objectives.toy``)
``"npz:PATH"``                 ``images`` uint8 [N, 3|1, H, W] or [N, H, W(, C)], optional ``labels``/``captions``
``"folder:PATH"`` / a folder   every image file below PATH, sorted by relative path
``"coco2014:ROOT"`` / 2017     the paper's selection (spec E): the selected val images, in shuffled order
``"laion:CAPTIONS:IMAGES"``    images of the first 10k caption lines, matched by the id in their file name
=============================  ==================================================================

Named references live in ``REFERENCES``: ``register_reference(name, load, prompts=..., clip=...)`` adds one,
with the prompt set and CLIP model that go with its images (the ``Evaluator``'s defaults for it).

Image files are prepared as the paper's FID script does (``prep="pil-bicubic-512"``): PIL RGB, bicubic
resize to 512x512 without keeping the aspect ratio; the feature extractor then applies its own resize
(TF-1 bilinear to 299 for Inception). Arrays (npz, toy) are used at native size (``prep="native"``).

``reference_features(ref, extractor, n)`` computes features once and caches them on disk under
``<cache>/features/<key>.pt``; the key hashes (reference content id, n, seed, prep, extractor id), and the
file is written atomically.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from objectives._cache import atomic_torch_save, cache_dir, content_key, file_sha256

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
PAPER_PREP = "pil-bicubic-512"


def _parse_prep(prep: str) -> int | None:
    if prep == "native":
        return None
    m = re.fullmatch(r"pil-bicubic-(\d+)", prep)
    if not m:
        raise ValueError(f"unknown reference prep {prep!r}; use 'native' or 'pil-bicubic-SIZE'")
    return int(m.group(1))


def _load_file(path: Path, size: int | None) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8:
        raise ValueError(f"reference images must be uint8, got {x.dtype}")
    if x.dim() == 3:                        # [N, H, W] grayscale
        x = x[:, None]
    elif x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)           # NHWC -> NCHW
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError("reference images must be [N, 3|1, H, W], [N, H, W, 3|1] or [N, H, W], "
                         f"got {tuple(images.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@dataclass
class Reference:
    """An ordered set of reference images. ``content_id`` changes when the images change."""

    name: str
    content_id: str
    prep: str
    arrays: torch.Tensor | None = field(default=None, repr=False)   # uint8 [N, 3, H, W] (array sets)
    files: list[Path] | None = field(default=None, repr=False)      # image files (file sets)
    captions: list[str] | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.arrays) if self.arrays is not None else len(self.files)

    def batches(self, batch_size: int = 64, n: int | None = None) -> Iterator[torch.Tensor]:
        """uint8 [B, 3, H, W] batches of the first ``n`` images (all if None)."""
        n = len(self) if n is None else min(n, len(self))
        if self.arrays is not None:
            for i in range(0, n, batch_size):
                yield self.arrays[i: min(i + batch_size, n)]
            return
        size = _parse_prep(self.prep)
        for i in range(0, n, batch_size):
            imgs = [_load_file(p, size) for p in self.files[i: min(i + batch_size, n)]]
            if len({tuple(t.shape) for t in imgs}) > 1:
                raise ValueError(f"reference {self.name}: images differ in size with prep={self.prep!r}; "
                                 "use prep='pil-bicubic-SIZE'")
            yield torch.stack(imgs)

    def images(self, n: int | None = None) -> torch.Tensor:
        return torch.cat(list(self.batches(256, n)))

    def conventions(self) -> dict:
        return {"reference": self.name, "reference_prep": self.prep}


def array_reference(images, name: str = "array", labels=None, captions: Sequence[str] | None = None,
                    content_id: str | None = None) -> Reference:
    """Reference from an in-memory uint8 array/tensor."""
    x = _to_nchw(images.numpy() if torch.is_tensor(images) else np.asarray(images))
    if content_id is None:
        import hashlib
        content_id = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:20]
    return Reference(name=name, content_id=content_id, prep="native", arrays=x,
                     labels=None if labels is None else np.asarray(labels),
                     captions=None if captions is None else [str(c) for c in captions])


def npz_reference(path: str | os.PathLike, name: str | None = None) -> Reference:
    path = Path(path)
    with np.load(path) as z:
        if "images" not in z:
            raise KeyError(f"{path} has no 'images' array (keys: {list(z.keys())})")
        images = z["images"]
        labels = z["labels"] if "labels" in z else None
        captions = z["captions"] if "captions" in z else None
    # Content id = hash of the image bytes (not of the file), so re-saving the same images keeps the cache key.
    return array_reference(images, name or f"npz:{path}", labels, captions)


def _files_id(files: Sequence[Path], root: Path) -> str:
    return content_key([(str(p.relative_to(root)), p.stat().st_size) for p in files])


def folder_reference(path: str | os.PathLike, prep: str = PAPER_PREP) -> Reference:
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"reference folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    _parse_prep(prep)
    return Reference(name=f"folder:{root}", content_id=_files_id(files, root), prep=prep, files=files)


def coco_reference(root: str | os.PathLike, year: int = 2014, n_images: int = 10_000, seed: int = 42,
                   prep: str = PAPER_PREP) -> Reference:
    """The paper's COCO reference: the images selected by ``prompts.coco_selection`` (shuffled order), with
    the captions kept as prompts attached (``captions``)."""
    from objectives.prompts import coco_paths, coco_selection

    captions_json, instances_json, images_dir = coco_paths(root, year)
    sel = coco_selection(captions_json, instances_json, n_images=n_images, seed=seed)
    files = [images_dir / sel.file_names[i] for i in sel.image_ids]
    missing = [f for f in files[:5] if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"COCO images not found, e.g. {missing[0]}")
    cid = content_key([file_sha256(captions_json)[:16], year, n_images, seed, [f.name for f in files]])
    return Reference(name=f"coco{year}:{Path(root)}", content_id=cid, prep=prep, files=files, captions=sel.captions)


def laion_reference(captions_file: str | os.PathLike, images_dir: str | os.PathLike, n: int = 10_000,
                    prep: str = PAPER_PREP) -> Reference:
    """LAION-style reference: for each of the first ``n`` caption lines ``Image XXXXX: caption``, the image
    file whose name contains the id XXXXX (lines without an image are skipped)."""
    from objectives.prompts import laion_captions

    root = Path(images_dir)
    by_stem: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS:
            for tok in re.findall(r"\d+|[^\W_]+", p.stem):
                by_stem.setdefault(tok.lstrip("0") or "0", p)
    files, captions = [], []
    for key, cap in laion_captions(captions_file, n):
        p = by_stem.get(key.lstrip("0") or "0")
        if p is not None:
            files.append(p)
            captions.append(cap)
    if not files:
        raise FileNotFoundError(f"no image under {root} matches the ids in {captions_file}")
    return Reference(name=f"laion:{captions_file}", content_id=_files_id(files, root), prep=prep, files=files,
                     captions=captions)


@dataclass(frozen=True)
class NamedReference:
    """A registered reference: how to load it, and the prompt set and CLIP spec that go with its images."""

    load: Callable[[], Reference]
    prompts: str | None = None   # Evaluator(prompts=None) uses this set
    clip: str | None = None      # Evaluator(clip="auto") uses this CLIP spec (None: the default CLIP)


REFERENCES: dict[str, NamedReference] = {}


def register_reference(name: str, load: Callable[[], Reference], *, prompts: str | None = None,
                       clip: str | None = None, replace: bool = False) -> None:
    """Make ``load_reference(name)`` return ``load()``; ``prompts``/``clip`` become the Evaluator's defaults."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"bad reference name {name!r}: letters, digits, '_', '.', '-' (':' marks a path spec)")
    if name in REFERENCES and not replace:
        raise ValueError(f"a reference named {name!r} is registered; pass replace=True")
    REFERENCES[name] = NamedReference(load, prompts, clip)


def load_reference(spec: str | Reference, prep: str | None = None) -> Reference:
    """Resolve a reference spec (see the module docstring)."""
    if isinstance(spec, Reference):
        return spec
    kw = {} if prep is None else {"prep": prep}
    if spec in REFERENCES:
        return REFERENCES[spec].load()
    if spec.startswith("npz:"):
        return npz_reference(spec[4:])
    if m := re.fullmatch(r"coco(2014|2017):(.+)", spec):
        return coco_reference(m.group(2), int(m.group(1)), **kw)
    if spec.startswith("laion:"):
        captions, _, images = spec[6:].rpartition(":")
        if not captions:
            raise ValueError(f"LAION reference spec must be 'laion:CAPTIONS_FILE:IMAGES_DIR', got {spec!r}")
        return laion_reference(captions, images, **kw)
    if spec.startswith("folder:") or Path(spec).is_dir():
        return folder_reference(spec.removeprefix("folder:"), **kw)
    if spec.endswith(".npz") and Path(spec).is_file():
        return npz_reference(spec)
    raise ValueError(f"unknown reference {spec!r}; use a named reference {sorted(REFERENCES)}, 'npz:PATH', "
                     "'folder:PATH', 'coco2014:ROOT', 'coco2017:ROOT' or 'laion:CAPTIONS_FILE:IMAGES_DIR'")


def _shipped_dirs() -> list[Path]:
    """Read-only folders searched after the cache for precomputed reference features (same file names):
    ``$HPYN_FEATURES_PATH`` (os.pathsep-separated) and ``objectives/data/features``."""
    dirs = [Path(p) for p in os.environ.get("HPYN_FEATURES_PATH", "").split(os.pathsep) if p]
    return dirs + [Path(__file__).resolve().parent / "data" / "features"]


def features_key(ref: Reference, extractor, n: int) -> str:
    """Cache key: hash of (reference content id, n, prep, extractor id incl. weights, extractor resize)."""
    return content_key({"reference": ref.content_id, "n": n, "prep": ref.prep, "extractor": extractor.id,
                        "resize": extractor.resize})


def reference_features(ref: Reference, extractor, n: int | None = None, cache: str | os.PathLike | None = None,
                       batch_size: int = 64, use_cache: bool = True, progress: bool | None = None) -> torch.Tensor:
    """Features [min(n, len(ref)), D] of the first ``n`` reference images, cached on disk by content.
    ``progress``: tqdm bar on stderr (default: when more than 256 images must be computed)."""
    n = len(ref) if n is None else min(n, len(ref))
    name = f"{features_key(ref, extractor, n)}.pt"
    path = cache_dir(cache) / "features" / name
    if use_cache:
        for p in [path] + [d / name for d in _shipped_dirs()]:
            if p.is_file():
                return torch.load(p, map_location="cpu", weights_only=True)["features"].float()
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc=f"reference features ({ref.name}, {extractor.name})", unit="img",
               disable=not (n > 256 if progress is None else progress))
    feats = []
    for b in ref.batches(batch_size, n):
        feats.append(extractor(b))
        bar.update(len(b))
    bar.close()
    feats = torch.cat(feats)
    if use_cache:
        save_features(ref, extractor, feats, path)
    return feats


def save_features(ref: Reference, extractor, feats: torch.Tensor, path: Path) -> Path:
    return atomic_torch_save({"features": feats.float().contiguous(), "reference": ref.name,
                              "content_id": ref.content_id, "n": len(feats), "prep": ref.prep,
                              "extractor": extractor.id}, path)


def main(argv=None) -> None:
    """``python -m objectives.references REFERENCE [--n N] [--out DIR]``: compute (or find) and store reference
    features, e.g. to ship them: ``python -m objectives.references toy --out objectives/data/features``."""
    import argparse

    from objectives.features import get_extractor

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("reference", help="reference spec: toy, npz:PATH, folder:PATH, coco2014:ROOT, ...")
    ap.add_argument("--n", type=int, default=None, help="first N images (default all)")
    ap.add_argument("--extractor", default="inception-v3-compat")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="also write the features file into this folder")
    a = ap.parse_args(argv)
    ref = load_reference(a.reference)
    ext = get_extractor(a.extractor, device=a.device)
    feats = reference_features(ref, ext, a.n)
    n = len(feats)
    print(f"{ref.name}: {n} images, features {tuple(feats.shape)}, extractor {ext.id}, key {features_key(ref, ext, n)}")
    if a.out:
        out = save_features(ref, ext, feats, Path(a.out) / f"{features_key(ref, ext, n)}.pt")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
