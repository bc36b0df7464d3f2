"""``search()``: the library entry point behind ``autotradeoff search`` (validate, resume, run, report)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import optuna

from autotradeoff.engine.budget import Budget, parse_budget, parse_seconds
from autotradeoff.engine.driver import Progress, SearchDriver
from autotradeoff.engine.samplers import SAMPLERS, auto_sampler, make_sampler
from autotradeoff.errors import UsageError
from autotradeoff.presets import load_space, resolve_task
from autotradeoff.space import SearchSpace
from autotradeoff.study import absolute_url, create_or_resume, default_storage, open_storage, reconcile, record
from autotradeoff.study.patience import DEFAULT_WAIT_S
from autotradeoff.tasks import Task, task_for

__all__ = ["search", "SearchResult", "make_sampler", "auto_sampler", "default_workers", "SAMPLERS"]


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
    remeasured: int = 0  # front trials (and the baseline) whose timed costs were measured again, alone, after the runner


def default_workers(cluster: dict[str, float], resources: dict[str, float]) -> int:
    """How many trials the cluster holds at once, by CPUs and (when trials take one) GPU share."""
    slots = math.floor(cluster.get("CPU", 1.0) / max(resources.get("cpu", 1.0), 1e-9))
    if resources.get("gpu", 0.0) > 0:
        slots = min(slots, math.floor(cluster.get("GPU", 0.0) / resources["gpu"] + 1e-9))
    return max(1, slots)


def search(task: str, budget: str, *, space: str | None = None, study: str | None = None,
           storage: str | optuna.storages.BaseStorage | None = None, objectives: str | None = None, workers: int | None = None,
           runner: str = "ray", ray_address: str | None = None, sampler: str | optuna.samplers.BaseSampler = "auto",
           seed: int | None = None,
           on_start: Callable[[SearchResult, SearchDriver], Callable[[Progress], None] | None] | None = None,
           ray_dir: Path = Path("studies/ray"), verbose: bool = False, model: str | None = None,
           trial_timeout: float | None = None, constraints: Sequence[str] = (), early_stop: bool = True,
           remeasure: int = 8, warm_start: bool = True, fidelity: Sequence[str] = (),
           storage_wait: float | str = DEFAULT_WAIT_S) -> SearchResult:
    """Run (or resume) a search until ``budget`` is spent. All input is validated before anything runs.

    ``warm_start``: begin with the task's baseline and the space's ``baselines`` (paper settings);
    ``early_stop``: stop trials at rungs (``stopping``); ``constraints``: "metric <= number" bounds,
    checked before training where the task knows the metric then; ``remeasure``: front trials whose
    timed costs are measured again, alone, after the runner is done; ``fidelity``: "key=value" overrides of
    the space's fidelity; ``storage``: a URL, or an Optuna storage object (library use: a benchmark's
    in-memory storage). A task that looks its results up in a table (``Task.simulated``) runs on
    ``workers`` simulated workers (default 1) whatever the runner, charged what its trials would have cost.
    ``storage_wait``: how long an outage of the storage is waited out (seconds, or "5m") before the search
    exits with ``StorageUnavailable``."""
    the_budget = parse_budget(budget)
    wait_s = parse_seconds(storage_wait, "--storage-wait")
    the_space = _space(task, space, objectives=objectives, constraints=constraints, model=model, fidelity=fidelity)
    _check_options(workers=workers, remeasure=remeasure, trial_timeout=trial_timeout, storage=storage, study=study)
    the_task = task_for(the_space.task, the_space.fidelity)
    the_task.check_data(the_space.fidelity)
    study_name = study or the_space.name
    url = storage if isinstance(storage, str) else ("(a storage object)" if storage else default_storage(study_name))
    the_study, resumed, stored = _open_study(storage if storage and not isinstance(storage, str) else url, study_name,
                                             the_space, sampler=sampler, seed=seed, warm_start=warm_start,
                                             budget=the_budget, wait_s=wait_s)
    simulated = the_task.simulated
    n_workers = (workers or 1) if simulated else None
    cluster = _cluster("simulated" if simulated else runner, ray_address, the_space, verbose, n_workers)
    resources = the_task.resources(the_space.fidelity, gpus_available=cluster.get("GPU", 0) > 0)
    n_workers = n_workers or (1 if runner == "local" else (workers or default_workers(cluster, resources)))
    from autotradeoff.engine.simulate import SimClock, run_simulated

    clock = SimClock()
    driver = SearchDriver(the_study, the_space, the_budget, resources, cluster_cpus=cluster.get("CPU", 1.0),
                          trial_timeout=trial_timeout, early_stop=early_stop,
                          storage_url=absolute_url(url) if isinstance(storage, str) or storage is None else None,
                          learning_settings=the_task.learning_settings, storage_wait=wait_s,
                          **({"clock": clock} if simulated else {}))
    from autotradeoff.engine.runner import ray_results, run_local, run_ray

    recovered, reconciled = reconcile(the_study, ray_results(ray_dir / study_name), store=driver.recover)
    result = SearchResult(the_study, url, resumed, reconciled, n_workers, stored, recovered=recovered)
    on_progress = on_start(result, driver) if on_start else None
    if simulated:
        run_simulated(driver, clock=clock, workers=n_workers, on_progress=on_progress)
    elif runner == "ray":
        run_ray(driver, workers=n_workers, storage_path=ray_dir, on_progress=on_progress, verbose=verbose)
    else:
        run_local(driver, on_progress=on_progress)
    result.new_trials = len(the_study.get_trials(deepcopy=False)) - stored
    if remeasure and not simulated:  # the runner is done: no trial of this search shares the machine now
        from autotradeoff.engine.remeasure import remeasure_front

        result.remeasured = remeasure_front(the_study, the_space, limit=remeasure)
    return result


def _space(task: str, space: str | None, *, objectives: str | None, constraints: Sequence[str],
           model: str | None, fidelity: Sequence[str] = ()) -> SearchSpace:
    """The validated space of a search: the named one, the preset's, or the task's own; ``--model`` and
    ``--fidelity`` applied."""
    the_task, preset = resolve_task(task)
    # a task's own space is the file named after it (``nasbench-graph:cora`` -> ``nasbench-graph-cora.yaml``)
    the_space = load_space(space or preset or the_task.name.replace(":", "-"), task_name=the_task.name, objectives=objectives,
                           constraints=constraints)
    overrides = _overrides(fidelity, the_task)
    if model is not None:  # a different pretrained model is a different study: it is part of the fidelity
        if "model" not in the_task.fidelity:
            raise UsageError(f"--model applies to language tasks; task {the_task.name!r} has no pretrained model")
        overrides["model"] = the_task.fidelity["model"].check(model, "--model")
    return replace(the_space, fidelity={**the_space.fidelity, **overrides})


def _overrides(items: Sequence[str], task: Task) -> dict[str, object]:
    """``["train_size=2000"]`` -> {"train_size": 2000}, each checked against the task's fidelity table."""
    import yaml

    found = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in task.fidelity:
            raise UsageError(f"--fidelity {item!r}: expected KEY=VALUE with KEY one of {', '.join(task.fidelity)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        found[key] = task.fidelity[key].check(value, f"--fidelity {key}")
    return found


def _check_options(*, workers: int | None, remeasure: int, trial_timeout: float | None, storage: object,
                   study: str | None) -> None:
    """One-line errors for options no space validates."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a whole number >= 1; got {workers}")
    if remeasure < 0:
        raise UsageError(f"--remeasure must be a whole number >= 0; got {remeasure}")
    if trial_timeout is not None and not (trial_timeout > 0 and math.isfinite(trial_timeout)):
        raise UsageError(f"--trial-timeout must be a positive number of seconds; got {trial_timeout}")
    if isinstance(storage, str) and not storage.strip():
        raise UsageError("--storage is empty; give an SQLAlchemy URL such as sqlite:///studies/x.db, or leave it out")
    if study is not None and not study.strip():
        raise UsageError("--study is empty; give a study name, or leave it out to use the space's name")


def _open_study(url: str | optuna.storages.BaseStorage, name: str, space: SearchSpace, *,
                sampler: str | optuna.samplers.BaseSampler, seed: int | None, warm_start: bool,
                budget: Budget | None = None, wait_s: float | None = None) -> tuple[optuna.Study, bool, int]:
    """(study, resumed, trials stored before this run), its sampler set and its reference points queued; the
    storage waits out outages up to ``wait_s``. Resumed with other constraints, the samplers see every finished
    trial's constraint values stated again from its stored metrics (``samplers.SeesRejected``)."""
    storage = open_storage(url, wait_s=wait_s) if isinstance(url, str) else url
    the_study, resumed = create_or_resume(storage, name, space, sampler=None)
    stored = len(the_study.get_trials(deepcopy=False))
    the_study.sampler = make_sampler(sampler, None if seed is None else seed + stored, space, budget)
    constraints = [str(c) for c in space.constraints]
    the_study.set_user_attr(record.CONSTRAINTS, constraints)
    # the task's baseline is the first point (then the YAML's baselines), so the front is read against them;
    # on every run, not only the first: a first run killed before it queued them must not lose them
    for index, config in enumerate(space.reference_configs() if warm_start else ()):
        the_study.enqueue_trial(config, skip_if_exists=True, user_attrs={record.REFERENCE: "reference" if index else "baseline"})
    return the_study, resumed, stored


def _cluster(runner: str, ray_address: str | None, space: SearchSpace, verbose: bool,
             workers: int | None = None) -> dict[str, float]:
    """What the runner can use: Ray's cluster resources, this process's threads, or the simulated workers'."""
    if runner == "simulated":
        return {"CPU": float(space.fidelity.get("threads", 1)) * (workers or 1)}
    if runner != "ray":
        return {"CPU": float(space.fidelity.get("threads", 1))}
    from autotradeoff.engine.runner import ray_cluster

    return ray_cluster(ray_address, verbose=verbose)
