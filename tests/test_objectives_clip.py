"""CLIP score on tiny, locally built CLIP models (transformers and open_clip) vs a direct computation."""
import json
import os
import string

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectives.clip_score import clip_score, clip_scores, load_clip, load_open_clip, preprocess

PROMPTS = ["a photo of a cat", "a red car", "two dogs on grass", "a bowl of soup", "a very long prompt " * 30]


def _images(n=5, h=40, w=56, seed=0):
    """Smooth random images (resampling filters agree on them to one grey level)."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 5, 7, generator=g) * 255, size=(h, w), mode="bilinear")
    return x.round().to(torch.uint8)


def test_clip_scores_formula():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(clip_scores(a, b), [100.0, 0.0, 100 / np.sqrt(2)], atol=1e-9)  # clamp at 0
    assert clip_score(a, b) == pytest.approx((100 + 100 / np.sqrt(2)) / 3)


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny_clip")
    chars = list(string.ascii_lowercase + string.digits + ".,'!?-")
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    bos, eos = len(vocab) - 2, len(vocab) - 1
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=24,
                  pad_token="<|endoftext|>").save_pretrained(d)
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=24, bos_token_id=bos,
                                      eos_token_id=eos, pad_token_id=eos, projection_dim=16),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=32, patch_size=8, projection_dim=16),
                     projection_dim=16)
    CLIPModel(cfg).eval().save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(d)
    return d


def _out(x):
    return x if torch.is_tensor(x) else x.pooler_output


def test_hf_clip_score_matches_direct_computation(hf_clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    clip = load_clip(f"hf:{hf_clip_dir}", device="cpu")
    assert clip.id == f"hf:{hf_clip_dir}" and clip.image_size == 32 and clip.mean == (0.5, 0.5, 0.5)
    images = _images()
    ours = clip.scores(images, PROMPTS)

    # Direct: the transformers processor (PIL-based resize + crop), the tokenizer, cosine, 100 * max(., 0).
    model = CLIPModel.from_pretrained(hf_clip_dir).eval()
    proc = CLIPImageProcessor.from_pretrained(hf_clip_dir)
    tok = CLIPTokenizer.from_pretrained(hf_clip_dir)
    pix = proc(images=[im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")["pixel_values"]
    # Same preprocessing: torch's antialiased bicubic vs PIL's, within one grey level (1/127.5 here).
    assert (pix - preprocess(images, 32, (0.5,) * 3, (0.5,) * 3)).abs().max() < 1.01 / 127.5
    t = tok(PROMPTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        e_img = _out(model.get_image_features(pixel_values=pix))
        e_txt = _out(model.get_text_features(**t))
    direct = (100 * F.cosine_similarity(e_img, e_txt).clamp(min=0)).numpy()
    np.testing.assert_allclose(ours, direct, atol=0.2)   # inputs differ by PIL vs torch resampling only
    # Same pixels in -> identical scores:
    direct_same = 100 * F.cosine_similarity(
        _out(model.get_image_features(pixel_values=preprocess(images, 32, (0.5,) * 3, (0.5,) * 3))), e_txt).clamp(min=0)
    np.testing.assert_allclose(ours, direct_same.detach().numpy(), atol=1e-4)
    assert clip.conventions()["clip_model"] == clip.id


def test_open_clip_score_matches_direct_computation():
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)).eval()
    clip = load_open_clip("ViT-B-32", None, device="cpu", model=model, model_id="tiny-open-clip")
    images = _images(seed=1)
    ours = clip.scores(images, PROMPTS)
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        e_img = model.encode_image(preprocess(images, 32, clip.mean, clip.std))
        e_txt = model.encode_text(tok(PROMPTS))
    direct = (100 * F.cosine_similarity(e_img, e_txt).clamp(min=0)).numpy()
    np.testing.assert_allclose(ours, direct, atol=1e-4)


def test_preprocess_resizes_shortest_side_and_center_crops():
    img = torch.zeros(1, 3, 20, 40, dtype=torch.uint8)
    img[..., 10:30] = 255                    # bright centre half (columns 10..29)
    x = preprocess(img, 10, (0, 0, 0), (1, 1, 1))
    assert x.shape == (1, 3, 10, 10)
    assert x.min() > 0.9                      # only the bright centre survives the crop


def test_load_clip_errors():
    with pytest.raises(ValueError, match="unknown CLIP spec"):
        load_clip("no-such-model")
    with pytest.raises(ValueError, match="images but"):
        load_clip.__globals__["ClipModel"](id="x", encode_image=None, encode_text=None).scores(_images(2), ["a"])
