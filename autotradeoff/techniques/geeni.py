"""GEENI (techniques.md section 5): GNN ensembles made accurate and cheap by isolating error nodes.

``n_members`` diverse GNNs are trained (``diversity``: seeds only; GCN/SAGE/GAT in turn, each as wide as
the task's model in total (a GAT member splits that width over its heads); widths x1, x0.5, x2, ...; each
on its own graph without ``subgraph_drop`` of the edges; architectures and subgraphs; or all of these).
A node's chance of being misclassified is scored from the members' outputs (``error_score``:
disagreement with the ensemble, entropy of the mean, 1 - max probability); the top ``isolate_frac``
of the unlabeled nodes lose their outgoing messages (``drop``: the edges are removed; ``down-weight``:
GCN members weight them by ``isolation_alpha``, members without edge weights drop them). The thinned
graph is pruned further (``edge_prune``: the edges of least GCN weight 1/sqrt(deg_i deg_j)), hidden
channels of GCN/SAGE members are removed by weight magnitude (``weight_sparsity``), and the members'
probabilities are averaged or voted (``combine``). With ``finetune_epochs`` each member is then fine-tuned
on the thinned graph, from its pruned weights, on its own training labels (and pseudolabels), keeping the
best validation checkpoint: isolation and pruning change what a member sees, and fine-tuning lets it adapt
(the paper's "isolation makes members tolerant to approximation"). Scoring and thinning happen once per
graph (transductive): the deployed ensemble runs on the thinned graph, which really has fewer edges, so a
node's sampled computation graph (per-node inference) is smaller too.
With ``n_members: 1`` and nothing isolated or pruned it is the single GNN, the task's baseline.
``Geeni`` plugs this into the graph tasks' ``ensemble`` stage (split, seed -> ``Deployed``), training
each member through the task's ``train`` stage and building narrower members through its ``model`` stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from autotradeoff.knobs import Knob
from autotradeoff.models.gnn import Deployed, Ensemble, GraphWork, SelfTrained, drop_edges
from autotradeoff.progress import part
from autotradeoff.techniques.base import Pipeline, Technique

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["Geeni", "member_settings", "error_scores", "isolate_error_nodes", "prune_edges", "prune_channels"]

KNOBS = {
    "n_members": Knob("n_members", "int", 1, 1, 16, help="GNNs in the ensemble"),
    "diversity": Knob("diversity", "categorical", "seeds", choices=("seeds", "arch", "width", "subgraph", "arch+subgraph", "all"),
                      help="what differs between members besides the seed"),
    "subgraph_drop": Knob("subgraph_drop", "float", 0.2, 0.0, 0.9, help="edges each member's own training graph lacks"),
    "error_score": Knob("error_score", "categorical", "entropy", choices=("disagreement", "entropy", "maxprob"),
                        help="how a node's chance of being misclassified is scored", stage="approximate"),
    "isolate_frac": Knob("isolate_frac", "float", 0.0, 0.0, 0.9, help="share of unlabeled nodes isolated", stage="approximate"),
    "isolation_mode": Knob("isolation_mode", "categorical", "drop", choices=("drop", "down-weight"),
                           help="remove or down-weight the isolated nodes' outgoing messages", stage="approximate"),
    "isolation_alpha": Knob("isolation_alpha", "float", 0.1, 0.0, 1.0, help="weight of down-weighted messages", stage="approximate"),
    "edge_prune": Knob("edge_prune", "float", 0.0, 0.0, 0.95, help="share of the remaining edges pruned", stage="approximate"),
    "weight_sparsity": Knob("weight_sparsity", "float", 0.0, 0.0, 0.95, help="share of hidden channels removed", stage="approximate"),
    "finetune_epochs": Knob("finetune_epochs", "int", 0, 0, 2000, help="epochs each member is fine-tuned on the thinned graph",
                            stage="approximate"),
    "combine": Knob("combine", "categorical", "mean", choices=("mean", "vote"), help="average probabilities or vote",
                    stage="inference"),
}
_KINDS = ("gcn", "sage", "gat")
_WIDTHS = (1.0, 0.5, 2.0, 0.75, 1.5)


def member_settings(own: dict[str, Any], task_config: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Member ``index``'s kind, width (``hidden``: per head for GAT, so every member is as wide in total as
    the task's model, times its width factor) and whether it trains on its own edge-dropped graph (member 0 is
    the task's own model)."""
    diversity, base, heads = own["diversity"], task_config["model"], task_config["heads"]
    kind = _KINDS[(_KINDS.index(base) + index) % len(_KINDS)] if diversity in ("arch", "arch+subgraph", "all") else base
    width = _WIDTHS[index % len(_WIDTHS)] if diversity in ("width", "all") else 1.0
    total = task_config["hidden"] * (heads if base == "gat" else 1) * width
    return {"kind": kind, "hidden": max(1, round(total / heads if kind == "gat" else total)),
            "subgraph": diversity in ("subgraph", "arch+subgraph", "all") and index > 0}


