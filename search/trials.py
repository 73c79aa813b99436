"""What a trial records, in one place: both backends (the local `Objective`, the Ray driver) write through here.

User attributes of a trial (the dashboard and `search.export` read them):
  config, sigmas, timesteps   the SamplerConfig and its σ grid / U-Net timesteps  (`record_config`)
  rungs                       one row per rung reached: n, every metric, generate_s, metrics_s  (`record_rung`)
  fid, kid_mean, ..., n       the last rung's metrics (names, directions, formats: objectives.metrics); stored
                              rounded to 7 significant digits, as are the trial's reported and final values
  pruned_at_n                 a pruned trial's rung: its value is an FID at this N, not at the last rung's
  prd_curve                   the last rung's PRD curve, thinned to 41 angles (search.facts.prd_curve_attr)
  wall_time_s, fail_reason    (`record_failure`; a failed trial always says why)
  baseline, baseline_note, fixed_config   tags of an enqueued baseline
  retry_of, retry_reason      a retried copy of a trial that died or was interrupted (`retry`)
  stage, refine_of            a stage-2 trial (search.refine, --refine): 2, and the stage-1 trial whose config
                              it refines with log-σ offsets (params offset_1..); stage-1 trials have neither

The study, not each trial, holds the evaluation conventions of the last rung (study attribute `conventions`:
extractor, resize, N, KID/PRD settings, CLIP model; `record_conventions`), so trial pages stay short.

The state a trial ends in follows one rule (`verdict`): COMPLETE only after the last rung, PRUNED when the pruner
stopped it at a lower rung (value = its last FID), FAIL with a reason otherwise.
"""

from __future__ import annotations

import math
import time

from objectives.metrics import METRIC_KEYS, format_metrics

__all__ = [
    "METRIC_KEYS",
    "TAGS",
    "Interrupted",
    "config_for",
    "counts",
    "finished_count",
    "format_metrics",
    "reason",
    "record_config",
    "record_conventions",
    "record_failure",
    "record_rung",
    "retry",
    "trial_metrics",
    "verdict",
]

DIGITS = 7   # significant digits of stored metrics (search.facts.round_floats); FID 129.9851

TAGS = ("baseline", "baseline_note", "fixed_config", "stage", "refine_of")   # what a retried copy of a trial keeps


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another stop signal) raised in the main thread, so that a run stops as on Ctrl-C."""


def reason(e: BaseException) -> str:
    """The `fail_reason` of a trial that raised `e`."""
    if isinstance(e, Interrupted):
        return f"interrupted ({e.args[0] if e.args else 'SIGTERM'})"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = f"{type(e).__name__}: {e}"
    oom = type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()
    return (("out of memory: " if oom else "") + text)[:2000]


def config_for(trial, space):
    """The config a trial samples: a baseline's fixed config (one the space cannot express), else the point of
    `space` the trial asks for (search.space.suggest_config); a stage-2 trial (search.refine) adds its log-σ
    offsets to that (its base trial's parameters or fixed config)."""
    from hpyn.config import SamplerConfig
    from search.space import suggest_config
    user = trial.user_attrs if hasattr(trial, "user_attrs") else {}
    fixed = user.get("fixed_config")
    config = SamplerConfig.from_dict(fixed) if fixed else suggest_config(trial, space.steps, space)
    if user.get("stage") == 2:
        from search.refine import suggest_offsets
        config = config.replace(offsets=suggest_offsets(trial, config.steps))
    return config


def record_config(trial, config, table) -> dict:
    """The trial's config with its σ grid and timesteps (hpyn.schedules.grid_info); returns what it set."""
    from hpyn.schedules import grid_info
    info = grid_info(config, table)
    attrs = {"config": config.to_dict(), "sigmas": info["sigmas"], "timesteps": info["timesteps"]}
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    return attrs


def record_rung(trial, history: list, n: int, metrics: dict, generate_s: float, metrics_s: float) -> dict:
    """Append rung `n`'s row (every metric that is not None, times; rounded to `DIGITS` significant digits, far
    below the metrics' sampling noise) to `history`, record it and return it: the reported and returned values are
    the recorded ones, so the dashboard shows 128.6662, not 128.66617185170858. Raises FloatingPointError naming a
    non-finite metric (a failed trial, not a score)."""
    from search.facts import round_floats
    bad = [k for k in METRIC_KEYS if isinstance(metrics.get(k), float) and not math.isfinite(metrics[k])]
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(f'{k}={metrics[k]}' for k in bad)} at n={n}")
    row = {"n": n, **{k: round_floats(float(metrics[k]), DIGITS) for k in METRIC_KEYS if metrics.get(k) is not None},
           "generate_s": round(generate_s, 3), "metrics_s": round(metrics_s, 3)}
    history.append(row)
    trial.set_user_attr("rungs", history)
    for k in METRIC_KEYS + ("n",):
        if k in row:
            trial.set_user_attr(k, row[k])
    return row


