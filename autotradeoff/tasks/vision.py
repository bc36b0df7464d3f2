"""Image classification (Fashion-MNIST, CIFAR-10) with a small ViT trained from scratch, and ICPC:
compressed training levels, positional consistency, variable-effort inference.

A trial: train (or reuse from the cache) the ViT the training knobs give, classify the test images
at one level or by variable effort, then measure inference: FLOPs per sample over the levels each
sample visited (flop_counter per level, weighted by the share that ran it), batch-1 latency per
sample over a probe set whose exits follow the test set's (each sample stops where it would in
deployment), and the share of
samples exiting at each level (``exit_share_<px>px``). Training cost: wall time, forward + backward
FLOPs of every step (counted per level, summed over batches), peak memory. Resizing is element-wise
and, as in flop_counter's own convention, not counted in FLOPs; it is in the wall times.
"""

from __future__ import annotations

from typing import Any

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size
from autotradeoff.errors import TrialFailed, UsageError
from autotradeoff.pareto import EXIT_PREFIX
from autotradeoff.space import Knob
from autotradeoff.tasks.base import Task, run_fidelity
from autotradeoff.tasks.vision_data import load_images
from autotradeoff.tasks.vit import ViT, trained_vit
from autotradeoff.techniques import icpc

__all__ = ["VisionTask", "fashion_mnist", "cifar10", "evaluate", "probe_indices"]

_NATIVE = {"fashion-mnist": 28, "cifar10": 32}


