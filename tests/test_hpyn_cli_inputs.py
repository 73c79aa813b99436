"""Bad inputs to `python -m hpyn.generate` and `python -m hpyn.schedule`, as a table: each is rejected with exit
status 2 and a one-line `error:` naming the bad value, before any model loads, within seconds, and without creating
an output folder or file. Valid but risky inputs warn once and go on. `-s` prints each message (the closing note's
table)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from hpyn import generate as generate_fn
from hpyn.generate import main as generate_main
from hpyn.schedule import main as schedule_main

REJECT_WITHIN_S = 5.0
CUDA = "cuda:99" if torch.cuda.is_available() else "cuda"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace (the working directory) with config, prompt and other files; an offline, empty hub cache; every
    model or pipeline load is a test failure."""
    monkeypatch.chdir(tmp_path)
    configs = {"good": {"steps": 5, "epsilon": 0.1}, "eps": {"steps": 5, "epsilon": 50.0},
               "huge": {"steps": 200000, "epsilon": 0.1}, "keys": {"steps": 5, "epsilon": 0.1, "rho_tim": 1.2},
               "schema": {"schema_version": 9, "config": {"steps": 5, "epsilon": 0.1}},
               "loud": {"steps": 5, "epsilon": 0.1, "guidance": 1e308},
               "window": {"steps": 5, "epsilon": 0.1, "freeu": [{"start": 3, "end": 9}]}}
    for name, doc in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    (tmp_path / "notjson.json").write_text("{oops")
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notapipeline").mkdir()
    (tmp_path / "hub").mkdir()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))

    def forbid(*a, **k):
        raise AssertionError("a model must not load for a bad input")
    monkeypatch.setattr("hpyn.models.load_model", forbid)
    monkeypatch.setattr("diffusers.DiffusionPipeline.from_pretrained", forbid)
    monkeypatch.setattr("diffusers.StableDiffusionPipeline.from_pretrained", forbid)
    return tmp_path


def _files(root: Path) -> set:
    return {(p.relative_to(root), p.stat().st_size if p.is_file() else None) for p in root.rglob("*")}


def rejects(main, argv, bad, ws, capsys, label):
    """main(argv) exits 2 with one `error:` line naming `bad`, fast, leaving the workspace as it was."""
    before = _files(ws)
    t = time.perf_counter()
    try:
        rc, ours = main(argv), True
    except SystemExit as e:   # argparse's own errors (exit status 2, usage and message on stderr)
        rc, ours = e.code, False
    elapsed = time.perf_counter() - t
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    with capsys.disabled():
        print(f"\n| {main.__module__} | `{label}` | {rc} | {last.replace(str(ws), 'WS')} |")
    assert rc == 2, err
    assert bad in last, err
    assert "error:" in last and (not ours or err.strip() == last), err   # ours: exactly one line
    assert "Traceback" not in err and "warning" not in err, err
    assert elapsed < REJECT_WITHIN_S, elapsed
    assert _files(ws) == before, "a bad input created or changed files"


def _argv(base: dict, args: list, ws: Path) -> list[str]:
    """`base` with the (flag, value) pairs of `args` replacing or added to it; value None drops the flag."""
    argv = dict(base)
    for k, v in zip(args[::2], args[1::2]):
        if v is None:
            argv.pop(k, None)
        else:
            argv[k] = v.replace("WS", str(ws))
    return [x for kv in argv.items() for x in kv]


def _label(args: list) -> str:
    return " ".join(f"{k} {v}" if v is not None else f"(no {k})" for k, v in zip(args[::2], args[1::2]))


