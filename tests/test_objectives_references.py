"""Reference sets (npz, folder, COCO) and the on-disk feature cache."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from objectives.features import Extractor
from objectives.references import (array_reference, coco_reference, folder_reference, load_reference,
                                   reference_features)


def pool_extractor(dim_side=2, name="test-pool"):
    """A cheap stand-in for Inception: per-channel average pooling to dim_side², 3 * dim_side² features."""
    return Extractor(name=name, weights_id="none", dim=3 * dim_side ** 2, resize=f"adaptive-avgpool-{dim_side}",
                     module=torch.nn.Identity(),
                     forward=lambda x: F.adaptive_avg_pool2d(x.float(), dim_side).flatten(1))


def _write_images(folder, n, sizes=((20, 30),)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img_{i:05d}.png")


def test_npz_reference_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)       # grayscale [N, H, W]
    np.savez(tmp_path / "ref.npz", images=imgs, labels=np.arange(10), captions=np.array([f"c{i}" for i in range(10)]))
    ref = load_reference(f"npz:{tmp_path / 'ref.npz'}")
    assert len(ref) == 10 and ref.prep == "native" and ref.captions[3] == "c3"
    batches = list(ref.batches(4))
    assert [len(b) for b in batches] == [4, 4, 2] and batches[0].shape == (4, 3, 28, 28)
    nhwc = array_reference(rng.integers(0, 256, (3, 8, 9, 3), dtype=np.uint8))
    assert nhwc.images().shape == (3, 3, 8, 9)


def test_folder_reference_resizes_with_pil_bicubic(tmp_path):
    _write_images(tmp_path / "imgs", 5, sizes=((20, 30), (31, 17)))
    ref = folder_reference(tmp_path / "imgs", prep="pil-bicubic-16")
    x = ref.images()
    assert x.shape == (5, 3, 16, 16) and x.dtype == torch.uint8
    direct = np.array(Image.open(tmp_path / "imgs" / "img_00001.png").convert("RGB").resize((16, 16), Image.BICUBIC))
    assert torch.equal(x[1].permute(1, 2, 0), torch.from_numpy(direct))
    with pytest.raises(ValueError, match="differ in size"):
        list(folder_reference(tmp_path / "imgs", prep="native").batches())
    assert load_reference(str(tmp_path / "imgs")).prep == "pil-bicubic-512"   # the paper's reference handling


def test_coco_reference_uses_the_selected_images(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    _write_images(root / "val2014", 12)
    files = sorted((root / "val2014").iterdir())
    images = [{"id": i, "file_name": f.name} for i, f in enumerate(files)]
    anns = [{"id": 10 * i + j, "image_id": i, "caption": f"cap {i}.{j}"} for i in range(12) for j in range(5)]
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": anns}))
    ref = load_reference(f"coco2014:{root}", prep="pil-bicubic-8")
    assert len(ref) == 12 and ref.images(3).shape == (3, 3, 8, 8)
    assert len(ref.captions) == 12   # every 5th of 60 captions
    ref5 = coco_reference(root, 2014, n_images=5, prep="pil-bicubic-8")
    assert ref5.files == ref.files[:5] and ref5.content_id != ref.content_id


def test_reference_features_are_cached_by_content(tmp_path):
    rng = np.random.default_rng(1)
    ref = array_reference(rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8), name="r")
    ext = pool_extractor()
    f1 = reference_features(ref, ext, n=12, cache=tmp_path)
    assert f1.shape == (12, 12) and ext.count == 12
    f2 = reference_features(ref, ext, n=12, cache=tmp_path)          # from disk: no extraction
    assert ext.count == 12 and torch.equal(f1, f2)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
    assert not list((tmp_path / "features").glob("*.tmp"))             # atomic write left no temp file
    reference_features(ref, ext, n=20, cache=tmp_path)                  # other N -> other key
    reference_features(ref, pool_extractor(1, name="other"), n=12, cache=tmp_path)   # other extractor
    other = array_reference(rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8), name="r")   # other content
    reference_features(other, ext, n=12, cache=tmp_path)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 4


def test_unknown_reference_lists_choices():
    with pytest.raises(ValueError, match="npz:PATH"):
        load_reference("what")


def test_shipped_features_are_found_read_only(tmp_path, monkeypatch):
    from objectives.references import features_key, save_features

    rng = np.random.default_rng(2)
    ref = array_reference(rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8), name="r")
    ext = pool_extractor()
    shipped = tmp_path / "shipped"
    marker = torch.full((6, 12), 7.0)
    save_features(ref, ext, marker, shipped / f"{features_key(ref, ext, 6)}.pt")
    monkeypatch.setenv("HPYN_FEATURES_PATH", str(shipped))
    got = reference_features(ref, ext, cache=tmp_path / "cache")
    assert torch.equal(got, marker) and ext.count == 0     # found in the shipped folder, nothing computed


def test_toy_reference_and_prompts():
    from hpyn import toy

    from objectives.prompts import load_prompts

    if not toy.REFERENCE.is_file():
        pytest.skip("toy weights are not built")
    ref = load_reference("toy")
    assert ref.name == "toy" and ref.prep == "native" and ref.images(4).shape == (4, 3, 32, 32)
    prompts = load_prompts("toy")
    assert len(prompts) == len(ref) and all(toy.label_of_prompt(p) == i % 10 for i, p in enumerate(prompts[:20]))


def test_laion_reference_matches_images_by_id(tmp_path):
    _write_images(tmp_path / "imgs", 3)                      # img_00000.png .. img_00002.png
    caps = tmp_path / "extracted_texts_10k.txt"
    caps.write_text("Image 00002: a boat\nImage 00007: missing image\nImage 00000: a tree\n", encoding="utf-8")
    ref = load_reference(f"laion:{caps}:{tmp_path / 'imgs'}", prep="pil-bicubic-8")
    assert [p.name for p in ref.files] == ["img_00002.png", "img_00000.png"]
    assert ref.captions == ["a boat", "a tree"] and ref.images().shape == (2, 3, 8, 8)
