"""Run a search: trials in parallel through Ray Tune, or one at a time in-process (``--runner local``).

Ray Tune drives the trials through a small Searcher of ours that delegates to ``SearchDriver``
(Optuna ask/tell). We don't use ``ray.tune.search.optuna.OptunaSearch``: it keeps its Optuna trials
in private state and stores only objective values, while we must store every cost metric, the
failure reason, the budget charge and the Ray trial id on each Optuna trial, and stop asking when
the budget can't cover another trial.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotradeoff.engine.driver import Progress, SearchDriver
from autotradeoff.engine.stopping import Judge, work_scale
from autotradeoff.engine.trial import run_trial
from autotradeoff.errors import StorageUnavailable, TrialTimeout
from autotradeoff.tasks import pick_device

__all__ = ["ray_cluster", "run_ray", "run_local", "trial_outcome", "ray_results"]

OnProgress = Callable[[Progress], None]
TRIAL_ID_KEY = "__autotradeoff_trial_id"  # passed to a Ray trial in its config, for its early-stopping decisions


def trial_outcome(task: str, config: dict[str, Any], fidelity: dict[str, Any], device: str | None = None,
                  **checks: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Run one trial and catch what it raises: (metrics, None) or (None, "Type: message").
    ``checks``: ``constraints`` and ``judge`` for ``run_trial``."""
    try:
        return run_trial(task, config, fidelity, device=device, **checks), None
    except Exception as exc:  # every trial failure is data for the study, not a crash of the search
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{type(exc).__name__}: {message}"[:2000]


def _timeout_message(seconds: float) -> str:
    return f"TrialTimeout: stopped after the per-trial time limit of {seconds:g} s"


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise TrialTimeout in this (main) thread after ``seconds`` (SIGALRM); no limit when None."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeout(f"stopped after the per-trial time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_local(driver: SearchDriver, on_progress: OnProgress | None = None) -> None:
    """One trial at a time in this process: same driver, same trial function, no Ray. A background
    thread keeps the run's heartbeat while a trial runs; the time limit interrupts the trial."""
    number, done = 0, threading.Event()

    def beat() -> None:
        while not done.wait(1.0):
            with contextlib.suppress(StorageUnavailable):  # the main thread meets it too, and exits with it
                driver.heartbeat()

    threading.Thread(target=beat, daemon=True).start()
    try:
        while (config := driver.ask(key := f"local-{driver.session}-{number}")) is not None:
            number += 1
            if on_progress:
                on_progress(driver.progress())
            try:
                with _time_limit(driver.trial_timeout):
                    metrics, error = trial_outcome(driver.space.task, config, driver.space.fidelity,
                                                   constraints=driver.space.constraints, judge=driver.judge(key))
            except TrialTimeout:
                metrics, error = None, _timeout_message(driver.trial_timeout)
            driver.tell(key, metrics, error=error)
            if on_progress:
                on_progress(driver.progress())
    finally:
        done.set()
        driver.close()


def _ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def ray_cluster(address: str | None, *, num_cpus: int | None = None, verbose: bool = False) -> dict[str, float]:
    """Start (or join, with ``address``) Ray; return the cluster's resources.

    A cluster started here serves only this machine, so it binds to loopback: Ray otherwise takes the
    address of the default route's interface, which a sandbox or firewall may block (CI did, and every
    worker then timed out reaching the GCS). Joining ``address`` keeps Ray's own choice, since the other
    machines must reach this driver.
    """
    _ray_env()
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for "local only": loopback
    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose,
                                  "logging_level": logging.INFO if verbose else logging.ERROR}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return dict(ray.cluster_resources())


def ray_results(experiment: Path) -> dict[str, dict[str, Any]]:
    """The last result Ray Tune logged for each trial id under an experiment folder (its ``result.json``
    files, written before our searcher hears of the result): what a resume can recover."""
    results: dict[str, dict[str, Any]] = {}
    for path in Path(experiment).glob("*/result.json"):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        with contextlib.suppress(ValueError, IndexError):
            last = json.loads(lines[-1])
            results[str(last["trial_id"])] = last
    return results


