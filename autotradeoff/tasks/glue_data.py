"""GLUE data from the standard TSV folders (``glue/<TASK>/{train,dev}.tsv``), tokenised examples with
TokenDrop's droppable-token mask, and the official metrics.

Dev is the score; a seeded slice of train (15% by default) is the selection split that AxFormer's
acceptance test uses, so nothing is ever selected on dev.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from autotradeoff.data import find_files
from autotradeoff.errors import UsageError

__all__ = ["GLUE_TASKS", "Example", "Encoded", "encode", "load_split", "selection_split", "score"]


@dataclass(frozen=True)
class _Format:
    folder: str
    text: tuple[str, ...]  # column names (or indices for files without a header)
    label: str
    labels: tuple[str, ...]
    metric: str  # "accuracy", "mcc" or "f1"
    header: bool = True


GLUE_TASKS = {
    "sst2": _Format("SST-2", ("sentence",), "label", ("0", "1"), "accuracy"),
    "rte": _Format("RTE", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), "accuracy"),
    "qnli": _Format("QNLI", ("question", "sentence"), "label", ("not_entailment", "entailment"), "accuracy"),
    "mrpc": _Format("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1"),
    "cola": _Format("CoLA", ("3",), "1", ("0", "1"), "mcc", header=False),
}


@dataclass(frozen=True)
class Example:
    text: tuple[str, ...]  # one sentence, or a pair
    label: int


def _read(path: Path, fmt: _Format) -> list[Example]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = (rows[0], rows[1:]) if fmt.header else ([str(i) for i in range(len(rows[0]))], rows)
    column = {name: i for i, name in enumerate(header)}
    missing = [c for c in (*fmt.text, fmt.label) if c not in column]
    if missing:
        raise UsageError(f"{path}: no column {missing[0]!r}; columns: {', '.join(header)}")
    examples = []
    for number, row in enumerate(body, start=2 if fmt.header else 1):
        if len(row) != len(header):
            raise UsageError(f"{path}:{number}: expected {len(header)} tab-separated fields; got {len(row)}")
        label = row[column[fmt.label]].strip()
        if label not in fmt.labels:
            raise UsageError(f"{path}:{number}: label {label!r} is not one of {', '.join(fmt.labels)}")
        examples.append(Example(tuple(row[column[c]].strip() for c in fmt.text), fmt.labels.index(label)))
    return examples


@dataclass(frozen=True)
class Encoded:
    ids: list[int]  # with [CLS]/[SEP], truncated to max_length
    types: list[int]  # segment ids (pairs)
    droppable: list[bool]  # stopword/punctuation positions TokenDrop may remove; special tokens never
    label: int


def encode(tokenizer, examples: list[Example], max_length: int) -> list[Encoded]:
    """Tokenise once per process; TokenDrop then works on ids, so no re-tokenising per epoch."""
    from autotradeoff.techniques.tokendrop import droppable_mask

    out = []
    for example in examples:
        enc = tokenizer(*example.text, truncation=True, max_length=max_length)
        ids = enc["input_ids"]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        special = set(tokenizer.all_special_ids)
        mask = [ok and i not in special for ok, i in zip(droppable_mask(tokens), ids)]
        out.append(Encoded(ids, enc.get("token_type_ids") or [0] * len(ids), mask, example.label))
    return out


def load_split(task: str, split: str) -> list[Example]:
    """``train`` or ``dev`` of a GLUE task from ``$AUTOTRADEOFF_DATA/glue/<TASK>/`` (or the cache)."""
    if task not in GLUE_TASKS:
        raise UsageError(f"unknown GLUE task {task!r}; choices: {', '.join(GLUE_TASKS)}")
    if split not in ("train", "dev"):
        raise UsageError(f"unknown split {split!r}; choices: train, dev")
    fmt = GLUE_TASKS[task]
    folder = find_files(f"glue/{fmt.folder}", ["train.tsv", "dev.tsv"], what=f"GLUE {fmt.folder}")
    return _read(folder / f"{split}.tsv", fmt)


def selection_split(train: list[Example], *, fraction: float = 0.15, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(fit, selection): a seeded, disjoint split of train; the selection part is ``fraction`` of it."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    cut = round(len(train) * fraction)
    return [train[i] for i in order[cut:]], [train[i] for i in order[:cut]]


def score(task: str, predictions: list[int], labels: list[int]) -> dict[str, float]:
    """The task's official metric as ``score`` plus accuracy (and F1/MCC where GLUE reports them)."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"need equally many predictions and labels; got {len(predictions)} and {len(labels)}")
    tp = sum(p == 1 and y == 1 for p, y in zip(predictions, labels))
    tn = sum(p == 0 and y == 0 for p, y in zip(predictions, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(predictions, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(predictions, labels))
    metrics = {"accuracy": (tp + tn) / len(labels)}
    metrics["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics["mcc"] = (tp * tn - fp * fn) / denominator if denominator else 0.0
    metrics["score"] = metrics[GLUE_TASKS[task].metric]
    return metrics
