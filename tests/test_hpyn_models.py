"""Model registry and adapters: lookup by name, family detection from configs, registering a family."""

import json
import shutil

import pytest
import torch

from hpyn.freeu import freeu_sites
from hpyn.models import (ADAPTERS, MODELS, Conditioning, LoadedModel, ModelSpec, detect_adapter, get_adapter,
                         load_model, noise_table, register_adapter, register_model, resolve)
from hpyn.models.sd import SDAdapter
from hpyn.noise import NoiseTable
from hpyn.presets import load_preset

PROMPTS = ["a photo of a cat", "a red car"]


def config_folder(tmp_path, name, pipeline_dir, class_name=None):
    """A folder with only a pipeline's model_index.json (class renamed) and unet config: enough to detect."""
    out = tmp_path / name
    (out / "unet").mkdir(parents=True)
    index = json.loads((pipeline_dir / "model_index.json").read_text())
    if class_name is not None:
        index["_class_name"] = class_name
    (out / "model_index.json").write_text(json.dumps(index))
    shutil.copy(pipeline_dir / "unet" / "config.json", out / "unet" / "config.json")
    return out


def test_misses_list_the_names():
    with pytest.raises(ValueError, match=r"unknown model 'sd-1\.5'.*'dreamshaper-xl'.*'sd15'.*'sdxl'.*'toy'"):
        resolve("sd-1.5")
    with pytest.raises(ValueError, match=r"unknown model adapter 'flux'; registered: \['sd', 'sdxl'"):
        get_adapter("flux")
    with pytest.raises(ValueError, match=r"no model adapter for pipeline class 'FluxPipeline' \(known classes: "
                                         r"\['StableDiffusionPipeline', 'StableDiffusionXLPipeline'"):
        detect_adapter({"_class_name": "FluxPipeline"}, {"_class_name": "FluxTransformer2DModel"})


def test_family_from_pipeline_class(tiny_pipeline_dir, tiny_sdxl_dir):
    assert resolve(str(tiny_pipeline_dir)).adapter == "sd"
    assert resolve(str(tiny_sdxl_dir)).adapter == "sdxl"


def test_family_of_an_unlisted_class_from_the_unet_config(tmp_path, tiny_pipeline_dir, tiny_sdxl_dir):
    # "XL" in a class name says nothing: the UNet's added conditions (addition_embed_type) decide
    assert resolve(str(config_folder(tmp_path, "a", tiny_pipeline_dir, "MyXLPipeline"))).adapter == "sd"
    assert resolve(str(config_folder(tmp_path, "b", tiny_sdxl_dir, "MyPipeline"))).adapter == "sdxl"
    # a named folder does not matter either
    assert resolve(str(config_folder(tmp_path, "model-xl", tiny_pipeline_dir))).adapter == "sd"
    with pytest.raises(ValueError, match="no model_index.json"):
        resolve(str(tmp_path / "a" / "unet"))


def test_hub_family_is_read_from_the_hub_configs(monkeypatch, tiny_pipeline_dir):
    spec = resolve("someone/some-xl-model")
    assert spec.adapter is None   # not guessed from the name; read from model_index.json when needed
    fetched = []

    def fake_download(repo, filename):
        fetched.append((repo, filename))
        return str(tiny_pipeline_dir / filename)

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert noise_table(spec) == noise_table(str(tiny_pipeline_dir))
    assert ("someone/some-xl-model", "model_index.json") in fetched


def test_noise_table_comes_from_the_adapter(tiny_pipeline_dir):
    cfg = json.loads((tiny_pipeline_dir / "scheduler" / "scheduler_config.json").read_text())
    assert noise_table(str(tiny_pipeline_dir)) == get_adapter("sd").noise_table(cfg) == NoiseTable.from_betas()


def test_registering_a_model_and_a_family(tmp_path, tiny_pipeline_dir, tiny_model, monkeypatch):
    monkeypatch.setattr("hpyn.models.base.ADAPTERS", dict(ADAPTERS))
    monkeypatch.setattr("hpyn.models.registry.MODELS", dict(MODELS))
    calls = []

    class Recording(SDAdapter):
        name = "recording-sd"
        pipeline_classes = ("RecordingPipeline",)

        def accepts_unet_config(self, unet_config):
            return False

        def make_denoiser(self, model, cond, guidance):
            calls.append((type(cond).__name__, len(cond.cond), guidance))
            return super().make_denoiser(model, cond, guidance)

    register_adapter(Recording())
    with pytest.raises(ValueError, match="'recording-sd' exists"):
        register_adapter(Recording())
    folder = tmp_path / "rec"
    shutil.copytree(tiny_pipeline_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "RecordingPipeline"}))
    register_model(ModelSpec("rec", str(folder), "recording-sd", family="sd15"))
    with pytest.raises(ValueError, match="unknown model adapter 'nope'"):
        register_model(ModelSpec("bad", str(folder), "nope"))
    assert resolve(str(folder)).adapter == "recording-sd" and resolve("rec").family == "sd15"

    from hpyn.generate import generate
    model = load_model("rec", device="cpu")
    cfg = load_preset("sd15", 5)
    imgs = generate(model, cfg, PROMPTS, [0, 1], batch_size=2)
    assert calls == [("Conditioning", 2, cfg.guidance)]               # generate() asked the adapter
    assert torch.equal(imgs, generate(tiny_model, cfg, PROMPTS, [0, 1]))  # same weights, same pixels


def test_loaded_model_delegates_to_its_adapter(tiny_model, tiny_pipeline_dir):
    m = tiny_model
    assert isinstance(m.adapter, SDAdapter) and m.adapter is get_adapter("sd")
    cond = m.encode_prompts(PROMPTS)
    assert isinstance(cond, Conditioning) and cond.added is None and cond.cond.shape == cond.uncond.shape
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.make_denoiser(cond, guidance=3.0)(x, 2.0), m.make_denoiser(PROMPTS, guidance=3.0)(x, 2.0))
    assert m.freeu_sites("diffusers") == freeu_sites(m.unet, "diffusers")
    freeu = m.freeu("reference")
    try:
        assert freeu.sites == freeu_sites(m.unet, "reference") and freeu.factors is None
    finally:
        freeu.remove()
    # built by hand from a pipeline (as benchmarks do), the adapter comes from the spec
    spec = resolve(str(tiny_pipeline_dir))
    assert LoadedModel("x", spec, m.pipe, m.table, m.device, m.dtype).adapter is get_adapter("sd")


def test_sdxl_adapter_adds_its_conditions(tiny_sdxl_dir):
    m = load_model(str(tiny_sdxl_dir), device="cpu")
    cond = m.encode_prompts(PROMPTS, resolution=24)
    assert cond.added["time_ids"].tolist() == [[24, 24, 0, 0, 24, 24]] * 2
    assert cond.added["text_embeds"].shape == cond.added_uncond["text_embeds"].shape == (2, 16)


def test_named_local_model_with_missing_weights_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr("hpyn.models.registry.MODELS", dict(MODELS))
    register_model(ModelSpec("gone", str(tmp_path / "nowhere"), "sd", notes="rebuild it with `make gone`"))
    with pytest.raises(FileNotFoundError, match="model 'gone'.*nowhere.*make gone"):
        resolve("gone")
