"""SST-2 dev with all-MiniLM-L6-v2, measured side by side in one run (issue 3's targets):

1. fine-tuning: plain random batches vs TokenDrop + BucketSampler (paper: width 5, mod-width drop)
   vs exact-length buckets (width 1): accuracy, padding share, optimizer steps, wall time;
2. AxFormer on the plain fine-tune: the paper's greedy pass vs the best config a search found
   (``accuracy >= baseline, min latency``); latency of every model re-measured at the end in
   interleaved rounds, so machine drift hits all of them alike.

Accuracy differences carry a paired bootstrap 95% interval over the dev sentences (one fine-tuning
seed: the interval covers dev sampling noise, not seed noise). The search picks on dev accuracy,
as the search's front does, so its row is optimistic by the selection effect; the greedy pass
selects on the held-out train slice only.

    python benchmarks/sst2_axformer_tokendrop.py            # ~30 min on one CPU core
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tables import markdown_table, write_csv  # benchmarks/tables.py

from autotradeoff import pareto
from autotradeoff.cost import measure_latency
from autotradeoff.errors import UsageError
from autotradeoff.search import search
from autotradeoff.tasks import get_task
from autotradeoff.tasks.glue_model import collate, predict
from autotradeoff.techniques import axformer

SITES = """\
task: sst2
objectives: {{accuracy: max, latency_ms: min}}
knobs:
  lr: {lr}
  epochs: {epochs}
  hard_attn_layers: {{low: 0, high: 6}}
  hard_attn_k: {{low: 4, high: 32}}
  drop_attn_layers: {{low: 0, high: 3}}
  drop_ffn_layers: {{low: 0, high: 3}}
  heads_kept: {{low: 0.25, high: 1.0}}
  ffn_kept: {{low: 0.25, high: 1.0}}
fidelity: {{train_size: {train_size}, max_length: {max_length}, threads: {threads}}}
"""


def paired_interval(a: list[int], b: list[int], labels: list[int], rng: random.Random, n: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(b) - accuracy(a) over the same resampled sentences."""
    diffs = [(pb == y) - (pa == y) for pa, pb, y in zip(a, b, labels)]
    stats = sorted(sum(diffs[rng.randrange(len(diffs))] for _ in diffs) / len(diffs) for _ in range(n))
    return stats[int(0.025 * n)], stats[int(0.975 * n)]


