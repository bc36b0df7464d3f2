"""Search efficiency (issue 7): hypervolume against budget spent for four ways of searching the same
space, same budget, same seeds, same reference point, in one run; then the engine's own overhead.

Methods (each a real search of real trials, one at a time on one thread, so costs are comparable):
- ``random``: Optuna's RandomSampler;
- ``nsga2``: Optuna's NSGAIISampler with its defaults;
- ``ray``: Ray Tune's default generator (BasicVariantGenerator: every knob drawn independently from its
  ``tune`` domain: ``uniform``, ``loguniform``, ``randint``, ``choice``), as an Optuna sampler;
- ``autotradeoff``: the defaults of ``autotradeoff search`` (``auto`` sampler, warm start from the
  baseline and the space's reference points, early stopping at rungs).

Budget is CPU time charged to trials (rejected and stopped trials included). Hypervolume is over
complete trials, objectives as the space's (accuracy, latency), with one reference point for every
run of a space: the worst value seen in any run plus 10% of the range. Latency is the first
measurement for every method (the exclusive re-measure is off), so no method gets better clocks.

Engine overhead: Cora trials through Ray with 1 worker: the search's wall time not spent inside
trial functions, per trial, as a share of the trial time; then the same budget with 2 workers.

    python benchmarks/search_efficiency.py                 # ~60 min on 2 CPU cores
    python benchmarks/search_efficiency.py --spaces cora --seeds 5 --budget-s 150
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml
from tables import markdown_table, write_csv  # benchmarks/tables.py

OUT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks"
METHODS = ("random", "nsga2", "ray", "autotradeoff")
# fidelity changes for the benchmark: sst2-approx's cached fine-tune on 2,000 sentences (400 leave MiniLM near chance)
SPACES = {"cora": {}, "sst2-approx": {"train_size": 2000}}
FRACTIONS = [i / 20 for i in range(1, 21)]
_WARM: set[str] = set()
OVERHEAD_SPACE = """\
task: cora
objectives: {accuracy: max, latency_ms: min}
knobs:
  model: {choices: [gcn, sage]}
  hidden: {low: 8, high: 32, log: true}
  lr: {low: 0.005, high: 0.05, log: true}
  epochs: {low: 50, high: 150}
fidelity: {latency_repeats: 10, latency_warmup: 2}
"""


def ray_default_sampler(seed: int):
    """Ray Tune's BasicVariantGenerator as an Optuna sampler: each knob drawn on its own from the ``tune``
    domain the same range would get in a Ray Tune param_space."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from ray import tune

    class RayDefault(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.rng = np.random.default_rng(seed)

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, name, dist):
            if isinstance(dist, CategoricalDistribution):
                domain = tune.choice(list(dist.choices))
            elif isinstance(dist, IntDistribution):
                domain = tune.lograndint(dist.low, dist.high + 1) if dist.log else tune.randint(dist.low, dist.high + 1)
            elif isinstance(dist, FloatDistribution):
                domain = tune.loguniform(dist.low, dist.high) if dist.log else tune.uniform(dist.low, dist.high)
            else:
                raise TypeError(dist)
            value = domain.sample(random_state=self.rng)
            return value.item() if hasattr(value, "item") else value

    return RayDefault()


def one_run(args: tuple[str, str, int, float, Path]) -> list[dict]:
    """One search; rows (trial number, cumulative cost s, losses or None) in the order trials ran."""
    method, space_name, seed, budget_s, folder = args
    import optuna

    from autotradeoff import pareto
    from autotradeoff.search import search
    from autotradeoff.space import list_spaces

    data = yaml.safe_load(list_spaces()[space_name].read_text())
    data.setdefault("fidelity", {}).update(SPACES[space_name])
    space = folder / f"{space_name}-{method}-{seed}.yaml"
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    if space_name not in _WARM:  # data, tokenizer, the cached fine-tune: loaded once per process, uncharged
        from autotradeoff.space import load_space
        from autotradeoff.trial import run_trial

        loaded = load_space(str(space))
        run_trial(data["task"], {**loaded.constants, **loaded.baseline()}, loaded.fidelity)
        _WARM.add(space_name)
    sampler = {"random": optuna.samplers.RandomSampler(seed=seed), "nsga2": optuna.samplers.NSGAIISampler(seed=seed),
               "ray": ray_default_sampler(seed), "autotradeoff": "auto"}[method]
    ours = method == "autotradeoff"
    found = search(data["task"], f"{budget_s / 3600:.6f}cpu-h", space=str(space), study=space.stem,
                   storage=f"sqlite:///{folder}/{space.stem}.db", runner="local", sampler=sampler, seed=seed,
                   remeasure=0, early_stop=ours, warm_start=ours)
    objectives = pareto.objectives_of(found.study)
    spent, out = 0.0, []
    for row in sorted(pareto.rows_of(found.study), key=lambda r: r["number"]):
        spent += (row["charge"] or {}).get("wall_s", 0.0)
        done = row["state"] == "COMPLETE" and all(o.name in row["metrics"] for o in objectives)
        out.append({"space": space_name, "method": method, "seed": seed, "trial": row["number"], "cost_s": spent,
                    "state": row["state"], **{o.name: row["metrics"].get(o.name) for o in objectives},
                    "losses": pareto._losses(row, objectives) if done else None})
    return out


