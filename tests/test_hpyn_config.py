"""SamplerConfig validation (errors name the bad value) and JSON round trips."""

import json

import pytest

from hpyn.config import SCHEMA_VERSION, FreeUWindow, SamplerConfig
from hpyn.presets import classic_setting, load_preset, paper_setting, preset


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
    ({"steps": 5, "epsilon": 0.1, "solver": "dpmpp_4m"}, r"unknown solver 'dpmpp_4m'.*dpmpp_1s"),
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
                                 SamplerConfig(steps=4, spacing="karras", rho=3.5, epsilon=0.2, solver="dpmpp_3m",
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
    (tmp_path / "export.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "config": paper5().to_dict()}))
    assert SamplerConfig.load(tmp_path / "export.json") == paper5()


def _schema1(config: SamplerConfig) -> dict:
    """A config as schema 1 wrote it: the solver as its integer DPM-Solver++ `order`."""
    d = config.to_dict()
    d["order"] = {"dpmpp_1s": 1, "dpmpp_2m": 2, "dpmpp_3m": 3}[d.pop("solver")]
    return d


def test_schema_1_configs_and_exports_load(tmp_path):
    assert SCHEMA_VERSION == 2
    old = {"steps": 8, "spacing": "karras", "rho": 7.0, "final": "zero", "epsilon": None, "sigma_min": None,
           "order": 2, "freeu": [], "freeu_mapping": "reference", "guidance": 7.5}  # as version 1 saved it
    (tmp_path / "old.json").write_text(json.dumps(old))
    cfg = SamplerConfig.load(tmp_path / "old.json")
    assert cfg == classic_setting(8) and cfg.solver == "dpmpp_2m" and cfg.order == 2
    export = {"schema_version": 1, "kind": "hpyn.search export", "config": _schema1(load_preset("sdxl", 8)),
              "sigmas": [14.6, 0.1], "metrics": {"fid": 1.0}}
    assert export["config"]["order"] == 2
    (tmp_path / "export-v1.json").write_text(json.dumps(export))
    assert SamplerConfig.load(tmp_path / "export-v1.json") == load_preset("sdxl", 8)
    # saving writes the new key only
    cfg.save(tmp_path / "new.json")
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["solver"] == "dpmpp_2m" and "order" not in saved


@pytest.mark.parametrize("doc,match", [
    ({"schema_version": 3, "config": {"steps": 5, "epsilon": 0.1}}, r"schema_version 3.*1 to 2"),
    ({"schema_version": "2", "config": {"steps": 5, "epsilon": 0.1}}, r"schema_version '2'"),
    ({"steps": 5, "epsilon": 0.1, "order": 2, "solver": "dpmpp_2m"}, "either 'solver' or the legacy 'order'"),
    ({"steps": 5, "epsilon": 0.1, "order": 5}, "order must be 1, 2 or 3, got 5"),
    ({"steps": 5, "epsilon": 0.1, "solver": "unipc"}, r"unknown solver 'unipc'"),
])
def test_bad_documents_name_the_value(doc, match, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        SamplerConfig.load(tmp_path / "d.json")


def test_order_is_read_only():
    cfg = classic_setting(5)
    assert cfg.order == 2
    with pytest.raises(AttributeError):
        cfg.order = 3
    with pytest.raises(TypeError, match="order"):
        SamplerConfig(steps=5, epsilon=0.1, order=2)


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