@functools.lru_cache(maxsize=4)
def _worker_storage(url: str, wait_s: float | None = None):
    from autotradeoff.study.storage import open_storage

    return open_storage(url, wait_s=wait_s)


def _tune_trial(config: dict[str, Any], task: str, fidelity: dict[str, Any], constraints: tuple = (),
                stopping: dict[str, Any] | None = None) -> None:
    """The Ray Tune trainable: run the trial function, report metrics or the failure as a result.
    ``stopping`` (storage URL, study, objectives) lets the trial take early-stopping decisions itself,
    from the rung points every trial stored in the study."""
    import ray
    from ray import tune

    config = dict(config)
    trial_id = config.pop(TRIAL_ID_KEY, None)
    judge = None
    if stopping and trial_id is not None:
        scale = work_scale(config, stopping.get("work"))
        judge = lambda known: Judge(_worker_storage(stopping["url"], stopping.get("wait_s")), stopping["study"],  # noqa: E731
                                    trial_id, stopping["objectives"], known, scale=scale)
    device = pick_device(len(ray.get_gpu_ids()))
    metrics, error = trial_outcome(task, config, fidelity, device, constraints=constraints, judge=judge)
    tune.report(metrics if error is None else {"autotradeoff_error": error})


def run_ray(driver: SearchDriver, *, workers: int, storage_path: Path, on_progress: OnProgress | None = None,
            verbose: bool = False) -> None:
    """Run trials through Ray Tune, at most ``workers`` at once, until the driver's budget is out."""
    import ray
    from ray import tune
    from ray.tune import Callback
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        # No metric/mode for Tune: objectives live in the study, and a failed trial reports no metric
        # (Tune would reject such a result if it knew the metric names).

        def suggest(self, trial_id: str) -> dict | str | None:
            config = driver.ask(trial_id)
            if config is None:
                return Searcher.FINISHED if driver.running == 0 else None
            if on_progress:  # the bar's running count includes the trial starting now
                on_progress(driver.progress())
            return {**config, TRIAL_ID_KEY: driver.trial_id(trial_id)} if driver.early_stop else config

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if error:
                return  # the callback below stores it, with the reason Ray recorded
            error_text = (result or {}).get("autotradeoff_error")
            driver.tell(trial_id, None if error_text else result, error=error_text)
            if on_progress:
                on_progress(driver.progress())

    class FailureRecorder(Callback):
        """Keeps the heartbeat, stops trials past the time limit (their worker is killed), and stores
        a dead worker's trial as FAIL with Ray's reason, its config queued once more."""

        def __init__(self) -> None:
            super().__init__()
            self.stopped: set[str] = set()

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            driver.heartbeat()
            overdue = set(driver.overdue()) - self.stopped
            for trial in trials:
                actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
                if trial.trial_id in overdue and actor is not None:
                    self.stopped.add(trial.trial_id)
                    ray.kill(actor)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if trial.trial_id in self.stopped:
                driver.tell(trial.trial_id, None, error=_timeout_message(driver.trial_timeout))
            else:
                reason = "trial process died"
                error_file = getattr(trial, "error_file", None)
                if error_file and Path(error_file).is_file():
                    lines = [line for line in Path(error_file).read_text().splitlines() if line.strip()]
                    reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else reason)
                driver.tell(trial.trial_id, None, error=f"worker failed: {reason.strip()}", retry=True)
            if on_progress:
                on_progress(driver.progress())

    if not verbose:
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    trainable = tune.with_resources(
        tune.with_parameters(_tune_trial, task=driver.space.task, fidelity=driver.space.fidelity,
                             constraints=driver.space.constraints, stopping=driver.stopping_spec()),
        {key: value for key, value in driver.resources.items() if value > 0})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=StudySearcher(), num_samples=-1, max_concurrent_trials=workers,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=driver.study.study_name, storage_path=str(storage_path.resolve()),
                                  verbose=1 if verbose else 0, callbacks=[JsonLoggerCallback(), FailureRecorder()],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        tuner.fit()
    finally:
        driver.close()
