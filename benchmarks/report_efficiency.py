"""The report of ``search_efficiency.py``: targets met or missed with their numbers, tables, CSVs and SVG plots,
all computed from the stored runs (``search_efficiency_runs.json.gz``), so ``--report-only`` rewrites it."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import search_stats as st
from tables import markdown_table, write_csv

CHECKS = (50, 100, 200)
OTHERS = ("random", "nsga2", "tpe", "gp", "ray")
CHOSEN_ON = 240  # the curves part's seeds below this were replayed to choose the early-stopping rule: it scores others


def _runs(stored: dict, part: str, task: str, method: str) -> list[dict]:
    return [r for r in stored["runs"] if (r["part"], r["task"], r["method"]) == (part, task, method)]


def _fmt(q: tuple[float, float, float]) -> str:
    return f"{q[1]:.4f} [{q[0]:.4f}, {q[2]:.4f}]" if math.isfinite(q[1]) else "not run"


def _trials(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    med = statistics.median(values) if values else math.inf
    return (f"{med:.0f}" if math.isfinite(med) else "not reached") + f" ({len(finite)}/{len(values)} reached)"


class Table:
    """Regret curves (per trial) of every method on one table, and the statistics read off them."""

    def __init__(self, stored: dict, part: str, task: str, scale: st.Scale, losses: Callable, methods: tuple[str, ...]):
        self.task, self.scale, self.curves = task, scale, {}
        for m in methods:
            runs = _runs(stored, part, task, m)
            if runs:
                self.curves[m] = [st.curve(losses(r, scale), scale) for r in sorted(runs, key=lambda r: r["seed"])]
                self.wall = getattr(self, "wall", {})
                self.wall[m] = statistics.median(r["wall_s"] for r in runs)

    def at(self, method: str, n: int) -> list[float] | None:
        """Each seed's regret after ``n`` trials (None: the method's searches were shorter)."""
        curves = self.curves[method]
        return [c[n - 1] for c in curves] if all(len(c) >= n for c in curves) else None

    def target(self, n: int) -> float:
        """Random search's median regret after ``n`` trials (its ``n``-trial hypervolume)."""
        return statistics.median(self.at("random", n))

    def reach(self, method: str, target: float) -> list[float]:
        return [st.reached(c, target) for c in self.curves[method]]

    def best_other(self, n: int) -> str:
        """The other method with the lowest median regret after ``n`` trials (among those run that long)."""
        return min((m for m in OTHERS if m in self.curves and self.at(m, n)), key=lambda m: statistics.median(self.at(m, n)))

    def rows(self, final: int) -> list[dict]:
        out = []
        for m in self.curves:
            row = {"task": self.task, "method": m, "seeds": len(self.curves[m]), "search_wall_s": self.wall[m]}
            for n in CHECKS:
                q = st.quartiles(self.at(m, n)) if self.at(m, n) else (math.nan,) * 3
                row.update({f"regret@{n}": q[1], f"q1@{n}": q[0], f"q3@{n}": q[2]})
                row[f"p_vs_random@{n}"] = st.less(self.at(m, n), self.at("random", n)) if m != "random" and self.at(m, n) else math.nan
            reach = self.reach(m, self.target(final))
            row["trials_to_random_final"] = statistics.median(reach)
            row["reached"] = sum(math.isfinite(v) for v in reach)
            out.append(row)
        return out


