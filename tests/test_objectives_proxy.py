"""objectives.proxy.TeacherProxy: paired feature distance to a many-step teacher, on the shipped toy model."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

import objectives
from hpyn.presets import classic_setting
from objectives import proxy as proxy_mod
from objectives.features import Extractor
from objectives.proxy import TeacherProxy, model_fingerprint, paired_distances

N = 8
GUIDANCE = 2.0
TEACHER = classic_setting(16, GUIDANCE)   # small enough for a test; the benchmark's teacher has 50 steps


@pytest.fixture(scope="module")
def toy():
    from hpyn.models import load_model
    return load_model("toy", device="cpu")


@pytest.fixture(scope="module")
def pairs():
    return objectives.toy.prompts(N), list(range(N))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("proxy_cache")


@pytest.fixture(scope="module")
def proxy(toy, pairs, cache):
    return TeacherProxy(toy, TEACHER, *pairs, "toy-classifier", batch_size=N, cache=cache)


def counting_generate(monkeypatch):
    calls = []
    real = proxy_mod.generate

    def counted(*a, **k):
        calls.append(len(a[2]))
        return real(*a, **k)

    monkeypatch.setattr(proxy_mod, "generate", counted)
    return calls


def pool_extractor():
    return Extractor(name="test-pool", weights_id="none", dim=12, resize="adaptive-avgpool-2",
                     module=torch.nn.Identity(), forward=lambda x: F.adaptive_avg_pool2d(x.float(), 2).flatten(1))


def test_teacher_scores_zero_against_itself(proxy):
    assert proxy.from_cache is None and proxy.teacher_seconds > 0
    assert proxy.features.shape == (N, 1024)
    r = proxy.score_config(TEACHER)
    assert r["n"] == N and r["proxy_teacher"] == pytest.approx(0.0, abs=1e-6)


def test_score_falls_as_steps_approach_the_teacher(proxy):
    scores = {s: proxy.score_config(classic_setting(s, GUIDANCE))["proxy_teacher"] for s in (2, 4, 8)}
    assert scores[2] > scores[4] > scores[8] > 1e-4, scores
    assert scores[2] > 5 * scores[8], scores


def test_other_guidance_is_far_from_the_teacher(proxy):
    # same solver and steps as the teacher, another guidance scale: a different ODE, so far from its end point
    assert proxy.score_config(classic_setting(16, 6.0))["proxy_teacher"] > 1e-3


def test_cache_is_reused(toy, pairs, cache, proxy, monkeypatch):
    calls = counting_generate(monkeypatch)
    again = TeacherProxy(toy, TEACHER, *pairs, "toy-classifier", batch_size=N, cache=cache)
    assert calls == [] and again.from_cache == "features" and again.teacher_seconds == 0.0
    assert torch.equal(again.features, proxy.features) and again.key == proxy.key
    # another extractor reuses the teacher's cached images: features only, no generation
    pooled = TeacherProxy(toy, TEACHER, *pairs, pool_extractor(), batch_size=N, cache=cache)
    assert calls == [] and pooled.from_cache == "images" and pooled.features.shape == (N, 12)
    # other seeds, another teacher: new keys, generated once each
    other = TeacherProxy(toy, TEACHER, pairs[0], [s + 100 for s in pairs[1]], "toy-classifier", batch_size=N,
                         cache=cache)
    assert calls == [N] and other.key != proxy.key
    TeacherProxy(toy, TEACHER.replace(guidance=3.0), *pairs, "toy-classifier", batch_size=N, cache=cache)
    assert calls == [N, N]


def test_scores_images_and_features_alike(toy, pairs, proxy):
    from hpyn.generate import generate
    images = generate(toy, classic_setting(3, GUIDANCE), *pairs, batch_size=N)
    d = proxy.distances(images)
    assert d.shape == (N,) and (d >= 0).all()
    assert proxy.score(images) == pytest.approx(float(d.mean()))
    assert proxy.score(features=proxy.extractor(images)) == pytest.approx(float(d.mean()))
    assert proxy.score(images[:3], prefix=True) == pytest.approx(float(d[:3].mean()))


def test_mismatched_n_raises(toy, pairs, proxy):
    images = torch.zeros(N - 3, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=f"{N - 3} images, the teacher {N}"):
        proxy.score(images)
    with pytest.raises(ValueError, match=f"{N + 1} images, the teacher {N}"):
        proxy.score(torch.zeros(N + 1, 3, 32, 32, dtype=torch.uint8), prefix=True)
    with pytest.raises(ValueError, match="shape"):
        proxy.score(features=torch.zeros(N, 7))
    with pytest.raises(ValueError, match="either images or features"):
        proxy.score()
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 8\]"):
        proxy.score_config(TEACHER, n=N + 1)
    with pytest.raises(ValueError, match="3 prompts and 2 seeds"):
        TeacherProxy(toy, TEACHER, pairs[0][:3], [0, 1], use_cache=False)
    with pytest.raises(ValueError, match="distance must be one of"):
        TeacherProxy(toy, TEACHER, *pairs, distance="l1", use_cache=False)
    with pytest.raises(ValueError, match="seeds must be integers"):
        TeacherProxy(toy, TEACHER, pairs[0][:2], [0, -1], use_cache=False)
    with pytest.raises(ValueError, match="SamplerConfig"):
        TeacherProxy(toy, TEACHER.to_dict(), *pairs, use_cache=False)


def test_paired_distances():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    assert torch.allclose(paired_distances(a, b), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(paired_distances(a, b, "sqeuclidean"), torch.tensor([0.5, 2.5, 50.0], dtype=torch.float64))
    assert paired_distances(torch.zeros(1, 2), torch.ones(1, 2)).item() == pytest.approx(1.0)   # no NaN
    with pytest.raises(ValueError, match="same shape"):
        paired_distances(a, b[:2])


def test_fingerprint_follows_the_weights():
    class Pipe:
        unet = torch.nn.Linear(4, 4)

    class Model:
        name, pipe, dtype, device = "m", Pipe(), torch.float32, "cpu"

    m = Model()
    before = model_fingerprint(m)
    assert model_fingerprint(m) == before
    with torch.no_grad():
        m.pipe.unet.weight[0, 0] += 1.0
    assert model_fingerprint(m)["weights"] != before["weights"]
