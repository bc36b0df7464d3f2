"""Planetoid node classification (Cora, CiteSeer, PubMed): GCN/GAT/SAGE, with FASTRAIN-GNN self-training
and GEENI ensembles plugged into its pipeline.

Three disjoint node sets: training (the public split's, or drawn per seed), validation (the public
validation nodes: checkpoints, early stopping and the search select on them) and test (the public test
nodes, unlabeled during training: only reported). Accuracies are means and stds over ``seeds``
splits/seeds.

The graph family's pipeline (what a graph technique may wrap), per split:
- ``graph(split, *, seed) -> split``: the data the members see (plain: unchanged);
- ``model(*, layers, kind, hidden) -> GNN``: an untrained GNN of the task's knobs (None: the task's own);
- ``fit(data, *, y, train_mask, edge_index, seed, work, layers, kind, hidden, edge_drop[, model, epochs,
  edge_weight]) -> (GNN, best val)``: train one GNN on given labels, or fine-tune a copy of ``model`` (before
  training, ``dry``: the untrained GNN, or ``model`` as given);
- ``train(data, *, seed, member) -> SelfTrained``: one trained member (plain: one ``fit``; FASTRAIN: stages);
- ``ensemble(split, *, seed) -> Deployed``: the deployed model and graph (plain: one member; GEENI: many).
Then the deployed ensemble is evaluated and its inference measured twice: full-graph (every node at once)
and per-node, on the sampled computation graphs of a batch of ``sampled_batch`` validation nodes with up to
``sampled_fanout`` neighbours per node and hop (``models.sampling``, what PyG's ``NeighborLoader`` does).
A self-training ``train`` stage's log (``SelfTrained.log``) becomes per-stage metrics: ``stage<k>_labels``,
``stage<k>_val_accuracy``, ``test_stage<k>_accuracy``, ``stage<k>_time_s`` (self-training seconds so far).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from autotradeoff.cost import Anchor, count_flops, measure_latency, model_size
from autotradeoff.knobs import Knob
from autotradeoff.models.gnn import Deployed, Ensemble, GraphWork, SelfTrained, accuracy, build_model, train_gnn
from autotradeoff.progress import part
from autotradeoff.tasks.base import DEGENERACY_METRICS, Task, degeneracy, run_fidelity
from autotradeoff.tasks.planetoid_data import find_raw, load_planetoid, make_split
from autotradeoff.techniques import Pipeline

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["PlanetoidTask", "cora", "citeseer", "pubmed"]


def _fit(config: dict[str, Any], data: Data, *, dry: bool, **kwargs: Any) -> tuple[torch.nn.Module, float]:
    """The ``fit`` stage: ``train_gnn``, or before training the untrained GNN it would start from."""
    if not dry:
        return train_gnn(config, data, **kwargs)
    if kwargs.get("model") is not None:
        return kwargs["model"], 0.0
    torch.manual_seed(kwargs["seed"])
    model = build_model(config, data.num_features, int(data.y.max()) + 1, layers=kwargs.get("layers"),
                        kind=kwargs.get("kind"), hidden=kwargs.get("hidden"))
    return model.to(data.x.device).eval(), 0.0


def _train(pipeline: Pipeline, data: Data, *, seed: int, member: dict[str, Any]) -> SelfTrained:
    """The ``train`` stage: one supervised GNN on the true labels."""
    work = GraphWork()
    model, _ = pipeline.fit(data, y=data.y.clone(), train_mask=data.train_mask.clone(), edge_index=data.edge_index,
                            seed=seed, work=work, layers=None, edge_drop=None, **member)
    return SelfTrained(model, data.edge_index, work, torch.zeros_like(data.train_mask), data.y.clone())


def _ensemble(pipeline: Pipeline, split: Data, *, seed: int) -> Deployed:
    """The ``ensemble`` stage: the task's own GNN alone on the split's graph."""
    kind = pipeline.task_config["model"]
    with part(0, 1):
        trained = pipeline.train(split, seed=seed, member={"kind": kind, "hidden": pipeline.task_config["hidden"]})
    return Deployed(Ensemble([trained.model], [kind]).eval(), trained.edge_index, None, None, trained.work,
                    trained.pseudo, trained.pseudo_labels, trained.log)


class PlanetoidTask(Task):
    family = "graph"
    technique_names = ("fastrain", "geeni")
    metrics = {
        "val_accuracy": "max", "val_accuracy_std": "min", "test_accuracy": "max", "test_accuracy_std": "min",
        "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min", "params": "min", "model_bytes": "min",
        "edges": "min", "train_time_s": "min", "train_edges": "min", "train_flops": "min", "train_epochs": "min",
        "pseudo_labels": "max", "test_pseudo_accuracy": "max", "train_stages": "min",
        "sampled_latency_ms": "min", "sampled_latency_iqr_ms": "min", "sampled_flops": "min", "sampled_nodes": "min",
        "val_sampled_accuracy": "max", "test_sampled_accuracy": "max", **DEGENERACY_METRICS,
    }
    metric_prefixes = ("stage", "test_stage")  # one per self-training stage: stage2_val_accuracy, test_stage2_accuracy
    default_objectives = ("val_accuracy", "latency_ms")
    checkpoints = True  # every training epoch reports validation accuracy
    own_knobs = {
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
    }
    fidelity = {
        "labels_per_class": Knob("labels_per_class", "int", 0, 0, 10_000, help="training labels per class (0: the public split)"),
        "seeds": Knob("seeds", "int", 1, 1, 50, help="splits/seeds per trial (accuracy mean and std)"),
        "sampled_batch": Knob("sampled_batch", "int", 32, 1, 100_000, help="target nodes per sampled (per-node) inference call",
                              stage="inference"),
        "sampled_fanout": Knob("sampled_fanout", "int", 10, 0, 100_000, help="neighbours sampled per node and hop (0: all)",
                               stage="inference"),
        **run_fidelity(gpu_share=0.25, warmup=3, repeats=20),
    }
    tiny_fidelity = {"latency_warmup": 0, "latency_repeats": 1}
    learning_settings = ("epochs", "labels_per_class")
    tiny_config = {"epochs": 5}

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.name = dataset.lower()
        self.description = f"Planetoid {dataset} node classification: GCN/GAT/SAGE, FASTRAIN-GNN, GEENI"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        find_raw(self.dataset)

    def stages(self, config: dict[str, Any], data: Data, *, dry: bool = False) -> Pipeline:
        """This trial's pipeline with its techniques installed."""
        own = {k: config[k] for k in self.own_knobs}
        model = functools.partial(build_model, own, data.num_features, int(data.y.max()) + 1)
        return self.pipeline(config, lambda pipeline: {
            "graph": lambda split, *, seed: split,
            "model": lambda **overrides: model(**overrides).to(data.x.device),
            "fit": functools.partial(_fit, own, dry=dry),
            "train": functools.partial(_train, pipeline),
            "ensemble": functools.partial(_ensemble, pipeline)}, dry=dry)

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Size of the deployed ensemble from its untrained members (channel pruning keeps the same count
        of channels whatever the weights), and its inference costs when the deployed graph does not
        depend on training. The pipeline runs ``dry``; techniques say what training would change."""
        data = load_planetoid(self.dataset).to(device)
        pipeline = self.stages(config, data, dry=True)
        split = pipeline.graph(make_split(data, fidelity["labels_per_class"], fidelity["seed"]), seed=fidelity["seed"])
        deployed = pipeline.ensemble(split, seed=fidelity["seed"])
        if "size" in pipeline.unknown:
            return {}
        known = {k: float(v) for k, v in model_size(deployed.ensemble).items()}
        if "inference" not in pipeline.unknown:
            known.update(self.costs(deployed, split, fidelity))
        return known

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        data = load_planetoid(self.dataset).to(device)
        pipeline = self.stages(config, data)
        runs = []
        for offset in range(fidelity["seeds"]):
            seed = fidelity["seed"] + offset
            split = pipeline.graph(make_split(data, fidelity["labels_per_class"], seed), seed=seed)
            start = time.perf_counter()
            with part(offset, fidelity["seeds"]):
                deployed = pipeline.ensemble(split, seed=seed)
            elapsed = time.perf_counter() - start
            runs.append({**self.scores(deployed, split, elapsed), **self.sampled_scores(deployed, split, fidelity)})
        names = dict.fromkeys(k for r in runs for k in r)  # a stage some splits stopped before: mean of the others
        mean = {k: statistics.fmean(r[k] for r in runs if k in r) for k in names}
        for part_name in ("val", "test"):
            values = [r[f"{part_name}_accuracy"] for r in runs]
            mean[f"{part_name}_accuracy_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        return {**{k: float(v) for k, v in mean.items()}, **self.costs(deployed, split, fidelity)}

    @staticmethod
    def scores(deployed: Deployed, split: Data, elapsed: float) -> dict[str, float]:
        """Accuracy on validation and test nodes, pseudolabels (their accuracy needs the labels of unlabeled
        nodes, test ones among them: a test metric), and the training work of one split."""
        pred, pseudo = deployed.scores(split.x).argmax(-1), deployed.pseudo
        share = lambda p, y: sum(a == b for a, b in zip(p, y)) / len(y)  # noqa: E731
        return {**degeneracy(pred[split.val_mask].tolist(), split.y[split.val_mask].tolist(), share),
                "val_accuracy": accuracy(pred, split.y, split.val_mask),
                "test_accuracy": accuracy(pred, split.y, split.test_mask),
                "train_time_s": elapsed, "train_edges": deployed.work.edges, "train_flops": deployed.work.flops,
                "train_epochs": deployed.work.epochs, "pseudo_labels": int(pseudo.sum()),
                "test_pseudo_accuracy": accuracy(deployed.pseudo_labels, split.y, pseudo) if pseudo.any() else 0.0,
                "train_stages": max(1, len(deployed.log)), **stage_metrics(deployed.log)}

    @staticmethod
    def sampled_scores(deployed: Deployed, split: Data, fidelity: dict[str, Any]) -> dict[str, float]:
        """Accuracy of per-node inference on validation and test nodes, in batches as deployed."""
        batch, fanout = fidelity["sampled_batch"], fidelity["sampled_fanout"]
        return {f"{name}_sampled_accuracy": sampled_accuracy(deployed, split, mask, batch=batch, fanout=fanout)
                for name, mask in (("val", split.val_mask), ("test", split.test_mask))}

    def anchor(self, split: Data) -> Deployed:
        """The latency anchor (``cost.latency.Anchor``): the task's baseline GNN (its own knobs' defaults, untrained:
        timing does not read the weights, so it is seeded and never trained) alone on the whole graph."""
        own = {name: knob.default for name, knob in self.own_knobs.items()}
        torch.manual_seed(0)
        model = build_model(own, split.num_features, int(split.y.max()) + 1).to(split.x.device).eval()
        return Deployed(Ensemble([model], [own["model"]]).eval(), split.edge_index, None, None, GraphWork(),
                        torch.zeros_like(split.train_mask), split.y.clone())

    def costs(self, deployed: Deployed, split: Data, fidelity: dict[str, Any]) -> dict[str, float]:
        """Inference of the deployed ensemble, full-graph and per-node (sampled): latency, FLOPs, messages,
        computation-graph nodes, size. A sampled call draws its neighbours afresh with the same seed, so
        every repeat does the same work; sampling is part of the timed call. Each latency is timed beside the
        baseline's same call (``anchor``)."""
        timing = {"warmup": fidelity["latency_warmup"], "repeats": fidelity["latency_repeats"],
                  "threads": fidelity["threads"], "model": deployed.ensemble}
        targets, fanout = sampled_targets(split, fidelity["sampled_batch"]), fidelity["sampled_fanout"]

        def calls(of: Deployed) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
            return (lambda: of.scores(split.x),
                    lambda: of.sampled_scores(split.x, targets, fanout=fanout, generator=torch.Generator().manual_seed(0)))

        (forward, sampled), (anchor_forward, anchor_sampled) = calls(deployed), calls(self.anchor(split))
        key = f"{self.name}-{split.num_nodes}n{split.edge_index.shape[1]}e-{split.x.device}"
        graph = deployed.computation_graph(targets, num_nodes=split.num_nodes, fanout=fanout,
                                           generator=torch.Generator().manual_seed(0))
        return {**measure_latency(forward, anchor=Anchor(key, anchor_forward), **timing).as_metrics(),
                "flops": float(count_flops(forward)), "edges": float(deployed.edges()),
                **measure_latency(sampled, anchor=Anchor(f"{key}-sampled{len(targets)}x{fanout}", anchor_sampled),
                                  **timing).as_metrics("sampled_latency"),
                "sampled_flops": float(count_flops(sampled)), "sampled_nodes": float(len(graph.nodes)),
                **{k: float(v) for k, v in model_size(deployed.ensemble).items()}}


