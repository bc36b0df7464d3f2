"""The Task interface: what a task declares (its own knobs, the techniques it accepts, fidelity,
metrics) and the one call it answers, ``run``.

A task's knob table is its own knobs plus, namespaced (``<technique>.<knob>``), the knobs of every
technique it uses: the ones it names in ``techniques`` and any plug-in a search space adds that
belongs to the same ``family`` (the stage protocol the task's pipeline offers). ``pipeline`` builds
the trial's stages and lets each technique install itself; ``training_key`` says what shaped the
trained weights, derived from the knobs' declared stages, so caches never list knobs by hand.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import torch

from autotradeoff.errors import UsageError
from autotradeoff.knobs import TRAINING_STAGES, Knob
from autotradeoff.techniques import Pipeline, Technique, get_technique

__all__ = ["Task", "run_fidelity", "pick_device", "degeneracy", "DEGENERACY_METRICS"]

# What every classification task reports about its validation predictions, beside its scores.
DEGENERACY_METRICS = {"val_majority_rate": "max", "val_top_prediction_share": "min", "val_constant_score": "max",
                      "degenerate": "min"}


def run_fidelity(*, gpu_share: float, warmup: int, repeats: int) -> dict[str, Knob]:
    """Fidelity every task shares: seed, CPUs and GPU share per trial, latency warm-up and repeats, and
    plug-in techniques (a space's ``techniques:``)."""
    return {
        "seed": Knob("seed", "int", 0, 0, 2**31 - 1, help="first seed"),
        "threads": Knob("threads", "int", 1, 1, 256, help="CPUs (torch threads) per trial"),
        "gpu_share": Knob("gpu_share", "float", gpu_share, 0.0, 8.0, help="GPUs per trial when GPUs exist", stage="inference"),
        "latency_warmup": Knob("latency_warmup", "int", warmup, 0, 1000, help="untimed inference calls", stage="inference"),
        "latency_repeats": Knob("latency_repeats", "int", repeats, 1, 10000, help="timed inference calls", stage="inference"),
        "techniques": Knob("techniques", "names", (), help="plug-in techniques (module:attribute) added to the task's own"),
    }


def degeneracy(predictions: Sequence[int], labels: Sequence[int], score: Callable[[list[int], list[int]], float]) -> dict[str, float]:
    """How far validation predictions are from a constant predictor: the majority-class rate of the labels,
    the share of the most frequent predicted class, the score always predicting the majority class gets
    (``score(predictions, labels)`` is the task's official metric), and ``degenerate`` (1.0) when one class
    takes >= 98% of the predictions or the score is within noise of the constant one: two standard errors
    of an accuracy at the majority rate, sqrt(q (1 - q) / n)."""
    predictions, labels = list(predictions), list(labels)
    n = len(labels)
    majority, majority_count = Counter(labels).most_common(1)[0]
    top_share = Counter(predictions).most_common(1)[0][1] / n
    rate = majority_count / n
    constant = score([majority] * n, labels)
    noise = 2 * math.sqrt(rate * (1 - rate) / n)
    degenerate = top_share >= 0.98 or score(predictions, labels) <= constant + noise
    return {"val_majority_rate": rate, "val_top_prediction_share": top_share, "val_constant_score": constant,
            "degenerate": float(degenerate)}


def pick_device(gpu_share: float = 1.0) -> str:
    """CUDA when this process was given a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return "cuda" if gpu_share > 0 and torch.cuda.is_available() else "cpu"


class Task:
    """A task knows its data, model and metrics. Subclasses set the tables and implement ``run``.

    ``own_knobs``: what a search space may search besides the techniques' knobs; each default is the
    baseline value. ``techniques``: registered names of the techniques it uses. ``family``: the stage
    protocol of its pipeline (techniques of the same family plug in). ``fidelity``: settings that trade
    trial cost for measurement quality (not searched). ``metrics``: every metric ``run`` returns, with
    its natural direction ("max"/"min"). ``checkpoints``: ``run`` reports validation progress, so a
    search may stop it early. ``metric_prefixes``: further metrics whose names vary with the config (one
    per inference level, say) are stored when they start with one of these; they can't be objectives.
    ``tiny_fidelity``/``tiny_config``: a fidelity and task-knob values at which a whole trial takes
    seconds (the conformance suite runs every task and technique there). ``learning_settings``: what to
    raise when the baseline learns nothing (a search names them in its warning). A classification task
    reports ``DEGENERACY_METRICS`` (see ``degeneracy``).
    """

    name: str = ""
    description: str = ""
    family: str = ""
    own_knobs: dict[str, Knob] = {}
    technique_names: tuple[str, ...] = ()
    fidelity: dict[str, Knob] = {}
    metrics: dict[str, str] = {}
    metric_prefixes: tuple[str, ...] = ()
    checkpoints: bool = False  # its training calls ``progress.checkpoint``: early stopping applies
    default_objectives: tuple[str, ...] = ("accuracy", "latency_ms")
    tiny_fidelity: dict[str, Any] = {}
    tiny_config: dict[str, Any] = {}
    learning_settings: tuple[str, ...] = ()  # the fidelity settings and knobs that decide whether the baseline learns
    work_knob: str | None = "epochs"  # ignored by tasks that have no such knob
    simulated: bool = False
    _chosen: tuple[Technique, ...] | None = None

    # --- techniques and knobs --------------------------------------------------------------------
    @property
    def techniques(self) -> tuple[Technique, ...]:
        if self._chosen is None:
            self._chosen = tuple(get_technique(name) for name in self.technique_names)
        return self._chosen

    def using(self, techniques: Sequence[Technique | str]) -> Task:
        """A copy of this task with exactly ``techniques`` (objects, registered names or import paths);
        each must belong to this task's family and have a name no other one has."""
        chosen = tuple(t if isinstance(t, Technique) else get_technique(t) for t in techniques)
        for technique in chosen:
            if technique.family != self.family:
                raise UsageError(f"technique {technique.name!r} plugs into {technique.family or 'no'} tasks; "
                                 f"task {self.name!r} is a {self.family} task")
        names = [t.name for t in chosen]
        if len(set(names)) != len(names) or set(names) & set(self.own_knobs):
            raise UsageError(f"task {self.name!r}: technique names must be unique and differ from its knobs; got {names}")
        task = copy.copy(self)
        task._chosen = chosen
        task.__dict__.pop("knobs", None)
        return task

    def plus(self, extra: Sequence[str]) -> Task:
        """This task with the plug-in techniques ``extra`` (a space's ``techniques:``) added to its own."""
        return self.using([*self.techniques, *extra]) if extra else self

    @cached_property
    def knobs(self) -> dict[str, Knob]:
        """Every knob a space may set: the task's own, then each technique's as ``<technique>.<knob>``."""
        table = dict(self.own_knobs)
        for technique in self.techniques:
            for name, knob in technique.knobs.items():
                table[technique.key(name)] = dataclasses.replace(knob, name=technique.key(name))
        return table

    # --- validation ------------------------------------------------------------------------------
    def fill_fidelity(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fidelity with defaults filled in and every given value validated."""
        return self._fill(self.fidelity, dict(given or {}), "fidelity", "fidelity setting")

    def fill_config(self, given: dict[str, Any], where: str = "config") -> dict[str, Any]:
        """A complete, validated config: given knobs checked, the rest at their defaults."""
        return self._fill(self.knobs, given, where, "knob")

    def _fill(self, table: dict[str, Knob], given: dict[str, Any], where: str, what: str) -> dict[str, Any]:
        unknown = set(given) - set(table)
        if unknown:
            raise UsageError(f"{where}: unknown {what} {sorted(unknown)[0]!r} for task {self.name}; "
                             f"choices: {', '.join(table)}.")
        return {name: knob.check(given[name], f"{where}.{name}") if name in given else knob.default
                for name, knob in table.items()}

    # --- the pipeline ----------------------------------------------------------------------------
    def pipeline(self, config: dict[str, Any], stages: Callable[[Pipeline], dict[str, Callable[..., Any]]], *,
                 context: dict[str, Any] | None = None, dry: bool = False) -> Pipeline:
        """The trial's stages (``stages(pipeline)`` gives the plain ones) with every technique installed for
        its knob values in ``config``."""
        pipeline = Pipeline(task_config={k: config[k] for k in self.own_knobs}, context=context, dry=dry)
        pipeline.define(stages(pipeline))
        for technique in self.techniques:
            technique.install(pipeline, technique.own(config))
        return pipeline

    def training_key(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str,
                     context: dict[str, Any] | None = None) -> str:
        """A hash of what shaped the trained weights and the stored training costs: the task, device type,
        the knobs and fidelity settings of the training stages, and each technique's ``training_key``."""
        what = {"task": self.name, "device": device.split(":")[0],
                "knobs": {k: config[k] for k, knob in self.own_knobs.items() if knob.stage in TRAINING_STAGES},
                "fidelity": {k: fidelity[k] for k, knob in self.fidelity.items() if knob.stage in TRAINING_STAGES},
                "techniques": {t.name: t.training_key(t.own(config), context or {}) for t in self.techniques if t.trains()}}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]

    # --- what a trial calls ----------------------------------------------------------------------
    def resources(self, fidelity: dict[str, Any], *, gpus_available: bool) -> dict[str, float]:
        """Ray resources one trial holds: CPUs (= torch threads) and a GPU share when GPUs exist."""
        return {"cpu": float(fidelity.get("threads", 1)),
                "gpu": float(fidelity.get("gpu_share", 0.0)) if gpus_available else 0.0}

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        """Raise DataMissingError now (in the driver) rather than in every trial."""

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Costs known before training, measured as ``run`` measures them (on the untrained, approximated
        model): a search rejects a config that breaks a cost constraint here, in seconds, and early
        stopping judges a trial on them. Only metrics that training cannot change belong here; the
        default knows none."""
        return {}

    def remeasure(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """The timed costs of ``config`` measured again, alone on the machine (see ``engine.remeasure``).
        The default runs the trial again; tasks that can rebuild the model cheaply override it."""
        return self.run(config, fidelity, device=device)

    def simulated_seconds(self, config: dict[str, Any], fidelity: dict[str, Any]) -> float:
        """What one whole trial of ``config`` would have taken on one device (``simulated`` tasks only)."""
        raise NotImplementedError(f"task {self.name} runs its trials for real; it has no simulated cost")

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Train and evaluate one complete config; return every metric in ``self.metrics``. Training
        loops may call ``progress.checkpoint`` so that a search can stop a hopeless trial early."""
        raise NotImplementedError
