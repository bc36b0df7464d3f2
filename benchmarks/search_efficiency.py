"""Search efficiency (issue 18): which way of searching finds the accuracy-versus-latency front with the fewest
trials, measured where it can be measured: on published tables, 30 seeds x 200 trials per method.

- ``tables``: ``nasbench-graph:cora`` and ``nasbench201:cifar10``; random search, Optuna's NSGA-II, TPE and GP
  with their defaults, Ray Tune's default generator, autotradeoff's defaults (``auto`` sampler, warm start,
  early stopping) and, as an ablation, autotradeoff without the warm start. Every search is a real
  ``autotradeoff.search`` on one simulated worker (in-memory storage). Score: hypervolume regret against the
  table's true front, objectives (validation accuracy, log latency) normalised between the table's best value
  (0) and a reference point fixed in advance, the table's median of each objective (1) (``search_stats.Scale``).
- ``workers``: the same with 8 simulated asynchronous workers: what parallelism costs each sampler.
- ``curves``: early stopping on the Cora curves table (``reports/benchmarks/cora_curves_table.json.gz``, built by
  ``benchmarks/cora_curves.py``; ``--rebuild-curves`` builds it afresh on this machine):
  autotradeoff with and without it, and random search, against simulated CPU time.
- ``throughput``, ``live`` (``search_live``): real Cora trials through Ray, and a live-task sanity check.

    python benchmarks/search_efficiency.py                        # everything (see the report for the time)
    python benchmarks/search_efficiency.py --parts tables --seeds 5   # a quick look
    python benchmarks/search_efficiency.py --report-only          # rewrite the report from the stored runs
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import search_stats as st  # benchmarks/search_stats.py
from report_efficiency import write_report  # benchmarks/report_efficiency.py

OUT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks"
RUNS = OUT / "search_efficiency_runs.json.gz"
CURVES_TABLE = OUT / "cora_curves_table.json.gz"  # the Cora curves table the report's curves part searched
TABLES = ("nasbench-graph:cora", "nasbench201:cifar10")
METHODS = ("random", "nsga2", "tpe", "gp", "ray", "autotradeoff", "autotradeoff-cold")
WORKER_METHODS = ("random", "tpe", "autotradeoff")
GP_LIMITS = (30, 100)  # seeds and trials of Optuna's GP: ~15-20 s a 100-trial search under Optuna 5.1, cubic past that
CURVE_METHODS = ("random", "autotradeoff", "autotradeoff-no-es")


def sampler_of(method: str, seed: int):
    """The sampler a method runs with (``auto``: autotradeoff's own choice)."""
    import optuna
    from search_live import ray_default_sampler

    return {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed),
            "ray": lambda: ray_default_sampler(seed)}.get(method, lambda: "auto")()


def one(job: dict) -> dict:
    """One search on a table; its trials' losses in the order they finished, and their simulated seconds."""
    import optuna

    from autotradeoff.engine.search import search

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    ours = job["method"].startswith("autotradeoff")
    start = time.perf_counter()
    found = search(job["task"], job["budget"], storage=optuna.storages.InMemoryStorage(), study="s",
                   sampler=sampler_of(job["method"], job["seed"]), seed=job["seed"], workers=job["workers"],
                   warm_start=job["method"] == "autotradeoff" or job["method"] == "autotradeoff-no-es",
                   early_stop=ours and job["method"] != "autotradeoff-no-es", remeasure=0, **job.get("extra", {}))
    wall = time.perf_counter() - start
    finished = sorted((t for t in found.study.get_trials(deepcopy=False) if t.state.is_finished()),
                      key=lambda t: (t.datetime_complete, t.number))
    rows = [(t.user_attrs.get("charge", {}).get("wall_s", 0.0), t.state.name == "COMPLETE",
             t.user_attrs.get("val_accuracy"), t.user_attrs.get("latency_ms"), t.user_attrs.get("work_share", 1.0))
            for t in finished]
    return {**{k: v for k, v in job.items() if k != "extra"}, "wall_s": wall, "sampler": type(found.study.sampler).__name__,
            "rows": rows}


