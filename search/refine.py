"""Stage 2 of a search (`--refine N`): per-point refinement of the best parametric grid.

After the parametric trials (stage 1: a spacing law, ρ, an ending, a solver, ...), stage 2 takes the best complete
stage-1 trial (a baseline or not; with --clip-margin the best feasible one) and searches free log-σ offsets of its
interior grid points: σ_i ← σ_i·exp(o_i) for i = 1..n−1 (σ_0 = σ_max and the last point stay;
hpyn.config.SamplerConfig.offsets), params `offset_1`..`offset_{n-1}`, each in [−OFFSET_RANGE, OFFSET_RANGE].
Everything else is the base trial's config.

Stage-2 trials live in the same study and go through the same Objective (rungs, pruning, image grids, records):
each is enqueued with the base trial's parameters plus its offsets and the user attributes `stage: 2` and
`refine_of: <base trial number>` (and the base's `fixed_config`, for a baseline the space cannot express), and
`search.trials.config_for` turns that into the base config with `offsets`. Stage-1 trials get no new attribute.
They do not count toward --trials; N is the number of finished (complete or pruned) stage-2 trials the study
should have, so running the same command again does no more. After more stage-1 trials (a larger --trials) the
study keeps its stage-2 trials and their base; a larger --refine goes on from the best stage-1 trial then.

The offsets come from a sampler of their own (not the study's, whose model is of the parametric space): CMA-ES
(`REFINE_SAMPLER`) with its mean at 0 (the base grid) and step size 2·OFFSET_RANGE/6 ≈ 0.23, over exactly the offset dimensions from
the first trial on, ranking pruned trials below complete ones by their last reported FID (CMA-ES uses ranks only).
It sees only stage-2 trials: before each draw it replays the study's finished stage-2 trials in order into an
in-memory study, so a resumed or interrupted run continues where it stopped. Why CMA-ES: it starts at the base
grid and explores around it (TPE's first draws are uniform over the whole box, far from the best grid), it is made
for a few correlated continuous dimensions, and it is rank based, so pruned trials are usable; measured on the toy
model in the notes of issue 12 (see README). `REFINE_SAMPLERS` also has "tpe" for comparisons.

A draw whose grid is not strictly decreasing is recorded as a FAIL trial (fail_reason names the offsets and the
grid), without generating anything, and does not count toward N; after MAX_CONSECUTIVE_FAILURES failed trials in a
row stage 2 gives up with the reason. Stage 2 runs on the local backend with --objective fid (one best trial).
Several workers on one study may together run a few more than N stage-2 trials.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

__all__ = ["OFFSET_RANGE", "REFINE_SAMPLER", "REFINE_SAMPLERS", "base_trial", "distributions", "is_stage2",
           "offset_names", "refine", "stage2_done", "suggest_offsets"]

OFFSET_RANGE = 0.7        # |log-σ offset| ≤ 0.7: a point moves at most ×2 up or down
# CMA-ES starts at the box's centre, offsets 0 = the base grid, with step size 2·OFFSET_RANGE/6 ≈ 0.23 in log σ
# (Optuna's defaults, stated here; adjacent points of a 5-step grid lie about 0.7..1.3 apart in log σ)
REFINE_SAMPLER = "cmaes"
REFINE_SAMPLERS = ("cmaes", "tpe")
MAX_CONSECUTIVE_FAILURES = 5


def is_stage2(trial) -> bool:
    return trial.user_attrs.get("stage") == 2


def offset_names(steps: int) -> list[str]:
    return [f"offset_{i}" for i in range(1, steps)]


def distributions(steps: int) -> dict:
    import optuna
    return {name: optuna.distributions.FloatDistribution(-OFFSET_RANGE, OFFSET_RANGE) for name in offset_names(steps)}


def suggest_offsets(trial, steps: int) -> tuple[float, ...]:
    """The trial's offsets of σ_1..σ_{steps-1} (search.trials.config_for of a stage-2 trial)."""
    return tuple(trial.suggest_float(name, -OFFSET_RANGE, OFFSET_RANGE) for name in offset_names(steps))


def stage2_done(study) -> int:
    """Finished (complete or pruned) stage-2 trials: what --refine N counts."""
    return sum(1 for t in study.get_trials(deepcopy=False) if is_stage2(t) and t.state.name in ("COMPLETE", "PRUNED"))


def base_trial(study):
    """The best complete stage-1 trial with a config (with --clip-margin: the best feasible one, if any), or None."""
    import optuna
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not is_stage2(t) and t.user_attrs.get("config") and t.value is not None]
    feasible = [t for t in done if t.user_attrs.get("clip_constraint", 0.0) <= 0]
    return min(feasible or done, key=lambda t: t.value, default=None)


