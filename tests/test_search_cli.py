"""The real command line end to end on a tiny setting, as a user runs it: search.run with the real generation and
the real Evaluator (Inception FID/KID, a CLIP score), resume, export, the dashboard, hpyn.generate from the export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT)}


def sh(*args, timeout=300):
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout,
                       check=False)
    return p.returncode, p.stdout, p.stderr


def tiny_clip(folder: Path) -> Path:
    """A random transformers CLIPModel with the real CLIP tokenizer: exercises the CLIP-score code path."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from hpyn.toy.tokenizer import write_clip_tokenizer
    torch.manual_seed(0)
    text = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "max_position_embeddings": 77, "projection_dim": 16, "bos_token_id": 49406, "eos_token_id": 49407,
                "pad_token_id": 49407}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 16,
                  "patch_size": 4, "projection_dim": 16}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    write_clip_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def setup(tiny_pipeline_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    ref = tmp / "ref.npz"
    np.savez(ref, images=np.random.default_rng(0).integers(0, 255, (12, 3, 16, 16), dtype=np.uint8))
    return {"model": str(tiny_pipeline_dir), "storage": f"sqlite:///{tmp}/study.db", "ref": f"npz:{ref}",
            "clip": str(tiny_clip(tmp / "clip")), "tmp": tmp}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_resume_export_dashboard_generate(setup):
    s = setup
    cmd = ["-m", "search.run", "--model", s["model"], "--steps", "3", "--storage", s["storage"], "--prompts",
           "builtin", "--reference", s["ref"], "--rungs", "4,8", "--trials", "3", "--clip", s["clip"],
           "--metrics", "fid,kid,clip", "--guidance", "5", "--device", "cpu", "--baselines", "paper,dpmpp2m-karras"]
    rc, out, err = sh(*cmd)
    assert rc == 0, err[-3000:]
    assert "[trial 0 paper] n=4" in out and "[trial 1 dpmpp2m-karras] n=8" in out and "best" in out
    assert "clip" in out and "kid" in out

    rc, out, err = sh(*cmd)  # the same command again: the study is resumed, and it is already complete
    assert rc == 0 and "already has 3 finished trials" in out

    best = s["tmp"] / "best.json"
    rc, out, err = sh("-m", "search.export", "--storage", s["storage"], "--study", "pipeline-3", "--out", str(best))
    assert rc == 0, err[-3000:]
    doc = json.loads(best.read_text())
    assert doc["metrics"]["n"] == 8 and doc["metrics"]["fid"] > 0 and "clip_score" in doc["metrics"]
    assert "inception" in json.dumps(doc["conventions"]).lower()
    assert {b["metrics"]["n"] for b in doc["baselines"].values()} == {8}

    port = _free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    dash = subprocess.Popen([str(dashboard), s["storage"], "--port", str(port),
                             "--artifact-dir", str(s["tmp"] / "artifacts")], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = None
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/studies/1", timeout=2) as r:
                    status = r.status
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1", timeout=5) as r:
                    api = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200
        assert len(api["trials"]) == 3 and api["trials"][0]["artifacts"]
    finally:
        dash.terminate()
        dash.wait(timeout=10)

    out_dir = s["tmp"] / "gen"
    rc, out, err = sh("-m", "hpyn.generate", "--model", s["model"], "--config", str(best), "--prompt", "a cat",
                      "--seeds", "0-1", "--out", str(out_dir), "--device", "cpu")
    assert rc == 0, err[-3000:]
    assert len(list(out_dir.glob("*.png"))) == 2


def test_help_shows_examples_and_the_pruning_caveat():
    rc, out, _ = sh("-m", "search.run", "--help", timeout=120)
    assert rc == 0 and "examples:" in out and "cannot prune" in out
