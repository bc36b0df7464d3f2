"""TokenDrop + BucketSampler functions on real SST-2 sentences (word-split, as lengths and tokens)."""

import random
import string

import pytest

from autotradeoff.techniques.tokendrop import (
    KNOBS,
    STOPWORDS,
    batch_cap,
    bucket_batches,
    drop_count,
    drop_tokens,
    droppable_mask,
    epoch_batches,
    lr_scale,
    padding_fraction,
)

from conftest import DATA


@pytest.fixture(scope="module")
def sentences():
    lines = (DATA / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:3001]
    return [line.split("\t")[0].split() for line in lines]


def test_dropped_tokens_are_stopwords_or_punctuation_only(sentences):
    rng = random.Random(0)
    for words in sentences[:500]:
        mask = droppable_mask(words)
        ids = list(range(len(words)))
        n = drop_count(len(words), mode="mod-width", bucket_width=5)
        kept = drop_tokens(ids, mask, n, rng)
        removed = [words[i] for i in set(ids) - set(kept)]
        for word in removed:
            word = "not" if word.lower() == "n't" else word.lower().lstrip("'") or word
            assert word in STOPWORDS or not word.strip(string.punctuation), word
        assert len(removed) == min(n, sum(mask))
        assert kept == sorted(kept)  # order preserved, input untouched
    assert ids == list(range(len(words)))


def test_mod_width_drop_makes_lengths_multiples_of_the_width_when_possible(sentences):
    rng = random.Random(1)
    hits = 0
    for words in sentences:
        mask = droppable_mask(words)
        n = drop_count(len(words), mode="mod-width", bucket_width=5)
        if sum(mask) >= n:
            assert len(drop_tokens(list(range(len(words))), mask, n, rng)) % 5 == 0
            hits += 1
    # measured: 63% of the first 3,000 SST-2 phrases have enough stopwords/punctuation to drop to a
    # multiple of 5; the rest are short phrases with fewer droppable words than len mod 5
    assert hits > 0.6 * len(sentences)


def test_wordpiece_continuations_are_never_dropped():
    assert droppable_mask(["the", "un", "##able", "a", "##s", ",", "film"]) == [True, False, False, False, False, True, False]


def test_buckets_of_equal_length_sequences_have_no_padding(sentences):
    lengths = [5 * max(1, len(w) // 5) for w in sentences]  # as after mod-width TokenDrop
    batches = bucket_batches(lengths, bucket_width=5, token_budget=2000, cap=64, rng=random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every sequence once
    mixed = [b for b in batches if len({lengths[i] for i in b}) > 1]
    assert len(mixed) <= len(set(lengths))  # only merged leftovers mix lengths: at most one per bucket
    full = [b for b in batches if b not in mixed]
    assert padding_fraction(full, lengths) == 0 and sum(map(len, full)) > 0.8 * len(lengths)
    for batch in batches:
        assert len(batch) <= 64 and len(batch) * max(lengths[i] for i in batch) <= 2000


def test_random_batching_pads_far_more_than_buckets(sentences):
    lengths = [len(w) for w in sentences]
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    plain = [order[i:i + 32] for i in range(0, len(order), 32)]
    bucketed = bucket_batches(lengths, bucket_width=5, token_budget=2000, cap=64, rng=random.Random(0))
    assert padding_fraction(bucketed, lengths) < 0.5 * padding_fraction(plain, lengths)


def test_schedules_and_bad_modes():
    assert [batch_cap(e, growth=True) for e in range(4)] == [64, 256, 512, 512]
    assert batch_cap(3, growth=False) == 64
    assert lr_scale(256, rule="sqrt") == 2.0 and lr_scale(256, rule="linear") == 4.0 and lr_scale(256, rule="none") == 1.0
    assert drop_count(23, mode="fixed", rate=0.1) == 2 and drop_count(23, mode="off") == 0
    with pytest.raises(ValueError, match="drop mode must be one of"):
        drop_count(3, mode="random")


def test_an_epoch_plan_drops_only_stopwords_and_all_off_is_plain_random_batching(sentences):
    masks = [droppable_mask(words) for words in sentences]
    lengths = [len(words) for words in sentences]
    off = {name: knob.default for name, knob in KNOBS.items()} | {"batch_size": 32}
    batches, kept = epoch_batches(lengths, masks, off, epoch=0, rng=random.Random(0))
    assert kept == [list(range(n)) for n in lengths] and {len(b) for b in batches[:-1]} == {32}
    on = off | {"batching": "bucket", "drop_mode": "mod-width", "token_budget": 2000}
    batches, kept = epoch_batches(lengths, masks, on, epoch=0, rng=random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for mask, positions, n in zip(masks, kept, lengths):
        assert all(mask[p] for p in set(range(n)) - set(positions))  # only droppable tokens went
    plain_padding = padding_fraction([list(range(i, min(i + 32, len(lengths)))) for i in range(0, len(lengths), 32)], lengths)
    assert padding_fraction(batches, [len(k) for k in kept]) < 0.25 * plain_padding
    next_epoch, _ = epoch_batches(lengths, masks, on | {"batch_growth": True}, epoch=1, rng=random.Random(0))
    assert max(map(len, next_epoch)) > 64  # the cap grew to 256
