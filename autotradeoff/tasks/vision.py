"""Image classification (Fashion-MNIST, CIFAR-10) with a small ViT trained from scratch; ICPC (compressed
training levels, positional consistency, variable-effort inference) plugs into its pipeline.

The images are upsampled onto a larger canvas (fidelity ``upsample``: 2 = twice their side): the ViT's full
patch grid is ``canvas / patch``, and a level at or above the images' own size (``native``, in patches, given in
the pipeline's context) keeps all of their information, as in the ICPC paper's public code (CIFAR-10's
32 px upsampled to 384 px).

The vision family's pipeline (what a vision technique may wrap):
- ``train_plan(full) -> (levels, sample(rng, progress) -> grid, position mode)``: the level of each
  training batch (plain: always the full grid);
- ``infer_plan(full, score) -> (levels, threshold, fallback, position mode)``: the levels inference climbs
  and when it stops (plain: the full level answers every sample). ``score(levels, position mode)`` gives
  every level's answers on the validation split, ``(confidence, correct, FLOPs per pass)``, for a
  technique that tunes its plan there.

A trial: train (or reuse from the cache) the ViT the training knobs give on the training images (a
validation slice of the training set held out), classify the validation and test images at one level or
by variable effort, then measure inference on validation: FLOPs per sample over the levels each
sample visited (flop_counter per level, weighted by the share that ran it), batch-1 latency per
sample over a probe set whose exits follow the validation set's (each sample stops where it would in
deployment), and the share of samples exiting at each level (``exit_share_<px>px``). The test split's
accuracy, FLOPs, levels and exits are reported beside them as ``test_*``. Training cost: wall time, forward + backward
FLOPs of every step (counted per level, summed over batches), peak memory. Resizing is element-wise
and, as in flop_counter's own convention, not counted in FLOPs; it is in the wall times.
"""

from __future__ import annotations

from typing import Any

import torch

from autotradeoff.cost import Anchor, alone, count_flops, measure_latency, model_size
from autotradeoff.errors import TrialFailed, UsageError
from autotradeoff.knobs import Knob
from autotradeoff.models.vit import ARCH, ViT, build_vit
from autotradeoff.tasks.base import DEGENERACY_METRICS, Task, degeneracy, run_fidelity
from autotradeoff.tasks.vision_data import load_images
from autotradeoff.tasks.vision_train import TrainStats, train_vit, trained_vit
from autotradeoff.techniques import Pipeline
from autotradeoff.techniques.icpc import EXIT_PREFIX, EffortResult, variable_effort

__all__ = ["VisionTask", "fashion_mnist", "cifar10", "evaluate", "level_answers", "probe_indices"]

_NATIVE = {"fashion-mnist": 28, "cifar10": 32}


def _subset(n: int, size: int, seed: int) -> torch.Tensor:
    """``size`` seeded indices out of ``n`` (all, in order, when size is 0 or >= n)."""
    if not size or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def _train_and_validation(n: int, train_size: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) indices into the training set: a validation slice fixed across seeds (seed 0),
    and ``train_size`` of the rest drawn with ``seed`` (0: all of the rest)."""
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    validation, rest = shuffled[:val_size], shuffled[val_size:]
    return rest[_subset(len(rest), train_size, seed)], validation


def probe_indices(exit_index: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` test samples whose exit levels follow the whole test set's (largest-remainder quota per level,
    the first samples of each), so their batch-1 latency matches the exits the FLOPs are weighted by."""
    n = min(n, len(exit_index))
    quota = torch.bincount(exit_index).double() * n / len(exit_index)
    take = quota.floor().long()
    take[(quota - take).argsort(descending=True)[: n - int(take.sum())]] += 1
    return torch.cat([(exit_index == level).nonzero().view(-1)[:k] for level, k in enumerate(take.tolist())])


# (levels, threshold, fallback, position mode): the ``infer_plan`` stage's answer
InferPlan = tuple[list[int], float, str, str]


