"""GLUE tasks (SST-2, RTE, CoLA, MRPC, QNLI): fine-tune a BERT-family encoder with TokenDrop +
BucketSampler, approximate it with AxFormer, score on dev, and measure what the result costs.

Selection (AxFormer's acceptance test) uses a seeded 15% slice of train, never dev. The fine-tuned
model is cached on disk by its training knobs, so trials that change only AxFormer knobs take
seconds of approximation plus the dev pass and the cost measurements.
"""

from __future__ import annotations

import statistics
from functools import lru_cache
from typing import Any

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size
from autotradeoff.space import Knob
from autotradeoff.tasks.base import Task, run_fidelity
from autotradeoff.tasks.glue_data import GLUE_TASKS, encode, load_split, score, selection_split
from autotradeoff.tasks.glue_model import (
    DEFAULT_MODEL,
    collate,
    finetune,
    finetuned,
    load_classifier,
    load_tokenizer,
    predict,
    sample_losses,
)
from autotradeoff.techniques import axformer, tokendrop

__all__ = ["GlueTask", "sst2", "rte", "cola", "mrpc", "qnli"]

TRAINING = {
    "lr": Knob("lr", "float", 5e-5, 1e-7, 1e-2, help="AdamW peak learning rate (at batch_size)"),
    "epochs": Knob("epochs", "int", 2, 1, 50, help="fine-tuning epochs"),
    "batch_size": Knob("batch_size", "int", 32, 1, 4096, help="batch size (the batch cap when bucketing)"),
    "dropout": Knob("dropout", "float", 0.1, 0.0, 0.5, help="hidden and attention dropout while fine-tuning"),
    "weight_decay": Knob("weight_decay", "float", 0.01, 0.0, 0.3, help="AdamW weight decay"),
    "warmup": Knob("warmup", "float", 0.1, 0.0, 0.5, help="share of steps with linear LR warm-up"),
}