# ---- python -m hpyn.generate ---------------------------------------------------------------------------------
GENERATE = [  # (flags replacing or added to a good command line, text the message must contain)
    (["--steps", "0"], "--steps 0"), (["--steps", "200000"], "--steps 200000"), (["--steps", "x"], "'x'"),
    (["--config", "paper", "--steps", None], "give --steps"),
    (["--config", "WS/good.json", "--steps", "8"], "--steps 8"),
    (["--config", "WS/eps.json", "--steps", None], "epsilon=50.0"),
    (["--config", "WS/huge.json", "--steps", None], "200000"),
    (["--config", "WS/keys.json", "--steps", None], "rho_tim"),
    (["--config", "WS/schema.json", "--steps", None], "schema_version 9"),
    (["--config", "WS/notjson.json", "--steps", None], "notjson.json"),
    (["--config", "WS/loud.json", "--steps", None], "1e+308"),
    (["--config", "WS/window.json", "--steps", None], "[3, 9)"),
    (["--config", "WS/missing.json"], "missing.json"), (["--config", "WS"], "Is a directory"),
    (["--config", "nopreset"], "'nopreset'"),
    (["--batch-size", "0"], "--batch-size 0"), (["--batch-size", "-3"], "--batch-size -3"),
    (["--out", "WS/afile"], "afile"), (["--out", "WS/afile/sub"], "afile"),
    (["--seeds", "5-2"], "'5-2'"), (["--seeds", "-1"], "'-1'"), (["--seeds", "a"], "'a'"),
    (["--seeds", "1,,2"], "'1,,2'"), (["--seeds", "0-100000000"], "0-100000000"),
    (["--seeds", f"{2**64}"], f"{2**64}"),
    (["--prompt", None, "--prompts", "WS/nofile.txt"], "nofile.txt"),
    (["--prompt", None, "--prompts", "WS/empty.txt"], "empty.txt"),
    (["--prompt", None, "--prompts", "WS/latin1.txt"], "latin1.txt"),
    (["--prompt", None, "--prompts", "WS"], "Is a directory"), (["--prompt", ""], "--prompt ''"),
    (["--model", "nope"], "'nope'"), (["--model", "/nonexistent/model"], "/nonexistent/model"),
    (["--model", "WS/notapipeline"], "notapipeline"),
    (["--model", "org/not-cached"], "org/not-cached"), (["--model", "sd15"], "sd15"),
    (["--device", "bogus"], "bogus"), (["--device", CUDA], CUDA),
    (["--guidance", "inf"], "--guidance inf"), (["--guidance", "nan"], "--guidance nan"),
    (["--guidance", "-1"], "--guidance -1"), (["--guidance", "1e308"], "1e+308"),
]
GOOD = {"--model": "toy", "--config": "paper", "--steps": "5", "--prompt": "a photo of a bag", "--seeds": "0-1",
        "--out": "WS/out", "--device": "cpu"}


@pytest.mark.parametrize("args,bad", GENERATE, ids=[_label(a) for a, _ in GENERATE])
def test_generate_rejects(ws, capsys, args, bad):
    rejects(generate_main, _argv(GOOD, args, ws), bad, ws, capsys, _label(args))


def test_offline_hub_is_named(ws, capsys):
    assert generate_main(_argv(GOOD, ["--model", "org/not-cached"], ws)) == 2
    assert "the hub is offline (HF_HUB_OFFLINE=1)" in capsys.readouterr().err


def test_unwritable_out(ws, capsys, monkeypatch):
    locked = ws / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:   # root writes anywhere: report what any other user's os.access would say
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked else real(p, m))
    rejects(generate_main, _argv(GOOD, ["--out", "WS/locked/out"], ws), "not writable", ws, capsys, "--out locked/out")


# ---- python -m hpyn.schedule ---------------------------------------------------------------------------------
SCHEDULE = [
    (["--steps", "0"], "--steps 0"), (["--steps", "200000"], "--steps 200000"), (["--steps", None], "--steps"),
    (["--config", "WS/good.json", "--steps", "8"], "--steps 8"),
    (["--config", "WS/eps.json", "--steps", None], "epsilon=50.0"),
    (["--config", "WS/huge.json", "--steps", None], "200000"),
    (["--config", "WS/keys.json", "--steps", None], "rho_tim"),
    (["--config", "WS/schema.json", "--steps", None], "schema_version 9"),
    (["--config", "WS/missing.json"], "missing.json"),
    (["--preset", "nope"], "'nope'"), (["--model", "nope"], "'nope'"),
    (["--model", "org/not-cached"], "org/not-cached"), (["--format", "xml"], "'xml'"),
]
SCHEDULE_GOOD = {"--model": "sd15", "--steps": "5"}