def error_scores(probs: torch.Tensor, how: str) -> torch.Tensor:
    """Per node, higher = more likely wrong. ``probs``: [members, nodes, classes]."""
    mean = probs.mean(0)
    if how == "entropy":
        return -(mean * mean.clamp_min(1e-12).log()).sum(-1)
    if how == "maxprob":
        return 1.0 - mean.max(-1).values
    return (probs.argmax(-1) != mean.argmax(-1)).float().mean(0) + 1e-3 * (1.0 - mean.max(-1).values)  # ties: confidence


def isolate_error_nodes(edge_index: torch.Tensor, nodes: torch.Tensor, *, mode: str = "drop", alpha: float = 0.1,
                        edge_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Remove (``drop``) or weight by ``alpha`` (``down-weight``) the edges whose source is in ``nodes``."""
    outgoing = torch.isin(edge_index[0], nodes)
    if mode == "drop":
        return edge_index[:, ~outgoing], None if edge_weight is None else edge_weight[~outgoing]
    weight = torch.ones(edge_index.size(1), device=edge_index.device) if edge_weight is None else edge_weight.clone()
    weight[outgoing] *= alpha
    return edge_index, weight


def prune_edges(edge_index: torch.Tensor, share: float, num_nodes: int,
                edge_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Remove the ``share`` of edges with the smallest GCN normalisation 1/sqrt(deg_src deg_dst)."""
    if share <= 0:
        return edge_index, edge_weight
    degree = torch.bincount(edge_index[1], minlength=num_nodes).float() + 1  # + the self-loop
    norm = (degree[edge_index[0]] * degree[edge_index[1]]).rsqrt()
    keep = norm.argsort(descending=True)[: edge_index.size(1) - int(share * edge_index.size(1))].sort().values
    return edge_index[:, keep], None if edge_weight is None else edge_weight[keep]


@torch.no_grad()
def prune_channels(model: nn.Module, sparsity: float, kind: str, build: Callable[..., nn.Module]) -> nn.Module:
    """A new, narrower GCN/SAGE: each hidden layer keeps the channels with the largest in x out weight norm.
    GAT members are returned unchanged (their channels are tied to heads)."""
    hidden = model.hidden_channels
    kept = max(1, math.ceil(hidden * (1 - sparsity)))
    if kind == "gat" or sparsity <= 0 or kept == hidden or model.num_layers < 2:
        return model
    state = model.state_dict()
    keep = []
    for i in range(model.num_layers - 1):
        out_rows = [v for k, v in state.items() if k.startswith(f"convs.{i}.") and v.dim() == 2]
        in_cols = [v for k, v in state.items() if k.startswith(f"convs.{i + 1}.") and v.dim() == 2]
        score = sum(w.norm(dim=1) for w in out_rows) * sum(w.norm(dim=0) for w in in_cols)
        keep.append(score.argsort(descending=True)[:kept].sort().values)
    smaller = build(layers=model.num_layers, kind=kind, hidden=kept)
    new_state = {}
    for key, value in state.items():
        layer = int(key.split(".")[1])
        if layer < len(keep):  # this layer's outputs shrink
            value = value[keep[layer]]
        if layer > 0 and value.dim() == 2:  # and the next one's inputs
            value = value[:, keep[layer - 1]]
        new_state[key] = value.clone()
    smaller.load_state_dict(new_state)
    return smaller.to(next(model.parameters()).device).eval()


def train_members(own: dict[str, Any], pipeline: Pipeline, split: Data, seed: int) -> tuple[list[SelfTrained], list[str]]:
    """Each member trained by the task's ``train`` stage, on its own edge-dropped graph where diversity
    says so; returns the trained members and their kinds."""
    trained, kinds = [], []
    for index in range(own["n_members"]):
        member = member_settings(own, pipeline.task_config, index)
        data = split
        if member.pop("subgraph"):
            data = split.clone()
            data.edge_index = drop_edges(split.edge_index, own["subgraph_drop"], torch.Generator().manual_seed(seed + index))
        with part(index, own["n_members"]):
            trained.append(pipeline.train(data, seed=seed + 1000 * index, member=member))
        kinds.append(member["kind"])
    return trained, kinds


def isolate(own: dict[str, Any], ensemble: Ensemble, split: Data, edge_index: torch.Tensor,
            work: GraphWork) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(edge_index, edge_weight) after isolating the unlabeled nodes the members most likely get wrong."""
    unlabeled = (~split.train_mask).nonzero().view(-1)
    scores = error_scores(ensemble.member_probs(split.x, edge_index), own["error_score"])[unlabeled]
    for member in ensemble.members:
        work.count(member, split.x, edge_index)
    chosen = unlabeled[scores.argsort(descending=True)[: int(own["isolate_frac"] * len(unlabeled))]]
    return isolate_error_nodes(edge_index, chosen, mode=own["isolation_mode"], alpha=own["isolation_alpha"])


def finetune(own: dict[str, Any], pipeline: Pipeline, split: Data, deployed: Deployed, trained: list[SelfTrained],
             seed: int) -> Ensemble:
    """Each member fine-tuned for ``finetune_epochs`` on the deployed (thinned) graph: GCN members with its
    edge weights, the others without the down-weighted edges; on its own labels and pseudolabels."""
    ensemble, members = deployed.ensemble, []
    for index, (model, kind, member) in enumerate(zip(ensemble.members, ensemble.kinds, trained)):
        weighted = kind == "gcn" and deployed.edge_weight is not None
        graph = deployed.edge_index if weighted or deployed.unweighted is None else deployed.unweighted
        with part(index, len(trained)):
            tuned, _ = pipeline.fit(split, y=member.pseudo_labels, train_mask=split.train_mask | member.pseudo,
                                    edge_index=graph, seed=seed + 1000 * index + 1, work=deployed.work, model=model,
                                    epochs=own["finetune_epochs"], edge_weight=deployed.edge_weight if weighted else None,
                                    layers=None, edge_drop=None)
        members.append(tuned)
    return Ensemble(members, ensemble.kinds, ensemble.combine)


def ensemble_of(own: dict[str, Any], pipeline: Pipeline, split: Data, seed: int) -> Deployed:
    """Train the members, isolate error nodes, prune edges and channels, fine-tune: the deployed ensemble."""
    tuning = own["finetune_epochs"] > 0
    with part(0, 2 if tuning else 1):  # fine-tuning, when on, is the second half of the progress reported
        trained, kinds = train_members(own, pipeline, split, seed)
    work = GraphWork()
    for member in trained:
        work.add(member.work)
    first = trained[0]
    edge_index, edge_weight = first.edge_index, None  # member 0's graph (after its PGP pruning)
    ensemble = Ensemble([m.model for m in trained], kinds, own["combine"])
    if own["isolate_frac"] > 0:
        if pipeline.dry:  # which nodes are isolated depends on the trained members
            pipeline.unknown.add("inference")
        else:
            edge_index, edge_weight = isolate(own, ensemble, split, edge_index, work)
    edge_index, edge_weight = prune_edges(edge_index, own["edge_prune"], split.num_nodes, edge_weight)
    unweighted = None if edge_weight is None else edge_index[:, edge_weight >= 1]
    if own["weight_sparsity"] > 0:
        ensemble = Ensemble([prune_channels(m, own["weight_sparsity"], k, pipeline.model) for m, k in zip(ensemble.members, kinds)],
                            kinds, own["combine"])
    deployed = Deployed(ensemble.eval(), edge_index, edge_weight, unweighted, work, first.pseudo, first.pseudo_labels,
                        first.log)
    if tuning:
        with part(1, 2):
            deployed.ensemble = finetune(own, pipeline, split, deployed, trained, seed).eval()
    return deployed


class Geeni(Technique):
    """GEENI on the graph tasks' ``ensemble`` stage (split, seed -> ``Deployed``)."""

    name, family, stages = "geeni", "graph", ("ensemble",)
    description = "GEENI: diverse GNN ensembles, error-node isolation, edge and channel pruning"
    knobs = KNOBS
    saves = ("flops", "params")
    aggressive = {"edge_prune": 0.8, "weight_sparsity": 0.75}

    def is_off(self, own: dict[str, Any]) -> bool:
        """One member, nothing isolated, pruned or fine-tuned: the task's single GNN, whatever the unused knobs say."""
        return own["n_members"] == 1 and not (own["isolate_frac"] or own["edge_prune"] or own["weight_sparsity"]
                                              or own["finetune_epochs"])

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if not self.is_off(own):
            pipeline.wrap("ensemble", lambda _plain: lambda split, *, seed: ensemble_of(own, pipeline, split, seed))
