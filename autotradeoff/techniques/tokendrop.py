"""TokenDrop + BucketSampler (techniques.md section 2): batches of equal-length sequences, so no padding,
and per-epoch dropping of stopword/punctuation tokens as a regulariser that also merges lengths.

- BucketSampler: sequences are grouped by their exact length after dropping; each bucket is shuffled and
  cut into batches of ``min(batch cap, token_budget // length)``, its remainder a batch of its own (never
  mixed with another length: zero padding); the list of batches is shuffled. The batch cap is the task's
  ``batch_size`` or, with ``batch_growth``, the paper's 64, 256, 512 over epochs; ``lr_scaling`` scales the
  LR of each batch by its size relative to ``batch_size`` (the paper: sqrt).
- TokenDrop: every epoch, from each training sequence drop ``len mod bucket_width`` (paper) or a ``fixed``
  share of tokens, chosen at random among stopwords and punctuation, and never more than ``max_drop`` of
  the sequence (short phrases would otherwise lose most of their words). Negations (``not``, ``no``,
  ``never``, every ``n't`` contraction, which WordPiece splits into ``n ' t``) and a few contrast and degree
  words (``but``, ``very``, ``too`` ...) are never dropped: they carry the sentiment.

Plain functions on token ids and lengths; nothing here mutates its inputs. Only training data is ever
passed through ``drop_tokens``. ``TokenDrop`` plugs them into the text tasks' ``batches`` stage.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from functools import cache
from typing import Any

from autotradeoff.knobs import Knob
from autotradeoff.techniques.base import Pipeline, Technique

__all__ = ["TokenDrop", "STOPWORDS", "PROTECTED", "droppable_mask", "drop_count", "drop_tokens", "bucket_batches",
           "padding_fraction", "batch_cap", "lr_scale", "epoch_batches"]

# The technique's knobs; each default is "off" (random batches of batch_size, nothing dropped).
KNOBS = {
    "batching": Knob("batching", "categorical", "random", choices=("random", "bucket"),
                     help="random fixed-size batches, or BucketSampler's exact-length buckets", stage="data"),
    "bucket_width": Knob("bucket_width", "int", 5, 1, 64, help="mod-width TokenDrop: lengths drop to multiples of this",
                         stage="data"),
    "token_budget": Knob("token_budget", "int", 12000, 64, 1_000_000, help="most tokens in one bucketed batch", stage="data"),
    "drop_mode": Knob("drop_mode", "categorical", "off", choices=("off", "mod-width", "fixed"),
                      help="TokenDrop: none, len mod bucket_width (paper), or a fixed share", stage="data"),
    "drop_rate": Knob("drop_rate", "float", 0.1, 0.0, 0.5, help="share dropped per sequence in fixed mode", stage="data"),
    "max_drop": Knob("max_drop", "float", 0.2, 0.0, 1.0, help="most of a sequence's tokens TokenDrop may drop", stage="data"),
    "batch_growth": Knob("batch_growth", "categorical", False, choices=(False, True),
                         help="batch cap 64, 256, 512 over epochs (paper) instead of batch_size", stage="data"),
    "lr_scaling": Knob("lr_scaling", "categorical", "none", choices=("none", "sqrt", "linear"),
                       help="scale each batch's LR with its size relative to batch_size (paper: sqrt)", stage="train"),
}

# Never dropped: negations and the contrast/degree words that flip or scale a sentiment.
NEGATIONS = frozenset("no nor not never none nobody nothing neither nowhere cannot without".split())
PROTECTED = NEGATIONS | frozenset("but very too only against few more most".split())
# NLTK's English stopword list (the list the paper names), lower-case, less PROTECTED and the negated
# contractions (aren't, don't ... and the stems a tokenizer leaves of them: aren, don ...).
_NLTK = """
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom
this that that'll these those am is are was were be been being have has had having do does did doing a an the
and but if or because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where why how all
any both each few more most other some such no nor not only own same so than too very s t can will just don
don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn
hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split()
_NEGATED = {w for w in _NLTK if w.endswith("n't")} | {w[:-2] for w in _NLTK if w.endswith("n't")} | {"ain"}
STOPWORDS = frozenset(w for w in _NLTK if w not in PROTECTED and w not in _NEGATED)
_PUNCTUATION = frozenset(string.punctuation)


