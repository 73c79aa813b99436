"""Bad inputs to every search entry point, as a table: each is rejected with exit status 2 and a message that names
the bad value, before any model (or pipeline, or worker) is loaded or started, within a few seconds, and without
creating a study, an export or any other file. `-s` prints each message (the closing note's table)."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from hpyn.presets import classic_setting, paper_setting
from search import export as export_mod
from search import reproduce as reproduce_mod
from search import run as run_mod
from search import workers as workers_mod

REJECT_WITHIN_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()   # nothing listens there: an unreachable PostgreSQL server
CUDA = "cuda:99" if torch.cuda.is_available() else "cuda"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace (the working directory) with a reference set, a prompt file, space files, a study database, a
    corrupt database and exports; every load or start is a test failure."""
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "ref.npz", images=np.random.default_rng(0).integers(0, 255, (8, 3, 8, 8), dtype=np.uint8))
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    spaces = {"tiny-rho": {"rho_time": [1e-300, 1e300]}, "huge-guidance": {"guidance": [0, 1e308]},
              "typo": {"rho_tim": [1, 2]}, "inf-eps": {"epsilon": 1e999}}
    for name, doc in spaces.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    (tmp_path / "corrupt.db").write_bytes(b"this is not an SQLite database\n" * 100)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "sub").mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/study.db")
    classic = classic_setting(2, 5.0).to_dict()
    good = {"config": classic, "sigmas": [14.6, 1.0, 0.0], "timesteps": [999, 500]}
    paper = {**good, "config": paper_setting("sd15", 2)[0].to_dict()}
    exports = {"good": good, "rising": {**good, "sigmas": [14.6, 0.1, 1.0]}, "nan": {**good, "sigmas": [14.6, float("nan"), 0.1]},
               "paper": paper, "solver": {**good, "config": {**classic, "solver": "euler"}},
               "keys": {"config": {}}, "guidance": {**good, "config": {**classic, "guidance": float("inf")}}}
    for name, doc in exports.items():
        (tmp_path / f"export-{name}.json").write_text(json.dumps(doc))
    (tmp_path / "notjson.json").write_text("{oops")

    def forbid(what):
        def fail(*a, **k):
            raise AssertionError(f"{what} must not happen for a bad input")
        return fail
    monkeypatch.setattr("hpyn.models.load_model", forbid("loading the model"))
    monkeypatch.setattr(run_mod, "load_evaluator", forbid("loading the metrics"))
    monkeypatch.setattr("objectives.evaluate.Evaluator.__init__", forbid("loading the metrics"))
    monkeypatch.setattr("diffusers.StableDiffusionPipeline.from_pretrained", forbid("loading a pipeline"))
    monkeypatch.setattr(workers_mod.subprocess, "Popen", forbid("starting a worker"))
    return tmp_path


def _files(root: Path) -> set:
    return {(p.relative_to(root), p.stat().st_size if p.is_file() else None) for p in root.rglob("*")}


def rejects(main, argv, bad, ws, capsys, label=""):
    """main(argv) exits 2 with a one-line message naming `bad`, fast, leaving the workspace as it was."""
    before = _files(ws)
    t = time.perf_counter()
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse's own errors (exit status 2, message on stderr)
        rc = e.code
    elapsed = time.perf_counter() - t
    err = capsys.readouterr().err
    with capsys.disabled():
        last = err.strip().splitlines()[-1] if err.strip() else ""
        print(f"\n| {main.__module__.removesuffix('.main')} | `{label}` | {rc} | {last.replace(str(ws), 'WS')} |")
    assert rc == 2, err
    assert bad in err, err
    assert "Traceback" not in err
    assert elapsed < REJECT_WITHIN_S, elapsed
    assert _files(ws) == before, "a bad input created or changed files"


