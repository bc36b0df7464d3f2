"""A small task loaded by import path (``plugin_tasks:flaky``) that fails on purpose, so the engine's
handling of raising, NaN-returning and dying trials is tested through the real Optuna/Ray path."""

from __future__ import annotations

import os
import time

import torch

from autotradeoff.space import Knob
from autotradeoff.tasks.base import Task


class FlakyTask(Task):
    name = "plugin_tasks:flaky"
    description = ("test task: accuracy peaks at x=0.3; mode makes the trial raise, return NaN, kill its process, "
                   "run out of memory or hang")
    knobs = {
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
        from autotradeoff.stopping import checkpoint

        accuracy = 1.0 - (config["x"] - 0.3) ** 2
        for step in range(9):
            time.sleep(fidelity["sleep_s"] / 9)
            checkpoint((step + 1) / 9, accuracy)
        return {"accuracy": accuracy, "latency_ms": 1.0 + 10.0 * config["x"]}


def staged() -> StagedTask:
    return StagedTask()