def record_conventions(trial, conventions: dict | None) -> None:
    """The evaluation conventions of the last rung, once per study (study attribute `conventions`). A trial with
    no study (a Ray worker's) records them as its own attribute; the Ray driver moves it to the study."""
    if not conventions:
        return
    study = getattr(trial, "study", None)
    if study is None:
        trial.set_user_attr("conventions", conventions)
    elif study.user_attrs.get("conventions") != conventions:
        study.set_user_attr("conventions", conventions)


def record_prd_curve(trial, curve, n: int) -> None:
    """The last rung's PRD curve (objectives.prd.PRDCurve) as trial attribute `prd_curve`, under the dashboard's
    limit (search.facts.prd_curve_attr), so that search.report draws it without regenerating images."""
    if curve is not None:
        from search.facts import prd_curve_attr
        trial.set_user_attr("prd_curve", prd_curve_attr(curve, n))


def record_failure(trial, e: BaseException, t0: float | None = None) -> str:
    text = reason(e)
    trial.set_user_attr("fail_reason", text)
    if t0 is not None:
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - t0, 3))
    return text


def verdict(n: int | None, fid: float | None, final_n: int, *, failed: str | None = None,
            stopped_early: bool = False, reported: bool = False):
    """(state, value, attrs) of a trial that ended at rung `n` with `fid` (the Ray driver's rule; the local backend
    reaches the same states through Optuna: TrialPruned → PRUNED, an exception → FAIL, a return → COMPLETE)."""
    import optuna
    S = optuna.trial.TrialState
    if failed:
        return S.FAIL, None, {"fail_reason": str(failed)[:2000]}
    if n is not None and int(n) >= final_n and fid is not None and math.isfinite(fid):
        return S.COMPLETE, float(fid), {}
    if stopped_early and reported:
        # the scheduler stopped it at a lower rung: PRUNED (value = its last FID), never a COMPLETE low-n value
        return S.PRUNED, None, {"pruned_by": "ray-scheduler", "pruned_at_n": int(n)}
    # stopped before the last rung by something else (the time budget, an interruption): not a verdict on it
    return S.FAIL, None, {"fail_reason": f"stopped at n={n} before the last rung (time budget or interruption)"}


def retry(study, trial, why: str, max_retry: int = 1) -> bool:
    """Enqueue a copy of a dead or interrupted `trial` (same parameters and baseline tags) unless it was retried
    `max_retry` times already; Optuna's `failed_trial` system attribute names the original. True if enqueued."""
    import optuna
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    if len(history) > max_retry:
        return False
    user = {k: trial.user_attrs[k] for k in TAGS if k in trial.user_attrs}
    user.update(retry_of=trial.number, retry_reason=why)
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=user, system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                                       "retry_history": history}))
    return True


class RetryCallback:
    """Optuna's heartbeat stale-trial callback: retry a trial whose worker stopped sending heartbeats."""

    def __init__(self, max_retry: int = 1):
        self.max_retry = max_retry

    def __call__(self, study, trial) -> None:
        retry(study, trial, "its worker stopped sending heartbeats (killed or lost)", self.max_retry)


# ---- reading trials ----------------------------------------------------------------------------------------
def trial_metrics(trial, n: int | None = None) -> dict | None:
    """The metrics a trial recorded at rung `n` (default: its last rung), or None."""
    rungs = trial.user_attrs.get("rungs") or []
    if n is None:
        return rungs[-1] if rungs else None
    return next((r for r in rungs if r["n"] == n), None)


def counts(study, stage: int | None = None) -> dict[str, int]:
    """Trials per state name; `stage=1`: the parametric trials only (not search.refine's stage-2 trials)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if stage is not None and (t.user_attrs.get("stage") == 2) != (stage == 2):
            continue
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def finished_count(c: dict[str, int]) -> int:
    """Finished trials toward the target: complete + pruned."""
    return c.get("COMPLETE", 0) + c.get("PRUNED", 0)
