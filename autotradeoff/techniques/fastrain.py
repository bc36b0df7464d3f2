"""FASTRAIN-GNN (techniques.md section 4): self-training of a GNN with few labels, made fast and accurate.

Each of ``stages`` stages trains a fresh GNN on the labels plus the pseudolabels so far, then adds
as pseudolabels the unlabeled nodes predicted with confidence above ``conf_threshold``. With every
switch off this is plain self-training, and with ``stages: 1`` plain supervised training. Switches:
- ``dynamic_depth``: ``depth_small`` layers while the training set is below ``ds_threshold`` of the
  nodes, ``depth_large`` after;
- ``dynamic_drop``: per-epoch edge drop of ``drop_small`` / ``drop_large`` (none with one label per class);
- ``calibrate``: CaGCN, a 2-layer GCN on the logits predicting a per-node temperature, fit on validation;
- ``spf``: keep a candidate only if its prediction survives ``spf_samples`` graphs with ``spf_drop`` of
  the edges removed (``spf_rule`` all / majority of them);
- ``pgp``: delete edges between training nodes whose (pseudo)labels differ; deletions carry over.
Validation nodes are never pseudolabeled: they are held out to select checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from autotradeoff.space import Knob
from autotradeoff.stopping import part
from autotradeoff.tasks.gnn import GraphWork, drop_edges, logits, train_gnn

__all__ = ["KNOBS", "SelfTrained", "self_train", "stage_depth", "stage_edge_drop", "calibrate",
           "stable_predictions", "prune_cross_label_edges"]

_SWITCH = (False, True)
KNOBS = {
    "stages": Knob("stages", "int", 1, 1, 20, help="self-training stages (1: supervised training only)"),
    "conf_threshold": Knob("conf_threshold", "float", 0.8, 0.0, 0.999, help="confidence above which a node is pseudolabeled"),
    "dynamic_depth": Knob("dynamic_depth", "categorical", False, choices=_SWITCH, help="depth by training-set size"),
    "ds_threshold": Knob("ds_threshold", "float", 0.025, 0.0, 0.5, help="share of nodes below which the training set is small"),
    "depth_small": Knob("depth_small", "int", 3, 1, 6, help="layers while the training set is small"),
    "depth_large": Knob("depth_large", "int", 2, 1, 6, help="layers once it is not"),
    "dynamic_drop": Knob("dynamic_drop", "categorical", False, choices=_SWITCH, help="edge drop by training-set size"),
    "drop_small": Knob("drop_small", "float", 0.1, 0.0, 0.9, help="edges dropped per epoch while small"),
    "drop_large": Knob("drop_large", "float", 0.2, 0.0, 0.9, help="edges dropped per epoch once not"),
    "calibrate": Knob("calibrate", "categorical", False, choices=_SWITCH, help="CaGCN confidence calibration"),
    "calib_epochs": Knob("calib_epochs", "int", 100, 1, 2000, help="CaGCN training epochs"),
    "spf": Knob("spf", "categorical", False, choices=_SWITCH, help="sampling-based pseudolabel filtering"),
    "spf_samples": Knob("spf_samples", "int", 10, 1, 100, help="edge-dropped graphs a pseudolabel must survive"),
    "spf_drop": Knob("spf_drop", "float", 0.1, 0.0, 0.9, help="share of edges dropped in each of them"),
    "spf_rule": Knob("spf_rule", "categorical", "all", choices=("all", "majority"), help="agree on all or most samples"),
    "pgp": Knob("pgp", "categorical", False, choices=_SWITCH, help="progressive pruning of cross-label edges"),
}


@dataclass
class SelfTrained:
    model: torch.nn.Module
    edge_index: torch.Tensor  # the graph the last stage trained on (after pruning): inference uses it
    work: GraphWork = field(default_factory=GraphWork)
    pseudo: torch.Tensor | None = None  # mask of pseudolabeled nodes
    pseudo_labels: torch.Tensor | None = None


def stage_depth(config: dict[str, Any], train_share: float) -> int:
    if not config["dynamic_depth"]:
        return config["layers"]
    return config["depth_small"] if train_share < config["ds_threshold"] else config["depth_large"]


def stage_edge_drop(config: dict[str, Any], train_share: float, labels_per_class: int) -> float:
    if not config["dynamic_drop"]:
        return config["edge_drop"]
    if labels_per_class <= 1:
        return 0.0
    return config["drop_small"] if train_share < config["ds_threshold"] else config["drop_large"]


def calibrate(out: torch.Tensor, data, edge_index: torch.Tensor, *, epochs: int, seed: int,
              work: GraphWork) -> torch.Tensor:
    """CaGCN: logits x softplus(GCN(logits)), the GCN fit on validation labels; returns calibrated logits."""
    from torch_geometric.nn.models import GCN

    torch.manual_seed(seed)
    scaler = GCN(out.size(1), 16, 2, 1, dropout=0.5).to(out.device)
    optimizer = torch.optim.Adam(scaler.parameters(), lr=0.01, weight_decay=5e-3)
    out = out.detach()
    for _ in range(epochs):
        scaler.train()
        optimizer.zero_grad()
        scaled = out * torch.nn.functional.softplus(scaler(out, edge_index))
        torch.nn.functional.cross_entropy(scaled[data.val_mask], data.y[data.val_mask]).backward()
        optimizer.step()
        work.edges += edge_index.size(1) * 2
    return out * torch.nn.functional.softplus(logits(scaler, out, edge_index, work=work))


def stable_predictions(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor, pred: torch.Tensor, *,
                       samples: int, drop: float, rule: str, generator: torch.Generator,
                       work: GraphWork) -> torch.Tensor:
    """Mask of nodes whose prediction equals ``pred`` on all (or most) of ``samples`` edge-dropped graphs."""
    agree = torch.zeros_like(pred)
    for _ in range(samples):
        agree += logits(model, x, drop_edges(edge_index, drop, generator), work=work).argmax(-1) == pred
    return agree == samples if rule == "all" else agree * 2 > samples


def prune_cross_label_edges(edge_index: torch.Tensor, train_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``edge_index`` without the edges whose two ends are both training nodes with different labels."""
    src, dst = edge_index
    cross = train_mask[src] & train_mask[dst] & (labels[src] != labels[dst])
    return edge_index[:, ~cross]


