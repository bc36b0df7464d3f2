"""GLUE data from the standard TSV folders (``glue/<TASK>/{train,dev}.tsv``), tokenised examples (ids,
segment ids and the tokens as text, for techniques that read words), and the official metrics.

Three disjoint parts: fit (what fine-tuning sees), validation (a seeded, label-stratified slice of
train that fine-tuning never sees: what a search and AxFormer's acceptance test select on) and test
(GLUE's dev split: GLUE's test labels are hidden, so dev is what papers report; only reported here).
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from autotradeoff.data import find_files
from autotradeoff.errors import DataMissingError, UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["GLUE_TASKS", "Example", "Encoded", "encode", "load_split", "validation_split", "score", "learning_fidelity",
           "rows_left", "train_rows"]


@dataclass(frozen=True)
class _Format:
    folder: str
    text: tuple[str, ...]  # column names (or indices for files without a header)
    label: str
    labels: tuple[str, ...]
    metric: str  # "accuracy", "mcc" or "f1"
    header: bool = True
    train_rows: int = 0  # GLUE's published training-set size


GLUE_TASKS = {
    "sst2": _Format("SST-2", ("sentence",), "label", ("0", "1"), "accuracy", train_rows=67349),
    "rte": _Format("RTE", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), "accuracy", train_rows=2490),
    "qnli": _Format("QNLI", ("question", "sentence"), "label", ("not_entailment", "entailment"), "accuracy",
                    train_rows=104743),
    "mrpc": _Format("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1", train_rows=3668),
    "cola": _Format("CoLA", ("3",), "1", ("0", "1"), "mcc", header=False, train_rows=8551),
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
    tokens: tuple[str, ...]  # the ids as the tokenizer's tokens (WordPiece pieces start with ##)
    label: int


def encode(tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int) -> list[Encoded]:
    """Tokenise once per process; techniques then work on ids and tokens, so no re-tokenising per epoch."""
    out = []
    for example in examples:
        enc = tokenizer(*example.text, truncation=True, max_length=max_length)
        ids = enc["input_ids"]
        out.append(Encoded(ids, enc.get("token_type_ids") or [0] * len(ids),
                           tuple(tokenizer.convert_ids_to_tokens(ids)), example.label))
    return out


def load_split(task: str, split: str) -> list[Example]:
    """``train`` or ``dev`` of a GLUE task from ``$AUTOTRADEOFF_DATA/glue/<TASK>/`` (or the cache)."""
    if task not in GLUE_TASKS:
        raise UsageError(f"unknown GLUE task {task!r}; choices: {', '.join(GLUE_TASKS)}")
    if split not in ("train", "dev"):
        raise UsageError(f"unknown split {split!r}; choices: train, dev")
    fmt = GLUE_TASKS[task]
    try:
        folder = find_files(f"glue/{fmt.folder}", ["train.tsv", "dev.tsv"], what=f"GLUE {fmt.folder}")
    except DataMissingError as missing:
        return _from_hub(task, split, missing)
    return _read(folder / f"{split}.tsv", fmt)


def _from_hub(task: str, split: str, missing: DataMissingError) -> list[Example]:
    """GLUE through Hugging Face ``datasets`` (``nyu-mll/glue``: its cache, or a download when online) when
    the TSVs are nowhere; labels mapped by name where the names agree, by index otherwise."""
    where = f"{str(missing).rstrip('.')}; nor as the Hugging Face dataset nyu-mll/glue ({task})"
    try:
        import datasets
    except ImportError:
        raise DataMissingError(f"{where}: `datasets` is not installed (pip install datasets)") from None
    try:
        rows = datasets.load_dataset("nyu-mll/glue", task, split="validation" if split == "dev" else "train")
    except Exception as exc:  # offline and not cached, or the hub's own failure
        raise DataMissingError(f"{where} in {datasets.config.HF_DATASETS_CACHE}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    fmt, names = GLUE_TASKS[task], rows.features["label"].names
    ours = [fmt.labels.index(n) if n in fmt.labels else i for i, n in enumerate(names)]
    columns = [c for c in rows.column_names if c not in ("label", "idx")]
    return [Example(tuple(str(row[c]).strip() for c in columns), ours[row["label"]]) for row in rows]


def validation_split(train: list[Example], *, size: int, seed: int = 0,
                     cap: float = 0.2) -> tuple[list[Example], list[Example]]:
    """(fit, validation): a seeded, label-stratified validation slice of ``size`` examples (at most ``cap``
    of train), and the rest of train in a seeded order."""
    size = min(size, int(cap * len(train)))
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    chosen: set[int] = set()
    for label in sorted({e.label for e in train}):
        members = [i for i in order if train[i].label == label]
        chosen.update(members[: round(size * len(members) / len(train))])
    return [train[i] for i in order if i not in chosen], [train[i] for i in order if i in chosen]


def rows_left(task: str, val_size: int, *, rows: int | None = None) -> int:
    """How many training rows ``validation_split`` leaves beside a validation of ``val_size``: of ``rows``, or of
    GLUE's published count (no data read; a copy may differ, as the shared RTE train lacks one row)."""
    rows = GLUE_TASKS[task].train_rows if rows is None else rows
    return rows - min(val_size, int(0.2 * rows))


@lru_cache(maxsize=8)
def train_rows(task: str) -> int:
    """The number of rows of ``task``'s train split as loaded (read once per process)."""
    return len(load_split(task, "train"))


def learning_fidelity(task: str, *, val_size: int = 872) -> tuple[int, int]:
    """(train_size, epochs) at which a pretrained encoder's fine-tune leaves the constant predictor behind:
    about 3,000 training examples seen per label (train_size x epochs), from at most 2,000 examples per
    label of what validation leaves of train, and at least 2 epochs. Sized from GLUE's published
    training-set size and the label count, so no data is read to choose it."""
    fmt = GLUE_TASKS[task]
    labels = len(fmt.labels)
    train_size = min(rows_left(task, val_size), 2000 * labels)
    return train_size, max(2, math.ceil(3000 * labels / train_size))


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
