"""Engine overhead as the study grows (issue 19): per trial, what ``autotradeoff search`` itself spends
(budget gating, ask with the sampler, tell, heartbeat, the progress line) with a plug-in task that returns at
once, in a study already holding 100, 1,000 and 10,000 trials; on SQLite and PostgreSQL; with 1 and 4
searches on the study at once; then ``front`` (and its HTML report) on the 10,000-trial study.

The study is filled through Optuna's API with complete trials of the same distributions and the same
stored record as a search writes (config, charge, holds, metrics), then N trials run through the engine's
own in-process runner (``run_local``: the same driver the Ray runner uses). Samplers: ``auto`` (the default:
for this one-knob space a GP, handed over to TPE past ``GP_MAX_TRIALS`` finished trials), ``gp``, ``tpe`` and
``random`` (no model: the engine alone). The first trial of each timed search is timed apart (``first_ms``: it
weighs every stored trial once); the per-trial figures are over the trials after it.

    python benchmarks/engine_scale.py              # ~15 min on 2 CPU cores
    python benchmarks/engine_scale.py --quick      # 100 and 1,000 trials only
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from tables import markdown_table, write_csv  # benchmarks/tables.py

from autotradeoff.engine.samplers import GP_MAX_TRIALS

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "reports" / "benchmarks"
sys.path.insert(0, str(REPO / "tests"))  # plugin_tasks (the instant task) and postgres (a private server)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
SPACE = """\
task: plugin_tasks:flaky
objectives: {accuracy: max, latency_ms: min}
knobs:
  x: {low: 0.0, high: 1.0}
fidelity: {sleep_s: 0.0}
"""
STUDY = "scale"


class TimedSampler(optuna.samplers.BaseSampler):
    """A sampler's own time, apart from the engine's."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner, self.seconds = inner, 0.0

    def _timed(self, name: str, *args):
        start = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def infer_relative_search_space(self, study, trial):
        return self._timed("infer_relative_search_space", study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._timed("sample_relative", study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):
        return self._timed("sample_independent", study, trial, name, distribution)

    def before_trial(self, study, trial):
        return self._timed("before_trial", study, trial)

    def after_trial(self, study, trial, state, values):
        return self._timed("after_trial", study, trial, state, values)


def _space(workdir: Path):
    from autotradeoff.presets import load_space

    path = workdir / "instant.yaml"
    path.write_text(SPACE)
    return load_space(str(path), task_name="plugin_tasks:flaky")


def fill(url: str, workdir: Path, upto: int) -> float:
    """Add complete trials (a search's record) until the study holds ``upto``; seconds it took."""
    from autotradeoff.engine.search import _open_study

    study, _, stored = _open_study(url, STUDY, _space(workdir), sampler="random", seed=0, warm_start=False)
    rng, dist = random.Random(stored), optuna.distributions.FloatDistribution(0.0, 1.0)
    start = time.perf_counter()
    batch = []
    for n in range(stored, upto):
        x = rng.random()
        acc, lat = 1.0 - (x - 0.3) ** 2 + rng.gauss(0, 0.01), 1.0 + 10.0 * x + rng.gauss(0, 0.1)
        attrs = {"config": {"x": x, "mode": "ok"}, "accuracy": acc, "latency_ms": lat, "trial_wall_s": 0.01,
                 "charge": {"wall_s": 0.01, "cpus": 1.0, "gpus": 0.0, "cpu_h": 0.01 / 3600, "gpu_h": 0.0},
                 "holds": {"cpus": 1.0, "gpus": 0.0, "device_share": 1.0}, "runner_trial_id": f"fill-{n}"}
        batch.append(optuna.trial.create_trial(params={"x": x}, distributions={"x": dist}, values=[acc, lat], user_attrs=attrs))
    study.add_trials(batch)
    return time.perf_counter() - start


def measure(url: str, workdir: str, sampler: str, trials: int) -> dict:
    """``trials`` trials through the engine's in-process runner; per-trial engine and sampler seconds."""
    from autotradeoff.engine.budget import parse_budget
    from autotradeoff.engine.driver import SearchDriver
    from autotradeoff.engine.runner import run_local
    from autotradeoff.engine.search import _open_study
    from autotradeoff.study import record

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = _space(Path(workdir))
    # as a search opens it: behind the outage-waiting storage (``study.patience``) and Optuna's cache
    study, _, stored = _open_study(url, STUDY, space, sampler=sampler, seed=None, warm_start=False, wait_s=300.0)
    timed = TimedSampler(study.sampler)
    study.sampler = timed
    counted = sum(record.counts_as_trial(t) for t in study.get_trials(deepcopy=False))
    # the first trial of a search weighs every stored trial once (its running totals, the progress line's
    # front): timed apart as ``first_ms``; the per-trial figures are the trials after it
    driver = SearchDriver(study, space, parse_budget(f"{counted + 1}trials"), {"cpu": 1.0}, cluster_cpus=1.0,
                          early_stop=False)
    start = time.perf_counter()
    run_local(driver, on_progress=lambda progress: None)
    first = time.perf_counter() - start
    timed.seconds, driver.budget = 0.0, parse_budget(f"{counted + 1 + trials}trials")
    start = time.perf_counter()
    run_local(driver, on_progress=lambda progress: None)
    wall = time.perf_counter() - start
    done = len(study.get_trials(deepcopy=False)) - stored - 1
    return {"stored": stored, "new": done, "first_ms": 1000 * first, "per_trial_ms": 1000 * wall / max(done, 1),
            "sampler_ms": 1000 * timed.seconds / max(done, 1), "engine_ms": 1000 * (wall - timed.seconds) / max(done, 1)}


def concurrent(url: str, workdir: Path, sampler: str, trials: int, searches: int) -> dict:
    """``searches`` processes measuring at once on the same study; their mean per-trial figures."""
    with multiprocessing.get_context("spawn").Pool(searches) as pool:
        found = pool.starmap(measure, [(url, str(workdir), sampler, trials)] * searches)
    mean = lambda key: sum(f[key] for f in found) / len(found)  # noqa: E731
    return {"stored": found[0]["stored"], "new": sum(f["new"] for f in found), "first_ms": mean("first_ms"),
            "per_trial_ms": mean("per_trial_ms"),
            "sampler_ms": mean("sampler_ms"), "engine_ms": mean("engine_ms")}


def front_command(url: str, workdir: Path) -> dict:
    """``autotradeoff front`` on the study as a user runs it: wall seconds and the report's size."""
    cli = Path(sys.executable).parent / "autotradeoff"
    out = workdir / "report"
    start = time.perf_counter()
    done = subprocess.run([str(cli), "front", "--study", STUDY, "--storage", url, "--out", str(out)], capture_output=True,
                          text=True, timeout=900, cwd=workdir)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"front_s": seconds, "html_mb": (out / "index.html").stat().st_size / 1e6,
            "front_line": done.stdout.splitlines()[0]}