def scale_of(task: str, fidelity: dict | None = None) -> st.Scale:
    """The normalisation and reference point of a table, from every config it holds (fixed before any search)."""
    from autotradeoff.tasks import get_task
    from autotradeoff.tasks.tabular import CoraCurves, _graph_table, _nb201_table, curves_path

    if task.startswith("nasbench-graph:"):
        rows = _graph_table(task.split(":")[1]).values()
        return st.Scale([r["valid_perf"] for r in rows], [1000 * r["latency"] for r in rows])
    if task.startswith("nasbench201:"):
        rows = _nb201_table(task.split(":")[1]).values()
        return st.Scale([r["val_acc"][0] / 100 for r in rows], [1000 * r["latency"][0] for r in rows])
    assert isinstance(get_task(task), CoraCurves)
    import gzip

    with gzip.open(curves_path(fidelity), "rt") as handle:
        rows = [r["metrics"] for r in json.load(handle)["rows"]]
    return st.Scale([r["val_accuracy"] for r in rows], [r["latency_ms"] for r in rows])


def losses(run: dict, scale: st.Scale) -> list[tuple[float, float] | None]:
    return [scale.loss(acc, lat) if done else None for _, done, acc, lat, _ in run["rows"]]


def jobs_for(parts: list[str], seeds: int, trials: int, first_seed: int = 0, methods: list[str] | None = None) -> list[dict]:
    jobs = []
    if "tables" in parts:
        limits = {m: GP_LIMITS if m == "gp" else (seeds, trials) for m in METHODS}
        jobs += [{"part": "tables", "task": t, "method": m, "seed": s, "workers": 1, "budget": f"{limits[m][1]}trials"}
                 for t in TABLES for m in METHODS for s in range(min(seeds, limits[m][0]))]
    if "workers" in parts:
        jobs += [{"part": "workers", "task": t, "method": m, "seed": s, "workers": 8, "budget": f"{trials}trials"}
                 for t in TABLES for m in WORKER_METHODS for s in range(seeds)]
    if "curves" in parts:
        budget = f"{curves_budget_h():.6f}cpu-h"
        jobs += [{"part": "curves", "task": "cora-curves", "method": m, "seed": s, "workers": 1, "budget": budget}
                 for m in CURVE_METHODS for s in range(first_seed, first_seed + seeds)]
    jobs = [j for j in jobs if methods is None or j["method"] in methods]
    # seed by seed, GP's few long searches last: a run cut short (SIGINT) keeps whole seeds of every method
    return sorted(jobs, key=lambda j: (j["method"] == "gp", j["seed"], j["part"]))


def curves_budget_h(full_trials: int = 50) -> float:
    """The curves searches' budget: what ``full_trials`` trials of the table's median training time cost."""
    import gzip

    from autotradeoff.tasks.tabular import curves_path

    with gzip.open(curves_path(), "rt") as handle:
        times = [r["metrics"]["train_time_s"] for r in json.load(handle)["rows"]]
    return full_trials * statistics.median(times) / 3600


