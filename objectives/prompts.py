"""Prompt sets: named sets (built-in, the toy model's), COCO captions (the paper's selection), LAION, text file.

``load_prompts(spec)`` resolves a spec string:

===========================  ====================================================================
``"builtin"``                the project's own 248 varied prompts (``objectives/data/prompts.txt``)
``"toy"``                    2,000 class-balanced Fashion-MNIST captions (registered by ``objectives.toy``)
``"coco2014:ROOT"``          paper selection (spec E) from ``ROOT/annotations/captions_val2014.json``
``"coco2017:ROOT"``          same on val2017 (≈5k prompts)
``"coco:CAPTIONS_JSON"``     same from an explicit captions file (instances file optional)
``"laion:FILE"``             lines ``Image XXXXX: caption`` (first 10k, as the paper)
``"file:PATH"`` / ``PATH``   one prompt per non-empty line
===========================  ====================================================================

Named sets live in ``PROMPT_SETS``; ``register_prompt_set(name, loader)`` adds one.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

DATA = Path(__file__).resolve().parent / "data"
PAPER_SEED = 42
PAPER_N = 10_000


def builtin_prompts() -> list[str]:
    """The built-in prompt set (objects, animals, food, scenes, people, art styles)."""
    return text_file_prompts(DATA / "prompts.txt")


PROMPT_SETS: dict[str, Callable[[], list[str]]] = {"builtin": builtin_prompts}


def register_prompt_set(name: str, loader: Callable[[], list[str]], *, replace: bool = False) -> None:
    """Make ``load_prompts(name)`` return ``loader()``."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"bad prompt set name {name!r}: letters, digits, '_', '.', '-' (':' marks a path spec)")
    if name in PROMPT_SETS and not replace:
        raise ValueError(f"a prompt set named {name!r} is registered; pass replace=True")
    PROMPT_SETS[name] = loader


def text_file_prompts(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file; lines starting with '#' are comments."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


_LAION_LINE = re.compile(r"^\s*Image\s+(\S+?)\s*:\s*(.*)$")


def laion_captions(path: str | Path, n: int | None = PAPER_N) -> list[tuple[str, str]]:
    """(image key, caption) from a file of lines ``Image XXXXX: caption``; first ``n`` (paper: 10k)."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        m = _LAION_LINE.match(line)
        out.append((m.group(1), m.group(2).strip()) if m else (str(i), line.strip()))
        if n is not None and len(out) >= n:
            break
    return out


@dataclass(frozen=True)
class CocoSelection:
    """The paper's COCO selection: prompts (every 5th caption) and the reference images (all selected ids)."""

    captions: list[str]
    caption_image_ids: list[int]   # image id of each caption
    image_ids: list[int]           # the selected images, in shuffled order (the FID reference set)
    file_names: dict[int, str]     # image id -> file name


def coco_selection(captions_json: str | Path, instances_json: str | Path | None = None, n_images: int = PAPER_N,
                   n_captions: int = PAPER_N, seed: int = PAPER_SEED) -> CocoSelection:
    """Spec E: image ids in file order (from the instances file if given, as the reference code does, else the
    captions file; both list the same images), ``random.seed(seed); random.shuffle(ids)``, keep the first
    ``n_images``; gather their captions image by image (file order within an image), keep every 5th
    (index % 5 == 0), truncate to ``n_captions``."""
    caps = json.loads(Path(captions_json).read_text())
    src = json.loads(Path(instances_json).read_text()) if instances_json else caps
    ids = [img["id"] for img in src["images"]]
    rng = random.Random(seed)   # same stream as random.seed(seed) + random.shuffle
    rng.shuffle(ids)
    ids = ids[:n_images]
    by_image: dict[int, list[dict]] = {}
    for ann in caps["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    anns = [a for i in ids for a in by_image.get(i, [])]
    kept = [a for k, a in enumerate(anns) if k % 5 == 0][:n_captions]
    names = {img["id"]: img["file_name"] for img in caps["images"]}
    return CocoSelection(captions=[a["caption"].strip() for a in kept], caption_image_ids=[a["image_id"] for a in kept],
                         image_ids=ids, file_names=names)


def coco_paths(root: str | Path, year: int) -> tuple[Path, Path | None, Path]:
    """(captions json, instances json or None, image folder) of a COCO root folder."""
    root = Path(root)
    ann = root / "annotations"
    captions = ann / f"captions_val{year}.json"
    if not captions.is_file():
        raise FileNotFoundError(f"{captions} not found (expected COCO layout ROOT/annotations/, ROOT/val{year}/)")
    instances = ann / f"instances_val{year}.json"
    images = next((p for p in (root / f"val{year}", root / "images" / f"val{year}") if p.is_dir()), root / f"val{year}")
    return captions, instances if instances.is_file() else None, images


def load_prompts(spec: str | Sequence[str], n: int | None = None) -> list[str]:
    """Resolve a prompt-set spec (see the module docstring) or pass a list through; first ``n`` if given."""
    if not isinstance(spec, str):
        prompts = [str(p) for p in spec]
    elif spec in PROMPT_SETS:
        prompts = PROMPT_SETS[spec]()
    elif m := re.fullmatch(r"coco(2014|2017):(.+)", spec):
        captions, instances, _ = coco_paths(m.group(2), int(m.group(1)))
        prompts = coco_selection(captions, instances).captions
    elif spec.startswith("coco:"):
        prompts = coco_selection(spec[5:]).captions
    elif spec.startswith("laion:"):
        prompts = [c for _, c in laion_captions(spec[6:])]
    elif spec.startswith("file:") or Path(spec).is_file():
        prompts = text_file_prompts(spec.removeprefix("file:"))
    else:
        raise ValueError(f"unknown prompt set {spec!r}; use a named set {sorted(PROMPT_SETS)}, 'coco2014:ROOT', "
                         "'coco2017:ROOT', 'coco:CAPTIONS_JSON', 'laion:FILE', 'file:PATH' or a text file path")
    if not prompts:
        raise ValueError(f"prompt set {spec!r} is empty")
    return prompts[:n] if n is not None else prompts
