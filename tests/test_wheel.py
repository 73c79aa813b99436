"""The built wheel carries its data (paper presets, toy weights) and works outside the repository (issue 9).

Builds from a copy of the checkout's files (tracked and untracked-but-not-ignored, as `git ls-files` lists them) so
the build leaves nothing in the working tree; uses the environment's setuptools (--no-build-isolation: offline).
About 10 s on a 2-core CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the file list comes from git ls-files)")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for f in _source_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".",
                        "-w", str(out)], cwd=src, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("hpyn-*.whl")
    return whl


def test_wheel_contains_presets_and_toy_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = sorted(n for n in names if n.startswith("hpyn/presets/paper/"))
    assert presets == [f"hpyn/presets/paper/{f}-{n}.json" for f in ("sd15", "sdxl") for n in (5, 6, 8)]
    toy = ROOT / "hpyn" / "toy" / "weights"
    expected = {p.relative_to(ROOT).as_posix() for p in toy.rglob("*") if p.is_file()}
    assert expected and expected <= names, sorted(expected - names)
    assert "objectives/data/prompts.txt" in names


def test_installed_wheel_prints_paper_sigmas_from_another_folder(wheel, tmp_path):
    # a pure-Python wheel installs by unpacking; PYTHONPATH puts it ahead of the editable checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = ("import sys, hpyn.presets, hpyn.schedule; print('from', hpyn.presets.__file__); "
              "sys.exit(hpyn.schedule.main(['--model', 'sd15', '--steps', '5', '--preset', 'paper']))")
    r = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.split("\n", 1)[0].removeprefix("from ")).is_relative_to(site), r.stdout
    sigma_line = next(ln for ln in r.stdout.splitlines() if ln.startswith("sigma:"))
    values = [float(v) for v in sigma_line.split()[1:]]
    spec = [14.615, 4.5188, 1.9615, 1.0010, 0.50152, 0.13200]  # spec B.3, SD1.5 5 steps
    assert all(abs(a - b) / b < 1e-3 for a, b in zip(values, spec)) and len(values) == 6, r.stdout
