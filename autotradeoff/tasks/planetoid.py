"""Planetoid node classification (Cora, CiteSeer, PubMed) with FASTRAIN-GNN self-training and GEENI ensembles.

Data: ``planetoid/<Name>/raw/ind.<name>.*`` under ``$AUTOTRADEOFF_DATA`` or the cache (PyG downloads
it when online). Splits: the public one (``labels_per_class: 0``) or, drawn from each seed, that many
training nodes per class from the nodes outside the public validation and test sets. Accuracy is on
the public test nodes (unlabeled during training), as mean and std over ``seeds`` splits/seeds;
checkpoints are selected on validation accuracy, never on test. The pipeline of a trial:
split -> train every ensemble member by (self-)training -> isolate and prune (GEENI) -> evaluate ->
measure full-graph inference of the deployed ensemble on its thinned graph.
"""

from __future__ import annotations

import pickle
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size
from autotradeoff.data import cache_dir, cache_lock, find_files
from autotradeoff.errors import TrialFailed
from autotradeoff.space import Knob
from autotradeoff.stopping import part
from autotradeoff.tasks.base import Task, run_fidelity
from autotradeoff.tasks.gnn import GraphWork, accuracy, build_model, drop_edges
from autotradeoff.techniques import fastrain, geeni

__all__ = ["PlanetoidTask", "Deployed", "cora", "citeseer", "pubmed", "load_planetoid", "make_split", "build"]

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


def make_split(data, labels_per_class: int, seed: int):
    """``data`` itself for the public split (0), else a copy whose ``train_mask`` holds ``labels_per_class``
    nodes per class drawn with ``seed`` from outside the public validation and test nodes."""
    if not labels_per_class:
        return data
    generator = torch.Generator().manual_seed(seed)
    pool = ~(data.val_mask | data.test_mask)
    train = torch.zeros_like(pool)
    for label in range(int(data.y.max()) + 1):
        nodes = (pool & (data.y == label)).nonzero().view(-1)
        if len(nodes) < labels_per_class:
            raise TrialFailed(f"labels_per_class={labels_per_class}: class {label} has only {len(nodes)} nodes to draw from")
        train[nodes[torch.randperm(len(nodes), generator=generator)[:labels_per_class].to(nodes.device)]] = True
    split = data.clone()
    split.train_mask = train
    return split


@dataclass
class Deployed:
    """The ensemble as deployed: members and the (thinned) graph they run on."""

    ensemble: geeni.Ensemble
    edge_index: torch.Tensor
    edge_weight: torch.Tensor | None
    unweighted: torch.Tensor | None  # the graph for members without edge weights (down-weighted edges dropped)
    work: GraphWork  # training and preparation
    pseudo: torch.Tensor  # nodes member 0 pseudolabeled
    pseudo_labels: torch.Tensor

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x, self.edge_index, self.edge_weight, self.unweighted)

    def edges(self) -> int:
        """Messages one inference passes: each member's graph edges x its layers."""
        return sum(m.num_layers * (self.edge_index if kind == "gcn" or self.unweighted is None else self.unweighted).size(1)
                   for m, kind in zip(self.ensemble.members, self.ensemble.kinds))


def build(config: dict[str, Any], split, *, seed: int) -> Deployed:
    """Train the members (FASTRAIN stages; one stage = supervised), then GEENI's isolation and pruning."""
    members, kinds, work, first = [], [], GraphWork(), None
    for index in range(config["n_members"]):
        member = geeni.member_settings(config, index)
        data = split
        if member.pop("subgraph"):
            data = split.clone()
            data.edge_index = drop_edges(split.edge_index, config["subgraph_drop"], torch.Generator().manual_seed(seed + index))
        with part(index, config["n_members"]):
            trained = fastrain.self_train(config, data, seed=seed + 1000 * index, **member)
        first = first or trained
        members.append(trained.model)
        kinds.append(member["kind"])
        work.add(trained.work)
    edge_index, edge_weight = first.edge_index, None  # member 0's graph (after its PGP pruning)
    ensemble = geeni.Ensemble(members, kinds, config["combine"])
    if config["isolate_frac"] > 0:
        unlabeled = (~split.train_mask).nonzero().view(-1)
        scores = geeni.error_scores(ensemble.member_probs(split.x, edge_index), config["error_score"])[unlabeled]
        work.edges += sum(m.num_layers for m in members) * edge_index.size(1)
        chosen = unlabeled[scores.argsort(descending=True)[: int(config["isolate_frac"] * len(unlabeled))]]
        edge_index, edge_weight = geeni.isolate_error_nodes(edge_index, chosen, mode=config["isolation_mode"],
                                                            alpha=config["isolation_alpha"])
    edge_index, edge_weight = geeni.prune_edges(edge_index, config["edge_prune"], split.num_nodes, edge_weight)
    unweighted = None if edge_weight is None else edge_index[:, edge_weight >= 1]
    if config["weight_sparsity"] > 0:
        ensemble = geeni.Ensemble([geeni.prune_channels(m, config["weight_sparsity"], config, k) for m, k in zip(members, kinds)],
                                  kinds, config["combine"])
    return Deployed(ensemble.eval(), edge_index, edge_weight, unweighted, work, first.pseudo, first.pseudo_labels)