def curves(rows: list[dict], budget_s: float) -> tuple[dict, tuple[float, ...], float]:
    """Hypervolume at each budget fraction, per (method, seed), against one reference point; that point;
    the hypervolume of every point found by any run (the best known front)."""
    from autotradeoff.pareto import hypervolume

    points = [r["losses"] for r in rows if r["losses"] is not None]
    ref = []
    for column in zip(*points):
        worst, best = max(column), min(column)
        ref.append(worst + 0.1 * ((worst - best) or 1.0))
    out: dict = {}
    for key in sorted({(r["method"], r["seed"]) for r in rows}):
        mine = [r for r in rows if (r["method"], r["seed"]) == key]
        out[key] = [hypervolume([r["losses"] for r in mine if r["losses"] is not None and r["cost_s"] <= f * budget_s],
                                ref) for f in FRACTIONS]
    return out, tuple(ref), hypervolume(points, ref)


def summarise(space: str, hv: dict, best: float, rows: list[dict] | None = None) -> tuple[list[dict], list[str]]:
    """Mean curves per method; the two targets against random search."""
    mean = {m: [statistics.fmean(hv[(m, s)][i] for (mm, s) in hv if mm == m) for i in range(len(FRACTIONS))]
            for m in METHODS if any(k[0] == m for k in hv)}
    table = []
    for m, curve in mean.items():
        finals = [hv[k][-1] for k in hv if k[0] == m]
        mine = [r for r in rows or [] if r["method"] == m and r["space"] == space]
        reach = next((f for f, v in zip(FRACTIONS, curve) if v >= mean["random"][-1]), None)
        table.append({"space": space, "method": m, "seeds": len(finals),
                      "trials": len(mine) / max(len(finals), 1), "pruned": sum(r["state"] == "PRUNED" for r in mine) / max(len(finals), 1),
                      "hv_final": statistics.fmean(finals), "hv_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                      "vs_random": statistics.fmean(finals) / mean["random"][-1] if mean["random"][-1] else float("nan"),
                      "of_best_known": statistics.fmean(finals) / best if best else float("nan"),
                      "gap_vs_random": (best - statistics.fmean(finals)) / (best - mean["random"][-1])
                      if best > mean["random"][-1] else float("nan"),
                      "budget_to_random_final": f"{reach:.0%}" if reach else "not reached",
                      **{f"hv@{f:.0%}": v for f, v in zip(FRACTIONS, curve)}})
    ours = next(r for r in table if r["method"] == "autotradeoff")
    reach = next((f for f, v in zip(FRACTIONS, mean["autotradeoff"]) if v >= mean["random"][-1]), None)
    lines = [f"- {space}: autotradeoff reaches random search's final hypervolume at {ours['budget_to_random_final']} "
             f"of the budget (target <= 33%: {'met' if reach is not None and reach <= 0.34 else 'MISSED'}); "
             f"hypervolume at equal budget {ours['vs_random']:.3f}x random's (target >= 1.2x: "
             f"{'met' if ours['vs_random'] >= 1.2 else 'MISSED'}); random search itself ends at "
             f"{mean['random'][-1] / best:.1%} of the best known hypervolume."]
    return table, lines


COLOURS = {"random": "#888888", "nsga2": "#1f77b4", "ray": "#ff7f0e", "autotradeoff": "#d62728"}