def ensure_curves_table(jobs: int, rebuild: bool = False) -> None:
    """The cache's Cora curves table: the one the report was measured on (``CURVES_TABLE``, 32 KB, kept in git so
    every machine searches the same table: a rebuild times latencies and training on this machine, which moves
    the front), or with ``rebuild`` a fresh build, which then replaces the kept one."""
    import shutil

    from autotradeoff.tasks.tabular import curves_path

    if rebuild or not CURVES_TABLE.is_file():
        from cora_curves import build

        build(curves_path(), epochs=200, limit=None, jobs=jobs)
        shutil.copyfile(curves_path(), CURVES_TABLE)
    elif not curves_path().is_file() or curves_path().read_bytes() != CURVES_TABLE.read_bytes():
        curves_path().parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CURVES_TABLE, curves_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["tables", "workers", "curves", "throughput", "live"],
                        choices=["tables", "workers", "curves", "throughput", "live"])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--curves-first-seed", type=int, default=0,
                        help="the curves part's first seed (240: seeds not replayed to choose the early-stopping rule)")
    parser.add_argument("--methods", nargs="+", choices=sorted({*METHODS, *CURVE_METHODS}),
                        help="rerun only these methods of the tabular parts, keeping the others' stored runs")
    parser.add_argument("--rebuild-curves", action="store_true",
                        help="build the Cora curves table afresh (~30 min) instead of the one kept in reports/benchmarks")
    parser.add_argument("--jobs", type=int, default=2, help="searches at once")
    parser.add_argument("--overhead-trials", type=int, default=24)
    parser.add_argument("--live-spaces", nargs="+", default=["cora"])
    parser.add_argument("--live-seeds", type=int, default=3)
    parser.add_argument("--live-budget-s", type=float, default=400.0)
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the stored runs")
    parser.add_argument("--note", help="the scope of a reduced run, written first in the report (with --report-only too)")
    args = parser.parse_args()
    os.environ.setdefault("AUTOTRADEOFF_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    stored = _load(RUNS) if RUNS.is_file() else {"runs": [], "live": {}, "seconds": {}}
    if not args.report_only:
        stored = run_parts(args, stored)
    if args.note:
        stored["note"] = args.note
    _save(RUNS, stored)
    if any(r["part"] == "curves" for r in stored["runs"]):
        ensure_curves_table(args.jobs)  # the report scores the curves runs on the table they searched
    write_report(stored, OUT, scale_of, losses, args)


def run_parts(args: argparse.Namespace, stored: dict) -> dict:
    """Run the chosen parts (replacing their earlier runs) and keep the others' stored results."""
    folder = Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    if "throughput" in args.parts:  # first: real trials, alone on the machine
        from search_live import throughput

        started = time.time()
        stored["live"]["throughput"] = throughput(folder, args.overhead_trials)
        stored["seconds"]["throughput"] = time.time() - started
    if "curves" in args.parts:
        started = time.time()
        ensure_curves_table(args.jobs, args.rebuild_curves)
        stored["seconds"]["curves_table"] = time.time() - started
    tabular = [p for p in args.parts if p in ("tables", "workers", "curves")]
    if tabular:
        started = time.time()
        fresh = _searches(jobs_for(tabular, args.seeds, args.trials, args.curves_first_seed, args.methods), args.jobs)
        rerun = {(r["part"], r["method"]) for r in fresh}
        stored["runs"] = [r for r in stored["runs"] if r["part"] not in tabular or args.methods and (r["part"], r["method"]) not in rerun] + fresh
        for part in tabular if not args.methods else ():  # a partial rerun keeps the full run's times
            stored["seconds"][part] = (time.time() - started) * sum(r["wall_s"] for r in fresh if r["part"] == part) / max(
                sum(r["wall_s"] for r in fresh), 1e-9)
    if "live" in args.parts:
        from search_live import live

        started = time.time()
        stored["live"]["live"] = live(folder, args.live_spaces, args.live_seeds, args.live_budget_s, args.jobs)
        stored["seconds"]["live"] = time.time() - started
    stored["args"] = {**stored.get("args", {}), **{k: v for k, v in vars(args).items() if k not in ("report_only", "note")}}
    return stored


def _searches(jobs: list[dict], workers: int) -> list[dict]:
    """Every job's result, ``workers`` at once; on SIGINT (``timeout -s INT``) the results so far."""
    fresh: list[dict] = []
    pool = ProcessPoolExecutor(workers)
    try:
        for job, future in [(job, pool.submit(one, job)) for job in jobs]:
            try:
                fresh.append(future.result())
            except Exception as error:  # one search failing is reported, not the end of the others
                print(f"failed: {job['task']} {job['method']} seed {job['seed']}: {error!r}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"interrupted: {len(fresh)} of {len(jobs)} searches done; keeping those", file=sys.stderr)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return fresh


def _load(path: Path) -> dict:
    import gzip

    with gzip.open(path, "rt") as handle:
        return json.load(handle)


def _save(path: Path, data: dict) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        json.dump(data, handle, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else str(v))


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