# ---- search.run ------------------------------------------------------------------------------------------------
RUN = [  # (arguments replacing or added to a good command line, text the message must contain)
    (["--steps", "0"], "--steps 0"), (["--steps", "200000"], "--steps 200000"), (["--steps", "x"], "'x'"),
    (["--model", "no-such-model"], "no-such-model"), (["--sampler", "anneal"], "'anneal'"),
    (["--proxy", "nope"], "'nope'"), (["--proxy", "toy-classifier", "--backend", "ray"], "--proxy 'toy-classifier'"),
    (["--guidance", "inf"], "--guidance inf"), (["--guidance", "nan"], "--guidance nan"),
    (["--guidance", "1e308"], "1e+308"), (["--guidance", "-1"], "--guidance -1"),
    (["--timeout", "0"], "--timeout 0"), (["--timeout", "inf"], "--timeout inf"),
    (["--clip-margin", "nan"], "--clip-margin nan"), (["--gpus-per-trial", "inf"], "--gpus-per-trial inf"),
    (["--rungs", "1"], "'1'"), (["--rungs", "1,8"], "'1,8'"), (["--rungs", "8,100000000000"], "100000000000"),
    (["--rungs", "64,32"], "64,32"), (["--rungs", "4,x"], "4,x"), (["--rungs", "8,8"], "8,8"),
    (["--trials", "0"], "--trials 0"), (["--seed", "-1"], "--seed -1"), (["--seed", str(2**40)], str(2**40)),
    (["--batch-size", "0"], "--batch-size 0"), (["--n-reference", "1"], "--n-reference 1"),
    (["--heartbeat", "-1"], "--heartbeat -1"), (["--startup-trials", "-1"], "--startup-trials -1"),
    (["--max-concurrent", "0"], "--max-concurrent 0"), (["--objective", "nope"], "'nope'"),
    (["--clip", "nosuchclip"], "nosuchclip"), (["--clip", "hf:/nonexistent/clip"], "/nonexistent/clip"),
    (["--device", "bogus"], "bogus"), (["--device", CUDA], CUDA),
    (["--storage", "notaurl"], "notaurl"), (["--storage", "nosuchdb://x/y"], "nosuchdb"),
    (["--storage", "sqlite://"], "sqlite://"), (["--storage", "sqlite:///WS/sub"], "is a folder"),
    (["--storage", "sqlite:///WS/afile/sub/s.db"], "is a file"),
    (["--storage", f"postgresql://hpyn:secret@127.0.0.1:{PORT}/hpyn"], f"host 127.0.0.1:{PORT}"),
    (["--prompts", "file:/nonexistent/prompts.txt"], "/nonexistent/prompts.txt"),
    (["--reference", "npz:/nonexistent/ref.npz"], "/nonexistent/ref.npz"),
    (["--space", "WS/tiny-rho.json"], "rho_time"), (["--space", "WS/huge-guidance.json"], "guidance"),
    (["--space", "WS/typo.json"], "rho_tim"), (["--space", "WS/inf-eps.json"], "epsilon"),
    (["--space", "WS/nope.json"], "nope.json"),
    (["--metrics", "fid,bogus"], "bogus"), (["--metrics", "kid"], "'kid'"),
    (["--objective", "fid+clip", "--clip", "none"], "fid+clip"),
    (["--objective", "fid+clip", "--clip-margin", "1"], "--clip-margin"),
    (["--backend", "ray", "--objective", "fid+clip"], "--backend ray"),
]


@pytest.mark.parametrize("args,bad", RUN, ids=[" ".join(a) for a, _ in RUN])
def test_search_run_rejects(ws, capsys, args, bad):
    argv = ["--model", "sd15", "--steps", "5", "--storage", f"sqlite:///{ws}/new.db", "--prompts", "builtin",
            "--reference", f"npz:{ws}/ref.npz", "--rungs", "4,8", "--device", "cpu"]
    for i in range(0, len(args), 2):
        k, v = args[i], args[i + 1].replace("WS", str(ws))
        if k in argv:
            argv[argv.index(k) + 1] = v
        else:
            argv += [k, v]
    rejects(run_mod.main, argv, bad, ws, capsys, " ".join(args))


def test_unreachable_server_message_hides_the_password(ws, capsys):
    url = f"postgresql://hpyn:secret@127.0.0.1:{PORT}/hpyn"
    assert run_mod.main(["--model", "sd15", "--steps", "5", "--storage", url, "--reference", f"npz:{ws}/ref.npz",
                         "--rungs", "4,8"]) == 2
    err = capsys.readouterr().err
    assert "secret" not in err and len(err.strip().splitlines()) == 1


# ---- search.export ---------------------------------------------------------------------------------------------
EXPORT = [
    (["--out", "WS/missing/best.json"], "missing"), (["--out", "WS/sub"], "is a folder"),
    (["--out", "WS/afile/best.json"], "is a file"),
    (["--storage", "sqlite:///WS/corrupt.db"], "corrupt.db"), (["--storage", "sqlite:///WS/nofile.db"], "nofile.db"),
    (["--study", "nope"], "nope"), (["--top", "0"], "--top 0"), (["--top", "x"], "'x'"),
    (["--storage", "notaurl"], "notaurl"),
    (["--storage", f"postgresql://hpyn:secret@127.0.0.1:{PORT}/hpyn"], f"host 127.0.0.1:{PORT}"),
]


@pytest.mark.parametrize("args,bad", EXPORT, ids=[" ".join(a) for a, _ in EXPORT])
def test_search_export_rejects(ws, capsys, args, bad):
    argv = {"--storage": f"sqlite:///{ws}/study.db", "--study": "s", "--out": f"{ws}/best.json"}
    argv.update({args[i]: args[i + 1].replace("WS", str(ws)) for i in range(0, len(args), 2)})
    rejects(export_mod.main, [x for kv in argv.items() for x in kv], bad, ws, capsys, " ".join(args))