class GlueTask(Task):
    metrics = {
        "score": "max", "accuracy": "max", "f1": "max", "mcc": "max",
        "latency_ms": "min", "latency_iqr_ms": "min", "latency_b32_ms": "min", "latency_b32_iqr_ms": "min",
        "flops": "min", "params": "min", "model_bytes": "min",
        "train_time_s": "min", "train_steps": "min", "padding_fraction": "min", "train_peak_mb": "min",
        "finetune_reused": "max", "selection_passes": "min",
    }
    knobs = {**TRAINING, **tokendrop.KNOBS, **axformer.KNOBS}
    fidelity = {
        "model": Knob("model", "text", DEFAULT_MODEL, help="Hugging Face id or directory of a BERT-family model"),
        "train_size": Knob("train_size", "int", 2000, 0, 10_000_000, help="training examples (0: all of train minus selection)"),
        "selection_size": Knob("selection_size", "int", 256, 8, 1_000_000, help="held-out train examples for AxFormer's test"),
        "dev_size": Knob("dev_size", "int", 0, 0, 10_000_000, help="dev examples scored (0: all)"),
        "max_length": Knob("max_length", "int", 64, 8, 512, help="tokens per sequence (longer are truncated)"),
        **run_fidelity(gpu_share=0.5, warmup=2, repeats=15),  # batch 32 is timed a third as often
    }

    def __init__(self, name: str):
        self.name = name
        self.description = f"GLUE {GLUE_TASKS[name].folder}: fine-tune + AxFormer + TokenDrop/BucketSampler"
        self.default_objectives = ("score", "latency_ms")

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        load_split(self.name, "dev")
        load_tokenizer((fidelity or {}).get("model", DEFAULT_MODEL))  # a bad --model fails here, not in every trial

    @lru_cache(maxsize=2)  # noqa: B019 (tasks are process-wide singletons)
    def splits(self, model: str, max_length: int, train_size: int, selection_size: int, dev_size: int):
        """(fit, selection, dev) tokenised; fit and selection are disjoint seeded parts of train."""
        tokenizer = load_tokenizer(model)
        fit, selection = selection_split(load_split(self.name, "train"))
        dev = load_split(self.name, "dev")
        pick = lambda rows, n: rows[:n] if n else rows  # noqa: E731
        return tuple(encode(tokenizer, pick(rows, n), max_length)
                     for rows, n in ((fit, train_size), (selection, selection_size), (dev, dev_size)))

    def build(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str):
        """(model, train stats, selection passes): the fine-tuned model (cached) with AxFormer applied."""
        fit, selection, _ = self.data(fidelity)
        labels = len(GLUE_TASKS[self.name].labels)
        model, train = finetuned(self.name, config, fidelity, fit, labels, device)
        passes, plan = 0, None
        if config["ax_mode"] == "greedy":
            plan, passes = axformer.greedy_plan(model, lambda m: sample_losses(m, selection, device), config)
        elif not axformer.is_off(config):
            plan = axformer.plan_from_sites(model.bert, config)
        if plan is not None:
            model = axformer.approximate(model, plan)
            if config["refinetune_epochs"]:
                extra = finetune(model, fit, config, epochs=config["refinetune_epochs"], seed=fidelity["seed"] + 1, device=device)
                train.time_s, train.steps = train.time_s + extra.time_s, train.steps + extra.steps
        return model.eval(), train, passes

    def precheck(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Inference costs of the approximated model, built on the pretrained encoder with an untrained
        head: AxFormer's site knobs remove the same parts whatever the weights, and TokenDrop and the
        bucketing only change training. The greedy pass chooses sites from losses: nothing is known."""
        if config["ax_mode"] == "greedy":
            return {}
        torch.manual_seed(fidelity["seed"])
        model = load_classifier(fidelity["model"], len(GLUE_TASKS[self.name].labels), config["dropout"]).to(device)
        if not axformer.is_off(config):
            model = axformer.approximate(model, axformer.plan_from_sites(model.bert, config))
        return self.costs(model.eval(), self.data(fidelity)[2], fidelity, device)

    def remeasure(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Rebuild the model (fine-tune from the cache) and time it again; no dev pass."""
        model, _, _ = self.build(config, fidelity, device=device)
        return self.costs(model, self.data(fidelity)[2], fidelity, device)

    def data(self, fidelity: dict[str, Any]):
        return self.splits(fidelity["model"], fidelity["max_length"], fidelity["train_size"],
                           fidelity["selection_size"], fidelity["dev_size"])

    def evaluate(self, model, fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        """Dev scores and inference costs of a built (or loaded) model."""
        dev = self.data(fidelity)[2]
        scores = score(self.name, predict(model, dev, device), [e.label for e in dev])
        return {**scores, **self.costs(model, dev, fidelity, device)}

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        model, train, passes = self.build(config, fidelity, device=device)
        return {**self.evaluate(model, fidelity, device=device),
                "train_time_s": train.time_s, "train_steps": float(train.steps),
                "padding_fraction": train.padding_fraction, "train_peak_mb": train.peak_mb,
                "finetune_reused": float(train.reused), "selection_passes": float(passes)}

    @staticmethod
    def costs(model, dev: list, fidelity: dict[str, Any], device: str) -> dict[str, float]:
        """Latency at batch 1 (a median-length dev sequence) and 32 (the first 32 dev rows), FLOPs of the
        batch-1 call, and size after removal."""
        median = statistics.median_low(len(e.ids) for e in dev)
        one = collate([next(e for e in dev if len(e.ids) == median)], device)
        many = collate(dev[:32], device)
        for inputs in (one, many):
            inputs.pop("labels")
        threads, warmup, repeats = fidelity["threads"], fidelity["latency_warmup"], fidelity["latency_repeats"]
        b1 = measure_latency(lambda: model(**one), warmup=warmup, repeats=repeats, threads=threads, model=model)
        b32 = measure_latency(lambda: model(**many), warmup=min(warmup, 1), repeats=max(3, repeats // 3),
                              threads=threads, model=model)
        return {**b1.as_metrics(), **b32.as_metrics("latency_b32"), "flops": float(count_flops(lambda: model(**one))),
                **{k: float(v) for k, v in model_size(model).items()}}


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
