"""Noise table and σ grids against the spec's computed numbers (spec A, B.3)."""

import json

import pytest
import torch

from hpyn import schedules as S
from hpyn.noise import NoiseTable
from hpyn.presets import load_preset, paper_setting, preset_document, published


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs() / b.abs()).max().item()


def test_sd_noise_table_endpoints(sd_table):
    # spec A: ā_0 = 0.99915, ā_999 = 0.0046601, σ_min = 0.029168, σ_max = 14.6146
    assert sd_table.alphas_cumprod[0].item() == pytest.approx(0.99915, abs=1e-5)
    assert sd_table.alphas_cumprod[-1].item() == pytest.approx(0.0046601, rel=1e-4)
    assert sd_table.sigma_min == pytest.approx(0.029168, rel=1e-4)
    assert sd_table.sigma_max == pytest.approx(14.6146, rel=1e-5)


def test_t_of_sigma_hits_table_points_and_clamps(sd_table):
    idx = torch.tensor([0, 1, 17, 500, 998, 999])
    t = sd_table.t_of_sigma(sd_table.sigmas[idx])
    assert torch.allclose(t, idx.double(), atol=1e-6)
    # outside the table: clamped to [0, 999]
    assert sd_table.t_of_sigma(1e-4).item() == 0.0
    assert sd_table.t_of_sigma(100.0).item() == pytest.approx(999.0)
    # scalar and batched calls agree
    s = torch.tensor([0.13198, 2.0, 7.5])
    assert torch.allclose(sd_table.t_of_sigma(s), torch.stack([sd_table.t_of_sigma(v) for v in s]))


def test_two_maps_round_trip_within_spec_tolerance(sd_table):
    # spec A: map 2 then map 1 is not the identity (18.320 → 18.325, 3.182 → 3.200 at the spec's points);
    # mid-interval at small t the gap reaches 0.028 (t = 3.5), shrinking as t grows
    t = torch.linspace(1, 998, 400, dtype=torch.float64)
    back = sd_table.t_of_sigma(sd_table.sigma_of_t(t))
    assert (back - t).abs().max().item() < 0.03
    assert (back - t)[t > 100].abs().max().item() < 0.005
    assert sd_table.t_of_sigma(sd_table.sigma_of_t(3.182)).item() == pytest.approx(3.200, abs=2e-3)
    assert sd_table.t_of_sigma(sd_table.sigma_of_t(18.32)).item() == pytest.approx(18.325, abs=2e-3)


def test_sigma_of_t_rejects_out_of_range(sd_table):
    with pytest.raises(ValueError, match="1000"):
        sd_table.sigma_of_t(torch.tensor([1000.0]))


def test_noise_table_rejects_bad_alphas():
    with pytest.raises(ValueError, match="decreasing"):
        NoiseTable(torch.tensor([0.5, 0.7, 0.2]))


def test_outer_karras_grids_match_spec(sd_table):
    # spec B.3 outer grids
    g = S.karras(8, sd_table.sigma_min, sd_table.sigma_max, 5)
    assert rel(g, [14.615, 8.5508, 4.6907, 2.3704, 1.0751, 0.42015, 0.13198, 0.029168]) < 1e-3
    g = S.karras(12, sd_table.sigma_min, sd_table.sigma_max, 12)
    assert g[10].item() == pytest.approx(0.059830, rel=1e-3)
    g = S.karras(12, sd_table.sigma_min, sd_table.sigma_max, 7)
    assert g[9].item() == pytest.approx(0.14714, rel=1e-3)


@pytest.mark.parametrize("family,steps", published(), ids=lambda v: str(v))
def test_published_presets_reproduce_spec_sigmas(family, steps, sd_table):
    doc = preset_document(family, steps)
    cfg = load_preset(family, steps)
    assert doc["model_family"] == family and cfg.steps == steps
    sig = cfg.sigmas(sd_table)
    assert len(sig) == cfg.steps + 1 and sig[-1] > 0  # n+1 points, no trailing zero (spec B.1)
    assert rel(sig, doc["expected_sigmas"]) < 1e-3
    # ε is the k-th point of the auxiliary Karras grid (Eq. 19): N_out, ρ_out and k act only through it
    k = doc["paper_knobs"]
    eps = S.karras(k["N_out"], sd_table.sigma_min, sd_table.sigma_max, k["rho_out"])[k["k"]].item()
    assert cfg.epsilon == pytest.approx(eps, rel=1e-6)