# ---- search.reproduce ------------------------------------------------------------------------------------------
REPRODUCE = [
    (["--seeds", "5-2"], "5-2"), (["--seeds", "x"], "'x'"), (["--seeds", "-1"], "-1"), (["--seeds", "0-99999"], "0-99999"),
    (["--export", "WS/missing.json"], "missing.json"), (["--export", "WS/notjson.json"], "not valid JSON"),
    (["--export", "WS/export-keys.json"], "missing"), (["--export", "WS/export-rising.json"], "must decrease"),
    (["--export", "WS/export-nan.json"], "nan"), (["--export", "WS/export-paper.json"], "not the classic"),
    (["--export", "WS/export-solver.json"], "euler"), (["--export", "WS/export-guidance.json"], "inf"),
    (["--out", "WS/afile"], "is a file"), (["--model", "/nonexistent/model"], "/nonexistent/model"),
    (["--prompt", ""], "--prompt ''"),
]


@pytest.mark.parametrize("args,bad", REPRODUCE, ids=[" ".join(a) for a, _ in REPRODUCE])
def test_search_reproduce_rejects(ws, capsys, args, bad):
    argv = {"--export": f"{ws}/export-good.json", "--model": "some/hub-id", "--prompt": "a cat",
            "--seeds": "0-1", "--out": f"{ws}/out"}
    argv.update({args[i]: args[i + 1].replace("WS", str(ws)) for i in range(0, len(args), 2)})
    rejects(reproduce_mod.main, [x for kv in argv.items() for x in kv], bad, ws, capsys, " ".join(args))


def test_reproduce_refuses_a_grid_whose_sigmas_increase(tmp_path):
    doc = {"config": classic_setting(3, 1.0).to_dict(), "sigmas": [14.6, 2.0, 3.0, 0.0], "timesteps": [999, 600, 700]}
    (tmp_path / "e.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="σ_1 = 2.0 and σ_2 = 3.0"):
        reproduce_mod.load_schedule(tmp_path / "e.json")


# ---- search.workers --------------------------------------------------------------------------------------------
def _run_args(ws, **change):
    args = {"--model": "sd15", "--steps": "5", "--storage": f"sqlite:///{ws}/new.db", "--prompts": "builtin",
            "--reference": f"npz:{ws}/ref.npz", "--rungs": "4,8"}
    args.update(change)
    return [x for kv in args.items() if kv[1] is not None for x in kv]


WORKERS = [
    (["--stagger", "-5", "--cpu-workers", "2"], {}, "--stagger -5"),
    (["--stagger", "nan", "--cpu-workers", "2"], {}, "--stagger nan"),
    (["--cpu-workers", "-2"], {}, "--cpu-workers -2"),
    (["--cpu-workers", "2"], {"--steps": "0"}, "--steps 0"),
    (["--cpu-workers", "2"], {"--guidance": "inf"}, "--guidance inf"),
    (["--cpu-workers", "2"], {"--storage": None}, "--storage"),
    (["--cpu-workers", "2"], {"--bogus-flag": "1"}, "--bogus-flag"), (["--cpu-workers", "2"], {"--steps": "x"}, "'x'"),
    ([], {}, "no workers"), (["--gpus", ","], {}, "--gpus ','"),
]


@pytest.mark.parametrize("args,change,bad", WORKERS, ids=[" ".join(a) + str(c) for a, c, _ in WORKERS])
def test_search_workers_rejects_before_starting_any_worker(ws, capsys, args, change, bad):
    label = " ".join(args) + (" -- " + " ".join(f"{k} {v}" for k, v in change.items()) if change else "")
    rejects(workers_mod.main, [*args, "--", *_run_args(ws, **change)], bad, ws, capsys, label)


# ---- search.validate (when it exists) ------------------------------------------------------------------------------
VALIDATE = [(["--storage", "notaurl"], "notaurl"), (["--study", "nope"], "nope")]


@pytest.mark.parametrize("args,bad", VALIDATE, ids=[" ".join(a) for a, _ in VALIDATE])
def test_search_validate_rejects(ws, capsys, args, bad):
    validate = pytest.importorskip("search.validate")
    argv = {"--storage": f"sqlite:///{ws}/study.db", "--study": "s"}
    argv.update({args[i]: args[i + 1].replace("WS", str(ws)) for i in range(0, len(args), 2)})
    rejects(validate.main, [x for kv in argv.items() for x in kv], bad, ws, capsys, " ".join(args))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