def evaluate(model: ViT, images: torch.Tensor, labels: torch.Tensor, plan: InferPlan, *, device: str,
             chunk: int = 1000) -> tuple[float, EffortResult]:
    """Accuracy and per-sample exits of inference by ``plan`` (one fixed level, or variable effort)."""
    levels, threshold, fallback, pos_mode = plan
    logits_at = lambda x, g: model.logits_at(x, g, pos_mode)  # noqa: E731
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            alone.pause_point()
            parts.append(variable_effort(logits_at, images[start:start + chunk].to(device), levels, threshold,
                                         fallback=fallback))
    result = EffortResult(torch.cat([p.predictions for p in parts]).cpu(), torch.cat([p.exit_index for p in parts]).cpu(),
                          levels)
    return float((result.predictions == labels).float().mean()), result


def level_answers(model: ViT, images: torch.Tensor, labels: torch.Tensor, levels: list[int], pos_mode: str, *,
                  device: str, chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(max softmax probability, correct) of every sample at every level, each (levels, samples)."""
    confidence, correct = [], []
    with torch.inference_mode():
        for grid in levels:
            parts = []
            for start in range(0, len(images), chunk):
                alone.pause_point()
                parts.append(model.logits_at(images[start:start + chunk].to(device), grid, pos_mode).float().softmax(-1).cpu())
            best, answer = torch.cat(parts).max(dim=-1)
            confidence.append(best)
            correct.append(answer == labels)
    return torch.stack(confidence), torch.stack(correct)


class VisionTask(Task):
    family = "vision"
    technique_names = ("icpc",)
    metrics = {
        "val_accuracy": "max", "test_accuracy": "max", "latency_ms": "min", "latency_iqr_ms": "min", "flops": "min",
        "test_flops": "min", "flops_full": "min", "mean_levels": "min", "test_mean_levels": "min", "params": "min",
        "model_bytes": "min", "effort_threshold": "min",
        "train_time_s": "min", "train_flops": "min", "train_steps": "min", "train_peak_mb": "min", "train_reused": "max",
        **DEGENERACY_METRICS,
    }
    metric_prefixes = (EXIT_PREFIX, f"test_{EXIT_PREFIX}")  # one per inference level, e.g. exit_share_16px
    default_objectives = ("val_accuracy", "flops", "train_flops")
    own_knobs: dict[str, Knob] = {}
    fidelity = {
        "upsample": Knob("upsample", "float", 2.0, 1.0, 16.0, help="the canvas: the images' side times this (the full "
                         "grid is canvas / patch)"),
        "patch": Knob("patch", "int", 8, 1, 64, help="patch side in pixels on the canvas"),
        "dim": Knob("dim", "int", 64, 8, 2048, help="embedding width"),
        "depth": Knob("depth", "int", 4, 1, 48, help="transformer blocks"),
        "heads": Knob("heads", "int", 4, 1, 32, help="attention heads (must divide dim)"),
        "mlp_ratio": Knob("mlp_ratio", "float", 2.0, 0.5, 8.0, help="MLP width / dim"),
        "epochs": Knob("epochs", "int", 3, 1, 1000, help="training epochs"),
        "batch_size": Knob("batch_size", "int", 128, 1, 65536, help="training batch size"),
        "lr": Knob("lr", "float", 2e-3, 1e-6, 1.0, help="AdamW peak learning rate (cosine schedule, 5% warm-up)"),
        "weight_decay": Knob("weight_decay", "float", 0.05, 0.0, 1.0, help="AdamW weight decay"),
        "train_size": Knob("train_size", "int", 10000, 0, 10_000_000, help="training images, a seeded subset (0: all)", stage="data"),
        "val_size": Knob("val_size", "int", 2000, 1, 1_000_000, help="validation images held out of the training set",
                         stage="data"),
        "test_size": Knob("test_size", "int", 0, 0, 10_000_000, help="test images scored, a fixed subset (0: all)", stage="inference"),
        "latency_samples": Knob("latency_samples", "int", 16, 1, 10000, help="validation images timed one at a time per repeat",
                                stage="inference"),
        **run_fidelity(gpu_share=0.25, warmup=2, repeats=10),
    }
    learning_settings = ("train_size", "epochs")
    tiny_fidelity = {"train_size": 64, "val_size": 64, "test_size": 64, "epochs": 1, "dim": 16, "depth": 1, "heads": 2, "batch_size": 32,
                     "upsample": 2.0, "patch": 8,
                     "latency_samples": 2, "latency_warmup": 0, "latency_repeats": 1}

    def __init__(self, dataset: str):
        self.dataset = self.name = dataset
        self.description = f"{dataset} image classification: a small ViT from scratch with ICPC"

    def check_data(self, fidelity: dict[str, Any] | None = None) -> None:
        fidelity = self.fill_fidelity(fidelity)
        side = self.canvas(fidelity)
        if side % fidelity["patch"]:
            raise UsageError(f"fidelity.patch must divide the canvas side {side} px ({self.dataset}'s {_NATIVE[self.dataset]} px "
                             f"x fidelity.upsample {fidelity['upsample']:g}); got {fidelity['patch']}.")
        if fidelity["dim"] % fidelity["heads"]:
            raise UsageError(f"fidelity.heads must divide fidelity.dim ({fidelity['dim']}); got {fidelity['heads']}.")
        load_images(self.dataset, "test")

    def data(self, fidelity: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"train", "val", "test"}: (uint8 images, labels) of each split; the training subset seeded, the
        validation slice and the test subset fixed."""
        train, test = load_images(self.dataset, "train"), load_images(self.dataset, "test")
        pick_train, pick_val = _train_and_validation(len(train.labels), fidelity["train_size"], fidelity["val_size"],
                                                     fidelity["seed"])
        pick_test = _subset(len(test.labels), fidelity["test_size"], 0)
        return {"train": (train.images[pick_train], train.labels[pick_train]),
                "val": (train.images[pick_val], train.labels[pick_val]),
                "test": (test.images[pick_test], test.labels[pick_test])}

    def canvas(self, fidelity: dict[str, Any]) -> int:
        """The side in pixels of the model's full level: the images' own times ``upsample``."""
        return round(_NATIVE[self.dataset] * fidelity["upsample"])

    def context(self, fidelity: dict[str, Any]) -> dict[str, Any]:
        """What a technique may read: the full grid and the images' own side, in patches."""
        return {"full": self.canvas(fidelity) // fidelity["patch"], "native": _NATIVE[self.dataset] / fidelity["patch"]}

    def stages(self, config: dict[str, Any], fidelity: dict[str, Any]) -> Pipeline:
        """This trial's pipeline with its techniques installed."""
        return self.pipeline(config, lambda pipeline: {
            "train_plan": lambda grid: ([grid], lambda rng, progress: grid, "top-left"),
            "infer_plan": lambda grid, score: ([grid], 0.0, "largest", "top-left")}, context=self.context(fidelity))

    def trained(self, config: dict[str, Any], fidelity: dict[str, Any], *,
                device: str) -> tuple[ViT, TrainStats, Pipeline]:
        """(model, training stats, pipeline): the ViT these knobs give, from the cache or trained."""
        train_x, train_y = self.data(fidelity)["train"]
        shape = dict(image_size=self.canvas(fidelity), channels=train_x.shape[1], classes=load_images(self.dataset, "train").classes)
        pipeline = self.stages(config, fidelity)
        full = pipeline.context["full"]

        def build() -> ViT:
            torch.manual_seed(fidelity["seed"])
            return build_vit({k: fidelity[k] for k in ARCH}, **shape)

        key = self.training_key(config, fidelity, device=device, context=dict(pipeline.context))
        model, stats = trained_vit(key, build, lambda m: train_vit(m, train_x, train_y, pipeline.train_plan(full), fidelity,
                                                                   device=device), device=device)
        return model, stats, pipeline

    def run(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> dict[str, float]:
        self.check_data(fidelity)
        model, stats, pipeline = self.trained(config, fidelity, device=device)
        data = self.data(fidelity)
        plan = self.infer_plan(model, pipeline, data["val"], device)
        val_accuracy, val = evaluate(model, *data["val"], plan, device=device)
        test_accuracy, test = evaluate(model, *data["test"], plan, device=device)
        if not (0 <= val_accuracy <= 1 and 0 <= test_accuracy <= 1):
            raise TrialFailed(f"accuracy {val_accuracy} / {test_accuracy} out of range")
        flops_at = self.level_flops(model, data["val"][0], {*val.levels, model.full}, plan[3], device)
        share = lambda p, y: sum(a == b for a, b in zip(p, y)) / len(y)  # noqa: E731
        return {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy, "train_time_s": stats.time_s,
                **degeneracy(val.predictions.tolist(), data["val"][1].tolist(), share),
                "train_flops": stats.flops, "train_steps": float(stats.steps), "train_peak_mb": stats.peak_mb,
                "train_reused": float(stats.reused), "effort_threshold": plan[1],
                **self.costs(model, val, data["val"][0], plan, fidelity, device, flops_at),
                **{f"test_{k}": v for k, v in self.effort(model, test, flops_at).items()}}

    def infer_plan(self, model: ViT, pipeline: Pipeline, validation: tuple[torch.Tensor, torch.Tensor],
                   device: str) -> InferPlan:
        """The pipeline's inference plan; a technique tuning it scores its levels on ``validation``."""

        def score(levels: list[int], mode: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
            flops = self.level_flops(model, validation[0], set(levels), mode, device)
            return (*level_answers(model, *validation, levels, mode, device=device), [flops[g] for g in levels])

        return pipeline.infer_plan(model.full, score)

    def deployable(self, config: dict[str, Any], fidelity: dict[str, Any], *, device: str) -> ViT:
        """The trained ViT of ``config`` with its inference plan as ``ladder`` (what ``apply`` writes)."""
        model, _, pipeline = self.trained(config, fidelity, device=device)
        levels, threshold, fallback, mode = self.infer_plan(model, pipeline, self.data(fidelity)["val"], device)
        model.ladder = {"levels": list(levels), "threshold": float(threshold), "fallback": fallback, "pos_mode": mode}
        return model

    @staticmethod
    def level_flops(model: ViT, images: torch.Tensor, levels: set[int], mode: str, device: str) -> dict[int, float]:
        """FLOPs of one sample's pass at each level (flop_counter)."""
        one = images[:1].to(device)
        return {g: float(count_flops(lambda g=g: model.logits_at(one, g, mode))) for g in levels}

    @staticmethod
    def effort(model: ViT, result: EffortResult, flops_at: dict[int, float]) -> dict[str, float]:
        """Per sample: FLOPs over the levels visited, levels run, and the share exiting at each level."""
        visits = result.visits()
        exits = {f"{EXIT_PREFIX}{g * model.patch}px": share for g, share in zip(result.levels, result.exit_shares())}
        return {"flops": sum(v * flops_at[g] for v, g in zip(visits, result.levels)), "mean_levels": float(sum(visits)),
                **exits}

    def anchor(self, model: ViT, samples: list[torch.Tensor], device: str) -> Anchor:
        """The latency anchor (``cost.latency.Anchor``): a ViT of the same architecture, untrained (timing does not
        read the weights), classifying the same probe at the full level alone: the task without ICPC."""
        torch.manual_seed(0)
        plain = build_vit({k: model.shape[k] for k in ARCH}, **{k: model.shape[k] for k in ("image_size", "channels", "classes")})
        plain = plain.to(device).eval()

        def infer() -> None:
            for image in samples:
                plain.logits_at(image, plain.full, "top-left")

        return Anchor(f"{self.name}-vit-{'-'.join(str(v) for v in model.shape.values())}-{len(samples)}-{device}", infer)

    def costs(self, model: ViT, result: EffortResult, images: torch.Tensor, plan: InferPlan, fidelity: dict[str, Any],
              device: str, flops_at: dict[int, float]) -> dict[str, float]:
        """Inference per sample on ``images`` (validation): FLOPs over visited levels (``flops_at``: one pass at
        each level), batch-1 latency over a probe whose exits follow ``result``'s (timed beside ``anchor``), exits
        per level, size."""
        _, threshold, fallback, mode = plan
        probe = images[probe_indices(result.exit_index, fidelity["latency_samples"])].to(device)
        samples = [probe[i:i + 1] for i in range(len(probe))]
        logits_at = lambda x, g: model.logits_at(x, g, mode)  # noqa: E731

        def infer_probe() -> None:
            for image in samples:
                variable_effort(logits_at, image, result.levels, threshold, fallback=fallback)

        latency = measure_latency(infer_probe, warmup=fidelity["latency_warmup"], repeats=fidelity["latency_repeats"],
                                  threads=fidelity["threads"], model=model, anchor=self.anchor(model, samples, device))
        return {"latency_ms": latency.median_ms / len(samples), "latency_iqr_ms": latency.iqr_ms / len(samples),
                "flops_full": flops_at[model.full], **self.effort(model, result, flops_at),
                **{k: float(v) for k, v in model_size(model).items()}}


def fashion_mnist() -> VisionTask:
    return VisionTask("fashion-mnist")


def cifar10() -> VisionTask:
    return VisionTask("cifar10")
