"""FASTRAIN-GNN (techniques.md section 4): self-training of a GNN with few labels, made fast and accurate.

Each of ``stages`` stages trains a fresh GNN on the labels plus the pseudolabels so far, then adds
as pseudolabels the unlabeled nodes predicted with confidence above ``conf_threshold``. With every
switch off this is plain self-training, and with ``stages: 1`` plain supervised training. Switches:
- ``dynamic_depth``: ``depth_small`` layers while the training set is below ``ds_threshold`` of the
  nodes, ``depth_large`` after;
- ``dynamic_drop``: per-epoch edge drop of ``drop_small`` / ``drop_large`` (none with one label per class);
  dropped edges are removed from the graph a training step runs on, so they are not computed;
- ``calibrate``: ``cagcn`` (CaGCN: a 2-layer GCN on the logits predicts a per-node temperature, trained
  ``calib_epochs`` with Adam at ``calib_lr`` on cross-entropy plus CaGCN's margin term) or ``temperature``
  (one temperature fit by LBFGS): both fit on the stage's training labels and pseudolabels, as FASTRAIN's
  and CaGCN-st's public code do in self-training stages (validation labels are never trained on);
- ``spf``: keep a candidate only if its prediction survives ``spf_samples`` graphs with ``spf_drop`` of
  the edges removed (``spf_rule`` all / majority of them);
- ``pgp``: delete edges between training nodes whose (pseudo)labels differ; deletions carry over;
- ``stop_early``: stop once a stage's validation accuracy is not above the best so far, and keep the best
  stage (``stages`` is then the most that run).
Each stage is logged (``SelfTrained.log``: training labels, validation and test accuracy of its model,
self-training seconds so far). Validation nodes are never pseudolabeled: they are held out to select
checkpoints and stages. ``Fastrain`` plugs ``self_train`` into the graph tasks' ``train`` stage (one member:
data, seed, member overrides -> ``SelfTrained``), calling the task's ``fit`` stage once per stage.

CaGCN-st, the calibrated self-training FASTRAIN is compared with, is this module with ``calibrate: cagcn``
and no other switch (see the ``cora-fewshot`` space's ``baselines``). Neither runs CaGCN-st's last
calibration, which CaGCN fits on validation after the last stage: a positive per-node temperature never
changes a prediction, only reported confidences. The scaler trains on the stage model's logits, computed
once (CaGCN's code recomputes the frozen model every calibration epoch; the result is the same up to dropout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from autotradeoff.cost import alone
from autotradeoff.knobs import Knob
from autotradeoff.models.gnn import GraphWork, SelfTrained, accuracy, drop_edges, logits
from autotradeoff.progress import part
from autotradeoff.techniques.base import Pipeline, Technique

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["Fastrain", "self_train", "stage_depth", "stage_edge_drop", "calibrate_cagcn", "calibrate_temperature",
           "margin_loss", "stable_predictions", "prune_cross_label_edges"]

_SWITCH = (False, True)
CAGCN_MARGIN_WEIGHT = 0.5  # CaGCN's Lambda: weight of its margin (intra-distance) term
CAGCN_WEIGHT_DECAY = 5e-3  # CaGCN's l2_for_cal
KNOBS = {
    "stages": Knob("stages", "int", 1, 1, 20, help="self-training stages (1: supervised training only)"),
    "conf_threshold": Knob("conf_threshold", "float", 0.8, 0.0, 0.999, help="confidence above which a node is pseudolabeled"),
    "stop_early": Knob("stop_early", "categorical", False, choices=_SWITCH,
                       help="stop when a stage does not raise the best validation accuracy; keep the best stage"),
    "dynamic_depth": Knob("dynamic_depth", "categorical", False, choices=_SWITCH, help="depth by training-set size"),
    "ds_threshold": Knob("ds_threshold", "float", 0.025, 0.0, 0.5, help="share of nodes below which the training set is small"),
    "depth_small": Knob("depth_small", "int", 3, 1, 6, help="layers while the training set is small"),
    "depth_large": Knob("depth_large", "int", 2, 1, 6, help="layers once it is not"),
    "dynamic_drop": Knob("dynamic_drop", "categorical", False, choices=_SWITCH, help="edge drop by training-set size"),
    "drop_small": Knob("drop_small", "float", 0.1, 0.0, 0.9, help="edges dropped per epoch while small"),
    "drop_large": Knob("drop_large", "float", 0.2, 0.0, 0.9, help="edges dropped per epoch once not"),
    "calibrate": Knob("calibrate", "categorical", "none", choices=("none", "cagcn", "temperature"),
                      help="confidence calibration before pseudolabeling"),
    "calib_epochs": Knob("calib_epochs", "int", 200, 1, 2000, help="CaGCN training epochs"),
    "calib_lr": Knob("calib_lr", "float", 0.001, 1e-5, 0.5, help="CaGCN learning rate"),
    "spf": Knob("spf", "categorical", False, choices=_SWITCH, help="sampling-based pseudolabel filtering"),
    "spf_samples": Knob("spf_samples", "int", 10, 1, 100, help="edge-dropped graphs a pseudolabel must survive"),
    "spf_drop": Knob("spf_drop", "float", 0.1, 0.0, 0.9, help="share of edges dropped in each of them"),
    "spf_rule": Knob("spf_rule", "categorical", "all", choices=("all", "majority"), help="agree on all or most samples"),
    "pgp": Knob("pgp", "categorical", False, choices=_SWITCH, help="progressive pruning of cross-label edges"),
}


def stage_depth(config: dict[str, Any], train_share: float) -> int | None:
    """Layers of a stage's GNN (None: the task's own ``layers``)."""
    if not config["dynamic_depth"]:
        return None
    return config["depth_small"] if train_share < config["ds_threshold"] else config["depth_large"]


def stage_edge_drop(config: dict[str, Any], train_share: float, labels_per_class: int) -> float | None:
    """Share of edges a stage drops each epoch (None: the task's own ``edge_drop``)."""
    if not config["dynamic_drop"]:
        return None
    if labels_per_class <= 1:
        return 0.0
    return config["drop_small"] if train_share < config["ds_threshold"] else config["drop_large"]


def margin_loss(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CaGCN's calibration term: mean of 1 - (p1 - p2) over right predictions and p1 - p2 over wrong ones
    (p1, p2: the two largest probabilities), so right nodes gain confidence and wrong ones lose it."""
    top = out.softmax(-1).topk(2, dim=-1).values
    gap = top[:, 0] - top[:, 1]
    return torch.where(out.argmax(-1) == labels, 1 - gap, gap).mean()


def calibrate_cagcn(out: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, epochs: int,
                    lr: float, dropout: float, seed: int, work: GraphWork) -> torch.Tensor:
    """CaGCN: logits x log(exp(GCN(logits)) + 1.1), the 2-layer, 16-wide GCN fit on ``y[mask]``; returns
    calibrated logits (the last epoch's scaler, as CaGCN-st keeps in self-training stages)."""
    from torch_geometric.nn.models import GCN

    torch.manual_seed(seed)
    scaler = GCN(out.size(1), 16, 2, 1, dropout=dropout).to(out.device)
    optimizer = torch.optim.Adam(scaler.parameters(), lr=lr, weight_decay=CAGCN_WEIGHT_DECAY)
    out = out.detach()
    scale = lambda t: out * torch.logaddexp(t, torch.tensor(1.1).log())  # noqa: E731  CaGCN's log(e^t + 1.1)
    for _ in range(epochs):
        alone.pause_point()
        scaler.train()
        optimizer.zero_grad()
        scaled = scale(scaler(out, edge_index))[mask]
        loss = torch.nn.functional.cross_entropy(scaled, y[mask]) + CAGCN_MARGIN_WEIGHT * margin_loss(scaled, y[mask])
        loss.backward()
        optimizer.step()
        work.count(scaler, out, edge_index, backward=True)
    return scale(logits(scaler, out, edge_index, work=work))


def calibrate_temperature(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Temperature scaling: one temperature minimising the NLL of ``y[mask]``, fit by LBFGS (lr 0.01, 50
    iterations, as CaGCN's code does); element-wise work on [nodes, classes], no graph pass."""
    temperature = torch.ones(1, device=out.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=50)
    out = out.detach()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(out[mask] / temperature, y[mask])
        loss.backward()
        return loss

    optimizer.step(closure)
    return out / temperature.detach()


def stable_predictions(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor, pred: torch.Tensor, *,
                       samples: int, drop: float, rule: str, generator: torch.Generator,
                       work: GraphWork) -> torch.Tensor:
    """Mask of nodes whose prediction equals ``pred`` on all (or most) of ``samples`` edge-dropped graphs."""
    agree = torch.zeros_like(pred)
    for _ in range(samples):
        alone.pause_point()
        agree += logits(model, x, drop_edges(edge_index, drop, generator), work=work).argmax(-1) == pred
    return agree == samples if rule == "all" else agree * 2 > samples


def prune_cross_label_edges(edge_index: torch.Tensor, train_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``edge_index`` without the edges whose two ends are both training nodes with different labels."""
    src, dst = edge_index
    cross = train_mask[src] & train_mask[dst] & (labels[src] != labels[dst])
    return edge_index[:, ~cross]


def _calibrated(config: dict[str, Any], out: torch.Tensor, data: Data, edge_index: torch.Tensor, y: torch.Tensor,
                train: torch.Tensor, *, dropout: float, seed: int, work: GraphWork) -> torch.Tensor:
    if config["calibrate"] == "cagcn":
        return calibrate_cagcn(out, edge_index, y, train, epochs=config["calib_epochs"], lr=config["calib_lr"],
                               dropout=dropout, seed=seed, work=work)
    return calibrate_temperature(out, y, train) if config["calibrate"] == "temperature" else out


def _pseudolabel(config: dict[str, Any], model: torch.nn.Module, out: torch.Tensor, data: Data, state: dict[str, Any],
                 *, dropout: float, seed: int, generator: torch.Generator, work: GraphWork) -> None:
    """Add this stage's confident, (filtered) predictions to ``state``'s labels and prune its graph."""
    y, train, edge_index = state["y"], state["train"], state["edge_index"]
    out = _calibrated(config, out, data, edge_index, y, train, dropout=dropout, seed=seed, work=work)
    confidence, pred = out.softmax(-1).max(-1)
    new = ~(data.train_mask | data.val_mask) & ~train & (confidence > config["conf_threshold"])
    if config["spf"]:
        new &= stable_predictions(model, data.x, edge_index, pred, samples=config["spf_samples"],
                                  drop=config["spf_drop"], rule=config["spf_rule"], generator=generator, work=work)
    state["y"], state["train"] = torch.where(new, pred, y), train | new
    if config["pgp"]:
        state["edge_index"] = prune_cross_label_edges(edge_index, state["train"], state["y"])


def self_train(config: dict[str, Any], fit: Callable[..., tuple[torch.nn.Module, float]], data: Data, *, seed: int,
               member: dict[str, Any], dropout: float = 0.5) -> SelfTrained:
    """Run the stages on ``data`` (its ``train_mask`` holds the true labels); ``fit`` trains one GNN on
    given labels (the task's ``fit`` stage), ``member`` overrides its kind/width for ensemble members,
    ``dropout`` is the CaGCN scaler's. Returns the last stage (``stop_early``: the best one), with its log."""
    state = {"y": data.y.clone(), "train": data.train_mask.clone(), "edge_index": data.edge_index}
    labels_per_class = int(torch.bincount(data.y[data.train_mask]).min())
    generator, work, log, kept = torch.Generator().manual_seed(seed), GraphWork(), [], None
    start = time.perf_counter()
    for stage in range(config["stages"]):
        share, last = float(state["train"].float().mean()), stage == config["stages"] - 1
        with part(stage, config["stages"]):
            model, _ = fit(data, y=state["y"], train_mask=state["train"], edge_index=state["edge_index"],
                           seed=seed + stage, work=work, layers=stage_depth(config, share),
                           edge_drop=stage_edge_drop(config, share, labels_per_class), **member)
        out = logits(model, data.x, state["edge_index"], work=None if last else work)  # last: only for the log
        pred = out.argmax(-1)
        log.append({"labels": int(state["train"].sum()), "val_accuracy": accuracy(pred, data.y, data.val_mask),
                    "test_accuracy": accuracy(pred, data.y, data.test_mask), "time_s": time.perf_counter() - start})
        if config["stop_early"] and kept is not None and log[-1]["val_accuracy"] <= kept[0]:
            break
        kept = (log[-1]["val_accuracy"], model, dict(state))
        if last:
            break
        _pseudolabel(config, model, out, data, state, dropout=dropout, seed=seed + stage, generator=generator, work=work)
    _, model, final = kept
    return SelfTrained(model, final["edge_index"], work, final["train"] & ~data.train_mask, final["y"], log)


class Fastrain(Technique):
    """FASTRAIN-GNN on the graph tasks' ``train`` stage (data, seed, member overrides -> ``SelfTrained``).
    It buys accuracy (and, against plain self-training, time): against the one supervised GNN that is
    the task's baseline it costs more, so it promises no saving."""

    name, family, stages = "fastrain", "graph", ("train",)
    description = "FASTRAIN-GNN: self-training with dynamic depth/edge drop, calibration, filtering, graph pruning"
    knobs = KNOBS

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if self.is_off(own):
            return

        def train(data: Data, *, seed: int, member: dict[str, Any]) -> SelfTrained:
            dropout = pipeline.task_config["dropout"]
            if pipeline.dry:  # before training: the first stage's model, the graph as it starts
                if own["stages"] > 1:
                    pipeline.unknown.update(("size", "inference") if own["dynamic_depth"] else
                                            ("inference",) if own["pgp"] else ())
                return self_train({**own, "stages": 1}, pipeline.fit, data, seed=seed, member=member, dropout=dropout)
            return self_train(own, pipeline.fit, data, seed=seed, member=member, dropout=dropout)

        pipeline.wrap("train", lambda _plain: train)
