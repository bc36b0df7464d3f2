"""How noisy is a trial's latency when other trials train beside it, with and without timing alone?

For three fixed configurations (a Cora GAT, an SST-2 MiniLM classifier with AxFormer sites, a Fashion-MNIST ViT
with ICPC's variable effort) a 2-worker Ray search runs 16 enqueued trials: the fixed config 8 times,
alternating with 8 configs that train (different training knobs, so each one really trains while a
fixed-config trial times its model). Each search runs once per timing protocol, in the same invocation:
- ``before``: the protocol before issue 14, the raw median of ``latency_repeats`` calls, timing beside
  whatever else runs (``AUTOTRADEOFF_TIMING_ALONE=0 AUTOTRADEOFF_TIMING_REFERENCE=0``);
- ``alone + reference``: timing phases alone on the host (``cost.alone``), each call interleaved with the
  compute-bound reference kernel, ratios scaled by the host's reference time (``AUTOTRADEOFF_TIMING_ANCHOR=0``);
- ``alone + anchor`` (the default): alone, each call followed by the task's anchor (its baseline deployment
  on the same input: a GCN, the plain MiniLM, a ViT without ICPC), ratios scaled by the anchor's host time.
The fixed configs are not the anchors (a ratio of a model to itself would be trivially steady).
Per config and protocol: the median absolute deviation of the 8 latencies from their own median and
the 90th percentile of those deviations (targets: <= 3% and <= 8%), and the search's throughput in
trials per hour.

    python benchmarks/timing_noise.py            # ~50 min on 2 cores; writes reports/benchmarks/timing_noise.md
    python benchmarks/timing_noise.py --protocols before 'alone + anchor'   # ~35 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import markdown_table, write_csv  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks"
CASES = {
    "cora GAT": {
        "task": "cora", "fixed": {"model": "gat", "hidden": 8, "epochs": 200},
        "others": [{"model": "gcn", "hidden": 48 + 16 * i, "epochs": 400} for i in range(8)],
        "space": "knobs:\n  hidden: {low: 8, high: 256}\n  epochs: {low: 50, high: 400}\n  model: {choices: [gcn, gat]}\n",
        "fidelity": {"latency_warmup": 3, "latency_repeats": 20},
    },
    "sst2 MiniLM AxFormer": {
        "task": "sst2", "fixed": {"lr": 1e-4, "axformer.drop_ffn_layers": 2, "axformer.heads_kept": 0.5},
        "others": [{"lr": 1e-4 * (1 + 0.05 * (i + 1)), "axformer.drop_ffn_layers": 0, "axformer.heads_kept": 1.0}
                   for i in range(8)],
        "space": "knobs:\n  lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n  epochs: 1\n  axformer.refinetune: \"off\"\n"
                 "  axformer.drop_ffn_layers: {low: 0, high: 4}\n  axformer.heads_kept: {low: 0.25, high: 1.0}\n",
        "fidelity": {"train_size": 192, "val_size": 192, "test_size": 192, "max_length": 64, "latency_warmup": 2,
                     "latency_repeats": 15},
    },
    "fashion-mnist ViT ICPC": {
        "task": "fashion-mnist", "fixed": {"icpc.min_level": 0.4},
        "others": [{"icpc.min_level": 0.5 + 0.05 * i} for i in range(8)],
        "space": "knobs:\n  icpc.min_level: {low: 0.25, high: 1.0}\n",
        "fidelity": {"train_size": 3000, "val_size": 500, "test_size": 500, "epochs": 2, "latency_samples": 16,
                     "latency_warmup": 2, "latency_repeats": 10},
    },
}


PROTOCOLS = {"before": {"AUTOTRADEOFF_TIMING_ALONE": "0", "AUTOTRADEOFF_TIMING_REFERENCE": "0"},
             "alone + reference": {"AUTOTRADEOFF_TIMING_ALONE": "1", "AUTOTRADEOFF_TIMING_REFERENCE": "1",
                                   "AUTOTRADEOFF_TIMING_ANCHOR": "0"},
             "alone + anchor": {"AUTOTRADEOFF_TIMING_ALONE": "1", "AUTOTRADEOFF_TIMING_REFERENCE": "1",
                                "AUTOTRADEOFF_TIMING_ANCHOR": "1"}}
DEFAULT = "alone + anchor"
NOTES = "## Diagnosis"  # where the hand-written part of the report begins


def run_case(name: str, protocol: str, workdir: Path) -> dict:
    """One 2-worker search in a subprocess (its own Ray, its env deciding the protocol)."""
    run = f"{name.replace(' ', '_')}-{protocol.replace(' + ', '_')}"
    # Each run its own model cache: a run that found the models another one trained would train nothing
    # beside its timings, and read quieter than it is.
    env = {**os.environ, **PROTOCOLS[protocol], "AUTOTRADEOFF_LOCKS": str(workdir / "locks"),
           "AUTOTRADEOFF_CACHE": str(workdir / f"cache-{run}")}
    out = workdir / f"{run}.json"
    subprocess.run([sys.executable, __file__, "--one", name, "--out", str(out)], env=env, check=True, cwd=workdir)
    return json.loads(out.read_text())


def one(name: str, out: Path) -> None:
    """Inside the subprocess: enqueue fixed/other alternately, run the search, dump the fixed latencies."""
    import optuna

    from autotradeoff.engine.search import search
    from autotradeoff.presets import load_space
    from autotradeoff.study import create_or_resume, open_storage

    case = CASES[name]
    space_file = out.with_suffix(".yaml")
    fidelity = "".join(f"  {k}: {v}\n" for k, v in case["fidelity"].items())
    space_file.write_text(f"task: {case['task']}\n{case['space']}fidelity:\n{fidelity}  threads: 1\n")
    space, url = load_space(str(space_file)), f"sqlite:///{out.with_suffix('.db')}"
    study, _ = create_or_resume(open_storage(url), "noise", space)
    searched = lambda config: {k: v for k, v in {**space.baseline(), **config}.items() if k in space.searched}  # noqa: E731
    for other in case["others"]:
        study.enqueue_trial(searched(case["fixed"]), user_attrs={"fixed": True})
        study.enqueue_trial(searched(other))
    start = time.perf_counter()
    search(case["task"], "16trials", space=str(space_file), study="noise", storage=url, workers=2, warm_start=False,
           remeasure=0, early_stop=False, sampler="random", seed=0)
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name="noise", storage=url).get_trials()
    fixed = [t.user_attrs["latency_ms"] for t in trials if t.user_attrs.get("fixed") and "latency_ms" in t.user_attrs]
    out.write_text(json.dumps({"latencies": fixed, "trials": len(trials), "wall_s": wall}))


def summary(name: str, protocol: str, result: dict) -> dict:
    latencies = result["latencies"]
    center = statistics.median(latencies)
    deviations = sorted(abs(x - center) / center for x in latencies)
    p90 = deviations[min(len(deviations) - 1, round(0.9 * (len(deviations) - 1)))]
    return {"config": name, "protocol": protocol,
            "timings": len(latencies), "median_ms": center, "mad_pct": 100 * statistics.median(deviations),
            "p90_pct": 100 * p90, "max_pct": 100 * deviations[-1], "trials_per_hour": 3600 * result["trials"] / result["wall_s"],
            "latencies_ms": " ".join(f"{x:.3g}" for x in latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            for protocol in args.protocols:
                rows.append(summary(name, protocol, run_case(name, protocol, Path(tmp))))
                print(rows[-1], flush=True)
    write_csv(rows, OUT / "timing_noise.csv")
    write(rows)


def write(rows: list[dict]) -> None:
    on = [r for r in rows if r["protocol"] == DEFAULT]
    met = all(r["mad_pct"] <= 3 and r["p90_pct"] <= 8 for r in on)
    cost = {r["config"]: r["trials_per_hour"] for r in rows if r["protocol"] == "before"}
    lines = [
        "# Timing noise: a trial's latency while other trials train beside it", "",
        f"`python benchmarks/timing_noise.py` on {os.cpu_count()} CPU cores, one run, the protocols side by side, "
        "each with its own model cache.",
        "Each config is timed by 8 trials of a 2-worker Ray search whose other 8 trials train (enqueued alternately).",
        "Deviation = |latency - the config's own median| / median.", "",
        *markdown_table(rows, ["config", "protocol", "timings", "median_ms", "mad_pct", "p90_pct", "max_pct",
                               "trials_per_hour"]), "",
        f"- Target (the default protocol, {DEFAULT}): median absolute deviation <= 3% and 90th percentile "
        f"<= 8% for all three: "
        f"**{'met' if met else 'MISSED'}**.",
        *[f"- Throughput of the default protocol against the one before, {r['config']}: {r['trials_per_hour']:.0f} vs "
          f"{cost[r['config']]:.0f} trials/hour ({100 * (r['trials_per_hour'] / cost[r['config']] - 1):+.0f}%)." for r in on
          if r["config"] in cost], "",
        "Latencies (ms) of the 8 timings, in trial order:", "",
        *markdown_table(rows, ["config", "protocol", "latencies_ms"]),
    ]
    path = OUT / "timing_noise.md"
    earlier = path.read_text() if path.is_file() else ""
    notes = earlier[earlier.index(NOTES):] if NOTES in earlier else ""  # hand-written sections after the tables stay
    path.write_text("\n".join(lines) + "\n" + (f"\n{notes}" if notes else ""))


if __name__ == "__main__":
    main()
