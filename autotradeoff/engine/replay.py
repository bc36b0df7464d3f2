"""Re-running one configuration outside a search (``autotradeoff trial``): which fidelity applies when a
preset, an exported file and ``--model`` each say something, and the same trial function a search runs."""

from __future__ import annotations

from typing import Any

from autotradeoff.engine.runner import trial_outcome
from autotradeoff.errors import TrialFailed, UsageError
from autotradeoff.presets import load_space, resolve_task
from autotradeoff.tasks import Task, task_for

__all__ = ["prepare", "replay"]


def prepare(task: str, given: dict[str, Any], *, model: str | None = None,
            where: str = "config") -> tuple[Task, dict[str, Any], dict[str, Any]]:
    """(task, config, fidelity) to run ``given`` (an export's task, config, fidelity) on ``task`` (a task or
    preset name). Fidelity precedence: the preset's, then the export's, then ``model``."""
    the_task, preset = resolve_task(task)
    if given.get("task") and given["task"] != the_task.name:
        raise UsageError(f"{where} was exported for task {given['task']!r}, not {the_task.name!r}")
    fidelity = {**(load_space(preset).fidelity if preset else {}), **given.get("fidelity", {}),
                **({"model": model} if model else {})}
    the_task = task_for(the_task.name, the_task.fill_fidelity(fidelity))
    fidelity = the_task.fill_fidelity(fidelity)
    config = the_task.fill_config(given.get("config", {}), where=where)
    the_task.check_data(fidelity)
    return the_task, config, fidelity


def replay(task: Task, config: dict[str, Any], fidelity: dict[str, Any], *, device: str | None = None) -> dict[str, Any]:
    """The metrics of one trial of ``config``; TrialFailed (one line) when it fails."""
    metrics, error = trial_outcome(task.name, config, fidelity, device=device)
    if error:
        raise TrialFailed(f"the trial failed: {error}")
    return metrics
