"""A small task loaded by import path (``plugin_tasks:flaky``) that fails on purpose, so the engine's
handling of raising, NaN-returning and dying trials is tested through the real Optuna/Ray path."""

from __future__ import annotations

import os
import time

import torch

from autotradeoff.knobs import Knob
from autotradeoff.tasks.base import DEGENERACY_METRICS, Task, degeneracy


class FlakyTask(Task):
    name = "plugin_tasks:flaky"
    description = ("test task: accuracy peaks at x=0.3; mode makes the trial raise, return NaN, kill its process, "
                   "run out of memory or hang")
    own_knobs = {
        "x": Knob("x", "float", 0.5, 0.0, 1.0),
        "mode": Knob("mode", "categorical", "ok", choices=("ok", "raise", "nan", "die", "oom", "hang")),
    }
    fidelity = {"threads": Knob("threads", "int", 1, 1, 8), "gpu_share": Knob("gpu_share", "float", 0.0, 0.0, 1.0),
                "sleep_s": Knob("sleep_s", "float", 0.05, 0.0, 60.0)}
    metrics = {"accuracy": "max", "latency_ms": "min"}

    def run(self, config, fidelity, *, device):
        time.sleep(fidelity["sleep_s"])
        if config["mode"] == "raise":
            raise RuntimeError(f"boom at x={config['x']:.3f}")
        if config["mode"] == "die":
            os._exit(3)
        if config["mode"] == "oom":  # a real allocation failure: 1 PiB
            torch.empty(2**50, dtype=torch.uint8, device=device)
        if config["mode"] == "hang":
            time.sleep(3600)
        accuracy = float("nan") if config["mode"] == "nan" else 1.0 - (config["x"] - 0.3) ** 2
        return {"accuracy": accuracy, "latency_ms": 1.0 + 10.0 * config["x"]}


def flaky() -> FlakyTask:
    return FlakyTask()


class StagedTask(FlakyTask):
    """The flaky task's "ok" mode in 9 steps that report validation progress (early stopping applies), its
    latency known before training (pre-check): trials with x > 0.3 are dominated by 0.6 - x."""

    name = "plugin_tasks:staged"
    checkpoints = True

    def precheck(self, config, fidelity, *, device):
        return {"latency_ms": 1.0 + 10.0 * config["x"]}

    def run(self, config, fidelity, *, device):
        from autotradeoff.progress import checkpoint

        accuracy = 1.0 - (config["x"] - 0.3) ** 2
        for step in range(9):
            time.sleep(fidelity["sleep_s"] / 9)
            checkpoint((step + 1) / 9, accuracy)
        return {"accuracy": accuracy, "latency_ms": 1.0 + 10.0 * config["x"]}


def staged() -> StagedTask:
    return StagedTask()


class SplitTask(FlakyTask):
    """Validation accuracy varies with x (best at 0.3) while test accuracy is a constant: a search that
    decided on test would see only ties, so its front, picks and samplers must follow validation."""

    name = "plugin_tasks:split"
    checkpoints = True
    metrics = {"val_accuracy": "max", "test_accuracy": "max", "latency_ms": "min"}

    def run(self, config, fidelity, *, device):
        from autotradeoff.progress import checkpoint

        val = 1.0 - (config["x"] - 0.3) ** 2
        for step in range(3):
            checkpoint((step + 1) / 3, val)
        return {"val_accuracy": val, "test_accuracy": 0.5, "latency_ms": 1.0 + 10.0 * config["x"]}


def split() -> SplitTask:
    return SplitTask()


class ConstantTask(FlakyTask):
    """A classifier whose model predicts one class for every validation example unless ``learns`` is on: its
    trials must be stored degenerate, off the front, and a search must say its baseline learns nothing."""

    name = "plugin_tasks:constant"
    learning_settings = ("sleep_s",)
    own_knobs = {**FlakyTask.own_knobs, "learns": Knob("learns", "categorical", False, choices=(False, True))}

    metrics = {"val_accuracy": "max", "latency_ms": "min", **DEGENERACY_METRICS}

    def run(self, config, fidelity, *, device):
        labels = [int(i % 10 < 7) for i in range(200)]  # 70% class 1
        # learning: 80% right; not learning: class 1 for everything (70% right: the majority rate)
        predictions = [y if i % 5 else 1 - y for i, y in enumerate(labels)] if config["learns"] else [1] * 200
        share = lambda p, y: sum(a == b for a, b in zip(p, y)) / len(y)  # noqa: E731
        return {"val_accuracy": share(predictions, labels), "latency_ms": 1.0 + 10.0 * config["x"],
                **degeneracy(predictions, labels, share)}


def constant() -> ConstantTask:
    return ConstantTask()
