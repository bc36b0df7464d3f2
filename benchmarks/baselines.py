"""Does each task's baseline learn at its default fidelity? For every task whose data is here, the baseline
of its own space (the plain model, every technique off, the space's fidelity: what ``autotradeoff search
--task <task>`` starts with) is trained once; its validation score is set beside the majority-class rate
and the score of always predicting the majority class.

    python benchmarks/baselines.py              # ~35 min on 2 cores (RTE's fine-tune is 27 min of it)
    python benchmarks/baselines.py --tasks sst2 # re-run some tasks; the other rows are kept from the CSV
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import markdown_table, write_csv  # noqa: E402

from autotradeoff.engine.trial import run_trial  # noqa: E402
from autotradeoff.errors import DataMissingError  # noqa: E402
from autotradeoff.presets import load_space  # noqa: E402
from autotradeoff.tasks import get_task, task_names  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks"


def baseline(name: str) -> dict | None:
    task, space = get_task(name), load_space(name)
    try:
        task.check_data(space.fidelity)
    except DataMissingError as missing:
        print(f"{name}: skipped ({str(missing)[:100]}…)", flush=True)
        return None
    config = {**space.constants, **space.baseline()}
    start = time.perf_counter()
    metrics = run_trial(name, config, space.fidelity)
    filled = {**task.fill_config(config), **space.fidelity}
    score = next(o.name for o in space.objectives if o.direction == "max")
    return {"task": name, "settings": ", ".join(f"{k}={filled[k]}" for k in task.learning_settings if k in filled),
            "objective": score, "validation": metrics[score], "majority_rate": metrics["val_majority_rate"],
            "constant_score": metrics["val_constant_score"], "margin": metrics[score] - metrics["val_constant_score"],
            "degenerate": "yes" if metrics["degenerate"] else "no",
            "test": metrics.get(f"test_{score[4:]}", float("nan")), "trial_s": time.perf_counter() - start}


def kept_rows(names: list[str]) -> list[dict]:
    """Rows of the existing CSV for the tasks not re-run now, numbers read back as floats."""
    path = OUT / "baselines.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["task"] not in names]
    numeric = ("validation", "majority_rate", "constant_score", "margin", "test", "trial_s")
    return [{k: float(v) if k in numeric else v for k, v in row.items()} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=task_names(), default=task_names())
    names = parser.parse_args().tasks
    fresh = [row for name in names if (row := baseline(name)) is not None]
    rows = sorted(kept_rows(names) + fresh, key=lambda row: row["task"])
    for row in rows:
        print(row, flush=True)
    write_csv(rows, OUT / "baselines.csv")
    lines = ["# Baselines at the default fidelity", "",
             "`python benchmarks/baselines.py`: each task's own space, every technique off, one seed. `constant_score` is "
             "what always predicting the validation majority class scores; `margin` = validation minus it. A trial is "
             "degenerate when one class takes >= 98% of its predictions or its margin is within two standard errors.", "",
             *markdown_table(rows, ["task", "settings", "objective", "validation", "majority_rate", "constant_score", "margin",
                                    "degenerate", "test", "trial_s"])]
    (OUT / "baselines.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
