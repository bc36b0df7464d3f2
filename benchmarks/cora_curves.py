"""The Cora curves table (task ``cora-curves``): every config of ``tasks.tabular.CURVES_GRID`` trained once by
our own Cora task (GCN/GAT/SAGE, the public split, 200 epochs), with the validation accuracy of every epoch
recorded through the task's own checkpoints (``progress.listening``) and the trial's metrics (validation and
test accuracy of the best-validation weights, latency measured alone, FLOPs, parameters, training time).

Early stopping can then be measured on hundreds of searches: a ``cora-curves`` trial replays its curve as
checkpoints, and a stopped trial is charged the share of the training time it used.

    python benchmarks/cora_curves.py                     # 162 configs, ~10 min on 2 cores; writes the cache's table
    python benchmarks/cora_curves.py --limit 6 --epochs 10 --out /tmp/t.json.gz   # a tiny table (tests)
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

KEEP = ("val_accuracy", "test_accuracy", "latency_ms", "latency_iqr_ms", "flops", "params", "train_time_s")


def grid() -> list[dict[str, Any]]:
    from autotradeoff.tasks.tabular import CURVES_GRID

    return [dict(zip(CURVES_GRID, values)) for values in itertools.product(*CURVES_GRID.values())]


def one(job: tuple[dict[str, Any], int]) -> dict[str, Any]:
    """Train one config with the Cora task and record its validation curve (one value per epoch)."""
    import torch

    from autotradeoff import progress
    from autotradeoff.cost import alone
    from autotradeoff.tasks import get_task
    from autotradeoff.tasks.tabular import CURVES_FIXED

    config, epochs = job
    task = get_task("cora")
    full = task.fill_config({**config, **CURVES_FIXED, "epochs": epochs})
    fidelity = task.fill_fidelity({"latency_repeats": 10, "latency_warmup": 2})
    torch.set_num_threads(1)
    curve: list[float] = []
    with alone.working(), progress.listening(lambda share, value: curve.append(round(float(value), 5))):
        metrics = task.run(full, fidelity, device="cpu")
    return {"config": config, "curve": curve, "metrics": {k: float(metrics[k]) for k in KEEP}}


def build(out: Path, *, epochs: int, limit: int | None, jobs: int) -> dict[str, Any]:
    """Train every config of the grid (the first ``limit``), ``jobs`` at once; write the gzipped JSON table."""
    configs = grid()[:limit] if limit else grid()
    started = time.time()
    with ProcessPoolExecutor(jobs) as pool:
        rows = list(pool.map(one, [(c, epochs) for c in configs]))
    table = {"task": "cora", "epochs": epochs, "built_s": time.time() - started, "jobs": jobs, "cpus": os.cpu_count(),
             "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as handle:
        json.dump(table, handle)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="default: the cache's tables/cora-curves.json.gz")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--limit", type=int, help="only the first N configs of the grid")
    parser.add_argument("--jobs", type=int, default=2, help="configs trained at once (latency is timed alone)")
    args = parser.parse_args()
    os.environ.setdefault("AUTOTRADEOFF_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    from autotradeoff.tasks.tabular import curves_path

    out = args.out or curves_path()
    table = build(out, epochs=args.epochs, limit=args.limit, jobs=args.jobs)
    print(f"{len(table['rows'])} configs x {args.epochs} epochs in {table['built_s']:.0f} s -> {out}")


if __name__ == "__main__":
    sys.exit(main())