ROWS: list[dict] = []  # every point so far: the files are rewritten after each, so a run cut short keeps its points
FRONTS: dict[str, dict] = {}
WHERE = {"out": OUT}


def run_storage(kind: str, url: str, workdir: Path, counts: list[int], args: argparse.Namespace) -> None:
    rows = ROWS
    for count in counts:
        filled = fill(url, workdir, count)
        print(f"{kind}: filled to {count} in {filled:.1f} s", flush=True)
        for sampler in ("random", "tpe", "gp", "auto"):
            if sampler == "gp" and count > args.gp_max:
                continue
            n = args.gp_trials if sampler == "gp" or (sampler == "auto" and count < GP_MAX_TRIALS) else args.trials
            found = measure(url, str(workdir), sampler, n)
            rows.append({"storage": kind, "point": count, "sampler": sampler, "searches": 1, **found})
            print(rows[-1], flush=True)
            write(rows, FRONTS, counts)
        if count == max(counts) and args.concurrent:
            found = concurrent(url, workdir, "tpe", args.trials // 2, 4)
            rows.append({"storage": kind, "point": count, "sampler": "tpe", "searches": 4, **found})
            print(rows[-1], flush=True)
            write(rows, FRONTS, counts)
    FRONTS[kind] = front_command(url, workdir)
    print(kind, FRONTS[kind], flush=True)
    write(rows, FRONTS, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 stored trials only")
    parser.add_argument("--counts", help="stored-trial counts to time at, e.g. 100,1000,3000 (default 100,1000,10000)")
    parser.add_argument("--trials", type=int, default=20, help="trials timed per point (default 20)")
    parser.add_argument("--gp-trials", type=int, default=5, help="trials timed per point with the GP (default 5)")
    parser.add_argument("--gp-max", type=int, default=1000, help="largest study the GP is timed on (default 1000)")
    parser.add_argument("--no-concurrent", dest="concurrent", action="store_false")
    parser.add_argument("--storages", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of engine_scale.md/.csv (default reports/benchmarks)")
    args = parser.parse_args()
    WHERE["out"] = args.out
    counts = [100, 1000] if args.quick else [100, 1000, 10000]
    counts = [int(c) for c in args.counts.split(",")] if args.counts else counts
    for kind in args.storages.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"scale-{kind}-"))
        if kind == "sqlite":
            run_storage(kind, f"sqlite:///{workdir / 'scale.db'}", workdir, counts, args)
        else:
            from postgres import postgres

            with postgres() as server:
                run_storage(kind, server.url, workdir, counts, args)


def write(rows: list[dict], fronts: dict, counts: list[int]) -> None:
    out = WHERE["out"]
    write_csv(rows, out / "engine_scale.csv")
    ratios = []
    for (kind, sampler) in sorted({(r["storage"], r["sampler"]) for r in rows if r["searches"] == 1}):
        by = {r["point"]: r for r in rows if r["storage"] == kind and r["sampler"] == sampler and r["searches"] == 1}
        if min(counts) in by and max(by) > min(counts):
            ratios.append({"storage": kind, "sampler": sampler, "largest": max(by),
                           "ratio_per_trial": by[max(by)]["per_trial_ms"] / by[min(counts)]["per_trial_ms"],
                           "ratio_engine_only": by[max(by)]["engine_ms"] / by[min(counts)]["engine_ms"]})
    lines = ["# Engine overhead as the study grows", "", "Generated by `python benchmarks/engine_scale.py` (see its docstring "
             "for the method). Per trial, in milliseconds: `per_trial_ms` = everything the search does per trial with a task "
             "that returns at once; `sampler_ms` = the sampler's share; `engine_ms` = the rest (budget gating, ask/tell "
             "storage writes, heartbeat, progress line).", "",
             *markdown_table(rows, ["storage", "point", "stored", "sampler", "searches", "new", "first_ms", "per_trial_ms", "sampler_ms",
                                    "engine_ms"]),
             "", "Growth from 100 stored trials to the largest study timed:", "",
             *markdown_table(ratios, ["storage", "sampler", "largest", "ratio_per_trial", "ratio_engine_only"]), "",
             "`front` on the largest study (wall time of the command, Python start-up included; size of its HTML report):", "",
             *markdown_table([{"storage": k, **v} for k, v in fronts.items()], ["storage", "front_s", "html_mb", "front_line"]), ""]
    (out / "engine_scale.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