def _in_negation(tokens: Sequence[str], i: int) -> bool:
    """Is token ``i`` part of an ``n't`` contraction: ``n't`` itself, or ``X ' t`` as WordPiece splits it?"""
    at = lambda j: tokens[j].lower() if 0 <= j < len(tokens) else ""  # noqa: E731
    return at(i) == "n't" or (at(i), at(i + 1)) == ("'", "t") or (at(i - 1), at(i)) == ("'", "t") \
        or (at(i + 1), at(i + 2)) == ("'", "t")


def droppable_mask(tokens: Sequence[str]) -> list[bool]:
    """True for whole-word tokens that are stopwords or punctuation, never a protected word, a negation or a
    piece of one (WordPiece ``##`` pieces and special tokens such as ``[CLS]`` are never droppable)."""
    mask = []
    for i, token in enumerate(tokens):
        whole = not token.startswith("##") and not (i + 1 < len(tokens) and tokens[i + 1].startswith("##"))
        word = token.lower()
        word = word.lstrip("'") or word  # PTB-style clitics ('s, 're)
        kind = word in STOPWORDS or (word != "" and set(word) <= _PUNCTUATION)
        mask.append(whole and kind and word not in PROTECTED and not _in_negation(tokens, i))
    return mask


def drop_count(length: int, *, mode: str, bucket_width: int = 5, rate: float = 0.0, cap: float = 1.0) -> int:
    """Tokens to drop from a sequence: ``length mod bucket_width`` (paper) or ``round(rate * length)``, at
    most ``cap`` of the sequence."""
    if mode == "mod-width":
        n = length % bucket_width
    elif mode == "fixed":
        n = round(rate * length)
    elif mode == "off":
        return 0
    else:
        raise ValueError(f"drop mode must be one of off, mod-width, fixed; got {mode!r}")
    return min(n, math.floor(cap * length + 1e-9))


def drop_tokens(ids: Sequence[int], droppable: Sequence[bool], n: int, rng: random.Random) -> list[int]:
    """``ids`` without ``n`` randomly chosen droppable positions (fewer if fewer are droppable)."""
    if len(ids) != len(droppable):
        raise ValueError(f"ids and droppable differ in length: {len(ids)} vs {len(droppable)}")
    candidates = [i for i, ok in enumerate(droppable) if ok]
    gone = set(rng.sample(candidates, min(n, len(candidates)))) if n > 0 else set()
    return [token for i, token in enumerate(ids) if i not in gone]


