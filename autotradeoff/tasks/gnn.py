"""GNN building blocks shared by the graph tasks and the graph techniques (FASTRAIN-GNN, GEENI).

Models are PyG's GCN / GAT / GraphSAGE; training is full batch with Adam, an optional edge drop per
epoch and early stopping on validation accuracy; the best-validation weights are kept. ``GraphWork``
counts what training and inference processed: messages passed (edges x layers, forward passes).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from autotradeoff.cost import count_flops
from autotradeoff.errors import TrialFailed
from autotradeoff.stopping import checkpoint

__all__ = ["GraphWork", "build_model", "drop_edges", "train_gnn", "logits", "accuracy"]


@dataclass
class GraphWork:
    """What a run processed: ``edges`` = messages passed (edge count x layers, summed over forward passes),
    ``epochs`` trained, ``flops`` of training (3x the forward FLOPs per epoch: backward ~ 2x forward)."""

    edges: int = 0
    epochs: int = 0
    flops: float = 0.0

    def add(self, other: GraphWork) -> None:
        self.edges, self.epochs, self.flops = self.edges + other.edges, self.epochs + other.epochs, self.flops + other.flops


def build_model(config: dict[str, Any], in_channels: int, out_channels: int, *, layers: int | None = None,
                kind: str | None = None, hidden: int | None = None) -> torch.nn.Module:
    """A PyG GCN / GAT / GraphSAGE from the task knobs; ``layers``/``kind``/``hidden`` override them."""
    from torch_geometric.nn.models import GAT, GCN, GraphSAGE

    kind, heads = kind or config["model"], config["heads"]
    hidden = hidden or config["hidden"]
    common = {"in_channels": in_channels, "num_layers": layers or config["layers"], "out_channels": out_channels,
              "dropout": config["dropout"]}
    if kind == "gat":  # hidden is the width per head, as in the GAT paper (8 heads x 8)
        return GAT(hidden_channels=hidden * heads, heads=heads, **common)
    return {"gcn": GCN, "sage": GraphSAGE}[kind](hidden_channels=hidden, **common)


def drop_edges(edge_index: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``edge_index`` without a random share ``p`` of its (directed) edges."""
    if p <= 0:
        return edge_index
    keep = torch.rand(edge_index.size(1), generator=generator) >= p
    return edge_index[:, keep.to(edge_index.device)]


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
           edge_weight: torch.Tensor | None = None, work: GraphWork | None = None) -> torch.Tensor:
    """Full-graph inference in eval mode (counted in ``work`` when given)."""
    model.eval()
    if work is not None:
        work.edges += edge_index.size(1) * model.num_layers
    return model(x, edge_index, edge_weight=edge_weight) if edge_weight is not None else model(x, edge_index)


def accuracy(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((pred[mask] == y[mask]).float().mean())


def train_gnn(config: dict[str, Any], data, *, y: torch.Tensor, train_mask: torch.Tensor, edge_index: torch.Tensor,
              seed: int, work: GraphWork, layers: int | None = None, kind: str | None = None,
              hidden: int | None = None, edge_drop: float | None = None) -> tuple[torch.nn.Module, float]:
    """Train on ``y[train_mask]`` over ``edge_index``; keep the weights of the best validation accuracy.

    Stops after ``config["patience"]`` epochs without a better validation accuracy (0: never).
    Returns (model in eval mode, best validation accuracy).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config, data.num_features, int(data.y.max()) + 1, layers=layers, kind=kind,
                        hidden=hidden).to(data.x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    drop = config["edge_drop"] if edge_drop is None else edge_drop
    best_val, best_state, since_best = -1.0, None, 0
    for epoch in range(config["epochs"]):
        model.train()
        edges = drop_edges(edge_index, drop, generator)
        optimizer.zero_grad()
        out = model(data.x, edges)
        loss = torch.nn.functional.cross_entropy(out[train_mask], y[train_mask])
        if not math.isfinite(loss.item()):
            raise TrialFailed(f"non-finite training loss ({loss.item()}) at epoch {epoch}")
        loss.backward()
        optimizer.step()
        work.edges += edges.size(1) * model.num_layers
        work.epochs += 1
        val = accuracy(logits(model, data.x, edge_index, work=work).argmax(-1), data.y, data.val_mask)
        checkpoint((epoch + 1) / config["epochs"], val)  # a search may stop the trial here
        if val > best_val:
            best_val, best_state, since_best = val, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if config["patience"] and since_best >= config["patience"]:
                break
    work.flops += 3.0 * (epoch + 1) * count_flops(lambda: model(data.x, edge_index))
    model.load_state_dict(best_state)
    return model.eval(), best_val