def _subset(n: int, size: int, seed: int) -> torch.Tensor:
    """``size`` seeded indices out of ``n`` (all, in order, when size is 0 or >= n)."""
    if not size or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def probe_indices(exit_index: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` test samples whose exit levels follow the whole test set's (largest-remainder quota per level,
    the first samples of each), so their batch-1 latency matches the exits the FLOPs are weighted by."""
    n = min(n, len(exit_index))
    quota = torch.bincount(exit_index).double() * n / len(exit_index)
    take = quota.floor().long()
    take[(quota - take).argsort(descending=True)[: n - int(take.sum())]] += 1
    return torch.cat([(exit_index == level).nonzero().view(-1)[:k] for level, k in enumerate(take.tolist())])


def evaluate(model: ViT, images: torch.Tensor, labels: torch.Tensor, config: dict[str, Any], *, device: str,
             chunk: int = 1000) -> tuple[float, icpc.EffortResult]:
    """Accuracy and per-sample exits of ``config``'s inference (fixed level or variable effort)."""
    levels, threshold, fallback = icpc.inference_plan(config, model.full)
    logits_at = lambda x, g: model.logits_at(x, g, config["pos_selection"])  # noqa: E731
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            parts.append(icpc.variable_effort(logits_at, images[start:start + chunk].to(device), levels, threshold,
                                              fallback=fallback))
    result = icpc.EffortResult(torch.cat([p.predictions for p in parts]).cpu(),
                               torch.cat([p.exit_index for p in parts]).cpu(), levels)
    return float((result.predictions == labels).float().mean()), result


class VisionTask(Task):
    metrics = {
        "accuracy": "max", "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min", "flops_full": "min",
        "mean_levels": "min", "params": "min", "model_bytes": "min",
        "train_time_s": "min", "train_flops": "min", "train_steps": "min", "train_peak_mb": "min", "train_reused": "max",
    }
    metric_prefixes = (EXIT_PREFIX,)  # one per inference level, e.g. exit_share_16px
    default_objectives = ("accuracy", "flops", "train_flops")
    knobs = dict(icpc.KNOBS)
    fidelity = {
        "patch": Knob("patch", "int", 4, 1, 64, help="patch side in pixels (the full grid is image side / patch)"),
        "dim": Knob("dim", "int", 64, 8, 2048, help="embedding width"),
        "depth": Knob("depth", "int", 4, 1, 48, help="transformer blocks"),
        "heads": Knob("heads", "int", 4, 1, 32, help="attention heads (must divide dim)"),
        "mlp_ratio": Knob("mlp_ratio", "float", 2.0, 0.5, 8.0, help="MLP width / dim"),
        "epochs": Knob("epochs", "int", 3, 1, 1000, help="training epochs"),
        "batch_size": Knob("batch_size", "int", 128, 1, 65536, help="training batch size"),
        "lr": Knob("lr", "float", 2e-3, 1e-6, 1.0, help="AdamW peak learning rate (cosine schedule, 5% warm-up)"),
        "weight_decay": Knob("weight_decay", "float", 0.05, 0.0, 1.0, help="AdamW weight decay"),
        "train_size": Knob("train_size", "int", 10000, 0, 10_000_000, help="training images, a seeded subset (0: all)"),
        "test_size": Knob("test_size", "int", 0, 0, 10_000_000, help="test images scored, a fixed subset (0: all)"),
        "latency_samples": Knob("latency_samples", "int", 16, 1, 10000, help="test images timed one at a time per repeat"),
        **run_fidelity(gpu_share=0.25, warmup=2, repeats=10),
    }

    def __init__(self, dataset: str):
        self.dataset = self.name = dataset
        self.description = f"{dataset} image classification: a small ViT from scratch with ICPC"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        fidelity = self.fill_fidelity(fidelity)
        side = _NATIVE[self.dataset]
        if side % fidelity["patch"]:
            raise UsageError(f"fidelity.patch must divide the {self.dataset} image side {side}; got {fidelity['patch']}.")
        if fidelity["dim"] % fidelity["heads"]:
            raise UsageError(f"fidelity.heads must divide fidelity.dim ({fidelity['dim']}); got {fidelity['heads']}.")
        load_images(self.dataset, "test")

    def data(self, fidelity: dict[str, Any]):
        """(train images, train labels, test images, test labels, classes); subsets seeded, test fixed."""
        train, test = load_images(self.dataset, "train"), load_images(self.dataset, "test")
        pick_train = _subset(len(train.labels), fidelity["train_size"], fidelity["seed"])
        pick_test = _subset(len(test.labels), fidelity["test_size"], 0)
        return train.images[pick_train], train.labels[pick_train], test.images[pick_test], test.labels[pick_test], train.classes

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        self.check_data(fidelity)
        train_x, train_y, test_x, test_y, classes = self.data(fidelity)
        model, stats = trained_vit(self.dataset, config, fidelity, train_x, train_y, classes, device=device)
        accuracy, result = evaluate(model, test_x, test_y, config, device=device)
        if not 0 <= accuracy <= 1:
            raise TrialFailed(f"accuracy {accuracy} out of range")
        return {"accuracy": accuracy, "train_time_s": stats.time_s, "train_flops": stats.flops,
                "train_steps": float(stats.steps), "train_peak_mb": stats.peak_mb, "train_reused": float(stats.reused),
                **self.costs(model, result, test_x, config, fidelity, device)}

    @staticmethod
    def costs(model: ViT, result: icpc.EffortResult, test_x: torch.Tensor, config: dict[str, Any],
              fidelity: dict[str, Any], device: str) -> dict[str, float]:
        """Inference per sample: FLOPs over visited levels, batch-1 latency, exits per level, size."""
        mode = config["pos_selection"]
        one = test_x[:1].to(device)
        flops_at = {g: count_flops(lambda g=g: model.logits_at(one, g, mode)) for g in {*result.levels, model.full}}
        visits = result.visits()
        probe = test_x[probe_indices(result.exit_index, fidelity["latency_samples"])].to(device)
        samples = [probe[i:i + 1] for i in range(len(probe))]
        logits_at = lambda x, g: model.logits_at(x, g, mode)  # noqa: E731
        _, threshold, fallback = icpc.inference_plan(config, model.full)

        def infer_probe() -> None:
            for image in samples:
                icpc.variable_effort(logits_at, image, result.levels, threshold, fallback=fallback)

        latency = measure_latency(infer_probe, warmup=fidelity["latency_warmup"], repeats=fidelity["latency_repeats"],
                                  threads=fidelity["threads"], model=model)
        exits = {f"{EXIT_PREFIX}{g * model.patch}px": share for g, share in zip(result.levels, result.exit_shares())}
        return {"latency_ms": latency.median_ms / len(samples), "latency_iqr_ms": latency.iqr_ms / len(samples),
                "flops": float(sum(v * flops_at[g] for v, g in zip(visits, result.levels))),
                "flops_full": float(flops_at[model.full]),
                "mean_levels": float(sum(visits)), **exits,
                **{k: float(v) for k, v in model_size(model).items()}}


def fashion_mnist() -> VisionTask:
    return VisionTask("fashion-mnist")


def cifar10() -> VisionTask:
    return VisionTask("cifar10")