def test_sd15_5_step_timesteps_match_spec(sd_table):
    sig = load_preset("sd15", 5).sigmas(sd_table)
    tau = [999.00, 772.51, 556.68, 354.19, 169.98, 18.32]
    # spec B.3's τ are the grid's own timesteps; map 1 of σ(τ) returns them within the round-trip error
    assert torch.allclose(sd_table.t_of_sigma(sig), torch.tensor(tau, dtype=torch.float64), atol=0.03)


def test_time_spacing_with_rho_one_is_uniform_in_t(sd_table):
    sig = S.time_power(sd_table, 6, 0.5, rho=1.0)
    t = sd_table.t_of_sigma(sig)
    d = t[:-1] - t[1:]
    assert (d - d.mean()).abs().max() < 0.05


def test_zero_ending_appends_zero_after_sigma_min(sd_table):
    sig = S.build(sd_table, 5, spacing="karras", rho=7, final="zero")
    assert len(sig) == 6 and sig[-1] == 0 and sig[-2].item() == pytest.approx(sd_table.sigma_min)
    sig = S.build(sd_table, 5, spacing="time", rho=1.2, final="zero", sigma_min=0.1)
    assert sig[-2].item() == pytest.approx(0.1, rel=1e-3) and sig[-1] == 0
    assert len(S.build(sd_table, 1, final="zero")) == 2


def test_unknown_spacing_lists_choices(sd_table):
    with pytest.raises(ValueError, match=r"'cosine'.*karras.*time"):
        S.build(sd_table, 5, spacing="cosine", epsilon=0.1)


def test_published_settings_are_the_six_of_the_spec():
    assert published() == [("sd15", 5), ("sd15", 6), ("sd15", 8), ("sdxl", 5), ("sdxl", 6), ("sdxl", 8)]
    assert published("sdxl") == [("sdxl", 5), ("sdxl", 6), ("sdxl", 8)]
    with pytest.raises(ValueError, match=r"'sd15' with 7 steps.*sd15-5"):
        load_preset("sd15", 7)


def test_unpublished_step_count_uses_stated_rule():
    cfg, note = paper_setting("sd15", 7)
    assert note.startswith("rule") and "6-step" in note and "dpmpp_2m" in note
    assert cfg.solver == "dpmpp_2m" and cfg.epsilon == load_preset("sd15", 6).epsilon
    cfg, note = paper_setting("sd15", 5)
    assert note.startswith("published")


def test_schedule_cli_prints_spec_arrays(capsys):
    from hpyn.schedule import main
    assert main(["--model", "sd15", "--steps", "8", "--preset", "paper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert rel(out["sigmas"], [14.615, 6.7121, 3.6075, 2.1723, 1.4045, 0.93661, 0.61687, 0.37253, 0.14715]) < 1e-3
    assert out["timesteps"][-1] == pytest.approx(22.68, abs=0.03)
    assert main(["--model", "not-a-model", "--steps", "5"]) == 2
    assert "not-a-model" in capsys.readouterr().err


def test_grid_info_lists_timesteps_of_nonzero_sigmas(sd_table):
    from hpyn.presets import classic_setting
    from hpyn.schedules import grid_info
    info = grid_info(load_preset("sd15", 5), sd_table)
    assert set(info) == {"config", "sigmas", "timesteps", "h", "sigma_min", "sigma_max"}
    assert len(info["sigmas"]) == 6 and len(info["timesteps"]) == 6 and len(info["h"]) == 5
    assert info["config"] == load_preset("sd15", 5).to_dict()
    info = grid_info(classic_setting(5), sd_table)
    assert info["sigmas"][-1] == 0 and len(info["timesteps"]) == 5 and len(info["h"]) == 4
    assert info["timesteps"][-1] == pytest.approx(0.0, abs=1e-9)  # σ_min is the table's first entry, t = 0


def test_schedule_cli_comfyui_format(capsys):
    from hpyn.schedule import main
    assert main(["--model", "sd15", "--steps", "5", "--preset", "paper", "--format", "comfyui"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "ManualSigmas" in ln)
    values = [float(v) for v in line.split(None, 1)[1].split(",")]
    assert rel(values, [14.615, 4.5188, 1.9615, 1.0010, 0.50152, 0.13200]) < 1e-3
    assert "KSamplerSelect.sampler   euler" in out and "CFGGuider.cfg            5.5" in out
    assert "FreeU on every step" in out and "residual ending" in out