def bucket_batches(lengths: Sequence[int], *, token_budget: int, cap: int, rng: random.Random) -> list[list[int]]:
    """Index batches of equal-length sequences: each exact-length bucket shuffled and cut into batches of
    ``min(cap, token_budget // length)``, its remainder a batch of its own; the batches shuffled."""
    if token_budget < 1 or cap < 1:
        raise ValueError(f"token_budget and cap must be >= 1; got {token_budget}, {cap}")
    buckets: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        buckets.setdefault(length, []).append(index)
    batches = []
    for length in sorted(buckets):
        members = list(buckets[length])
        rng.shuffle(members)
        size = max(1, min(cap, token_budget // max(length, 1)))
        batches += [members[i:i + size] for i in range(0, len(members), size)]
    rng.shuffle(batches)
    return batches


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of token slots that are padding when each batch is padded to its longest sequence."""
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 0.0 if slots == 0 else (slots - real) / slots


def batch_cap(epoch: int, *, growth: bool, base: int = 64) -> int:
    """The paper's growing batch cap: 64, then 256, then 512 (or ``base`` throughout without growth)."""
    return base if not growth else (64, 256, 512)[min(epoch, 2)]


def lr_scale(batch: int, *, rule: str, base: int = 64) -> float:
    """Learning-rate factor for a batch size: none, sqrt(batch/base) (paper) or linear."""
    factor = {"none": lambda r: 1.0, "sqrt": math.sqrt, "linear": lambda r: r}.get(rule)
    if factor is None:
        raise ValueError(f"lr scaling must be one of none, sqrt, linear; got {rule!r}")
    return factor(batch / base)


def kept_positions(lengths: Sequence[int], droppable: Sequence[Sequence[bool]], own: dict[str, Any],
                   rng: random.Random) -> list[list[int]]:
    """One epoch's TokenDrop: the token positions each sequence keeps (all of them without dropping)."""
    kept = []
    for length, mask in zip(lengths, droppable):
        n = drop_count(length, mode=own["drop_mode"], bucket_width=own["bucket_width"], rate=own["drop_rate"],
                       cap=own["max_drop"])
        kept.append(drop_tokens(range(length), mask, n, rng) if n else list(range(length)))
    return kept


def epoch_batches(lengths: Sequence[int], droppable: Sequence[Sequence[bool]], own: dict[str, Any], *,
                  batch_size: int, epoch: int, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
    """One epoch's plan: (batches of example indices, kept token positions per example).

    Positions are per example so the caller slices ids and segment ids alike; without TokenDrop
    every position is kept. Random batching shuffles and cuts batches of the cap.
    """
    kept = kept_positions(lengths, droppable, own, rng)
    cap = batch_cap(epoch, growth=own["batch_growth"], base=batch_size)
    if own["batching"] == "bucket":
        return bucket_batches([len(k) for k in kept], token_budget=own["token_budget"], cap=cap, rng=rng), kept
    order = list(range(len(lengths)))
    rng.shuffle(order)
    return [order[i:i + cap] for i in range(0, len(order), cap)], kept


@cache
def _droppable(tokens: tuple[str, ...]) -> tuple[bool, ...]:
    return tuple(droppable_mask(tokens))


class TokenDrop(Technique):
    """TokenDrop + BucketSampler on the text tasks' ``batches`` stage: (examples with ids and tokens,
    epoch, rng) -> (batches, kept positions per example, LR factor per batch)."""

    name, family, stages = "tokendrop", "text", ("batches",)
    description = "TokenDrop + BucketSampler: exact-length buckets without padding, stopwords dropped per epoch"
    knobs = KNOBS
    saves = ("padding_fraction",)
    aggressive = {"batching": "bucket", "drop_mode": "mod-width"}

    def training_key(self, own: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Only the knobs that act: bucketing's budget when bucketing, the drop rule's own settings when dropping."""
        key = {"batching": own["batching"], "drop_mode": own["drop_mode"], "batch_growth": own["batch_growth"],
               "lr_scaling": own["lr_scaling"]}
        if own["batching"] == "bucket":
            key["token_budget"] = own["token_budget"]
        if own["drop_mode"] != "off":
            key.update(max_drop=own["max_drop"], **({"bucket_width": own["bucket_width"]} if own["drop_mode"] == "mod-width"
                                                     else {"drop_rate": own["drop_rate"]}))
        return key

    def install(self, pipeline: Pipeline, own: dict[str, Any]) -> None:
        if self.is_off(own):
            return
        batch_size = pipeline.task_config["batch_size"]

        def batches(examples: Sequence[Any], *, epoch: int,
                    rng: random.Random) -> tuple[list[list[int]], list[list[int]], list[float]]:
            lengths, droppable = [len(e.ids) for e in examples], [_droppable(e.tokens) for e in examples]
            plan, kept = epoch_batches(lengths, droppable, own, batch_size=batch_size, epoch=epoch, rng=rng)
            return plan, kept, [lr_scale(len(b), rule=own["lr_scaling"], base=batch_size) for b in plan]

        pipeline.wrap("batches", lambda _plain: batches)  # replaces random batching altogether