def tables_section(stored: dict, scale_of: Callable, losses: Callable, out: Path, final: int) -> tuple[list[str], list[str], list[dict]]:
    targets, body, csv_rows = [], [], []
    for task in sorted({r["task"] for r in stored["runs"] if r["part"] == "tables"}):
        table = Table(stored, "tables", task, scale_of(task), losses, ("random", "nsga2", "tpe", "gp", "ray", "autotradeoff", "autotradeoff-cold"))
        rows = table.rows(final)
        csv_rows += rows
        targets += _table_targets(table, final)
        body += [f"### {task}", "", f"Normalisation and reference point (fixed before any search): {table.scale.describe()}. "
                 f"True front's hypervolume: {table.scale.true_hv:.4f}.", "",
                 *markdown_table([{**r, **{f"regret@{n}": _fmt((r[f'q1@{n}'], r[f'regret@{n}'], r[f'q3@{n}'])) for n in CHECKS}}
                                  for r in rows], ["method", "seeds", *(f"regret@{n}" for n in CHECKS),
                                                   *(f"p_vs_random@{n}" for n in CHECKS), "trials_to_random_final", "reached",
                                                   "search_wall_s"]), "",
                 f"![{task}](search_efficiency_{_slug(task)}.svg)", ""]
        xs = list(range(1, final + 1))
        st.plot_svg(f"{task}: hypervolume regret vs trials ({len(table.curves['random'])} seeds)",
                    {m: [st.quartiles([c[min(i, len(c) - 1)] for c in cs]) for i in range(min(final, min(map(len, cs))))]
                     for m, cs in table.curves.items()}, xs, out / f"search_efficiency_{_slug(task)}.svg")
    return targets, body, csv_rows


def _slug(task: str) -> str:
    return task.replace(":", "-")


def _table_targets(table: Table, final: int) -> list[str]:
    ours = "autotradeoff"
    reach = table.reach(ours, table.target(final))
    med = statistics.median(reach)
    ratio = statistics.median(table.at(ours, 50)) / statistics.median(table.at("random", 50))
    low, high = st.median_ratio_interval(table.at(ours, 50), table.at("random", 50))
    lines = [f"- **{table.task}**: autotradeoff reaches random search's {final}-trial hypervolume in {_trials(reach)} trials "
             f"(median over seeds; target <= 70: {_verdict(med <= 70)}); its 50-trial regret is {ratio:.2f}x random's "
             f"(target <= 0.5x: {_verdict(ratio <= 0.5)}; 95% bootstrap interval over seeds [{low:.2f}, {high:.2f}])."]
    for n in CHECKS:
        p = st.less(table.at(ours, n), table.at("random", n))
        best = table.best_other(n)
        worse = st.less(table.at(best, n), table.at(ours, n)) if best != ours else 1.0
        lines.append(f"  - at {n} trials: beats random with p = {p:.2g} (one-sided Mann-Whitney; target < 0.01: {_verdict(p < 0.01)}); "
                     f"the best other method, {best} (median regret {statistics.median(table.at(best, n)):.4f} vs "
                     f"{statistics.median(table.at(ours, n)):.4f}), is better with p = {worse:.2g} (target > 0.05: {_verdict(worse > 0.05)}).")
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def workers_section(stored: dict, scale_of: Callable, losses: Callable, final: int) -> tuple[list[str], list[str], list[dict]]:
    targets, rows = [], []
    for task in sorted({r["task"] for r in stored["runs"] if r["part"] == "workers"}):
        scale = scale_of(task)
        one = Table(stored, "tables", task, scale, losses, ("random", "tpe", "gp", "autotradeoff"))
        eight = Table(stored, "workers", task, scale, losses, ("random", "tpe", "gp", "autotradeoff"))
        target = one.target(final)
        for m in eight.curves:
            a, b = one.reach(m, target), eight.reach(m, target)
            ratio = statistics.median(b) / statistics.median(a) if math.isfinite(statistics.median(a)) else math.nan
            rows.append({"task": task, "method": m, "trials_1_worker": statistics.median(a), "trials_8_workers": statistics.median(b),
                         "ratio": ratio, "regret@200_1": statistics.median(one.at(m, final)),
                         "regret@200_8": statistics.median(eight.at(m, final)), "search_wall_s_8": eight.wall[m]})
            if m == "autotradeoff":
                targets.append(f"- **{task}**, 8 simulated workers: autotradeoff needs {_trials(b)} trials to reach random search's "
                               f"{final}-trial hypervolume against {_trials(a)} with 1 worker: {ratio:.2f}x (target <= 1.3x: "
                               f"{_verdict(ratio <= 1.3)}).")
    body = ["Trials (in the order they finished) each method needs to reach random search's 200-trial hypervolume "
            "(1 worker), median over seeds, with 1 and with 8 simulated asynchronous workers.", "",
            *(markdown_table(rows, list(rows[0])) if rows else [])]
    return targets, body, rows