def interleaved_latency(models: dict, one: dict, many: dict, *, rounds: int, threads: int) -> dict[str, dict]:
    """Per model: median of per-round medians at batch 1 and 32, and their spread (IQR) across rounds."""
    samples = {name: {"b1": [], "b32": []} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name]["b1"].append(measure_latency(lambda m=model: m(**one), warmup=2, repeats=10, threads=threads, model=model).median_ms)
            samples[name]["b32"].append(measure_latency(lambda m=model: m(**many), warmup=1, repeats=2, threads=threads, model=model).median_ms)
    out = {}
    for name, s in samples.items():
        q1, q3 = (statistics.quantiles(s["b1"], n=4)[i] for i in (0, 2))
        out[name] = {"b1": statistics.median(s["b1"]), "b1_iqr": q3 - q1, "b32": statistics.median(s["b32"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--trials", type=int, default=20, help="AxFormer sites search trials")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("sst2")
    fidelity = task.fill_fidelity({"train_size": args.train_size, "max_length": 64, "threads": args.threads})
    dev = task.data(fidelity)[2]
    labels = [e.label for e in dev]
    base = {"lr": args.lr, "epochs": args.epochs}
    runs = {
        "plain fine-tune (random batches of 32)": base,
        "TokenDrop + BucketSampler (width 5, mod-width drop)": {**base, "batching": "bucket", "drop_mode": "mod-width"},
        "BucketSampler, exact-length buckets (width 1)": {**base, "batching": "bucket", "bucket_width": 1},
        "AxFormer greedy pass (paper defaults)": {**base, "ax_mode": "greedy"},
    }
    rows, models, predictions = [], {}, {}
    for name, config in runs.items():
        start = time.perf_counter()
        model, train, passes = task.build(task.fill_config(config), fidelity, device="cpu")
        predictions[name] = predict(model, dev, "cpu")
        models[name] = model
        rows.append({"run": name, "train_time_s": train.time_s, "train_steps": train.steps,
                     "padding_pct": 100 * train.padding_fraction, "selection_passes": passes,
                     "stage_wall_s": time.perf_counter() - start})
        print(f"{name}: {rows[-1]}", flush=True)
    baseline_name = next(iter(runs))
    base_acc = sum(p == y for p, y in zip(predictions[baseline_name], labels)) / len(labels)

    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "sites.yaml"
        space.write_text(SITES.format(lr=args.lr, epochs=args.epochs, train_size=args.train_size, max_length=64,
                                      threads=args.threads))
        start = time.perf_counter()
        found = search("sst2", f"{args.trials}trials", space=str(space), study="bench", storage=f"sqlite:///{tmp}/b.db",
                       runner="local", seed=0)
        trial_rows = pareto.rows_of(found.study)
        approximated = [r for r in trial_rows if not axformer.is_off(task.fill_config(r["config"]))]
        for rule in (f"accuracy>={base_acc - 1e-9}, min latency_ms",  # the target: no accuracy lost
                     f"accuracy>={base_acc - 0.01}, min latency_ms",  # else: within a point (dev noise)
                     "max accuracy"):
            try:
                chosen = pareto.pick(approximated, rule)
                break
            except UsageError:  # no approximation passes this rule: relax it, and say which one picked
                continue
        search_wall = time.perf_counter() - start
    name = f"AxFormer sites, {args.trials}-trial search (trial {chosen['number']}, picked by {rule.split(',')[0]})"
    model, train, _ = task.build(task.fill_config(chosen["config"]), fidelity, device="cpu")
    predictions[name], models[name] = predict(model, dev, "cpu"), model
    rows.append({"run": name, "train_time_s": train.time_s, "train_steps": train.steps,
                 "padding_pct": 100 * train.padding_fraction, "selection_passes": 0, "stage_wall_s": search_wall})

    median = statistics.median_low(len(e.ids) for e in dev)
    one = collate([next(e for e in dev if len(e.ids) == median)], "cpu")
    many = collate(dev[:32], "cpu")
    for inputs in (one, many):
        inputs.pop("labels")
    latency = interleaved_latency({k: models[k] for k in models}, one, many, rounds=args.rounds, threads=args.threads)
    rng = random.Random(0)
    base_row = rows[0]
    for row in rows:
        model, run = models[row["run"]], row["run"]
        acc = sum(p == y for p, y in zip(predictions[run], labels)) / len(labels)
        low, high = paired_interval(predictions[baseline_name], predictions[run], labels, rng)
        row.update(accuracy=acc, acc_diff_ci=f"[{low:+.3f}, {high:+.3f}]", params=sum(p.numel() for p in model.parameters()),
                   latency_b1_ms=latency[run]["b1"], latency_b1_iqr_ms=latency[run]["b1_iqr"], latency_b32_ms=latency[run]["b32"])
    for row in rows:
        row["speedup_b1"] = rows[0]["latency_b1_ms"] / row["latency_b1_ms"]
        row["speedup_b32"] = rows[0]["latency_b32_ms"] / row["latency_b32_ms"]
        row["finetune_speedup"] = base_row["train_time_s"] / row["train_time_s"] if row["train_time_s"] else float("nan")
    write(rows, args, trial_count=len(trial_rows))


def write(rows: list[dict], args: argparse.Namespace, *, trial_count: int) -> None:
    stem = args.out / "sst2_axformer_tokendrop"
    write_csv(rows, stem.with_suffix(".csv"))
    cols = ["run", "accuracy", "acc_diff_ci", "latency_b1_ms", "latency_b1_iqr_ms", "speedup_b1", "latency_b32_ms",
            "speedup_b32", "params", "train_time_s", "finetune_speedup", "padding_pct", "train_steps", "selection_passes"]
    lines = [f"# SST-2 dev (872 sentences), all-MiniLM-L6-v2, CPU, {args.threads} thread(s)", "",
             f"Fine-tuning: {args.train_size} training sentences, {args.epochs} epochs, lr {args.lr}, max length 64, "
             f"one seed. Latency re-measured for all models in {args.rounds} interleaved rounds (batch 1: a "
             f"median-length dev sentence; batch 32: the first 32 dev sentences). acc_diff_ci: paired bootstrap 95% "
             f"interval of accuracy minus the plain fine-tune's. Search: {trial_count} trials of AxFormer sites "
             "(TPE, the baseline enqueued first), picked among approximated configs by `accuracy >= baseline, "
             "min latency_ms` on dev, else within 0.01 of it, else the most accurate (the row names the rule).", "",
             *markdown_table(rows, cols)]
    base = rows[0]
    ax = [r for r in rows if r["run"].startswith("AxFormer")]
    td = [r for r in rows[1:] if not r["run"].startswith("AxFormer")]
    check = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines += ["", "Targets (issue 3):",
              *[f"- {r['run']}: >= baseline accuracy at >= 1.5x lower batch-1 latency: "
                f"{check(r['accuracy'] >= base['accuracy'] and r['speedup_b1'] >= 1.5)} "
                f"(accuracy {r['accuracy']:.4f} vs {base['accuracy']:.4f}, {r['speedup_b1']:.2f}x)" for r in ax],
              *[f"- {r['run']}: padding <= 2% and fine-tuning >= 2x faster at >= baseline accuracy: "
                f"{check(r['padding_pct'] <= 2 and r['finetune_speedup'] >= 2 and r['accuracy'] >= base['accuracy'])} "
                f"(padding {r['padding_pct']:.1f}%, {r['finetune_speedup']:.2f}x, accuracy {r['accuracy']:.4f})" for r in td]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
