"""search.run --proxy: the teacher proxy recorded on every trial's first-rung images (objectives.proxy)."""
from __future__ import annotations

import math

import pytest

from hpyn.config import SamplerConfig
from hpyn.generate import generate
from search.options import RunOptions
from search.objective import _PROXIES
from search.run import run_study


class PixelFID:
    """A stand-in for the Evaluator (the proxy is what is tested): mean pixel value as 'FID'."""

    def evaluate(self, images, prompts):
        return {"fid": float(images.float().mean()), "n": len(images)}


@pytest.fixture(scope="module")
def toy():
    from hpyn.models import load_model
    return load_model("toy", device="cpu")


def test_every_trial_records_the_proxy_of_its_first_rung_images(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("HPYN_CACHE", str(tmp_path / "cache"))
    opts = RunOptions(model="toy", steps=3, trials=3, rungs=(4, 8), storage=f"sqlite:///{tmp_path / 's.db'}",
                      baselines=("paper", "dpmpp2m-karras"), proxy="toy-classifier", pruner="none", quiet=True,
                      guidance=2.0, metrics=("fid",))
    study = run_study(opts, evaluator=PixelFID(), model=toy, log=None)
    proxy = next(p for k, p in _PROXIES.items() if k[1] == study.study_name)
    assert len(proxy) == 4 and proxy.teacher.steps == 50
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3
    prompts, seeds = proxy.prompts, proxy.seeds
    for t in finished:
        value = t.user_attrs["proxy_teacher"]
        assert math.isfinite(value) and value > 0
        # the same number from the trial's own config, regenerated: the proxy scored the first rung's images
        images = generate(toy, SamplerConfig.from_dict(t.user_attrs["config"]), prompts, seeds, batch_size=4)
        assert value == pytest.approx(proxy.score(images), rel=1e-5)

