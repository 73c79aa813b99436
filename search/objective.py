"""One Optuna trial: space → SamplerConfig → images at increasing sample counts (rungs) → metrics → pruning.

Common random numbers: every trial draws image i from the same (prompts[i], seeds[i]), so two trials differ only
by their configs. Rungs are nested prefixes of that list: rung k generates only images [r_{k-1}, r_k) and reuses
the earlier images' features (FID is biased by ~1/N, so values are only compared at equal N).

Single objective (FID at the last rung, minimised): FID is reported at every rung (`trial.report(fid, step=n)`)
and the pruner may stop the trial there; baselines always run to the end. Multi-objective (FID ↓, CLIP ↑):
Optuna cannot prune, so each trial is evaluated once, at the last rung.

PRD (the slowest metric: 10 k-means runs) is computed at the last rung only.

Every trial stores (user attributes, written through search.trials, as the Ray backend does): its config, σ and
t arrays, metrics per rung with N, the evaluation conventions, wall time, a `fail_reason` when it fails, and an
image grid as an Optuna artifact.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from hpyn.config import SamplerConfig
from hpyn.generate import generate
from search.space import Space
from search.trials import (
    config_for,
    format_metrics,
    record_config,
    record_failure,
    record_conventions,
    record_prd_curve,
    record_rung,
    trial_metrics,
)

__all__ = ["Objective", "image_grid"]

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def image_grid(images: torch.Tensor, cols: int = 4, max_images: int = 16, tile: int | None = None):
    """A PIL image of the first `max_images` uint8 [N, 3, H, W] images, `cols` per row (small ones enlarged)."""
    from PIL import Image

    images = images[:max_images]
    n, _, h, _ = images.shape
    tile = tile or (256 if h >= 256 else h * max(1, math.ceil(128 / h)))
    rows = math.ceil(n / cols)
    grid = Image.new("RGB", (cols * tile, rows * tile), "white")
    for i, img in enumerate(images):
        im = Image.fromarray(img.permute(1, 2, 0).numpy())
        im = im.resize((tile, tile), Image.NEAREST if tile >= h else Image.BILINEAR)
        grid.paste(im, ((i % cols) * tile, (i // cols) * tile))
    return grid


@dataclass
class Objective:
    """Callable objective for `study.optimize`; holds the loaded model and evaluator (built once per process).

    evaluator: anything with `evaluate(images, prompts) -> dict` (objectives.evaluate.Evaluator in the product;
    if it also has `image_features` and `clip_scores`, features of earlier rungs are reused).
    """

    model: Any
    evaluator: Any
    space: Space
    prompts: Sequence[str]
    seeds: Sequence[int]
    rungs: Sequence[int]
    multi: bool = False
    clip_margin: float | None = None
    artifacts: Any = None               # optuna.artifacts store, or None
    batch_size: int = 16
    grid_images: int = 16
    log: Callable[[str], None] | None = print
    proxy: Any = None                   # objectives.proxy.TeacherProxy over the first rung's pairs, or None

    def __post_init__(self):
        self.rungs = [int(r) for r in self.rungs]
        if not self.rungs or any(r < 1 for r in self.rungs) or self.rungs != sorted(set(self.rungs)):
            raise ValueError(f"rungs must be increasing positive sample counts, got {self.rungs}")
        if len(self.prompts) < self.rungs[-1] or len(self.seeds) < self.rungs[-1]:
            raise ValueError(f"need {self.rungs[-1]} prompts and seeds, got {len(self.prompts)} and {len(self.seeds)}")

    # ---- the trial -------------------------------------------------------------------------------------
    def config_for(self, trial) -> SamplerConfig:
        return config_for(trial, self.space)

    def __call__(self, trial: optuna.Trial):
        t0 = time.perf_counter()
        try:
            return self._run(trial, t0)
        except optuna.TrialPruned:
            raise
        except BaseException as e:
            why = record_failure(trial, e, t0)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not isinstance(e, KeyboardInterrupt):   # an interruption is said once, by the run
                self._say(f"[trial {trial.number}] FAILED: {why}")
            raise

    def _run(self, trial, t0: float):
        config = self.config_for(trial)
        record_config(trial, config, self.model.table)
        baseline = trial.user_attrs.get("baseline")
        rungs = self.rungs[-1:] if self.multi else self.rungs
        images: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        clips: list = []
        done, history, metrics = 0, [], {}
        for n in rungs:
            t = time.perf_counter()
            new = generate(self.model, config, list(self.prompts[done:n]), list(self.seeds[done:n]),
                           batch_size=self.batch_size)
            gen_s = time.perf_counter() - t
            images.append(new)
            if n == rungs[0] and self.proxy is not None:
                self._record_proxy(trial, new)
            metrics = self._evaluate(new, done, n, images, feats, clips, last=n == rungs[-1])
            if self._incremental():  # features are kept; of the images only what the grid shows
                images[:] = [torch.cat(images)[:self.grid_images]]
            done = n
            row = record_rung(trial, history, n, metrics, gen_s, time.perf_counter() - t - gen_s)
            if n == rungs[-1]:
                record_conventions(trial, metrics.get("conventions"))
                last = getattr(self.evaluator, "last", None)
                record_prd_curve(trial, (last or {}).get("prd") if "prd_f8" in metrics else None, n)
            if not self.multi:
                trial.report(row["fid"], step=n)
                # baselines ask too (so the pruner ranks them at every rung) but always run to the end
                prune = n != rungs[-1] and trial.should_prune() and baseline is None
                self._progress(trial, row, config, "pruned" if prune else ("done" if n == rungs[-1] else "rung"))
                if prune:
                    trial.set_user_attr("pruned_at_n", n)
                    self._finish(trial, t0, torch.cat(images), row)
                    raise optuna.TrialPruned(f"FID {row['fid']:.3f} at n={n}")
            else:
                self._progress(trial, row, config, "done")
        row = history[-1]
        self._finish(trial, t0, torch.cat(images), row)
        if self.multi:
            if row.get("clip_score") is None:
                raise ValueError("--objective fid+clip needs CLIP scores, but the evaluator computed none")
            return row["fid"], row["clip_score"]
        return row["fid"]

    def _evaluate(self, new, lo: int, n: int, images, feats, clips, last: bool) -> dict:
        ev = self.evaluator
        kw = {}
        enabled = getattr(ev, "metrics", None)  # the real Evaluator; simple evaluators compute what they compute
        if not last and enabled is not None and "prd" in enabled:
            # PRD (10 k-means runs) only at the last rung: pruning needs FID, and PRD is the slowest metric
            kw["metrics"] = tuple(m for m in enabled if m != "prd")
        prompts = list(self.prompts[:n])
        if self._incremental():
            feats.append(ev.image_features(new))
            if getattr(ev, "clip", None) is not None:
                clips.append(ev.clip_scores(new, list(self.prompts[lo:n])))
            return ev.evaluate(None, prompts, features=torch.cat(feats),
                               clip_scores=np.concatenate(clips) if clips else None, **kw)
        return ev.evaluate(torch.cat(images), prompts, **kw)

    def _record_proxy(self, trial, new: torch.Tensor) -> None:
        """Trial attribute proxy_teacher: the teacher proxy of the first rung's images (never fails a trial)."""
        try:
            t = time.perf_counter()
            trial.set_user_attr("proxy_teacher", float(f"{self.proxy.score(new, prefix=True):.7g}"))
            trial.set_user_attr("proxy_s", round(time.perf_counter() - t, 3))
        except Exception as e:  # noqa: BLE001 - a recorded extra, not the objective
            self._say(f"[trial {trial.number}] warning: no proxy: {type(e).__name__}: {e}")

    def _incremental(self) -> bool:
        ev = self.evaluator
        return hasattr(ev, "image_features") and hasattr(ev, "clip_scores") and \
            getattr(ev, "extractor", None) is not None

    def _finish(self, trial, t0: float, images: torch.Tensor, row: dict) -> None:
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - t0, 3))
        if self.clip_margin is not None and row.get("clip_score") is not None:
            ref = self._baseline_clip(trial, row["n"])
            # feasible (≤ 0) when CLIP is no worse than the paper baseline's by more than the margin
            violation = 0.0 if ref is None else (ref - self.clip_margin) - row["clip_score"]
            trial.set_user_attr("clip_constraint", violation)
            trial.set_constraint("clip", violation)
        if self.artifacts is not None and len(images):
            try:
                from optuna.artifacts import upload_artifact
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / f"trial{trial.number}_n{row['n']}.png"
                    image_grid(images, max_images=self.grid_images).save(path)
                    upload_artifact(artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial,
                                    mimetype="image/png")
            except Exception as e:  # noqa: BLE001 - an image grid must never fail a trial
                self._say(f"[trial {trial.number}] warning: could not store the image grid: {e}")

    def _baseline_clip(self, trial, n: int) -> float | None:
        if trial.user_attrs.get("baseline") == "paper":
            return None  # the paper baseline defines the bar; violation -margin
        study = getattr(trial, "study", None)
        if study is None:
            return None
        for t in study.get_trials(deepcopy=False, states=FINISHED):
            if t.user_attrs.get("baseline") == "paper":
                m = trial_metrics(t, n)
                if m is not None and m.get("clip_score") is not None:
                    return m["clip_score"]
        return None

    # ---- progress ------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _best_at(self, trial, n: int, fid: float) -> tuple[float, int]:
        best = (fid, trial.number)
        study = getattr(trial, "study", None)
        if study is None:
            return best
        for t in study.get_trials(deepcopy=False, states=FINISHED):
            v = t.intermediate_values.get(n)
            if v is None:
                m = trial_metrics(t, n)
                v = m.get("fid") if m else None
            if v is not None and v < best[0]:
                best = (v, t.number)
        return best

    def _progress(self, trial, row: dict, config: SamplerConfig, state: str) -> None:
        if self.log is None:
            return
        tag = trial.user_attrs.get("baseline") or ("stage2" if trial.user_attrs.get("stage") == 2 else None)
        head = f"[trial {trial.number}{' ' + tag if tag else ''}] n={row['n']:<5d}"
        best, who = self._best_at(trial, row["n"], row["fid"])
        desc = (f"{config.spacing} ρ={config.rho:.3g} {config.final} "
                + (f"ε={config.epsilon:.3g}" if config.final == "residual" else
                   f"σmin={'model' if config.sigma_min is None else format(config.sigma_min, '.3g')}")
                + (f" o{config.order}" if config.solver.startswith("dpmpp") else f" {config.solver}")
                + (f" freeu[{config.freeu[0].start},{config.freeu[0].end})" if config.freeu else "")
                + (" cfg({:.3g},{:.3g}]".format(*config.guidance_interval) if config.guidance_interval else "")
                + (" refined[" + " ".join(f"{o:+.2f}" for o in config.offsets) + "]" if config.offsets else ""))
        tail = {"pruned": "  → pruned", "done": "", "rung": ""}[state]
        self._say(f"{head} {format_metrics(row)} | best@{row['n']} {best:.3f} (#{who}) | "
                  f"{row['generate_s'] + row['metrics_s']:.1f}s | {desc}{tail}")


# ---- --proxy ----------------------------------------------------------------------------------------------
_PROXIES: dict = {}


def teacher_proxy(prep, model, log):
    """--proxy: the teacher proxy (objectives.proxy) over the first rung's prompts and seeds, for `Objective.proxy`;
    built once per process (`prep`: search.study.Prepared; the teacher's images and features are cached on disk)."""
    o = prep.opts
    if o.proxy is None:
        return None
    key = (id(model), prep.study_name, o.proxy)
    if key not in _PROXIES:
        from hpyn.presets import classic_setting
        from objectives.proxy import TeacherProxy
        t = time.perf_counter()
        n = prep.rungs[0]
        _PROXIES[key] = TeacherProxy(model, classic_setting(50, o.guidance), prep.prompts[:n], prep.seeds[:n],
                                     extractor=o.proxy, batch_size=o.batch_size or 16, device=o.device)
        if log is not None:
            log(f"teacher proxy ({o.proxy}, 50-step DPM++2M-Karras, {n} images) ready in "
                f"{time.perf_counter() - t:.1f}s")
    return _PROXIES[key]