def plot_svg(space: str, hv: dict, budget_s: float, path: Path) -> None:
    """Mean hypervolume curves as a small SVG (no browser needed, unlike plotly's PNG export)."""
    width, height, pad = 640, 360, 60
    curves = {m: [statistics.fmean(hv[k][i] for k in hv if k[0] == m) for i in range(len(FRACTIONS))]
              for m in METHODS if any(k[0] == m for k in hv)}
    top = max(max(c) for c in curves.values()) or 1.0
    x = lambda f: pad + f * (width - 2 * pad)  # noqa: E731
    y = lambda v: height - pad - v / top * (height - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle">{space}: mean hypervolume vs CPU-seconds spent</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>']
    for f in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(f)}" y="{height - pad + 18}" text-anchor="middle">{f * budget_s:.0f} s</text>')
    for v in (0.0, top / 2, top):
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4}" text-anchor="end">{v:.3g}</text>')
    for i, (m, curve) in enumerate(curves.items()):
        points = " ".join(f"{x(f):.1f},{y(v):.1f}" for f, v in zip(FRACTIONS, curve))
        parts.append(f'<polyline fill="none" stroke="{COLOURS[m]}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - pad - 110}" y="{height - pad - 20 - 16 * i}" fill="{COLOURS[m]}">{m}</text>')
    path.write_text("\n".join([*parts, "</svg>"]))


