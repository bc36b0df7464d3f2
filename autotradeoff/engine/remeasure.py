"""The exclusive pass: re-measure the timed costs of a finished search's front, and of the baseline the front
is read against, one trial at a time.

Latency taken while other trials share the machine is noisy and biased upwards. After a search's
runner has finished (no trial of this search runs), each front candidate's timed objectives and
their spreads are measured again (``Task.remeasure``) and stored as the study attribute
``remeasured:<trial number>`` (a finished trial's own attributes can't change; see ``study.record``);
``pareto.rows_of`` reads them in place of the first measurement, so the front, the report and the
export use them. Optuna's stored objective values are left as they were (a finished trial's values
cannot change), so optuna-dashboard still shows the first measurement.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
import torch

from autotradeoff.front.gains import baseline_of
from autotradeoff.front.pareto import front, objectives_of, rows_of, spread_of
from autotradeoff.space import SearchSpace
from autotradeoff.study import record
from autotradeoff.tasks import pick_device, task_for

__all__ = ["remeasure_front"]


def remeasure_front(study: optuna.Study, space: SearchSpace, *, limit: int = 8, device: str | None = None) -> int:
    """Re-measure up to ``limit`` front trials not yet re-measured, and the baseline when it is not one of them;
    returns how many were. Candidates are taken from the noise-aware front, which keeps near-ties, so a point the
    first measurement put a hair behind another gets its second chance. The baseline is measured with them because
    every front point is compared with it ("2x lower latency than the baseline"), and a ratio of a measurement taken
    alone to one taken beside another trial's training mixes two conditions (a 1cpu-h SST-2 search: baseline 16.4 ms
    beside a fine-tune, 16.1 ms alone; an earlier one 13.8 ms alone against 10.3 ms for the same model in other trials)."""
    objectives = objectives_of(study)
    rows = rows_of(study)
    timed = [o.name for o in objectives if spread_of(o.name) and any(spread_of(o.name) in r["metrics"] for r in rows)]
    if not timed or limit <= 0:
        return 0
    task = task_for(space.task, space.fidelity)
    device = device or pick_device(float(space.fidelity.get("gpu_share", 0.0)))
    torch.set_num_threads(int(space.fidelity.get("threads", 1)))
    done = 0
    chosen = [r for r in front(rows, objectives) if not r["remeasured"]][:limit]
    base = baseline_of(rows)
    if base is not None and not base["remeasured"] and all(r["number"] != base["number"] for r in chosen):
        chosen.append(base)
    for row in chosen:
        config = task.fill_config(row["config"])
        start = time.perf_counter()
        metrics = task.remeasure(config, task.fill_fidelity(space.fidelity), device=device)
        names = [n for name in timed for n in (name, spread_of(name)) if n in metrics]
        entry: dict[str, Any] = {n: float(metrics[n]) for n in names}
        entry["first"] = {n: row["metrics"].get(n) for n in names}
        entry["seconds"] = time.perf_counter() - start
        record.write_remeasured(study, row["number"], entry)  # a finished trial's attrs are frozen
        done += 1
    return done
