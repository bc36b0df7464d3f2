"""The live parts of ``search_efficiency.py``: real trials on this machine.

- ``throughput``: the same Cora configs through Ray with 1 and 2 workers, and the hardware ceiling measured in
  the same run: two plain processes running the same single-threaded trial function back to back on the same
  configs. Engine overhead per trial (1 worker) and the 2-worker throughput as a share of the ceiling.
- ``live``: random search against autotradeoff's defaults, and the same without early stopping, on a real space
  (Cora; SST-2 with ``--live-spaces``), budget in CPU-seconds, a sanity check beside the tabular comparisons.

``ray_default_sampler`` is Ray Tune's default generator as an Optuna sampler, shared with the tabular runs.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

OVERHEAD_SPACE = """\
task: cora
objectives: {val_accuracy: max, latency_ms: min}
knobs:
  model: {choices: [gcn, sage]}
  hidden: {low: 8, high: 32, log: true}
  lr: {low: 0.005, high: 0.05, log: true}
  epochs: {low: 50, high: 150}
fidelity: {latency_repeats: 10, latency_warmup: 2}
"""
LIVE_METHODS = ("random", "autotradeoff", "autotradeoff-no-es")
LIVE_SHARES = (0.25, 0.5, 1.0)  # of the budget: hypervolume of the trials finished by then
LIVE_SPACES = {"cora": {}, "sst2-approx": {"train_size": 2000}}  # fidelity changes: sst2's fine-tune on 2,000 sentences


def ray_default_sampler(seed: int):
    """Ray Tune's BasicVariantGenerator as an Optuna sampler: each knob drawn on its own from the ``tune``
    domain the same range would get in a Ray Tune param_space."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from ray import tune

    class RayDefault(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.rng = np.random.default_rng(seed)

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, name, dist):
            if isinstance(dist, CategoricalDistribution):
                domain = tune.choice(list(dist.choices))
            elif isinstance(dist, IntDistribution):
                domain = tune.lograndint(dist.low, dist.high + 1) if dist.log else tune.randint(dist.low, dist.high + 1)
            elif isinstance(dist, FloatDistribution):
                domain = tune.loguniform(dist.low, dist.high) if dist.log else tune.uniform(dist.low, dist.high)
            else:
                raise TypeError(dist)
            value = domain.sample(random_state=self.rng)
            return value.item() if hasattr(value, "item") else value

    return RayDefault()


def _plain(configs: list[dict[str, Any]], fidelity: dict[str, Any]) -> float:
    """One plain process: the trial function on each config in turn; its seconds."""
    from autotradeoff.engine.trial import run_trial

    start = time.perf_counter()
    for config in configs:
        run_trial("cora", config, fidelity)
    return time.perf_counter() - start


def _ray_rows(study, workers: int, wall: float) -> dict[str, Any]:
    """Engine time per steady-state trial (held minus the trial function, plus the gap before it) and throughput."""
    done = sorted((t for t in study.get_trials() if "trial_wall_s" in t.user_attrs), key=lambda t: t.datetime_start)
    first = {t.number for t in done[:workers]}  # each worker's first trial: the actor starting, imports, data
    steady = [t for t in done if t.number not in first]
    ends = sorted(t.datetime_complete for t in done)
    engine = []
    for t in steady:
        held = (t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["trial_wall_s"]
        before = max((e for e in ends if e <= t.datetime_start), default=t.datetime_start)
        engine.append(held + (t.datetime_start - before).total_seconds())
    inside = sum(t.user_attrs["trial_wall_s"] for t in steady)
    span = (ends[-1] - done[0].datetime_start).total_seconds()
    return {"run": f"ray, {workers} worker(s)", "trials": len(done), "wall_s": wall, "span_s": span,
            "engine_per_trial_s": statistics.fmean(engine), "trial_fn_mean_s": inside / len(steady),
            "engine_share": sum(engine) / inside, "trials_per_min": 60 * len(done) / span}


def throughput(folder: Path, trials: int) -> list[dict[str, Any]]:
    """Ray with 1 and 2 workers on the same random Cora configs, then the ceiling: 2 plain processes, same configs,
    handed out one at a time in the same order (a fixed half each would add or remove luck: with trials of
    3-25 s, whichever half is longer sets the span, and Ray's last trial can run alone for 20 s)."""
    from autotradeoff.engine.search import search
    from autotradeoff.presets import load_space

    space = folder / "cora-overhead.yaml"
    space.write_text(OVERHEAD_SPACE)
    rows, configs = [], []
    for workers in (1, 2):
        start = time.perf_counter()
        found = search("cora", f"{trials}trials", space=str(space), study=f"overhead-{workers}",
                       storage=f"sqlite:///{folder}/overhead.db", workers=workers, sampler="random", seed=0,
                       remeasure=0, early_stop=False, warm_start=False, ray_dir=folder / "ray")
        rows.append(_ray_rows(found.study, workers, time.perf_counter() - start))
        configs = [t.user_attrs["config"] for t in sorted(found.study.get_trials(), key=lambda t: t.number)]
    fidelity = load_space(str(space)).fidelity
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_plain, [configs[:1], configs[:1]], [fidelity, fidelity]))  # imports and data, uncounted
        start = time.perf_counter()  # one config a task, in trial order: each process takes the next as it frees,
        list(pool.map(_plain, [[c] for c in configs], [fidelity] * len(configs)))  # as Ray's workers do
        span = time.perf_counter() - start
    rows.append({"run": "ceiling: 2 plain processes", "trials": len(configs), "wall_s": span, "span_s": span,
                 "engine_per_trial_s": 0.0, "trial_fn_mean_s": float("nan"), "engine_share": 0.0,
                 "trials_per_min": 60 * len(configs) / span})
    return rows


