"""Prompt sets: built-in, text file, LAION lines, the paper's COCO caption selection."""
import json
import random

import pytest

from objectives.prompts import (builtin_prompts, coco_selection, laion_captions, load_prompts, text_file_prompts)


def test_builtin_prompts_are_many_and_distinct():
    p = builtin_prompts()
    assert len(p) >= 200 and len(set(p)) == len(p)
    assert all(s and not s.startswith("#") for s in p)
    assert load_prompts("builtin", n=10) == p[:10]


def test_text_file_and_list(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\n a cat \n\na dog\n", encoding="utf-8")
    assert text_file_prompts(f) == ["a cat", "a dog"]
    assert load_prompts(str(f)) == load_prompts(f"file:{f}") == ["a cat", "a dog"]
    assert load_prompts(["x", "y"], n=1) == ["x"]


def test_laion_lines(tmp_path):
    f = tmp_path / "extracted_texts_10k.txt"
    f.write_text("Image 00001: a red house\nImage 00002:   two cats  \nplain line\n", encoding="utf-8")
    assert laion_captions(f) == [("00001", "a red house"), ("00002", "two cats"), ("2", "plain line")]
    assert load_prompts(f"laion:{f}") == ["a red house", "two cats", "plain line"]
    assert laion_captions(f, n=1) == [("00001", "a red house")]


def _fake_coco(tmp_path, n_images=30):
    rng = random.Random(0)
    images = [{"id": 1000 + i, "file_name": f"COCO_val2014_{1000 + i:012d}.jpg"} for i in range(n_images)]
    anns, k = [], 0
    for img in rng.sample(images, len(images)):          # annotations not grouped by image, as in COCO
        for j in range(rng.randint(5, 7)):
            anns.append({"id": k, "image_id": img["id"], "caption": f" caption {j} of {img['id']} "})
            k += 1
    rng.shuffle(anns)
    f = tmp_path / "captions_val2014.json"
    f.write_text(json.dumps({"images": images, "annotations": anns}))
    return f, images, anns


def test_coco_selection_follows_the_reference_code(tmp_path):
    f, images, anns = _fake_coco(tmp_path)
    sel = coco_selection(f, n_images=20, n_captions=12)
    # Reference code: random.seed(42); random.shuffle(ids); ids[:N]; pycocotools getAnnIds(imgIds=ids)
    # (per image in that order, annotations in file order); keep idx % 5 == 0; truncate.
    random.seed(42)
    ids = [im["id"] for im in images]
    random.shuffle(ids)
    ids = ids[:20]
    per_image = [a for i in ids for a in anns if a["image_id"] == i]
    expected = [a["caption"].strip() for k, a in enumerate(per_image) if k % 5 == 0][:12]
    assert sel.image_ids == ids
    assert sel.captions == expected
    assert all(i in ids for i in sel.caption_image_ids)
    assert load_prompts(f"coco:{f}") == coco_selection(f).captions


def test_unknown_spec_lists_choices():
    with pytest.raises(ValueError, match="builtin"):
        load_prompts("nope")