def curves_section(stored: dict, scale_of: Callable, losses: Callable, out: Path) -> tuple[list[str], list[str], list[dict]]:
    runs = [r for r in stored["runs"] if r["part"] == "curves"]
    if not runs:
        return [], [], []
    scale = scale_of("cora-curves")
    grid = [i / 100 for i in range(1, 101)]
    budget_s = max(sum(row[0] for row in r["rows"]) for r in runs)
    series, times, rows = {}, {}, []
    random_final = statistics.median(_regret_at(r, scale, losses, math.inf) for r in runs if r["method"] == "random")
    for m in ("random", "autotradeoff", "autotradeoff-no-es"):
        mine = [r for r in runs if r["method"] == m]
        series[m] = [st.quartiles([_regret_at(r, scale, losses, f * budget_s) for r in mine]) for f in grid]
        times[m] = [_time_to(r, scale, losses, random_final) for r in mine]
        rows.append({"method": m, "seeds": len(mine), "trials": statistics.median(len(r["rows"]) for r in mine),
                     "stopped_early": statistics.median(sum(row[4] < 1 for row in r["rows"]) for r in mine),
                     "regret_final": statistics.median(_regret_at(r, scale, losses, math.inf) for r in mine),
                     "sim_h_to_random_final": statistics.median(times[m]) / 3600,
                     "reached": sum(math.isfinite(t) for t in times[m]), "search_wall_s": statistics.median(r["wall_s"] for r in mine)})
    ratio = statistics.median(times["autotradeoff"]) / statistics.median(times["autotradeoff-no-es"])
    st.plot_svg("cora-curves: hypervolume regret vs simulated CPU hours", series, [f * budget_s / 3600 for f in grid],
                out / "search_efficiency_curves.svg", xlabel="simulated CPU hours")
    targets = [f"- **Cora curves table**: with early stopping autotradeoff reaches random search's final hypervolume in "
               f"{statistics.median(times['autotradeoff']) / 3600:.3g} simulated CPU hours, without it in "
               f"{statistics.median(times['autotradeoff-no-es']) / 3600:.3g}: {ratio:.2f}x (target <= 0.5x: {_verdict(ratio <= 0.5)})."]
    seeds = sorted({r["seed"] for r in runs})
    body = [f"Normalisation and reference point: {scale.describe()}; budget {budget_s / 3600:.3g} simulated CPU hours per search; "
            f"seeds {seeds[0]}-{seeds[-1]}" + (f" (seeds 0-{CHOSEN_ON - 1} were replayed to choose the early-stopping rungs, "
                                               "`progress.RUNGS`, and minimum, `stopping.MIN_AT_RUNG`: these are others; "
                                               "the score's benefit of the doubt, `stopping.NOISE_BAND`, came from a GLUE "
                                               "search, and these seeds were read at 1, 0.5 and 0.25 standard errors: "
                                               "0.59x, 0.33x, 0.33x)"
                                               if seeds[0] >= CHOSEN_ON else "") + ".", "",
            *markdown_table(rows, list(rows[0])), "", "![curves](search_efficiency_curves.svg)"]
    return targets, body, rows


def _regret_at(run: dict, scale: st.Scale, losses: Callable, seconds: float) -> float:
    spent, front = 0.0, st.Front2D()
    for (charge, *_), loss in zip(run["rows"], losses(run, scale)):
        spent += charge
        if spent > seconds + 1e-9:
            break
        if loss is not None:
            front.add(loss)
    return scale.true_hv - front.volume


def _time_to(run: dict, scale: st.Scale, losses: Callable, target: float) -> float:
    spent, front = 0.0, st.Front2D()
    for (charge, *_), loss in zip(run["rows"], losses(run, scale)):
        spent += charge
        if loss is not None:
            front.add(loss)
        if scale.true_hv - front.volume <= target + 1e-12:
            return spent
    return math.inf


