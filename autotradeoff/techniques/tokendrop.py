"""TokenDrop + BucketSampler (techniques.md section 2): length buckets without padding, and
per-epoch dropping of stopword/punctuation tokens so every sequence in a bucket has equal length.

Plain functions on token ids and lengths; nothing here mutates its inputs. Only training data is
ever passed through ``drop_tokens``.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from typing import Any

from autotradeoff.space import Knob

__all__ = ["KNOBS", "STOPWORDS", "droppable_mask", "drop_count", "drop_tokens", "bucket_batches",
           "padding_fraction", "batch_cap", "lr_scale", "epoch_batches"]

# The technique's knobs; each default is "off" (random batches of batch_size, nothing dropped).
KNOBS = {
    "batching": Knob("batching", "categorical", "random", choices=("random", "bucket"),
                     help="random fixed-size batches, or BucketSampler's length buckets"),
    "bucket_width": Knob("bucket_width", "int", 5, 1, 64, help="bucket width in tokens (and mod-width drop)"),
    "token_budget": Knob("token_budget", "int", 12000, 64, 1_000_000, help="tokens per bucketed batch"),
    "drop_mode": Knob("drop_mode", "categorical", "off", choices=("off", "mod-width", "fixed"),
                      help="TokenDrop: none, len mod bucket_width (paper), or a fixed share"),
    "drop_rate": Knob("drop_rate", "float", 0.1, 0.0, 0.5, help="share dropped per sequence in fixed mode"),
    "batch_growth": Knob("batch_growth", "categorical", False, choices=(False, True),
                         help="batch cap 64, 256, 512 over epochs (paper) instead of batch_size"),
    "lr_scaling": Knob("lr_scaling", "categorical", "none", choices=("none", "sqrt", "linear"),
                       help="scale the LR with batch size relative to batch_size"),
}

# NLTK's English stopword list (the list the paper names), lower-case.
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom
this that that'll these those am is are was were be been being have has had having do does did doing a an the
and but if or because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where why how all
any both each few more most other some such no nor not only own same so than too very s t can will just don
don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn
hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split())
_PUNCTUATION = frozenset(string.punctuation)


def droppable_mask(tokens: Sequence[str]) -> list[bool]:
    """True for whole-word tokens that are stopwords or punctuation (WordPiece ``##`` pieces never)."""
    mask = []
    for i, token in enumerate(tokens):
        whole = not token.startswith("##") and not (i + 1 < len(tokens) and tokens[i + 1].startswith("##"))
        word = token.lower()
        word = "not" if word == "n't" else word.lstrip("'") or word  # PTB-style clitics ('s, n't, 're)
        mask.append(whole and (word in STOPWORDS or (word != "" and set(word) <= _PUNCTUATION)))
    return mask


def drop_count(length: int, *, mode: str, bucket_width: int = 5, rate: float = 0.0) -> int:
    """Tokens to drop from a sequence: ``length mod bucket_width`` (paper) or ``round(rate * length)``."""
    if mode == "mod-width":
        return length % bucket_width
    if mode == "fixed":
        return round(rate * length)
    if mode == "off":
        return 0
    raise ValueError(f"drop mode must be one of off, mod-width, fixed; got {mode!r}")


def drop_tokens(ids: Sequence[int], droppable: Sequence[bool], n: int, rng: random.Random) -> list[int]:
    """``ids`` without ``n`` randomly chosen droppable positions (fewer if fewer are droppable)."""
    if len(ids) != len(droppable):
        raise ValueError(f"ids and droppable differ in length: {len(ids)} vs {len(droppable)}")
    candidates = [i for i, ok in enumerate(droppable) if ok]
    gone = set(rng.sample(candidates, min(n, len(candidates)))) if n > 0 else set()
    return [token for i, token in enumerate(ids) if i not in gone]


def bucket_batches(lengths: Sequence[int], *, bucket_width: int, token_budget: int, cap: int,
                   rng: random.Random) -> list[list[int]]:
    """Index batches: full batches inside length buckets, leftovers merged in length order, shuffled.

    A bucket holds lengths ``((k-1)*w, k*w]``; its batch size is ``min(cap, token_budget // (k*w))``.
    """
    if bucket_width < 1 or token_budget < 1 or cap < 1:
        raise ValueError(f"bucket_width, token_budget and cap must be >= 1; got {bucket_width}, {token_budget}, {cap}")
    buckets: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        buckets.setdefault(max(0, length - 1) // bucket_width, []).append(index)
    batches, leftovers = [], []
    for key in sorted(buckets):
        members = list(buckets[key])
        rng.shuffle(members)
        size = max(1, min(cap, token_budget // ((key + 1) * bucket_width)))
        full = len(members) - len(members) % size
        batches += [members[i:i + size] for i in range(0, full, size)]
        leftovers += members[full:]
    leftovers.sort(key=lambda i: lengths[i])
    current: list[int] = []
    for index in leftovers:
        longest = max(lengths[index], 1)
        if current and len(current) + 1 > max(1, min(cap, token_budget // longest)):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
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


def epoch_batches(lengths: Sequence[int], droppable: Sequence[Sequence[bool]], config: dict[str, Any], *,
                  epoch: int, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
    """One epoch's plan: (batches of example indices, kept token positions per example).

    Positions are per example so the caller slices ids and segment ids alike; without TokenDrop
    every position is kept. Random batching shuffles and cuts ``batch_size`` batches.
    """
    kept = []
    for length, mask in zip(lengths, droppable):
        n = drop_count(length, mode=config["drop_mode"], bucket_width=config["bucket_width"], rate=config["drop_rate"])
        kept.append(drop_tokens(range(length), mask, n, rng) if n else list(range(length)))
    new_lengths = [len(k) for k in kept]
    cap = batch_cap(epoch, growth=config["batch_growth"], base=config["batch_size"])
    if config["batching"] == "bucket":
        return bucket_batches(new_lengths, bucket_width=config["bucket_width"], token_budget=config["token_budget"],
                              cap=cap, rng=rng), kept
    order = list(range(len(lengths)))
    rng.shuffle(order)
    return [order[i:i + cap] for i in range(0, len(order), cap)], kept