def self_train(config: dict[str, Any], data, *, seed: int, **member) -> SelfTrained:
    """Run the stages on ``data`` (its ``train_mask`` holds the true labels); ``member`` overrides the
    model kind/width for ensemble members. The last stage's model and graph are returned."""
    y, train, edge_index = data.y.clone(), data.train_mask.clone(), data.edge_index
    labels_per_class = int(torch.bincount(data.y[data.train_mask]).min())
    generator, work = torch.Generator().manual_seed(seed), GraphWork()
    candidates_pool = ~(data.train_mask | data.val_mask)
    for stage in range(config["stages"]):
        share = float(train.float().mean())
        with part(stage, config["stages"]):
            model, _ = train_gnn(config, data, y=y, train_mask=train, edge_index=edge_index, seed=seed + stage, work=work,
                                 layers=stage_depth(config, share), edge_drop=stage_edge_drop(config, share, labels_per_class),
                                 **member)
        if stage == config["stages"] - 1:
            break
        out = logits(model, data.x, edge_index, work=work)
        if config["calibrate"]:
            out = calibrate(out, data, edge_index, epochs=config["calib_epochs"], seed=seed + stage, work=work)
        confidence, pred = out.softmax(-1).max(-1)
        new = candidates_pool & ~train & (confidence > config["conf_threshold"])
        if config["spf"]:
            new &= stable_predictions(model, data.x, edge_index, pred, samples=config["spf_samples"],
                                      drop=config["spf_drop"], rule=config["spf_rule"], generator=generator, work=work)
        y[new], train = pred[new], train | new
        if config["pgp"]:
            edge_index = prune_cross_label_edges(edge_index, train, y)
    pseudo = train & ~data.train_mask
    return SelfTrained(model, edge_index, work, pseudo, y)