def live_section(stored: dict) -> tuple[list[str], list[str]]:
    targets, body = [], []
    rows = stored["live"].get("throughput")
    if rows:
        one, two, ceiling = rows
        efficiency = two["trials_per_min"] / ceiling["trials_per_min"]
        targets += [f"- **throughput**: 2 Ray workers run {two['trials_per_min']:.2f} Cora trials/min, the ceiling (2 plain processes, "
                    f"same trial function, same configs, same run) {ceiling['trials_per_min']:.2f}: {efficiency:.1%} (target >= 95%: "
                    f"{_verdict(efficiency >= 0.95)}).",
                    f"- **engine overhead** (1 Ray worker): {one['engine_per_trial_s']:.3f} s per trial outside the trial function, "
                    f"{one['engine_share']:.1%} of a {one['trial_fn_mean_s']:.2f} s trial (target <= 5%: {_verdict(one['engine_share'] <= 0.05)})."]
        body += ["### Throughput and engine overhead (real Cora trials)", "", *markdown_table(rows, list(rows[0])), ""]
    if stored["live"].get("live"):
        body += ["### Live-task sanity check", "", "Hypervolume (objectives as the space's, one reference point per "
                 "space: the worst value any run saw plus 10% of the range) of the trials finished by a quarter "
                 "(`_at_0.25`), half (`_at_0.5`) and all of the CPU-seconds budget; `autotradeoff-no-es`: the "
                 "defaults without early stopping.", "",
                 *markdown_table(stored["live"]["live"], list(stored["live"]["live"][0])), ""]
    return targets, body


def write_report(stored: dict, out: Path, scale_of: Callable, losses: Callable, args) -> None:
    final = int(stored.get("args", {}).get("trials", 200))
    t_targets, t_body, t_rows = tables_section(stored, scale_of, losses, out, final)
    w_targets, w_body, w_rows = workers_section(stored, scale_of, losses, final)
    c_targets, c_body, c_rows = curves_section(stored, scale_of, losses, out)
    l_targets, l_body = live_section(stored)
    for rows, name in ((t_rows, "search_efficiency.csv"), (w_rows, "search_efficiency_workers.csv"), (c_rows, "search_efficiency_curves.csv")):
        if rows:
            write_csv(rows, out / name)
    given = stored.get("args", {})
    seconds = ", ".join(f"{k} {v / 60:.1f} min" for k, v in stored.get("seconds", {}).items())
    scope = [f"**Scope of this run.** {stored['note']}", ""] if stored.get("note") else []
    lines = ["# Search efficiency (issue 18)", "", *scope,
             f"`python benchmarks/search_efficiency.py --seeds {given.get('seeds')} --trials {final}` on {os.cpu_count()} CPU cores, "
             f"{given.get('jobs')} searches at once; time per part: {seconds}. Every tabular search is a real `autotradeoff.search` "
             "(in-memory storage, simulated workers); the numbers below are recomputed from `search_efficiency_runs.json.gz` "
             "by `--report-only`.", "",
             "## Targets", "", *t_targets, *w_targets, *c_targets, *l_targets, "",
             "## Tables: regret (median [IQR]) after 50, 100, 200 trials", "",
             "Regret: the table's true front's hypervolume minus the search's, objectives normalised as stated per table. "
             "`p_vs_random`: one-sided Mann-Whitney U, the method's regret below random search's. `trials_to_random_final`: "
             "trials until the run's regret is at or below random search's median 200-trial regret (median over seeds; "
             "`reached`: how many seeds got there). `search_wall_s`: real seconds one search of 200 trials took "
             "(the samplers' own cost: the lookups take microseconds).", "", *t_body,
             "## Simulated parallel workers", "", *w_body, "",
             "## Early stopping on the Cora curves table", "", *c_body, "", "## Live trials", "", *l_body]
    (out / "search_efficiency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12 + len(scope) + len(t_targets) + len(w_targets) + len(c_targets) + len(l_targets)]))
