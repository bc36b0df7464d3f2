"""GLUE tasks (SST-2, RTE, CoLA, MRPC, QNLI): fine-tune a BERT-family encoder (TokenDrop + BucketSampler
plug into its batches), approximate it (AxFormer), score it, and measure what the result costs.

Validation is a seeded, label-stratified slice of train that fine-tuning never sees: the search selects on it
(``val_*`` metrics), and so does AxFormer's acceptance test unless fidelity ``select_size`` holds out a
selection split of its own (another part of train: then the front's validation scores are not the ones its
plans were chosen on). Test is GLUE's dev split, scored for every trial and only reported (``test_*``).
The fine-tuned model is cached on disk by what shaped it (``Task.training_key``), so trials that change only
later stages take seconds of approximation plus the scoring passes and the cost measurements.

The text family's pipeline (what a text technique may wrap or call):
- ``batches(examples, *, epoch, rng) -> (batches, kept token positions per example, LR factor per batch)``;
- ``finetune(model, *, epochs, seed, teacher=None, distill=0.0) -> TrainStats``: fine-tune on the fit split with
  those batches (with a ``teacher`` model, distilling its logits into the loss with weight ``distill``); under a
  search it reports validation checkpoints (early stopping), so call it inside ``progress.quiet()`` for a
  model that is not the trial's result;
- ``losses(model) -> (per-sample loss tensor, FLOPs)`` and ``gradients(model, after) -> FLOPs`` (forward and
  backward per batch, ``after()`` reading ``.grad``): passes over the selection split (``context["selection"]``:
  its fidelity, empty when it is the validation split);
- ``pretrained(seed) -> model``: the pretrained encoder with a fresh classification head for ``seed``;
- ``tuned(seed) -> (model, TrainStats)``: the plain fine-tune of ``seed`` (cached on disk);
- ``key(seed, what) -> str``: a cache key for what ``seed``'s fine-tune is keyed by, plus ``what``;
- ``cached(key, make) -> (model, TrainStats)``: ``make()``'s trained model, cached on disk under ``key``;
- ``latency_call() -> (inputs, threads)``: the batch-1 model inputs the trial's ``latency_ms`` is timed on, and
  the thread count it is timed with;
- ``approximate(seed) -> (model, selection passes, TrainStats)``: the model a trial deploys for ``seed`` and
  all the training-side work it took (plain: ``tuned(seed)``, no passes).

Fidelity ``seeds`` runs that many seeds (``seed``, ``seed + 1``, ...) per trial: scores and costs are their
means (``*_std``: the spread of the scores over seeds; training costs are per seed).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import statistics
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch

from autotradeoff import progress
from autotradeoff.cost import Anchor, count_flops, measure_latency, model_size
from autotradeoff.knobs import Knob
from autotradeoff.tasks.base import DEGENERACY_METRICS, Task, degeneracy, run_fidelity
from autotradeoff.tasks.glue_data import (
    GLUE_TASKS,
    Encoded,
    encode,
    learning_fidelity,
    load_split,
    rows_left,
    score,
    train_rows,
    validation_split,
)
from autotradeoff.tasks.glue_model import (
    CACHE_VERSION,
    DEFAULT_MODEL,
    Distill,
    TrainStats,
    cached_model,
    collate,
    finetune,
    load_classifier,
    load_tokenizer,
    predict,
    random_batches,
    sample_gradients,
    sample_losses,
)
from autotradeoff.techniques import Pipeline

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["GlueTask", "over_seeds", "timing_inputs", "sst2", "rte", "cola", "mrpc", "qnli"]

TRAINING = {
    "lr": Knob("lr", "float", 5e-5, 1e-7, 1e-2, help="AdamW peak learning rate (at batch_size)"),
    "epochs": Knob("epochs", "int", 2, 1, 50, help="fine-tuning epochs"),
    "batch_size": Knob("batch_size", "int", 32, 1, 4096, help="batch size (the batch cap when bucketing)"),
    "dropout": Knob("dropout", "float", 0.1, 0.0, 0.5, help="hidden and attention dropout while fine-tuning"),
    "weight_decay": Knob("weight_decay", "float", 0.01, 0.0, 0.3, help="AdamW weight decay"),
    "warmup": Knob("warmup", "float", 0.1, 0.0, 0.5, help="share of steps with linear LR warm-up"),
}


@lru_cache(maxsize=8)
def _pretrained(model: str, labels: int, dropout: float, seed: int) -> PreTrainedModel:
    """Loaded once per process (pre-checks build many); callers take a copy."""
    torch.manual_seed(seed)  # the new classification head's init is part of "same seed, same model"
    return load_classifier(model, labels, dropout)


@lru_cache(maxsize=4)
def _anchor_model(model: str, labels: int, device: str) -> PreTrainedModel:
    """One latency anchor per process and device: only ever run under inference mode, never changed."""
    return copy.deepcopy(_pretrained(model, labels, 0.0, 0)).to(device).eval()


class GlueTask(Task):
    family = "text"
    technique_names = ("tokendrop", "axformer")
    metrics = {
        **{f"{split}_{m}": "max" for split in ("val", "test") for m in ("score", "accuracy", "f1", "mcc")},
        "latency_ms": "min", "latency_iqr_ms": "min", "latency_b32_ms": "min", "latency_b32_iqr_ms": "min",
        "flops": "min", "params": "min", "model_bytes": "min",
        "train_time_s": "min", "train_steps": "min", "train_flops": "min", "padding_fraction": "min", "train_peak_mb": "min",
        "finetune_reused": "max", "selection_passes": "min", **DEGENERACY_METRICS,
        **{f"{split}_{m}_std": "min" for split in ("val", "test") for m in ("score", "accuracy")},
    }
    checkpoints = True  # fine-tuning reports validation scores at the rungs: a search may stop it early
    own_knobs = TRAINING
    fidelity = {
        "model": Knob("model", "text", DEFAULT_MODEL, help="Hugging Face id or directory of a BERT-family model"),
        "train_size": Knob("train_size", "int", 2000, 0, 10_000_000, help="training examples (0: all of train minus validation)",
                           stage="data"),
        "val_size": Knob("val_size", "int", 872, 8, 1_000_000, help="validation examples held out of train (at most 20%)",
                         stage="data"),
        "test_size": Knob("test_size", "int", 0, 0, 10_000_000, help="test (GLUE dev) examples scored (0: all)",
                          stage="inference"),
        "max_length": Knob("max_length", "int", 64, 8, 512, help="tokens per sequence (longer are truncated)", stage="data"),
        "select_size": Knob("select_size", "int", 0, 0, 1_000_000, help="AxFormer's selection split: examples held out of "
                            "train apart from validation (at most 20% of what validation leaves; 0: select on validation)",
                            stage="approximate"),
        "seeds": Knob("seeds", "int", 1, 1, 20, help="fine-tuning seeds per trial (seed, seed+1, ...): scores are their "
                      "mean, *_std their spread", stage="inference"),
        **run_fidelity(gpu_share=0.5, warmup=2, repeats=15),  # batch 32 is timed a third as often
    }
    learning_settings = ("train_size", "epochs", "lr")
    tiny_fidelity = {"train_size": 16, "val_size": 32, "test_size": 32, "max_length": 32, "latency_warmup": 0,
                     "latency_repeats": 1}
    tiny_config = {"epochs": 1, "batch_size": 8}

    def __init__(self, name: str):
        self.name = name
        self.description = f"GLUE {GLUE_TASKS[name].folder}: fine-tune + AxFormer + TokenDrop/BucketSampler"
        train_size, epochs = learning_fidelity(name)  # a baseline that learns (sized from the task, see there)
        self.fidelity = {**GlueTask.fidelity, "train_size": dataclasses.replace(GlueTask.fidelity["train_size"], default=train_size)}
        self.own_knobs = {**TRAINING, "epochs": dataclasses.replace(TRAINING["epochs"], default=epochs)}
        self.default_objectives = ("val_score", "latency_ms")

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        load_split(self.name, "dev")
        load_tokenizer((fidelity or {}).get("model", DEFAULT_MODEL))  # a bad --model fails here, not in every trial

    @lru_cache(maxsize=2)  # noqa: B019 (tasks are process-wide singletons)
    def splits(self, model: str, max_length: int, train_size: int, val_size: int, test_size: int,
               select_size: int = 0) -> tuple[list[Encoded], list[Encoded], list[Encoded], list[Encoded]]:
        """(fit, validation, test, selection) tokenised; fit, validation and selection are disjoint seeded parts
        of train (selection the tail of what validation leaves, so the first ``train_size`` of fit stay the same
        rows while there is room), test is GLUE's dev split."""
        tokenizer = load_tokenizer(model)
        rest, validation = validation_split(load_split(self.name, "train"), size=val_size)
        cut = len(rest) - _held_out(len(rest), select_size)
        test = load_split(self.name, "dev")
        pick = lambda rows, n: rows[:n] if n else rows  # noqa: E731
        return tuple(encode(tokenizer, pick(rows, n), max_length)
                     for rows, n in ((rest[:cut], train_size), (validation, 0), (test, test_size), (rest[cut:], 0)))

    def training_key(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str,
                     context: dict[str, Any] | None = None) -> str:
        """``Task.training_key``, plus ``select_size`` where the selection split takes rows the fine-tune would
        otherwise train on (``train_size`` 0, or too few rows left): elsewhere it changes no fine-tune."""
        key = super().training_key(config, fidelity, device=device, context=context)
        select, train = fidelity["select_size"], fidelity["train_size"]
        if not select:
            return key
        rest = rows_left(self.name, fidelity["val_size"], rows=train_rows(self.name))  # as ``splits`` cuts them
        return _hash(key, {"select_size": select}) if not train or train > rest - _held_out(rest, select) else key

    def stages(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str, dry: bool = False) -> Pipeline:
        """This trial's pipeline (the text family's stages, see the module docstring) with its techniques installed."""
        fit, validation, _ = self.data(fidelity)
        selection = self.selection(fidelity)
        own = {k: config[k] for k in self.own_knobs}

        def tuned(pipeline: Pipeline, seed: int) -> tuple[PreTrainedModel, TrainStats]:
            if dry:  # before training: the untrained model has the structure, which is all a precheck measures
                return pipeline.pretrained(seed), TrainStats()

            def make() -> tuple[PreTrainedModel, TrainStats]:
                model = pipeline.pretrained(seed)
                return model, pipeline.finetune(model, epochs=own["epochs"], seed=seed)

            return cached_model(pipeline.key(seed), make, device=device)

        return self.pipeline(config, lambda pipeline: {
            "batches": lambda examples, *, epoch, rng: random_batches(examples, epoch=epoch, rng=rng,
                                                                        batch_size=own["batch_size"]),
            "finetune": lambda model, *, epochs, seed, teacher=None, distill=0.0: finetune(
                model, fit, own, epochs=epochs, seed=seed, device=device, batches=pipeline.batches,
                validate=lambda m: self.checkpoint_score(m, validation, device),
                teacher=Distill(teacher, distill) if teacher is not None else None),
            "losses": lambda model: sample_losses(model, selection, device),
            "gradients": lambda model, after: sample_gradients(model, selection, device, after=after),
            "pretrained": lambda seed: self.classifier(config, {**fidelity, "seed": seed}, device),
            "tuned": lambda seed: tuned(pipeline, seed),
            "key": lambda seed, what=None: _hash(self.training_key(config, {**fidelity, "seed": seed}, device=device), what),
            "cached": lambda key, make: cached_model(key, make, device=device),
            "latency_call": lambda: (timing_inputs(validation, device)[0], fidelity["threads"]),
            "approximate": lambda seed: (lambda tuned: (tuned[0], 0, tuned[1]))(pipeline.tuned(seed))},
            context={"selection": {"select_size": fidelity["select_size"]} if fidelity["select_size"] else {}}, dry=dry)

    def checkpoint_score(self, model: PreTrainedModel, validation: list[Encoded], device: str) -> tuple[float, bool, int]:
        """A fine-tune's checkpoint: the official score on validation, whether it says anything yet (False
        while the model predicts like a constant, as early in a fine-tune every model does: a rung judged on it
        would rank the trials by their costs alone), and how many examples it was scored on (its noise)."""
        labels = [e.label for e in validation]
        predicted = predict(model, validation, device)
        return (self.official(predicted, labels), not degeneracy(predicted, labels, self.official)["degenerate"],
                len(labels))

    def official(self, predicted: list[int], labels: list[int]) -> float:
        """The task's official metric (accuracy, F1 or MCC) of ``predicted`` against ``labels``."""
        return score(self.name, predicted, labels)["score"]

    def classifier(self, config: dict[str, Any], fidelity: dict[str, Any], device: str) -> PreTrainedModel:
        """The pretrained encoder with a new classification head, seeded: "same seed, same model"."""
        return copy.deepcopy(_pretrained(fidelity["model"], len(GLUE_TASKS[self.name].labels), config["dropout"],
                                         fidelity["seed"])).to(device)

    def build(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str,
              seed: int | None = None) -> tuple[PreTrainedModel, TrainStats, int]:
        """(model, train stats, selection passes) of ``seed`` (default: the first): the model the pipeline deploys
        (the cached fine-tune, approximated by the techniques). The stats count all its training-side work: the
        fine-tune, and the approximation's selection passes and re-fine-tuning."""
        pipeline = self.stages(config, fidelity, device=device)
        model, passes, train = pipeline.approximate(fidelity["seed"] if seed is None else seed)
        return model.eval(), train, passes

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Inference costs of the approximated model, built on the pretrained encoder with an untrained
        head: AxFormer's site knobs remove the same amount whatever the weights, and TokenDrop and the
        bucketing only change training. A greedy pass chooses sites from losses: nothing is known."""
        pipeline = self.stages(config, fidelity, device=device, dry=True)
        model, _, _ = pipeline.approximate(fidelity["seed"])
        if pipeline.unknown:
            return {}
        return self.costs(model.eval(), self.data(fidelity)[1], fidelity, device)

    def remeasure(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Rebuild the first seed's model (from the cache) and time it again; no scoring pass."""
        model, _, _ = self.build(config, fidelity, device=device)
        return self.costs(model, self.data(fidelity)[1], fidelity, device)

    def data(self, fidelity: dict[str, Any]) -> tuple[list[Encoded], list[Encoded], list[Encoded]]:
        """(fit, validation, test)."""
        return self._splits(fidelity)[:3]

    def selection(self, fidelity: dict[str, Any]) -> list[Encoded]:
        """What AxFormer's importance and greedy passes read: the selection split, or validation without one."""
        _, validation, _, selection = self._splits(fidelity)
        return selection if fidelity["select_size"] else validation

    def _splits(self, fidelity: dict[str, Any]) -> tuple[list[Encoded], list[Encoded], list[Encoded], list[Encoded]]:
        return self.splits(fidelity["model"], fidelity["max_length"], fidelity["train_size"], fidelity["val_size"],
                           fidelity["test_size"], fidelity["select_size"])

    def evaluate(self, model: PreTrainedModel, fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Dev scores and inference costs of a built (or loaded) model."""
        _, validation, test = self.data(fidelity)
        predicted = {"val": predict(model, validation, device), "test": predict(model, test, device)}
        scores = {f"{split}_{k}": v for split, rows in (("val", validation), ("test", test))
                  for k, v in score(self.name, predicted[split], [e.label for e in rows]).items()}
        return {**scores, **degeneracy(predicted["val"], [e.label for e in validation], self.official),
                **self.costs(model, validation, fidelity, device)}

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Every seed built, scored and measured; the metrics are their means (see ``over_seeds``)."""
        count, results = fidelity["seeds"], []
        for index in range(count):
            with progress.part(index, count):
                model, train, passes = self.build(config, fidelity, device=device, seed=fidelity["seed"] + index)
            results.append({**self.evaluate(model, fidelity, device=device),
                            "train_time_s": train.time_s, "train_steps": float(train.steps), "train_flops": train.flops,
                            "padding_fraction": train.padding_fraction, "train_peak_mb": train.peak_mb,
                            "finetune_reused": float(train.reused), "selection_passes": float(passes)})
        return over_seeds(results)

    def anchor(self, fidelity: dict[str, Any], device: str) -> PreTrainedModel:
        """The latency anchor (``cost.latency.Anchor``): the pretrained encoder with the task's head, no
        technique applied (timing does not read the weights, so it is never fine-tuned)."""
        return _anchor_model(fidelity["model"], len(GLUE_TASKS[self.name].labels), device)

    def costs(self, model: PreTrainedModel, rows: list[Encoded], fidelity: dict[str, Any], device: str) -> dict[str, float]:
        """Latency at batch 1 (a median-length validation sequence) and 32 (the first 32 validation rows), each
        timed beside the plain pretrained model's same call (``anchor``), FLOPs of the batch-1 call, and size after
        removal."""
        one, many = timing_inputs(rows, device)
        threads, warmup, repeats = fidelity["threads"], fidelity["latency_warmup"], fidelity["latency_repeats"]
        plain = self.anchor(fidelity, device)
        key = lambda inputs: (f"{self.name}-{fidelity['model']}-{'x'.join(map(str, inputs['input_ids'].shape))}"  # noqa: E731
                              f"-{int(inputs['attention_mask'].sum())}-{device}")
        b1 = measure_latency(lambda: model(**one), warmup=warmup, repeats=repeats, threads=threads, model=model,
                             anchor=Anchor(key(one), lambda: plain(**one)))
        b32 = measure_latency(lambda: model(**many), warmup=min(warmup, 1), repeats=max(3, repeats // 3),
                              threads=threads, model=model, anchor=Anchor(key(many), lambda: plain(**many)))
        return {**b1.as_metrics(), **b32.as_metrics("latency_b32"), "flops": float(count_flops(lambda: model(**one))),
                **{k: float(v) for k, v in model_size(model).items()}}


def timing_inputs(rows: list[Encoded], device: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The model inputs latency is timed on: batch 1 (a median-length row of ``rows``) and batch 32 (the first 32)."""
    median = statistics.median_low(len(e.ids) for e in rows)
    one = collate([next(e for e in rows if len(e.ids) == median)], device)
    many = collate(rows[:32], device)
    for inputs in (one, many):
        inputs.pop("labels")
    return one, many


def over_seeds(results: list[dict[str, float]]) -> dict[str, float]:
    """One trial's metrics from its seeds': means, except ``degenerate`` (any seed) and ``finetune_reused`` (all
    seeds); ``*_std`` is the sample standard deviation of the validation and test scores (0 for one seed)."""
    merged = {k: statistics.fmean(r[k] for r in results) for k in results[0]}
    merged["degenerate"] = max(r["degenerate"] for r in results)
    merged["finetune_reused"] = min(r["finetune_reused"] for r in results)
    for name in (f"{split}_{m}" for split in ("val", "test") for m in ("score", "accuracy")):
        merged[f"{name}_std"] = statistics.stdev(r[name] for r in results) if len(results) > 1 else 0.0
    return merged


def _held_out(rows: int, size: int) -> int:
    """The selection split's size: ``size``, at most a fifth of the ``rows`` it is cut from."""
    return min(size, int(0.2 * rows))


def _hash(base: str, what: Any) -> str:
    """``base`` (a training key) extended by ``what`` (JSON), or ``base`` itself when there is nothing to add.
    What is derived from a fine-tune (AxFormer's importance scores and plans) changes with the fine-tuning code,
    so the extended key holds ``CACHE_VERSION`` (``cached_model`` adds it to the plain key)."""
    if what is None:
        return base
    return hashlib.sha256(json.dumps([base, what, CACHE_VERSION], sort_keys=True, default=str).encode()).hexdigest()[:20]


def sst2() -> GlueTask:
    return GlueTask("sst2")


def rte() -> GlueTask:
    return GlueTask("rte")


def cola() -> GlueTask:
    return GlueTask("cola")


def mrpc() -> GlueTask:
    return GlueTask("mrpc")


def qnli() -> GlueTask:
    return GlueTask("qnli")
