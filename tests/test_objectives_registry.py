"""Named prompt sets, references, CLIP models and extractors: misses list the names, registrations are used,
and the toy model's entries come from one module (objectives.toy)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

import objectives.toy
from objectives import clip_score, features, prompts, references
from objectives.evaluate import Evaluator
from objectives.references import array_reference
from test_objectives_evaluate import _images, colour_clip, pool_extractor


def test_toy_entries_are_registered_by_objectives_toy():
    assert prompts.PROMPT_SETS["toy"] is objectives.toy.prompts
    assert references.REFERENCES["toy"].load is objectives.toy.reference
    assert (references.REFERENCES["toy"].prompts, references.REFERENCES["toy"].clip) == ("toy", "toy")
    assert clip_score.CLIP_MODELS["toy"] is objectives.toy.clip
    assert features.EXTRACTORS["toy-classifier"] is objectives.toy.classifier_extractor


def test_misses_list_the_registered_names():
    with pytest.raises(ValueError, match=r"unknown prompt set 'toys'; use a named set \['builtin', 'toy'\]"):
        prompts.load_prompts("toys")
    with pytest.raises(ValueError, match=r"unknown reference 'toys'; use a named reference \[.*'toy'.*\]"):
        references.load_reference("toys")
    with pytest.raises(ValueError, match=r"unknown CLIP spec 'toys'.*registered name \[.*'toy'.*\]"):
        clip_score.load_clip("toys")


def test_registering_a_prompt_set_reference_and_clip(monkeypatch, tmp_path):
    monkeypatch.setattr(prompts, "PROMPT_SETS", dict(prompts.PROMPT_SETS))
    monkeypatch.setattr(references, "REFERENCES", dict(references.REFERENCES))
    monkeypatch.setattr("objectives.evaluate.REFERENCES", references.REFERENCES)
    monkeypatch.setattr(clip_score, "CLIP_MODELS", dict(clip_score.CLIP_MODELS))
    colours = ["a red", "a green", "a blue"] * 10
    prompts.register_prompt_set("colours", lambda: colours)
    assert prompts.load_prompts("colours", n=4) == colours[:4]
    with pytest.raises(ValueError, match="'colours' is registered"):
        prompts.register_prompt_set("colours", list)
    with pytest.raises(ValueError, match="bad prompt set name 'a:b'"):
        prompts.register_prompt_set("a:b", list)

    images = _images(30, 0)
    references.register_reference("blocks", lambda: array_reference(images, name="blocks"), prompts="colours",
                                  clip="colour")
    clip_score.register_clip("colour", lambda device=None, batch_size=64: colour_clip())
    ev = Evaluator("blocks", extractor=pool_extractor(), cache=tmp_path, prd_runs=1, prd_clusters=4, kid_subsets=5)
    assert ev.prompts == colours and ev.clip.id == "colour-clip"   # the reference's registered defaults
    m = ev.evaluate(_images(6, 1))
    assert m["conventions"]["reference"] == "blocks" and m["conventions"]["clip_model"] == "colour-clip"
