"""Fashion-MNIST, a small ViT from scratch, measured side by side in one run (issue 5's targets):

training — full resolution; random levels (a quarter of the side to full, uniform per batch) with
interpolated positions; ICPC (the same levels, top-left positions) — each evaluated with fixed
full-level inference and with variable-effort inference (levels from a quarter of the side, stop at
max softmax >= 0.9, fall back to the largest level; the public code's "count it wrong" in its own column).

Every training runs with the same seed set, one job at a time on both cores (2 threads), so no
training or latency is timed beside another job. All numbers go through the task's own trial
function (`run_trial`); the first inference mode of a training trains it, the others reuse it.

    python benchmarks/fashion_mnist_icpc.py        # ~36 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from tables import markdown_table, write_csv  # benchmarks/tables.py

from autotradeoff.trial import run_trial

TRAINING = {
    "full resolution": {},
    "random levels, interpolated positions": {"min_level": 0.25, "pos_selection": "interpolate"},
    "ICPC (random levels, top-left positions)": {"min_level": 0.25, "pos_selection": "top-left"},
}
INFERENCE = {
    "full level": {},
    "variable effort": {"variable_effort": True, "infer_start_level": 0.25, "conf_threshold": 0.9},
    "variable effort, unconfident = wrong": {"variable_effort": True, "infer_start_level": 0.25, "conf_threshold": 0.9,
                                             "fallback": "wrong"},
}
METRICS = ("accuracy", "train_flops", "train_time_s", "flops", "latency_ms", "mean_levels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    if not os.environ.get("AUTOTRADEOFF_CACHE"):  # cold: every model is trained in this run
        os.environ["AUTOTRADEOFF_CACHE"] = tempfile.mkdtemp(prefix="icpc-bench-")
    base = {"train_size": args.train_size, "epochs": args.epochs, "test_size": 0, "latency_samples": 32,
            "latency_warmup": 3, "latency_repeats": 10, "threads": 2}
    fidelities = [{**base, "seed": seed} for seed in range(args.seeds)]
    rows = []
    for training, train_config in TRAINING.items():
        for inference, infer_config in INFERENCE.items():
            runs = [run_trial("fashion-mnist", {**train_config, **infer_config}, fid) for fid in fidelities]
            row = {"training": training, "inference": inference}
            for metric in METRICS:
                row[metric] = statistics.fmean(r[metric] for r in runs)
            row["accuracy_std"] = statistics.stdev(r["accuracy"] for r in runs) if len(runs) > 1 else 0.0
            row["accuracy_runs"] = " ".join(f"{r['accuracy']:.4f}" for r in runs)
            row["exit_shares"] = " ".join(f"{k[len('exit_share_'):]}:{statistics.fmean(r[k] for r in runs):.3f}"
                                          for k in runs[0] if k.startswith("exit_share_"))
            rows.append(row)
    write(rows, args, base)


def write(rows: list[dict], args: argparse.Namespace, fidelity: dict) -> None:
    baseline = rows[0]  # full-resolution training, full-level inference
    by = {(r["training"], r["inference"]): r for r in rows}
    for row in rows:
        full = by[(row["training"], "full level")]
        row["train_flops_ratio"] = baseline["train_flops"] / row["train_flops"]
        row["train_time_ratio"] = baseline["train_time_s"] / row["train_time_s"]
        row["flops_ratio_vs_full_level"] = full["flops"] / row["flops"]
        row["latency_ratio_vs_full_level"] = full["latency_ms"] / row["latency_ms"]
        row["accuracy_vs_baseline"] = row["accuracy"] - baseline["accuracy"]
        row["accuracy_vs_full_level"] = row["accuracy"] - full["accuracy"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "fashion_mnist_icpc.csv")
    icpc_name = list(TRAINING)[2]
    icpc_full, icpc_ve = by[(icpc_name, "full level")], by[(icpc_name, "variable effort")]
    train_met = icpc_full["train_flops_ratio"] >= 2 and icpc_full["accuracy_vs_baseline"] >= -0.005
    ve_met = icpc_ve["flops_ratio_vs_full_level"] >= 1.5 and icpc_ve["accuracy_vs_full_level"] >= -0.005
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines = [
        "# Fashion-MNIST: ICPC on a small ViT trained from scratch",
        "",
        f"`python benchmarks/fashion_mnist_icpc.py` — {args.seeds} seeds, {args.train_size or 60000} training images, "
        f"{args.epochs} epochs, all 10,000 test images; ViT patch 4 (7 x 7 grid at 28 px), dim 64, depth 4, 4 heads; "
        f"AdamW 2e-3 cosine. Fidelity: `{fidelity}`. One job at a time on 2 threads. Means over seeds; "
        "ratios are baseline / row (higher = cheaper); latency is per sample at batch 1 over 32 test images whose "
        "exits follow the test set's.",
        "",
        "## Targets",
        f"- ICPC training: ≥ 2x fewer training FLOPs at ≤ 0.5 point accuracy loss (full-level inference): "
        f"{icpc_full['train_flops_ratio']:.2f}x, {100 * icpc_full['accuracy_vs_baseline']:+.2f} points — "
        f"**{verdict(train_met)}**",
        f"- Variable-effort inference: ≥ 1.5x fewer FLOPs per sample than full-level inference at ≤ 0.5 point loss "
        f"(ICPC model): {icpc_ve['flops_ratio_vs_full_level']:.2f}x, {100 * icpc_ve['accuracy_vs_full_level']:+.2f} points — "
        f"**{verdict(ve_met)}**",
        "",
        "## Results",
        *markdown_table(rows, ["training", "inference", "accuracy", "accuracy_std", "accuracy_vs_baseline", "train_flops_ratio",
                               "train_time_ratio", "flops", "flops_ratio_vs_full_level", "latency_ms",
                               "latency_ratio_vs_full_level", "mean_levels"]),
        "",
        "## Per seed and exits",
        *markdown_table(rows, ["training", "inference", "accuracy_runs", "exit_shares"]),
        "",
    ]
    (args.out / "fashion_mnist_icpc.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
