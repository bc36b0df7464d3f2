"""How AxFormer's greedy pass sees each whole sublayer on selection splits of different sizes.

The greedy pass (``axformer.ax_mode: greedy``) tries the whole attention and FFN sublayers least harmful first,
ranked by the mean loss on its selection split of the fine-tune with that one sublayer removed. This script prints
that ranking for the ``sst2`` space's fine-tune (its fidelity, one seed) on each ``--splits`` size: the base loss
the tolerance is relative to, and each sublayer's loss change. It reads the plain fine-tune from
``AUTOTRADEOFF_CACHE`` (or trains it: ~7 min on 2 cores) and runs 13 loss passes a split (~1 min).

    python benchmarks/sst2_selection_split.py                 # splits of 500 and 872 sentences, seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tables import markdown_table, write_csv  # benchmarks/tables.py

from autotradeoff.models.bert import full_plan
from autotradeoff.presets import load_space
from autotradeoff.tasks import get_task
from autotradeoff.tasks.glue_model import sample_losses
from autotradeoff.techniques.axformer import SUBLAYERS, approximate, without_sublayer


def sublayer_losses(model, splits: dict[int, list]) -> tuple[dict[int, float], list[dict]]:
    """(base mean loss per split, one row per sublayer: its loss change and rank on each split)."""
    mean = lambda m, rows: float(sample_losses(m, rows, "cpu")[0].mean())  # noqa: E731
    base = {n: mean(model, rows) for n, rows in splits.items()}
    plan, rows = full_plan(len(model.bert.encoder.layer)), []
    for layer in range(len(plan)):
        for kind in SUBLAYERS:
            smaller = approximate(model, without_sublayer(plan, layer, kind))
            rows.append({"sublayer": f"layer {layer + 1} {kind}",
                         **{f"change_{n}": mean(smaller, split) / base[n] - 1 for n, split in splits.items()}})
    for n in splits:  # the order the pass tries them in on that split
        for rank, row in enumerate(sorted(rows, key=lambda r, n=n: r[f"change_{n}"]), 1):
            row[f"rank_{n}"] = rank
    return base, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[500, 872], help="selection split sizes (sentences)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("sst2")
    fidelity = task.fill_fidelity(dict(load_space("sst2").fidelity))
    model, _, _ = task.build(task.fill_config({}), fidelity, device="cpu", seed=args.seed)
    splits = {n: task.selection({**fidelity, "select_size": n}) for n in args.splits}
    with torch.no_grad():
        base, rows = sublayer_losses(model.eval(), splits)
    stem = args.out / "sst2_selection_split"
    write_csv(rows, stem.with_suffix(".csv"))
    cols = ["sublayer", *(f"{k}_{n}" for n in args.splits for k in ("change", "rank"))]
    shown = [{**r, **{c: f"{r[c]:+.1%}" for c in cols if c.startswith("change")}} for r in rows]
    lines = ["# SST-2: whole sublayers as the greedy pass ranks them, by selection split size", "",
             f"The `sst2` space's fidelity ({fidelity['train_size']} sentences), plain fine-tune of seed {args.seed}; "
             "each sublayer removed alone; `change_N`: its mean loss on the N-sentence selection split over the "
             "fine-tune's, minus 1; `rank_N`: the order the greedy pass tries it in on that split (least harmful "
             "first). Base losses: " + ", ".join(f"{n} sentences {b:.4f}" for n, b in base.items()) + ".", "",
             *markdown_table(shown, cols)]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