def live_run(job: tuple[str, str, int, float, Path]) -> list[dict[str, Any]]:
    """One real search (random, autotradeoff's defaults, or those without early stopping) of a live space under a
    CPU-seconds budget; rows of (cumulative CPU-seconds, losses) in the order trials ran."""
    method, space_name, seed, budget_s, folder = job
    from autotradeoff.engine.search import search
    from autotradeoff.front import pareto
    from autotradeoff.space import list_spaces

    data = yaml.safe_load(list_spaces()[space_name].read_text())
    data.setdefault("fidelity", {}).update(LIVE_SPACES[space_name])
    space = folder / f"{space_name}-{method}-{seed}.yaml"
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    ours = method in LIVE_METHODS[1:]
    found = search(data["task"], f"{budget_s / 3600:.6f}cpu-h", space=str(space), study=space.stem,
                   storage=f"sqlite:///{folder}/{space.stem}.db", runner="local", sampler="auto" if ours else "random",
                   seed=seed, remeasure=0, early_stop=method == "autotradeoff", warm_start=ours)
    objectives = pareto.objectives_of(found.study)
    spent, out = 0.0, []
    for row in sorted(pareto.rows_of(found.study), key=lambda r: r["number"]):
        spent += (row["charge"] or {}).get("wall_s", 0.0)
        done = row["state"] == "COMPLETE" and all(o.name in row["metrics"] for o in objectives)
        out.append({"space": space_name, "method": method, "seed": seed, "cost_s": spent, "state": row["state"],
                    "losses": [(-row["metrics"][o.name] if o.direction == "max" else row["metrics"][o.name])
                               for o in objectives] if done else None})
    return out


def live(folder: Path, spaces: list[str], seeds: int, budget_s: float, jobs: int) -> list[dict[str, Any]]:
    """Random against autotradeoff (with and without early stopping) on each live space: hypervolume per run at
    a quarter, half and all of the budget (trials finished by then) against one reference point per space (the worst
    value any run saw, plus 10% of the range)."""
    from autotradeoff.front.pareto import hypervolume

    work = [(m, s, seed, budget_s, folder) for s in spaces for seed in range(seeds) for m in LIVE_METHODS]
    with ProcessPoolExecutor(jobs) as pool:
        rows = [row for run in pool.map(live_run, work) for row in run]
    out = []
    for s in spaces:
        points = [r["losses"] for r in rows if r["space"] == s and r["losses"]]
        ref = [max(c) + 0.1 * ((max(c) - min(c)) or 1.0) for c in zip(*points)]
        for m in LIVE_METHODS:
            mine = [r for r in rows if (r["space"], r["method"]) == (s, m)]
            row = {"space": s, "method": m, "seeds": seeds, "trials": len(mine) / seeds,
                   "stopped_early": sum(r["state"] == "PRUNED" for r in mine) / seeds}
            for share in LIVE_SHARES:
                hv = [hypervolume([r["losses"] for r in mine if r["seed"] == seed and r["losses"]
                                   and r["cost_s"] <= share * budget_s], ref) for seed in range(seeds)]
                tag = "" if share == 1.0 else f"_at_{share:g}"
                row |= {f"hv_mean{tag}": statistics.fmean(hv), f"hv_std{tag}": statistics.stdev(hv) if seeds > 1 else 0.0}
            out.append(row)
    return out
