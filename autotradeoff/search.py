"""``search()``: the library entry point behind ``autotradeoff search`` (validate, resume, run, report)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from autotradeoff.budget import parse_budget
from autotradeoff.driver import Progress, SearchDriver
from autotradeoff.errors import UsageError
from autotradeoff.pareto import CONSTRAINTS_ATTR
from autotradeoff.space import SearchSpace, load_space
from autotradeoff.study import absolute_url, create_or_resume, default_storage, open_storage, reconcile
from autotradeoff.tasks import resolve_task

__all__ = ["search", "SearchResult", "make_sampler", "default_workers"]

SAMPLERS = ("auto", "tpe", "gp", "nsga2", "random")


@dataclass
class SearchResult:
    study: optuna.Study
    storage_url: str
    resumed: bool
    reconciled: int  # trials left RUNNING by a dead search, failed (their configs queued again)
    workers: int
    stored: int  # trials in the study before this run
    new_trials: int = 0
    recovered: int = 0  # of those, finished by Ray before the search died: stored from Ray's results
    remeasured: int = 0  # front trials whose timed costs were measured again, alone, after the runner


def auto_sampler(space: SearchSpace | None) -> str:
    """The default sampler for a space: a Gaussian process (log-EHVI) for a few unconditional knobs, where
    it is the most sample-efficient; TPE for conditional or mid-sized spaces; NSGA-II past 20 knobs,
    where both model-based samplers spend more time fitting than the population search needs."""
    if space is None:
        return "tpe"
    knobs = space.searched.values()
    if len(space.searched) <= 8 and not any(k.when for k in knobs) and sum(k.kind == "categorical" for k in knobs) <= 2:
        return "gp"
    return "tpe" if len(space.searched) <= 20 else "nsga2"


def constraints_func(constraints) -> Callable[[FrozenTrial], list[float]] | None:
    """Optuna's constraint values (<= 0: met) from a trial's stored metrics; unknown metrics count as met."""
    if not constraints:
        return None
    return lambda trial: [c.excess(float(trial.user_attrs[c.metric])) if c.metric in trial.user_attrs else 0.0
                          for c in constraints]


def make_sampler(name: str | optuna.samplers.BaseSampler, seed: int | None, space: SearchSpace | None = None
                 ) -> optuna.samplers.BaseSampler:
    """``auto`` (see ``auto_sampler``), TPE (multivariate, constant liar for parallel workers), GP, NSGA-II
    or random; the space's constraints are passed to the samplers that model them. A sampler object
    (library use) is taken as it is."""
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    if name == "auto":
        name = auto_sampler(space)
    constrained = constraints_func(space.constraints if space else ())
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, constraints_func=constrained)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=constrained, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constrained)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"unknown sampler {name!r}; choices: {', '.join(SAMPLERS)}")


def default_workers(cluster: dict[str, float], resources: dict[str, float]) -> int:
    """How many trials the cluster holds at once, by CPUs and (when trials take one) GPU share."""
    slots = math.floor(cluster.get("CPU", 1.0) / max(resources.get("cpu", 1.0), 1e-9))
    if resources.get("gpu", 0.0) > 0:
        slots = min(slots, math.floor(cluster.get("GPU", 0.0) / resources["gpu"] + 1e-9))
    return max(1, slots)


def search(task: str, budget: str, *, space: str | None = None, study: str | None = None,
           storage: str | None = None, objectives: str | None = None, workers: int | None = None,
           runner: str = "ray", ray_address: str | None = None, sampler: str | optuna.samplers.BaseSampler = "auto",
           seed: int | None = None,
           on_start: Callable[[SearchResult, SearchDriver], Callable[[Progress], None] | None] | None = None,
           ray_dir: Path = Path("studies/ray"), verbose: bool = False, model: str | None = None,
           trial_timeout: float | None = None, constraints: Sequence[str] = (), early_stop: bool = True,
           remeasure: int = 8, warm_start: bool = True) -> SearchResult:
    """Run (or resume) a search until ``budget`` is spent. All input is validated before anything runs.

    ``warm_start``: begin with the task's baseline and the space's ``baselines`` (paper settings);
    ``early_stop``: stop trials at rungs (``stopping``); ``constraints``: "metric <= number" bounds,
    checked before training where the task knows the metric then; ``remeasure``: front trials whose
    timed costs are measured again, alone, after the runner is done."""
    the_budget = parse_budget(budget)
    the_task, preset = resolve_task(task)
    the_space = load_space(space or preset or the_task.name, task_name=the_task.name, objectives=objectives,
                           constraints=constraints)
    if model is not None:  # a different pretrained model is a different study: it is part of the fidelity
        if "model" not in the_task.fidelity:
            raise UsageError(f"--model applies to language tasks; task {the_task.name!r} has no pretrained model")
        fidelity = {**the_space.fidelity, "model": the_task.fidelity["model"].check(model, "--model")}
        the_space = replace(the_space, fidelity=fidelity)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a whole number >= 1; got {workers}")
    if remeasure < 0:
        raise UsageError(f"--remeasure must be a whole number >= 0; got {remeasure}")
    if trial_timeout is not None and not (trial_timeout > 0 and math.isfinite(trial_timeout)):
        raise UsageError(f"--trial-timeout must be a positive number of seconds; got {trial_timeout}")
    if storage is not None and not storage.strip():
        raise UsageError("--storage is empty; give an SQLAlchemy URL such as sqlite:///studies/x.db, or leave it out")
    if study is not None and not study.strip():
        raise UsageError("--study is empty; give a study name, or leave it out to use the space's name")
    study_name = study or the_space.name
    url = storage or default_storage(study_name)
    the_task.check_data(the_space.fidelity)
    opened = open_storage(url)
    the_study, resumed = create_or_resume(opened, study_name, the_space, sampler=None)
    stored = len(the_study.get_trials(deepcopy=False))
    the_study.sampler = make_sampler(sampler, None if seed is None else seed + stored, the_space)
    the_study.set_user_attr(CONSTRAINTS_ATTR, [str(c) for c in the_space.constraints])
    # the task's baseline is the first point (then the YAML's baselines), so the front is read against them;
    # on every run, not only the first: a first run killed before it queued them must not lose them
    for config in the_space.reference_configs() if warm_start else ():
        the_study.enqueue_trial(config, skip_if_exists=True)

    if runner == "ray":
        from autotradeoff.runner import ray_cluster

        cluster = ray_cluster(ray_address, verbose=verbose)
    else:
        cluster = {"CPU": float(the_space.fidelity.get("threads", 1))}
    resources = the_task.resources(the_space.fidelity, gpus_available=cluster.get("GPU", 0) > 0)
    n_workers = 1 if runner == "local" else (workers or default_workers(cluster, resources))
    driver = SearchDriver(the_study, the_space, the_budget, resources, cluster_cpus=cluster.get("CPU", 1.0),
                          trial_timeout=trial_timeout, early_stop=early_stop, storage_url=absolute_url(url))
    from autotradeoff.runner import ray_results

    recovered, reconciled = reconcile(the_study, ray_results(ray_dir / study_name), store=driver.recover)
    result = SearchResult(the_study, url, resumed, reconciled, n_workers, stored, recovered=recovered)
    on_progress = on_start(result, driver) if on_start else None
    if runner == "ray":
        from autotradeoff.runner import run_ray

        run_ray(driver, workers=n_workers, storage_path=ray_dir, on_progress=on_progress, verbose=verbose)
    else:
        from autotradeoff.runner import run_local

        run_local(driver, on_progress=on_progress)
    result.new_trials = len(the_study.get_trials(deepcopy=False)) - stored
    if remeasure:  # the runner is done: no trial of this search shares the machine now
        from autotradeoff.remeasure import remeasure_front

        result.remeasured = remeasure_front(the_study, the_space, limit=remeasure)
    return result

