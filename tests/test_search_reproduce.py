"""search.reproduce, the independent check through diffusers itself: on a classic Karras grid diffusers' own
DPMSolverMultistepScheduler / UniPCMultistepScheduler and hpyn (hpyn.apply, and hpyn.generate) give the same images,
on the toy and on a tiny SDXL pipeline; other grids are refused with the way to sample them (hpyn.apply)."""

from __future__ import annotations

import json

import pytest
import torch

from hpyn.config import SamplerConfig
from hpyn.presets import classic_setting, paper_setting, unipc_karras_setting
from search.reproduce import check_classic, main, sample

PROMPTS, SEEDS = ["a photo of a sneaker", "a photo of a bag"], [3, 11]
CONFIGS = {"dpmpp_2m-karras": classic_setting(5, 3.0), "dpmpp_1s-karras": classic_setting(5, 3.0).replace(solver="dpmpp_1s"),
           "unipc-karras": unipc_karras_setting(5, 3.0)}


def _pipe(folder):
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def toy_pipe():
    from hpyn.toy import PIPELINE
    return _pipe(PIPELINE)


def _close(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a.int() - b.int()).abs().float()
    return float(d.max()), float(d.mean())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_scheduler_matches_hpyn_on_the_toy(toy_pipe, name):
    theirs, ours = sample(toy_pipe, CONFIGS[name], PROMPTS, SEEDS)
    worst, mean = _close(theirs, ours)
    assert worst <= 3 and mean <= 0.15, (worst, mean)   # diffusers' integer timesteps; hpyn's are fractional
    # and the check can fail: one order lower is far apart
    other = CONFIGS[name].replace(solver="dpmpp_1s" if name != "dpmpp_1s-karras" else "dpmpp_2m")
    assert _close(sample(toy_pipe, other, PROMPTS, SEEDS)[1], ours)[1] > 3 * max(mean, 0.05)


def test_hpyn_apply_side_equals_hpyn_generate(toy_pipe):
    from hpyn.generate import generate
    from hpyn.models import load_model
    _, ours = sample(toy_pipe, CONFIGS["dpmpp_2m-karras"], PROMPTS, SEEDS)
    ref = generate(load_model("toy", device="cpu"), CONFIGS["dpmpp_2m-karras"], PROMPTS, SEEDS)
    worst, mean = _close(ref, ours)
    assert worst <= 1 and mean < 0.01


@pytest.mark.parametrize("name", ["dpmpp_2m-karras", "unipc-karras"])
def test_diffusers_scheduler_matches_hpyn_on_tiny_sdxl(tiny_sdxl_dir, name):
    theirs, ours = sample(_pipe(tiny_sdxl_dir), CONFIGS[name], PROMPTS, SEEDS)
    worst, mean = _close(theirs, ours)
    assert worst <= 3 and mean <= 0.15, (worst, mean)


@pytest.mark.parametrize("config,why", [
    (paper_setting("sd15", 5)[0], "not the classic"),
    (classic_setting(5).replace(rho=5.0), "rho 5.0"),
    (classic_setting(5).replace(guidance_interval=(0.5, 5.0)), "guidance interval"),
])
def test_grids_without_a_diffusers_scheduler_are_refused_with_the_way_out(config, why):
    with pytest.raises(ValueError, match=why) as e:
        check_classic(config)
    assert "hpyn.apply" in str(e.value)


def test_cli_writes_diffusers_images_and_reports_agreement(tmp_path, capsys):
    from hpyn.toy import PIPELINE
    export = tmp_path / "best.json"
    export.write_text(json.dumps({"schema_version": 2, "config": CONFIGS["dpmpp_2m-karras"].to_dict()}))
    assert main(["--export", str(export), "--model", str(PIPELINE), "--prompt", "a bag", "--seeds", "0-1",
                 "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]
    assert "DPMSolverMultistepScheduler" in capsys.readouterr().out
    assert SamplerConfig.load(export) == CONFIGS["dpmpp_2m-karras"]
