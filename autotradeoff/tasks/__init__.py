"""Task registry: name -> lazily imported factory ("module:attribute"), so only graph tasks pay for PyG.

A task can also be given as an import path, ``mypackage.tasks:MyTask``, for tasks outside this package,
or (``resolve_task``) as the name of a search space preset, ``cora-fewshot``, which names its task.
"""

from __future__ import annotations

import importlib
from functools import cache

from autotradeoff.errors import UsageError
from autotradeoff.tasks.base import Task

__all__ = ["TASKS", "Task", "get_task", "resolve_task", "task_names"]

TASKS: dict[str, str] = {
    **{name: f"autotradeoff.tasks.planetoid:{name}" for name in ("cora", "citeseer", "pubmed")},
    **{name: f"autotradeoff.tasks.glue:{name}" for name in ("sst2", "rte", "cola", "mrpc", "qnli")},
    "fashion-mnist": "autotradeoff.tasks.vision:fashion_mnist",
    "cifar10": "autotradeoff.tasks.vision:cifar10",
}


def task_names() -> list[str]:
    return sorted(TASKS)


def resolve_task(name: str) -> tuple[Task, str | None]:
    """(task, preset): ``name`` is a task (preset None) or a search space preset naming its task."""
    from autotradeoff.space import list_spaces, load_space

    if name in TASKS or ":" in name:
        return get_task(name), None
    spaces = list_spaces()
    if name not in spaces:
        raise UsageError(f"unknown task {name!r}; choices: {', '.join(task_names())}, or a search space: "
                         f"{', '.join(s for s in spaces if s not in TASKS) or '(none found)'} (or module:attribute)")
    return get_task(load_space(name).task), name


@cache
def get_task(name: str) -> Task:
    """The task called ``name`` (a registry name or ``module:attribute``); UsageError lists choices."""
    target = TASKS.get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        raise UsageError(f"unknown task {name!r}; choices: {', '.join(task_names())} (or module:attribute)")
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # ImportError, AttributeError, ValueError (":x"), or the module's own failure
        raise UsageError(f"cannot load task {name!r} from {target!r}: {type(exc).__name__}: {exc}") from None
    try:
        task = factory() if not isinstance(factory, Task) else factory
    except Exception as exc:  # a name that is not a task factory (e.g. os:getcwd), or one that fails
        raise UsageError(f"task {name!r}: calling {target!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(task, Task):
        raise UsageError(f"task {name!r}: {target!r} did not give a Task; got {type(task).__name__}")
    return task
