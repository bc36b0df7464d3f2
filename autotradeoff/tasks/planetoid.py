"""Planetoid node classification (Cora): a GCN/GAT/SAGE trained full-batch on the public split.

Data: ``planetoid/<Name>/raw/ind.<name>.*`` under ``$AUTOTRADEOFF_DATA`` or the cache (PyG downloads
it when online). Accuracy is on the public test split; the checkpoint is selected on validation
accuracy, never on test. Costs are measured on full-graph inference of the selected model.
"""

from __future__ import annotations

import copy
import math
import pickle
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size
from autotradeoff.data import cache_dir, cache_lock, find_files
from autotradeoff.errors import TrialFailed
from autotradeoff.space import Knob
from autotradeoff.tasks.base import Task, run_fidelity

__all__ = ["PlanetoidTask", "cora", "load_planetoid"]

_CORE_FILES = ("tx", "allx", "ty", "ally", "graph", "test.index")
_PUBLIC_TRAIN_PER_CLASS = 20  # Planetoid's public split: ind.<name>.x/y are the first 20*C rows of allx/ally


def _stage_raw(source: Path, stage: Path, prefix: str) -> None:
    """Link the found raw files into a writable folder for PyG; rebuild x/y if the copy lacks them."""
    stage.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"ind.{prefix}.*"):
        link = stage / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    if (stage / f"ind.{prefix}.x").exists() and (stage / f"ind.{prefix}.y").exists():
        return
    with open(stage / f"ind.{prefix}.allx", "rb") as fx, open(stage / f"ind.{prefix}.ally", "rb") as fy:
        allx, ally = pickle.load(fx, encoding="latin1"), pickle.load(fy, encoding="latin1")
    n_train = _PUBLIC_TRAIN_PER_CLASS * ally.shape[1]
    for name, value in (("x", allx[:n_train]), ("y", ally[:n_train])):
        with open(stage / f"ind.{prefix}.{name}", "wb") as handle:
            pickle.dump(value, handle, protocol=2)


def find_raw(name: str) -> Path:
    """The folder holding ``ind.<name>.*``; PyG downloads it into the cache when online and missing."""

    def download(target: Path) -> None:
        from torch_geometric.datasets import Planetoid

        Planetoid(str(target.parent.parent), name)  # PyG's own download into <root>/<Name>/raw

    return find_files(f"planetoid/{name}/raw", [f"ind.{name.lower()}.{f}" for f in _CORE_FILES],
                      what=f"Planetoid {name}", download=download)


@lru_cache(maxsize=4)
def load_planetoid(name: str):
    """The PyG ``Data`` of a Planetoid graph (public split), cached per process."""
    from torch_geometric.datasets import Planetoid

    root = cache_dir() / "planetoid"
    with cache_lock(f"planetoid-{name}"):  # the first trial stages and processes, the others wait and read
        _stage_raw(find_raw(name), root / name / "raw", name.lower())
        return Planetoid(str(root), name)[0]


def build_model(config: dict[str, Any], in_channels: int, out_channels: int) -> torch.nn.Module:
    from torch_geometric.nn.models import GAT, GCN, GraphSAGE

    kind, heads = config["model"], config["heads"]
    common = {"in_channels": in_channels, "num_layers": config["layers"], "out_channels": out_channels,
              "dropout": config["dropout"]}
    if kind == "gat":  # hidden is the width per head, as in the GAT paper (8 heads x 8)
        return GAT(hidden_channels=config["hidden"] * heads, heads=heads, **common)
    return {"gcn": GCN, "sage": GraphSAGE}[kind](hidden_channels=config["hidden"], **common)


def train_one(config: dict[str, Any], data, *, seed: int, device: str) -> tuple[torch.nn.Module, float, int]:
    """Train with Adam, full batch, edge dropping per epoch; keep the best-validation weights."""
    from torch_geometric.utils import dropout_edge

    torch.manual_seed(seed)
    model = build_model(config, data.num_features, int(data.y.max()) + 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    best_val, best_state = -1.0, None
    for epoch in range(config["epochs"]):
        model.train()
        edges = data.edge_index
        if config["edge_drop"] > 0:
            edges, _ = dropout_edge(edges, p=config["edge_drop"], training=True)
        optimizer.zero_grad()
        out = model(data.x, edges)
        loss = torch.nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        if not math.isfinite(loss.item()):
            raise TrialFailed(f"non-finite training loss ({loss.item()}) at epoch {epoch}")
        loss.backward()
        optimizer.step()
        val = evaluate(model, data, data.val_mask)
        if val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), best_val, config["epochs"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, mask: torch.Tensor) -> float:
    model.eval()
    pred = model(data.x, data.edge_index).argmax(dim=-1)
    return float((pred[mask] == data.y[mask]).float().mean())


class PlanetoidTask(Task):
    metrics = {
        "accuracy": "max", "accuracy_std": "min", "val_accuracy": "max",
        "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min", "params": "min",
        "model_bytes": "min", "edges": "min", "train_time_s": "min",
    }
    default_objectives = ("accuracy", "latency_ms")
    knobs = {
        "model": Knob("model", "categorical", "gcn", choices=("gcn", "gat", "sage"), help="GNN layer type"),
        "layers": Knob("layers", "int", 2, 1, 6, help="message-passing layers"),
        "hidden": Knob("hidden", "int", 16, 2, 1024, help="hidden width (per head for GAT)"),
        "heads": Knob("heads", "int", 8, 1, 16, help="attention heads (GAT only)"),
        "dropout": Knob("dropout", "float", 0.5, 0.0, 0.95, help="feature dropout"),
        "lr": Knob("lr", "float", 0.01, 1e-5, 1.0, help="Adam learning rate"),
        "weight_decay": Knob("weight_decay", "float", 5e-4, 0.0, 0.1, help="Adam L2 penalty"),
        "epochs": Knob("epochs", "int", 200, 1, 5000, help="full-batch training epochs"),
        "edge_drop": Knob("edge_drop", "float", 0.0, 0.0, 0.9, help="share of edges dropped each epoch"),
    }
    fidelity = {
        "seeds": Knob("seeds", "int", 1, 1, 20, help="models trained per trial (mean accuracy, std)"),
        **run_fidelity(gpu_share=0.25, warmup=3, repeats=20),
    }

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.name = dataset.lower()
        self.description = f"Planetoid {dataset} node classification (public split), GCN/GAT/SAGE"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        find_raw(self.dataset)

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        data = load_planetoid(self.dataset).to(device)
        start = time.perf_counter()
        accuracies, vals, model = [], [], None
        for offset in range(fidelity["seeds"]):
            model, val, _ = train_one(config, data, seed=fidelity["seed"] + offset, device=device)
            accuracies.append(evaluate(model, data, data.test_mask))
            vals.append(val)
        train_time = time.perf_counter() - start
        forward = lambda: model(data.x, data.edge_index)  # noqa: E731  (full-graph inference)
        latency = measure_latency(forward, warmup=fidelity["latency_warmup"],
                                  repeats=fidelity["latency_repeats"], threads=fidelity["threads"], model=model)
        acc = torch.tensor(accuracies)
        return {
            "accuracy": float(acc.mean()),
            "accuracy_std": float(acc.std()) if len(accuracies) > 1 else 0.0,
            "val_accuracy": float(torch.tensor(vals).mean()),
            **latency.as_metrics(),
            "flops": float(count_flops(forward)),
            **{k: float(v) for k, v in model_size(model).items()},
            "edges": float(data.edge_index.size(1) * config["layers"]),
            "train_time_s": train_time,
        }


def cora() -> PlanetoidTask:
    return PlanetoidTask("Cora")
