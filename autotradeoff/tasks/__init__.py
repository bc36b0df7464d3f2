"""Task registry: name -> lazily imported factory ("module:attribute"), so only graph tasks pay for PyG.

A task can also be given as an import path, ``mypackage.tasks:MyTask``, for tasks outside this package.
``task_for`` gives the task a trial runs: the named one plus the plug-in techniques its fidelity lists.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from autotradeoff.errors import UsageError
from autotradeoff.tasks.base import Task, pick_device

__all__ = ["TASKS", "Task", "get_task", "task_for", "task_names", "pick_device"]

TASKS: dict[str, str] = {
    **{name: f"autotradeoff.tasks.planetoid:{name}" for name in ("cora", "citeseer", "pubmed")},
    **{name: f"autotradeoff.tasks.glue:{name}" for name in ("sst2", "rte", "cola", "mrpc", "qnli")},
    "fashion-mnist": "autotradeoff.tasks.vision:fashion_mnist",
    "cifar10": "autotradeoff.tasks.vision:cifar10",
    # published tables (pip install -e '.[bench]'), and our own Cora learning curves (benchmarks/cora_curves.py)
    **{f"nasbench-graph:{d}": f"autotradeoff.tasks.tabular:nasbench_graph_{d}" for d in
       ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")},
    **{f"nasbench201:{d}": f"autotradeoff.tasks.tabular:nasbench201_{d}" for d in ("cifar10", "cifar100", "imagenet")},
    "cora-curves": "autotradeoff.tasks.tabular:CoraCurves",
}


def task_names() -> list[str]:
    return sorted(TASKS)


@cache
def get_task(name: str, plugins: Sequence[str] = ()) -> Task:
    """The task called ``name`` (a registry name or ``module:attribute``), with the plug-in techniques
    ``plugins`` (names or import paths) added; UsageError lists the choices."""
    if plugins:
        return get_task(name).plus(tuple(plugins))
    target = TASKS.get(name)
    if target is None and ":" in name and not any(known.startswith(name.partition(":")[0] + ":") for known in TASKS):
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


def task_for(name: str, fidelity: dict[str, Any] | None = None) -> Task:
    """The task a trial runs: ``name`` with the plug-in techniques listed in ``fidelity["techniques"]``."""
    return get_task(name, tuple((fidelity or {}).get("techniques") or ()))
