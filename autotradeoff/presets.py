"""Names a user types for a task: a registered task, ``module:attribute``, or a search space preset
(``cora-fewshot``) that names its task. Resolving them needs both the task registry and the space
loader, so it lives here, above both (``space`` and ``tasks`` don't import each other)."""

from __future__ import annotations

from collections.abc import Sequence

from autotradeoff.errors import UsageError
from autotradeoff.space import SearchSpace, build_space, list_spaces, read_space
from autotradeoff.tasks import TASKS, Task, get_task, task_names

__all__ = ["load_space", "resolve_task"]


def load_space(name_or_path: str, *, task_name: str | None = None, objectives: str | None = None,
               constraints: Sequence[str] = ()) -> SearchSpace:
    """Load and validate a space by name (``cora``) or path; check it belongs to ``task_name``."""
    source, data = read_space(name_or_path)
    plugins = data.get("techniques") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p.strip() for p in plugins):
        raise UsageError(f"{source}: techniques must be a list of technique names or module:attribute paths; got {plugins!r}.")
    task = get_task(str(data["task"]), tuple(plugins))
    if task_name is not None and task.name != task_name:
        raise UsageError(f"{source}: is a space for task {task.name!r}, not {task_name!r}.")
    return build_space(data, source=source, task=task, objectives_override=objectives, constraints=constraints)


def resolve_task(name: str) -> tuple[Task, str | None]:
    """(task, preset): ``name`` is a task (preset None) or a search space preset naming its task."""
    if name in TASKS or ":" in name:
        return get_task(name), None
    spaces = list_spaces()
    if name not in spaces:
        raise UsageError(f"unknown task {name!r}; choices: {', '.join(task_names())}, or a search space: "
                         f"{', '.join(s for s in spaces if s not in TASKS) or '(none found)'} (or module:attribute)")
    return get_task(load_space(name).task), name