def stage_metrics(log: list[dict[str, float]]) -> dict[str, float]:
    """One self-training run's stage log as metrics (``stage2_val_accuracy``, ``test_stage2_accuracy``, ...)."""
    metrics = {}
    for number, entry in enumerate(log, 1):
        metrics.update({f"stage{number}_labels": entry["labels"], f"stage{number}_val_accuracy": entry["val_accuracy"],
                        f"test_stage{number}_accuracy": entry["test_accuracy"], f"stage{number}_time_s": entry["time_s"]})
    return metrics


def sampled_targets(split: Data, batch: int) -> torch.Tensor:
    """The validation nodes whose per-node inference is timed: a fixed draw of ``batch`` of them."""
    nodes = split.val_mask.nonzero().view(-1)
    return nodes[torch.randperm(len(nodes), generator=torch.Generator().manual_seed(0))[:batch].to(nodes.device)]


def sampled_accuracy(deployed: Deployed, split: Data, mask: torch.Tensor, *, batch: int, fanout: int) -> float:
    """Accuracy of per-node inference over ``mask``'s nodes, ``batch`` targets per call."""
    nodes, generator = mask.nonzero().view(-1), torch.Generator().manual_seed(0)
    pred = torch.cat([deployed.sampled_scores(split.x, nodes[i: i + batch], fanout=fanout, generator=generator).argmax(-1)
                      for i in range(0, len(nodes), batch)])
    return float((pred == split.y[nodes]).float().mean())


def cora() -> PlanetoidTask:
    return PlanetoidTask("Cora")


def citeseer() -> PlanetoidTask:
    return PlanetoidTask("CiteSeer")


def pubmed() -> PlanetoidTask:
    return PlanetoidTask("PubMed")