@pytest.mark.parametrize("args,bad", SCHEDULE, ids=[_label(a) for a, _ in SCHEDULE])
def test_schedule_rejects(ws, capsys, args, bad):
    rejects(schedule_main, _argv(SCHEDULE_GOOD, args, ws), bad, ws, capsys, _label(args))


def test_schedule_takes_a_config_file_with_its_own_steps(ws, capsys):
    """--steps equal to the file's is no conflict; absent, the file's count is used."""
    for extra in ([], ["--steps", "5"]):
        assert schedule_main(["--model", "sd15", "--config", str(ws / "good.json"), "--json", *extra]) == 0
        assert len(json.loads(capsys.readouterr().out)["sigmas"]) == 6


# ---- valid but risky: warn once, go on -----------------------------------------------------------------------
def test_recycled_and_unused_prompts_warn_once(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "imgs"
    common = ["--model", str(tiny_pipeline_dir), "--config", "dpmpp2m-karras", "--steps", "2", "--out", str(out),
              "--device", "cpu", "--batch-size", "2"]
    assert generate_main([*common, "--prompt", "a cat", "--prompt", "a dog", "--seeds", "0-2"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "2 prompt(s) for 3 seeds" in err and "reused" in err, err
    assert (out / "prompts.txt").read_text().splitlines() == ["000000\ta cat", "000001\ta dog", "000002\ta cat"]
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    assert generate_main([*common, "--prompt", "a cat", "--prompt", "a dog", "--seeds", "7"]) == 0
    err = capsys.readouterr().err
    assert "only the first 1 prompt(s) are used" in err and "already holds a run" in err, err
    assert err.count("warning:") == 2, err


def test_a_model_that_cannot_load_is_a_message_and_creates_nothing(tiny_pipeline_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / "scheduler").mkdir(parents=True)
    for rel in ("model_index.json", "scheduler/scheduler_config.json"):   # configs, no weights
        (broken / rel).write_text((tiny_pipeline_dir / rel).read_text())
    assert generate_main(["--model", str(broken), "--config", "paper", "--steps", "2", "--prompt", "x",
                          "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --model {str(broken)!r}: cannot load it") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_sigterm_keeps_finished_images_whole(tiny_pipeline_dir, tmp_path):
    """SIGTERM (like Ctrl-C) mid-run: exit 130 with one line saying how many images were written; each written PNG
    opens, and no temporary file is left."""
    from PIL import Image
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpyn.generate", "--model", str(tiny_pipeline_dir), "--config",
                             "paper", "--steps", "4", "--prompt", "x", "--seeds", "0-99999", "--batch-size", "2",
                             "--out", str(out), "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "000003.png").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: wrote ") and "of 100000 images" in last and "Traceback" not in err, err
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 4 and int(last.split()[2]) == len(pngs)
    for p in pngs:
        Image.open(p).load()
    assert not list(out.glob(".*.tmp"))


# ---- the package and the module `hpyn.generate` ------------------------------------------------------------------
def test_running_the_module_gives_no_runtime_warning_and_the_function_stays_exported():
    """`python -m hpyn.generate` used to warn "'hpyn.generate' found in sys.modules after import of package 'hpyn'"
    (the package imported its own CLI module); `from hpyn import generate` must still be the function, also after
    another module imported the submodule first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "hpyn.generate", "--config", "paper",
                        "--steps", "0", "--prompt", "x", "--out", "unused"], capture_output=True, text=True,
                       check=False, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --steps 0: give a number of solver steps from 1 to 1000"], r.stderr
    script = ("import sys, types, hpyn; assert 'hpyn.generate' not in sys.modules; "
              "from hpyn.generate import main; from hpyn import generate; import hpyn.generate; "
              "assert isinstance(generate, types.FunctionType) and hpyn.generate is generate; print('ok')")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, env=env, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert isinstance(generate_fn, types.FunctionType) and generate_fn.__module__ == "hpyn.generate"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