class PlanetoidTask(Task):
    metrics = {
        "accuracy": "max", "accuracy_std": "min", "val_accuracy": "max",
        "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min", "params": "min", "model_bytes": "min",
        "edges": "min", "train_time_s": "min", "train_edges": "min", "train_flops": "min", "train_epochs": "min",
        "pseudo_labels": "max", "pseudo_accuracy": "max",
    }
    default_objectives = ("accuracy", "latency_ms")
    checkpoints = True  # every training epoch reports validation accuracy
    knobs = {
        "model": Knob("model", "categorical", "gcn", choices=("gcn", "gat", "sage"), help="GNN layer type"),
        "layers": Knob("layers", "int", 2, 1, 6, help="message-passing layers"),
        "hidden": Knob("hidden", "int", 16, 2, 1024, help="hidden width (per head for GAT)"),
        "heads": Knob("heads", "int", 8, 1, 16, help="attention heads (GAT only)"),
        "dropout": Knob("dropout", "float", 0.5, 0.0, 0.95, help="feature dropout"),
        "lr": Knob("lr", "float", 0.01, 1e-5, 1.0, help="Adam learning rate"),
        "weight_decay": Knob("weight_decay", "float", 5e-4, 0.0, 0.1, help="Adam L2 penalty"),
        "epochs": Knob("epochs", "int", 200, 1, 5000, help="full-batch training epochs (per stage)"),
        "patience": Knob("patience", "int", 0, 0, 5000, help="stop after this many epochs without a better validation accuracy (0: never)"),
        "edge_drop": Knob("edge_drop", "float", 0.0, 0.0, 0.9, help="share of edges dropped each epoch"),
        **fastrain.KNOBS,
        **geeni.KNOBS,
    }
    fidelity = {
        "labels_per_class": Knob("labels_per_class", "int", 0, 0, 10_000, help="training labels per class (0: the public split)"),
        "seeds": Knob("seeds", "int", 1, 1, 50, help="splits/seeds per trial (accuracy mean and std)"),
        **run_fidelity(gpu_share=0.25, warmup=3, repeats=20),
    }

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.name = dataset.lower()
        self.description = f"Planetoid {dataset} node classification: GCN/GAT/SAGE, FASTRAIN-GNN, GEENI"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        find_raw(self.dataset)

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Size of the deployed ensemble from its untrained members (channel pruning keeps the same count
        of channels whatever the weights), and its inference costs when the deployed graph does not
        depend on training (no error-node isolation, no pseudolabel-guided pruning). A member's depth
        depends on training only under dynamic depth with several stages: then nothing is known."""
        if config["dynamic_depth"] and config["stages"] > 1:
            return {}
        data = load_planetoid(self.dataset).to(device)
        split = make_split(data, fidelity["labels_per_class"], fidelity["seed"])
        depth = fastrain.stage_depth(config, float(split.train_mask.float().mean()))
        members, kinds = [], []
        torch.manual_seed(fidelity["seed"])
        for index in range(config["n_members"]):
            member = geeni.member_settings(config, index)
            model = build_model(config, data.num_features, int(data.y.max()) + 1, layers=depth, kind=member["kind"],
                                hidden=member["hidden"]).to(device)
            members.append(geeni.prune_channels(model, config["weight_sparsity"], config, member["kind"]))
            kinds.append(member["kind"])
        ensemble = geeni.Ensemble(members, kinds, config["combine"]).eval()
        known = {k: float(v) for k, v in model_size(ensemble).items()}
        if config["isolate_frac"] == 0 and not (config["pgp"] and config["stages"] > 1):
            edge_index, _ = geeni.prune_edges(split.edge_index, config["edge_prune"], split.num_nodes)
            none = torch.zeros(0, dtype=torch.bool)
            known.update(self.costs(Deployed(ensemble, edge_index, None, None, GraphWork(), none, none), split, fidelity))
        return known

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        data = load_planetoid(self.dataset).to(device)
        runs = []
        for offset in range(fidelity["seeds"]):
            seed = fidelity["seed"] + offset
            split = make_split(data, fidelity["labels_per_class"], seed)
            start = time.perf_counter()
            with part(offset, fidelity["seeds"]):
                deployed = build(config, split, seed=seed)
            elapsed = time.perf_counter() - start
            pred = deployed.scores(split.x).argmax(-1)
            pseudo = deployed.pseudo
            runs.append({"accuracy": accuracy(pred, split.y, split.test_mask),
                         "val_accuracy": accuracy(pred, split.y, split.val_mask), "train_time_s": elapsed,
                         "train_edges": deployed.work.edges, "train_flops": deployed.work.flops,
                         "train_epochs": deployed.work.epochs, "pseudo_labels": int(pseudo.sum()),
                         "pseudo_accuracy": accuracy(deployed.pseudo_labels, split.y, pseudo) if pseudo.any() else 0.0})
        mean = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
        mean["accuracy_std"] = statistics.stdev(r["accuracy"] for r in runs) if len(runs) > 1 else 0.0
        return {**{k: float(v) for k, v in mean.items()}, **self.costs(deployed, split, fidelity)}

    @staticmethod
    def costs(deployed: Deployed, split, fidelity: dict[str, Any]) -> dict[str, float]:
        """Full-graph inference of the deployed ensemble: latency, FLOPs, messages, size."""
        forward = lambda: deployed.scores(split.x)  # noqa: E731
        latency = measure_latency(forward, warmup=fidelity["latency_warmup"], repeats=fidelity["latency_repeats"],
                                  threads=fidelity["threads"], model=deployed.ensemble)
        return {**latency.as_metrics(), "flops": float(count_flops(forward)), "edges": float(deployed.edges()),
                **{k: float(v) for k, v in model_size(deployed.ensemble).items()}}


def cora() -> PlanetoidTask:
    return PlanetoidTask("Cora")


def citeseer() -> PlanetoidTask:
    return PlanetoidTask("CiteSeer")


def pubmed() -> PlanetoidTask:
    return PlanetoidTask("PubMed")