def overhead(folder: Path, trials: int) -> list[dict]:
    """The same Cora configs (random sampler, same seed) through Ray with 1 and then 2 workers.

    Per trial, the engine's time is what the trial held minus what its trial function took (Optuna's
    start/complete stamps vs ``trial_wall_s``: ask, sampling, Ray scheduling, storing) plus the gap before
    the worker's next trial. Each worker's first trial (the Ray actor starting, imports, data loading)
    and Ray's own start are one-off costs, reported apart. Throughput: trials per minute from the first
    trial's start to the last one's end."""
    from autotradeoff.search import search

    space = folder / "cora-overhead.yaml"
    space.write_text(OVERHEAD_SPACE)
    rows = []
    for workers in (1, 2):
        start = time.perf_counter()
        found = search("cora", f"{trials}trials", space=str(space), study=f"overhead-{workers}",
                       storage=f"sqlite:///{folder}/overhead.db", workers=workers, sampler="random", seed=0,
                       remeasure=0, early_stop=False, warm_start=False, ray_dir=folder / "ray")
        wall = time.perf_counter() - start
        done = sorted((t for t in found.study.get_trials() if "trial_wall_s" in t.user_attrs), key=lambda t: t.datetime_start)
        first_of_worker = {t.number for t in done[:workers]}
        steady = [t for t in done if t.number not in first_of_worker]
        ends = sorted(t.datetime_complete for t in done)
        engine = []
        for t in steady:
            held = (t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["trial_wall_s"]
            before = max((e for e in ends if e <= t.datetime_start), default=t.datetime_start)
            engine.append(held + (t.datetime_start - before).total_seconds())
        inside = sum(t.user_attrs["trial_wall_s"] for t in steady)
        span = (ends[-1] - done[0].datetime_start).total_seconds()
        rows.append({"workers": workers, "trials": len(done), "search_wall_s": wall, "trials_span_s": span,
                     "one_off_s": wall - span + sum((t.datetime_complete - t.datetime_start).total_seconds()
                                                    - t.user_attrs["trial_wall_s"] for t in done[:workers]) / workers,
                     "engine_per_trial_s": statistics.fmean(engine), "trial_fn_mean_s": inside / len(steady),
                     "engine_share": sum(engine) / inside, "trials_per_min": 60 * len(done) / span})
    return rows


def report(rows: list[dict], over: list[dict], args: argparse.Namespace, seconds: float) -> list[str]:
    tables, lines = [], []
    for s in args.spaces:
        hv, ref, best = curves([r for r in rows if r["space"] == s], args.budget_s)
        table, verdict = summarise(s, hv, best, rows)
        tables += table
        lines += [*verdict, f"  reference point (losses): {', '.join(f'{x:.4g}' for x in ref)}; hypervolume of every "
                  f"point any run found: {best:.4g}"]
        plot_svg(s, hv, args.budget_s, OUT / f"search_efficiency_{s}.svg")
    write_csv(tables, OUT / "search_efficiency.csv")
    one, two = over
    speedup = two["trials_per_min"] / one["trials_per_min"]
    return [
        "# Search efficiency (issue 7)", "",
        f"`python benchmarks/search_efficiency.py --spaces {' '.join(args.spaces)} --seeds {args.seeds} "
        f"--budget-s {args.budget_s:g}`, {seconds:.0f} s, {args.jobs} searches at once on "
        f"{os.cpu_count()} CPU cores, one thread per trial. Budget: CPU-seconds charged to trials.", "",
        "## Targets", "", *lines,
        f"- engine overhead (Ray, 1 worker, {one['trials']} small Cora trials of {one['trial_fn_mean_s']:.2f} s on average): "
        f"{one['engine_per_trial_s']:.3f} s per trial outside the trial function, {one['engine_share']:.1%} of trial time "
        f"(target <= 5%: {'met' if one['engine_share'] <= 0.05 else 'MISSED'}); one-off start {one['one_off_s']:.1f} s.",
        f"- throughput 2 workers vs 1 on {os.cpu_count()} cores: {speedup:.2f}x (target >= 1.8x: "
        f"{'met' if speedup >= 1.8 else 'MISSED'}); a trial function took {two['trial_fn_mean_s'] / one['trial_fn_mean_s']:.2f}x "
        "as long with two running.", "",
        "## Hypervolume by budget share (mean over seeds)", "",
        "`of_best_known`: share of the hypervolume of all points every run of the space found together; "
        "`gap_vs_random`: the method's distance to that, divided by random search's.", "",
        *markdown_table(tables, ["space", "method", "seeds", "trials", "pruned", "hv_final", "hv_std", "vs_random",
                                 "of_best_known", "gap_vs_random", "budget_to_random_final", "hv@25%", "hv@50%"]), "",
        *(f"![{s}](search_efficiency_{s}.svg)" for s in args.spaces), "",
        "Every trial of every run: `search_efficiency_trials.csv`.", "",
        "## Engine overhead", "", *markdown_table(over, list(over[0])), "",
    ]


def _read_csv(path: Path) -> list[dict]:
    import csv

    def value(text: str):
        try:
            return float(text) if any(c in text for c in ".e") or text.lstrip("-").isdigit() else text
        except ValueError:
            return text

    with open(path, newline="") as handle:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=200.0, help="CPU-seconds of trials per search")
    parser.add_argument("--jobs", type=int, default=2, help="searches at once (one thread each)")
    parser.add_argument("--overhead-trials", type=int, default=24)
    parser.add_argument("--rerun", nargs="+", metavar="METHOD:SPACE:SEED",
                        help="run these searches again and replace their rows in the last run's trials CSV")
    parser.add_argument("--report-only", type=float, metavar="SECONDS",
                        help="rewrite the report from the last run's CSVs (SECONDS: how long that run took)")
    args = parser.parse_args()
    if args.rerun:
        folder = Path(tempfile.mkdtemp(prefix="search-efficiency-"))
        again = [(m, sp, int(seed), args.budget_s, folder) for m, sp, seed in (r.split(":") for r in args.rerun)]
        with ProcessPoolExecutor(args.jobs) as pool:
            fresh = [row for run in pool.map(one_run, again) for row in run]
        redone = {(m, sp, float(seed)) for m, sp, seed, _, _ in again}
        kept = [r for r in _read_csv(OUT / "search_efficiency_trials.csv") if (r["method"], r["space"], r["seed"]) not in redone]
        write_csv([*kept, *({k: v for k, v in r.items() if k != "losses"} for r in fresh)], OUT / "search_efficiency_trials.csv")
        return
    if args.report_only is not None:
        rows = _read_csv(OUT / "search_efficiency_trials.csv")
        for r in rows:  # both spaces: accuracy (max) vs latency_ms (min)
            r["losses"] = (-r["accuracy"], r["latency_ms"]) if r["state"] == "COMPLETE" else None
        over, seconds = _read_csv(OUT / "search_efficiency_overhead.csv"), args.report_only
    else:
        os.environ.setdefault("AUTOTRADEOFF_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
        folder = Path(tempfile.mkdtemp(prefix="search-efficiency-"))
        started = time.time()
        over = overhead(folder, args.overhead_trials)  # first: minutes, and alone on the machine
        write_csv(over, OUT / "search_efficiency_overhead.csv")
        jobs = [(m, s, seed, args.budget_s, folder) for s in args.spaces for seed in range(args.seeds) for m in METHODS]
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [row for run in pool.map(one_run, jobs) for row in run]
        write_csv([{k: v for k, v in r.items() if k != "losses"} for r in rows], OUT / "search_efficiency_trials.csv")
        seconds = time.time() - started
    lines = report(rows, over, args, seconds)
    (OUT / "search_efficiency.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