def _sampler(kind: str, steps: int, seed: int):
    import optuna
    space = distributions(steps)

    class _Fixed:   # the offsets from the first draw on, whatever the (shadow) study's trials hold
        def infer_relative_search_space(self, study, trial):
            return dict(space)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)   # warn_independent_sampling: deprecated, still honoured
        if kind == "cmaes":
            cls = type("RefineCmaEs", (_Fixed, optuna.samplers.CmaEsSampler), {})
            return cls(n_startup_trials=0, seed=seed, consider_pruned_trials=True, warn_independent_sampling=False)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4,
                                              warn_independent_sampling=False)
    raise ValueError(f"unknown refine sampler {kind!r}; choose one of {REFINE_SAMPLERS}")


def _shadow(study, steps: int, kind: str, seed: int):
    """An in-memory study whose sampler has seen the study's finished stage-2 trials, in order."""
    import optuna
    S = optuna.trial.TrialState
    names, dists = offset_names(steps), distributions(steps)
    shadow = optuna.create_study(sampler=_sampler(kind, steps, seed), direction="minimize")
    for t in study.get_trials(deepcopy=False):
        if not is_stage2(t) or not t.state.is_finished() or not all(k in t.params for k in names):
            continue
        shadow.enqueue_trial({k: t.params[k] for k in names})
        st = shadow.ask(dists)
        if t.state == S.COMPLETE:
            shadow.tell(st, t.value)
            continue
        for step, v in sorted(t.intermediate_values.items()):
            st.report(v, step)
        shadow.tell(st, state=S.PRUNED if t.state == S.PRUNED else S.FAIL)
    return shadow


def refine(study, n: int, run_one: Callable[[], None], *, table, seed: int = 0, timeout: float | None = None,
           sampler: str | None = None, say: Callable[[str], None] = print) -> str | None:
    """Run stage-2 trials until the study has `n` finished ones (`run_one()` runs the next trial of the study
    through the Objective: a waiting stage-2 trial first). Returns why stage 2 gave up, or None."""
    sampler = sampler or REFINE_SAMPLER
    import optuna
    S = optuna.trial.TrialState
    from hpyn.config import SamplerConfig
    if stage2_done(study) >= n:
        return None
    base = base_trial(study)
    if base is None:
        say("stage 2 (--refine): no complete parametric trial to refine")
        return None
    config = SamplerConfig.from_dict(base.user_attrs["config"])
    if config.steps < 2:
        say("stage 2 (--refine): a 1-step grid has no interior point to move")
        return None
    attrs = {"stage": 2, "refine_of": base.number}
    if base.user_attrs.get("fixed_config"):
        attrs["fixed_config"] = base.user_attrs["fixed_config"]
    dists = {**base.distributions, **distributions(config.steps)}
    say(f"stage 2: refining trial {base.number} (FID {base.value:.4g}) with per-point log-σ offsets in "
        f"±{OFFSET_RANGE} ({sampler}); {stage2_done(study)} of {n} stage-2 trial(s) done")
    deadline = None if timeout is None else time.monotonic() + timeout
    fails, seen = 0, {t.number for t in study.get_trials(deepcopy=False)}
    while stage2_done(study) < n:
        if deadline is not None and time.monotonic() > deadline:
            say(f"stage 2: --timeout reached with {stage2_done(study)} of {n} stage-2 trial(s)")
            return None
        waiting = [t for t in study.get_trials(deepcopy=False, states=(S.WAITING,)) if is_stage2(t)]
        if not waiting:
            # a seed per draw: a replayed trial's params are fixed, so a seeded sampler's random draws (TPE's
            # startup) would not move on and every draw would repeat the first
            drawn = sum(1 for t in study.get_trials(deepcopy=False) if is_stage2(t))
            shadow = _shadow(study, config.steps, sampler, seed * 7919 + drawn)
            draw = shadow.ask(distributions(config.steps))
            offsets = tuple(draw.params[k] for k in offset_names(config.steps))
            params = {**base.params, **draw.params}
            try:
                config.replace(offsets=offsets).sigmas(table)
            except ValueError as e:
                study.add_trial(optuna.create_trial(state=S.FAIL, params=params, distributions=dists,
                                                    user_attrs={**attrs, "fail_reason": str(e)[:2000]}))
                say(f"stage 2: offsets {[round(o, 3) for o in offsets]} rejected: the grid would not be strictly "
                    "decreasing")
            else:
                study.enqueue_trial(params, user_attrs=attrs)
                run_one()
        else:
            run_one()
        new = [t for t in study.get_trials(deepcopy=False) if t.number not in seen and t.state.is_finished()]
        seen |= {t.number for t in new}
        fails = 0 if any(t.state != S.FAIL for t in new) else fails + len(new)
        if fails >= MAX_CONSECUTIVE_FAILURES:
            return f"stage 2 stopped after {fails} consecutive failed trials"
    return None
