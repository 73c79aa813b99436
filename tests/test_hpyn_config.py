"""SamplerConfig validation (errors name the bad value) and JSON round trips."""

import json

import pytest

from hpyn.config import FreeUWindow, SamplerConfig, load_preset, paper_setting, classic_setting, preset


def paper5():
    return load_preset("sd15", 5)


@pytest.mark.parametrize("kw,match", [
    ({"steps": 0, "epsilon": 0.1}, "steps.*0"),
    ({"steps": 5, "epsilon": 0.1, "rho": 0.0}, r"rho.*> 0.*0\.0"),
    ({"steps": 5, "epsilon": 0.1, "rho": float("nan")}, "rho.*nan"),
    ({"steps": 5, "epsilon": -0.1}, r"epsilon.*-0\.1"),
    ({"steps": 5}, "needs epsilon"),
    ({"steps": 5, "epsilon": 0.1, "sigma_min": 0.05}, r"sigma_min=0\.05 has no effect"),
    ({"steps": 5, "final": "zero", "epsilon": 0.1}, r"epsilon=0\.1 has no effect"),
    ({"steps": 5, "epsilon": 0.1, "order": 4}, "order.*4"),
    ({"steps": 5, "epsilon": 0.1, "spacing": "cosine"}, "cosine"),
    ({"steps": 5, "epsilon": 0.1, "final": "half"}, "half"),
    ({"steps": 5, "epsilon": 0.1, "freeu": (FreeUWindow(3, 7),)}, r"\[3, 7\).*outside.*\[0, 5\)"),
    ({"steps": 5, "epsilon": 0.1, "freeu": (FreeUWindow(0, 3), FreeUWindow(2, 4))}, "overlap"),
    ({"steps": 5, "epsilon": 0.1, "freeu_mapping": "blocks"}, "blocks"),
    ({"steps": 5, "epsilon": 0.1, "guidance": -1.0}, "guidance.*-1"),
])
def test_invalid_configs_name_the_bad_value(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**kw)


@pytest.mark.parametrize("kw,match", [({"start": 2, "end": 2}, r"\[2, 2\) is empty"),
                                      ({"start": -1, "end": 2}, r"\[-1, 2\)"),
                                      ({"start": 0, "end": 2, "s2": -0.5}, "s2.*-0.5")])
def test_invalid_freeu_windows(kw, match):
    with pytest.raises(ValueError, match=match):
        FreeUWindow(**kw)


def test_model_dependent_checks(sd_table):
    with pytest.raises(ValueError, match=r"epsilon=20\.0.*14\.6"):
        SamplerConfig(steps=5, epsilon=20.0).validate(sd_table)
    with pytest.raises(ValueError, match=r"epsilon=0\.001.*0\.0291"):
        SamplerConfig(steps=5, epsilon=0.001).sigmas(sd_table)
    with pytest.raises(ValueError, match=r"sigma_min=15"):
        SamplerConfig(steps=5, final="zero", sigma_min=15.0).sigmas(sd_table)


@pytest.mark.parametrize("cfg", [paper5(), load_preset("sdxl", 6), classic_setting(6),
                                 SamplerConfig(steps=4, spacing="karras", rho=3.5, epsilon=0.2, order=3,
                                               freeu=(FreeUWindow(1, 3, 1.2, 1.3, 0.8, 0.5),),
                                               freeu_mapping="diffusers", guidance=4.0)])
def test_json_round_trip(cfg, tmp_path, sd_table):
    back = SamplerConfig.from_json(cfg.to_json())
    assert back == cfg
    cfg.save(tmp_path / "c.json")
    assert SamplerConfig.load(tmp_path / "c.json") == cfg
    assert (back.sigmas(sd_table) == cfg.sigmas(sd_table)).all()


def test_unknown_json_keys_list_the_valid_ones():
    d = paper5().to_dict() | {"eta": 0.5}
    with pytest.raises(ValueError, match=r"unknown sampler config key\(s\) \['eta'\].*steps"):
        SamplerConfig.from_dict(d)
    d = paper5().to_dict()
    d["freeu"][0]["b3"] = 1.0
    with pytest.raises(ValueError, match=r"FreeU window key\(s\) \['b3'\]"):
        SamplerConfig.from_dict(d)


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        SamplerConfig.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{steps: 5")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        SamplerConfig.load(tmp_path / "bad.json")
    (tmp_path / "neg.json").write_text(json.dumps({"steps": -2, "epsilon": 0.1}))
    with pytest.raises(ValueError, match="neg.json.*steps"):
        SamplerConfig.load(tmp_path / "neg.json")


def test_load_reads_documents_with_a_config_key(tmp_path):
    (tmp_path / "export.json").write_text(json.dumps({"schema_version": 1, "config": paper5().to_dict()}))
    assert SamplerConfig.load(tmp_path / "export.json") == paper5()


def test_freeu_at_follows_windows():
    cfg = load_preset("sdxl", 6)  # spec D.3: steps 1-3 (1.1, 1.1, 0.9, 0.2), step 5 (1.3, 1.4, 0.9, 0.2)
    assert [cfg.freeu_at(i) for i in range(6)] == [None, (1.1, 1.1, 0.9, 0.2), (1.1, 1.1, 0.9, 0.2),
                                                  (1.1, 1.1, 0.9, 0.2), None, (1.3, 1.4, 0.9, 0.2)]


def test_presets_by_name():
    assert preset("paper", "sd15", 8) == load_preset("sd15", 8)
    assert preset("dpmpp2m-karras", "sd15", 5).final == "zero"
    with pytest.raises(ValueError, match="'euler'"):
        preset("euler", "sd15", 5)
    with pytest.raises(ValueError, match="'sd3'"):
        paper_setting("sd3", 5)
