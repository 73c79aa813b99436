"""Second-judge extractors: FD-CLIP (the CLIP model of CLIP score) and FD-DINOv2, registered by name, offline."""
import pytest
import torch

from objectives.features import EXTRACTORS, get_extractor


def test_judges_are_registered():
    assert {"clip-image", "dinov2", "toy-classifier", "inception-v3-compat"} <= set(EXTRACTORS)


def test_clip_image_reuses_the_loaded_clip_model_and_gives_its_image_embeddings():
    from objectives.clip_score import load_clip
    clip = load_clip("toy", device="cpu")
    ext = get_extractor("clip-image", clip=clip)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    feats = ext(images)
    assert feats.shape == (6, ext.dim) and ext.id == f"clip-image/{clip.id}"
    torch.testing.assert_close(feats, clip.image_features(images))   # the same features CLIP score uses
    assert ext.conventions()["weights"] == clip.id


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=224)).save_pretrained(folder)
    return folder


def test_dinov2_from_a_local_folder_gives_the_cls_token_after_the_final_norm(tiny_dinov2):
    from transformers import Dinov2Model
    ext = get_extractor("dinov2", weights=str(tiny_dinov2), device="cpu")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    feats = ext(images)
    assert feats.shape == (3, 32) and ext.dim == 32 and ext.id == f"dinov2/hf:{tiny_dinov2}"
    net = Dinov2Model.from_pretrained(tiny_dinov2).eval()
    x = torch.nn.functional.interpolate(images.float(), size=(224, 224), mode="bicubic", antialias=True)
    x = (x.clamp(0, 255) / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = net(pixel_values=x).last_hidden_state   # transformers applies the final layer norm here
    torch.testing.assert_close(feats, hidden[:, 0], atol=1e-5, rtol=1e-5)


def test_dinov2_env_var_names_the_weights(tiny_dinov2, monkeypatch):
    monkeypatch.setenv("HPYN_DINOV2_WEIGHTS", str(tiny_dinov2))
    assert get_extractor("dinov2", device="cpu").id == f"dinov2/hf:{tiny_dinov2}"


def test_missing_dinov2_weights_offline_name_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HPYN_DINOV2_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))   # an empty Hugging Face cache
    with pytest.raises(FileNotFoundError, match=r"facebook/dinov2-large.*offline"):
        get_extractor("dinov2")
    with pytest.raises(FileNotFoundError, match="nowhere/dino.*does not exist"):
        get_extractor("dinov2", weights=str(tmp_path / "nowhere" / "dino"))


def test_a_non_dinov2_folder_is_refused(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=16)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not DINOv2"):
        get_extractor("dinov2", weights=str(tmp_path))
